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

/**
 * The demo's third party (`vigil start`, VIGIL_DEMO=1): a risk score backend and a ticket desk,
 * registered as the `demo-desk` integration so a newcomer sees backend rules and a playbook's
 * ticket at once. Tickets are idempotent per `Idempotency-Key`, as a real desk should be.
 *   POST /score    {email, amount} → {verdict: approve | review | decline}
 *   POST /tickets  → 201 {id}; the same Idempotency-Key → 200 with the same ticket
 *   GET  /tickets  → every ticket opened
 */
export async function startDemoDesk(port = 0): Promise<DemoOrigin> {
  const tickets = new Map<string, { id: string; opened_at: string; body: unknown }>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY) req.destroy();
      else chunks.push(chunk);
    });
    req.on('end', () => {
      const send = (status: number, value: unknown) => {
        const body = JSON.stringify(value);
        res.writeHead(status, {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
        });
        res.end(body);
      };
      let input: Record<string, unknown>;
      try {
        input = chunks.length
          ? (JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown>)
          : {};
      } catch {
        return send(400, { error: 'invalid JSON' });
      }
      if (req.method === 'POST' && req.url === '/score') {
        const email = typeof input.email === 'string' ? input.email : '';
        const amount = typeof input.amount === 'number' ? input.amount : 0;
        const verdict = email.endsWith('@fraud.example')
          ? 'decline'
          : amount >= 50_000
            ? 'review'
            : 'approve';
        return send(200, { verdict });
      }
      if (req.url === '/tickets' && req.method === 'GET') return send(200, [...tickets.values()]);
      if (req.url === '/tickets' && req.method === 'POST') {
        const key = String(req.headers['idempotency-key'] ?? `anon-${tickets.size}`);
        const known = tickets.get(key);
        if (known) return send(200, known);
        const ticket = {
          id: `TCK-${tickets.size + 1}`,
          opened_at: new Date().toISOString(),
          body: input,
        };
        tickets.set(key, ticket);
        return send(201, ticket);
      }
      if (req.url === '/' && req.method === 'GET') return send(200, { desk: 'vigil demo desk' });
      send(404, { error: 'not found' });
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
