// The demo origin of `vigil start` (VIGIL_DEMO=1): a tiny shop that echoes what reached it,
// including the x-vigil-decision headers the proxy adds, so a newcomer sees enforcement at once.
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface DemoOrigin {
  url: string;
  close(): Promise<void>;
}

const MAX_BODY = 64 * 1024;

export async function startDemoOrigin(port = 0): Promise<DemoOrigin> {
  const server = http.createServer((req, res) => {
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY) req.destroy();
    });
    req.on('end', () => {
      const body = JSON.stringify({
        shop: 'vigil demo origin',
        method: req.method,
        path: req.url,
        received_bytes: size,
        vigil_decision: req.headers['x-vigil-decision'] ?? null,
        vigil_decision_id: req.headers['x-vigil-decision-id'] ?? null,
      });
      res.writeHead(200, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
      });
      res.end(body);
    });
  });
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const { port: actual } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${actual}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
