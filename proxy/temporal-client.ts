// One Temporal client per runtime for the API's reads and updates (cases, resolve). It connects
// on first use, under a short connect timeout, and again after a transport failure; every call
// runs under a deadline, so an unreachable Temporal costs a caller about a second and a 503,
// never a hang (the SDK's own retry interceptor would otherwise retry UNAVAILABLE for long).
// The SDK's client (~12 MB of heap: its protobuf classes) is loaded on the first call, so an API
// that never reads a case never carries it through every garbage collection.
import type { Client, Connection } from '@temporalio/client';

/** gRPC status codes that mean "Temporal is not there" rather than "the call was refused". */
const GRPC_UNAVAILABLE = 14;
const GRPC_DEADLINE_EXCEEDED = 4;

export const TEMPORAL_TIMEOUTS = {
  connectMs: 1_000,
  /** Default deadline of one call (list, query, update). */
  callMs: 5_000,
} as const;

export class TemporalUnavailable extends Error {
  readonly code = 'temporal_unavailable';
}

export interface TemporalClients {
  readonly address: string;
  readonly namespace: string;
  /**
   * Runs `fn` with the shared client under a deadline. Transport failures (connect, UNAVAILABLE,
   * deadline) reject with `TemporalUnavailable` and drop the connection, so the next call
   * connects afresh; errors Temporal answered with (not found, refused update) pass through.
   */
  call<T>(fn: (client: Client) => Promise<T>, timeoutMs?: number): Promise<T>;
  close(): Promise<void>;
}

export function isTransportFailure(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 8; depth++) {
    if (e instanceof TemporalUnavailable) return true;
    const code = (e as { code?: unknown }).code;
    if (code === GRPC_UNAVAILABLE || code === GRPC_DEADLINE_EXCEEDED) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

interface Connected {
  connection: Connection;
  client: Client;
}

export function lazyTemporalClient(opts: {
  address: string;
  namespace: string;
  connectTimeoutMs?: number;
  callTimeoutMs?: number;
}): TemporalClients {
  const connectTimeout = opts.connectTimeoutMs ?? TEMPORAL_TIMEOUTS.connectMs;
  const callTimeout = opts.callTimeoutMs ?? TEMPORAL_TIMEOUTS.callMs;
  let current: Promise<Connected> | undefined;
  let closed = false;

  function connect(): Promise<Connected> {
    if (closed) return Promise.reject(new TemporalUnavailable('the Temporal client is closed'));
    if (current) return current;
    const p = import('@temporalio/client')
      .then(async (sdk) => {
        const connection = await sdk.Connection.connect({ address: opts.address, connectTimeout });
        return { connection, client: new sdk.Client({ connection, namespace: opts.namespace }) };
      })
      .catch((err: unknown) => {
        throw new TemporalUnavailable(`Temporal at ${opts.address} did not answer`, {
          cause: err,
        });
      });
    current = p;
    // A failed connect is forgotten at once: the next caller tries again.
    p.catch(() => {
      if (current === p) current = undefined;
    });
    return p;
  }

  function drop(p: Promise<Connected>): void {
    if (current !== p) return;
    current = undefined;
    p.then(
      (c) => c.connection.close(),
      () => {},
    ).catch(() => {});
  }

  return {
    address: opts.address,
    namespace: opts.namespace,
    async call<T>(fn: (client: Client) => Promise<T>, timeoutMs = callTimeout): Promise<T> {
      const p = connect();
      const { connection, client } = await p;
      try {
        return await connection.withDeadline(Date.now() + timeoutMs, () => fn(client));
      } catch (err) {
        if (!isTransportFailure(err)) throw err;
        drop(p);
        throw err instanceof TemporalUnavailable
          ? err
          : new TemporalUnavailable(`Temporal at ${opts.address} did not answer in time`, {
              cause: err,
            });
      }
    },
    async close() {
      closed = true;
      const p = current;
      current = undefined;
      if (p) await p.then((c) => c.connection.close()).catch(() => {});
    },
  };
}
