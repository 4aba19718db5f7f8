// The inline proxy holds what arrives of an origin's answer until the end of the event-loop
// pass (proxy/flush.ts) and writes it with the pass's other answers. These drive forward()
// with a real origin and a real client: answers arrive whole and in order per connection, and
// a failure while writing a held answer is handled, never an unhandled rejection.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS } from '../../../proxy/inline/config.ts';
import { createOriginPool, forward, type OriginPool } from '../../../proxy/inline/forward.ts';

let origin: http.Server;
let pool: OriginPool;
let front: http.Server;
let frontUrl: string;
const done: number[] = [];
let throwOnDone = false;

const listen = (s: http.Server) =>
  new Promise<string>((r) =>
    s.listen(0, '127.0.0.1', () => r(`http://127.0.0.1:${(s.address() as AddressInfo).port}`)),
  );

beforeAll(async () => {
  origin = http.createServer((req, res) => {
    const n = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('n') ?? '0');
    const size = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('size') ?? '0');
    res.writeHead(n % 3 === 0 ? 204 : 200, { 'content-type': 'text/plain', 'x-n': String(n) });
    if (n % 3 === 0) res.end();
    else res.end(size > 0 ? 'x'.repeat(size) : `answer ${n}`);
  });
  pool = createOriginPool({ name: 'o', url: await listen(origin), connections: 16 } as never, {
    ...DEFAULT_LIMITS,
  });
  front = http.createServer((req, res) => {
    forward({
      origin: pool,
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      headers: [],
      body: null,
      timeoutMs: 5_000,
      res,
      onDone: (status) => {
        done.push(status);
        if (throwOnDone) throw new Error('a broken done callback');
      },
    });
  });
  frontUrl = await listen(front);
});

afterAll(async () => {
  front?.closeAllConnections();
  await new Promise((r) => front?.close(r));
  await pool?.pool.destroy();
  origin?.closeAllConnections();
  await new Promise((r) => origin?.close(r));
});

describe('answers held until the end of the loop pass', () => {
  it('arrive whole, with their own status and headers, when many are in flight at once', async () => {
    const answers = await Promise.all(
      Array.from({ length: 60 }, async (_, n) => {
        const r = await fetch(`${frontUrl}/a?n=${n}${n % 10 === 1 ? '&size=300000' : ''}`);
        return { n, status: r.status, header: r.headers.get('x-n'), body: await r.text() };
      }),
    );
    for (const a of answers) {
      expect(a.header).toBe(String(a.n));
      if (a.n % 3 === 0) {
        expect(a.status).toBe(204);
        expect(a.body).toBe('');
      } else {
        expect(a.status).toBe(200);
        expect(a.body).toBe(a.n % 10 === 1 ? 'x'.repeat(300_000) : `answer ${a.n}`);
      }
    }
    expect(done.filter((s) => s === 200 || s === 204)).toHaveLength(60);
  });

  it('still deliver the answer when what runs after writing it throws', async () => {
    throwOnDone = true;
    try {
      const r = await fetch(`${frontUrl}/a?n=7`);
      expect(r.status).toBe(200);
      expect(await r.text()).toBe('answer 7');
      // And the next request on a new connection is served as before.
      throwOnDone = false;
      const again = await fetch(`${frontUrl}/a?n=8`, { headers: { connection: 'close' } });
      expect(await again.text()).toBe('answer 8');
    } finally {
      throwOnDone = false;
    }
  });
});
