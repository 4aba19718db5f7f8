// A real HTTP backend on 127.0.0.1:0 for the integrations tests and the backend bench: each
// route answers one way (fast, slow, never, broken), and the server counts connections and
// requests per path so a test can assert that nothing was sent.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';

export interface Seen {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body: string;
}

export interface LocalBackend {
  port: number;
  origin: string;
  connections: number;
  requests: Seen[];
  count(path: string): number;
  /** Replaces or adds a route. */
  route(path: string, h: (req: Seen, res: ServerResponse) => void): void;
  close(): Promise<void>;
}

const json = (res: ServerResponse, status: number, body: unknown, headers = {}) => {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(text);
};

export async function startLocalBackend(): Promise<LocalBackend> {
  // 32 MiB of spaces in ~32 KiB: made once, before the clock of any test starts.
  const bomb = gzipSync(Buffer.alloc(32 * 1024 * 1024, 0x20));
  const routes = new Map<string, (req: Seen, res: ServerResponse) => void>([
    ['/fast', (_q, r) => void setTimeout(() => json(r, 200, { verdict: 'approve' }), 2)],
    ['/slow50', (_q, r) => void setTimeout(() => json(r, 200, { verdict: 'review' }), 50)],
    ['/decline', (_q, r) => json(r, 200, { verdict: 'decline', score: 97 })],
    ['/never', () => {}],
    ['/slow-headers', (_q, r) => void setTimeout(() => json(r, 200, { verdict: 'approve' }), 500)],
    [
      '/slow-body',
      (_q, r) => {
        r.writeHead(200, { 'content-type': 'application/json' });
        r.write('{"verdict":');
      },
    ],
    ['/500', (_q, r) => json(r, 500, { error: 'boom' })],
    [
      '/invalid',
      (_q, r) => {
        r.writeHead(200, { 'content-type': 'application/json' });
        r.end('{"verdict": approve');
      },
    ],
    ['/maybe', (_q, r) => json(r, 200, { verdict: 'maybe' })],
    [
      '/huge',
      (_q, r) => {
        r.writeHead(200, { 'content-type': 'application/json' });
        const chunk = Buffer.alloc(64 * 1024, 0x20);
        let sent = 0;
        const more = () => {
          while (sent < 4 * 1024 * 1024) {
            sent += chunk.length;
            if (!r.write(chunk)) return void r.once('drain', more);
          }
          r.end('{}');
        };
        more();
      },
    ],
    [
      '/bomb',
      (_q, r) => {
        r.writeHead(200, {
          'content-type': 'application/json',
          'content-encoding': 'gzip',
          'content-length': bomb.length,
        });
        r.end(bomb);
      },
    ],
    [
      '/gzip-ok',
      (_q, r) => {
        const body = gzipSync(JSON.stringify({ verdict: 'decline' }));
        r.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
        r.end(body);
      },
    ],
    [
      '/redirect',
      (_q, r) => {
        r.writeHead(302, { location: '/fast' });
        r.end();
      },
    ],
  ]);

  const state = { connections: 0, requests: [] as Seen[] };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x');
      const seen: Seen = {
        method: req.method ?? '',
        path: url.pathname,
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      };
      state.requests.push(seen);
      const h = routes.get(url.pathname);
      if (h) h(seen, res);
      else json(res, 404, { error: 'not_found' });
    });
  });
  server.on('connection', () => state.connections++);
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    origin: `http://127.0.0.1:${port}`,
    get connections() {
      return state.connections;
    },
    requests: state.requests,
    count: (path) => state.requests.filter((r) => r.path === path).length,
    route: (path, h) => void routes.set(path, h),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
