// Third parties on real local HTTP servers (127.0.0.1, port 0): the ticket tracker, chat,
// merchant hooks and risk backends a playbook talks to. Each route counts what it received and
// can be told to fail, to answer late, or to honour Idempotency-Key the way the real kinds do
// (look the key up before creating).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReceivedCall {
  route: string;
  idempotencyKey: string | undefined;
  body: unknown;
  status: number;
  at: number;
}

export interface RouteBehaviour {
  /** Answer this status (with Retry-After when given) to the first N calls. */
  failFirst?: { count: number; status: number; retryAfterSeconds?: number };
  /** Wait this long before answering, after the side effect (every call). */
  delayMs?: number;
  /** Wait this long before answering the first call only, after its side effect. */
  delayFirstMs?: number;
  /** Look the Idempotency-Key up before creating; a known key answers the first result. */
  honourIdempotency?: boolean;
  /** JSON answered by a backend route: e.g. { verdict: 'review' }. */
  answer?: unknown;
}

export interface ThirdParty {
  url: string;
  calls: ReceivedCall[];
  /** Creates per route (2xx answers that made something new). */
  creates(route: string): number;
  callsTo(route: string): ReceivedCall[];
  /** Resolves when a call to `route` arrived and is being held (for crash tests). */
  arrived(route: string): Promise<void>;
  configure(route: string, b: RouteBehaviour): void;
  close(): Promise<void>;
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? JSON.parse(text) : null;
}

export async function startThirdParty(): Promise<ThirdParty> {
  const behaviours = new Map<string, RouteBehaviour>();
  const seen = new Map<string, Map<string, unknown>>();
  const created = new Map<string, number>();
  const attempts = new Map<string, number>();
  const waiters = new Map<string, (() => void)[]>();
  const calls: ReceivedCall[] = [];
  let seq = 0;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const route = (req.url ?? '/').replace(/^\//, '');
    const body = await readJson(req);
    const key = req.headers['idempotency-key'];
    const idempotencyKey = Array.isArray(key) ? key[0] : key;
    const b = behaviours.get(route) ?? {};
    const n = (attempts.get(route) ?? 0) + 1;
    attempts.set(route, n);
    for (const w of waiters.get(route) ?? []) w();
    waiters.delete(route);
    // The side effect happens first and the answer is late: a caller that dies meanwhile
    // never learns that its ticket exists, which is what idempotency keys are for.
    const delay = (b.delayMs ?? 0) + (n === 1 ? (b.delayFirstMs ?? 0) : 0);
    const answer = async (
      status: number,
      payload: unknown,
      headers: Record<string, string> = {},
    ) => {
      calls.push({ route, idempotencyKey, body, status, at: Date.now() });
      if (delay > 0) await new Promise((r) => setTimeout(r, delay));
      if (res.destroyed) return;
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify(payload));
    };
    if (b.failFirst && n <= b.failFirst.count) {
      const headers: Record<string, string> =
        b.failFirst.retryAfterSeconds !== undefined
          ? { 'retry-after': String(b.failFirst.retryAfterSeconds) }
          : {};
      await answer(b.failFirst.status, { error: 'unavailable' }, headers);
      return;
    }
    if (b.answer !== undefined) {
      await answer(200, b.answer);
      return;
    }
    const known = seen.get(route) ?? new Map<string, unknown>();
    seen.set(route, known);
    if (b.honourIdempotency && idempotencyKey && known.has(idempotencyKey)) {
      await answer(200, known.get(idempotencyKey));
      return;
    }
    seq += 1;
    const made = { id: `${route.split('/').pop() ?? 'x'}-${seq}` };
    if (idempotencyKey) known.set(idempotencyKey, made);
    created.set(route, (created.get(route) ?? 0) + 1);
    await answer(201, made);
  }

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      res.writeHead(500);
      res.end(String(err));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    calls,
    creates: (route) => created.get(route) ?? 0,
    callsTo: (route) => calls.filter((c) => c.route === route),
    arrived: (route) =>
      new Promise<void>((resolve) => {
        const list = waiters.get(route) ?? [];
        list.push(resolve);
        waiters.set(route, list);
      }),
    configure: (route, b) => behaviours.set(route, b),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
