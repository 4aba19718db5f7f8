// Forwarding to origins on undici's dispatch API: the origin's answer is written to the client
// as it arrives, with backpressure both ways (a slow client pauses the origin; a slow origin
// pauses the client's upload through undici's body stream). No retries: a proxy cannot know
// whether a request it already sent had effects, so an error is the client's to retry.
import type { ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { rootCertificates } from 'node:tls';
import { Pool, type Dispatcher } from 'undici';
import type { Limits, OriginSpec } from './config.ts';
import { writeBurst } from '../flush.ts';
import { clientResponseHeaders } from './headers.ts';

export interface OriginPool {
  name: string;
  url: string;
  /** What the pool was built from: a reload keeps the pool when this is unchanged. */
  key: string;
  pool: Pool;
  ca: string | undefined;
}

/** A response the proxy could not build cleanly is never a hang (see ForwardHandler timers). */
const BACKSTOP_HEADERS_TIMEOUT_MS = 300_000;
const CONNECT_TIMEOUT_MS = 10_000;

export function originKey(spec: OriginSpec, limits: Limits): string {
  return JSON.stringify([
    spec.url,
    spec.ca ?? '',
    spec.connections,
    limits.origin_keep_alive_ms,
    limits.body_timeout_ms,
  ]);
}

export function createOriginPool(spec: OriginSpec, limits: Limits): OriginPool {
  const pool = new Pool(spec.url, {
    connections: spec.connections,
    pipelining: 1,
    keepAliveTimeout: limits.origin_keep_alive_ms,
    // An origin may advertise a longer keep-alive than it honours; never trust more than ours.
    keepAliveMaxTimeout: limits.origin_keep_alive_ms,
    // HTTP/1.1 to origins, like nginx: one set of header semantics and no h2 framing surprises.
    allowH2: false,
    headersTimeout: BACKSTOP_HEADERS_TIMEOUT_MS,
    bodyTimeout: limits.body_timeout_ms,
    // A body shorter or longer than its Content-Length is an error, never a desync.
    strictContentLength: true,
    connect: {
      timeout: CONNECT_TIMEOUT_MS,
      // Origin certificates are verified; a private CA is added to the system ones.
      rejectUnauthorized: true,
      ...(spec.ca ? { ca: [...rootCertificates, spec.ca] } : {}),
    },
  });
  return { name: spec.name, url: spec.url, key: originKey(spec, limits), pool, ca: spec.ca };
}

export type UpstreamFailure = 'connect' | 'timeout' | 'reset' | 'client' | 'bad_request';

export function sendJson(
  res: ServerResponse,
  status: number,
  body: Record<string, unknown>,
  opts: { close?: boolean; headers?: Record<string, string> } = {},
): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const text = JSON.stringify(body);
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...opts.headers,
  };
  // A request whose body we will not read: close rather than read the rest of it to reuse
  // the connection (it may be a gigabyte).
  if (opts.close) headers.connection = 'close';
  res.writeHead(status, headers);
  res.end(text);
}

const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'ETIMEDOUT']);

export function classify(err: Error & { code?: string }): UpstreamFailure {
  if (TIMEOUT_CODES.has(err.code ?? '')) return 'timeout';
  // The client's body did not match its own Content-Length (undici checks before sending on).
  if (err.code === 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH') return 'bad_request';
  if (err.code === 'UND_ERR_INVALID_ARG' || err.code === 'UND_ERR_NOT_SUPPORTED') {
    return 'bad_request';
  }
  return 'connect';
}

export interface ForwardOptions {
  origin: OriginPool;
  method: string;
  /** Path and query as the origin receives them. */
  path: string;
  headers: string[];
  body: Buffer | Readable | null;
  /** The origin must start answering within this, counted from dispatch and refreshed while
   *  the request body is still being sent. */
  timeoutMs: number;
  res: ServerResponse;
  onDone?: ((status: number, failure: UpstreamFailure | null) => void) | undefined;
  onFailure?: ((failure: UpstreamFailure, err: Error) => void) | undefined;
}

const WAITING = 0;
const STREAMING = 1;
const DONE = 2;

class GatewayTimeout extends Error {
  readonly code = 'VIGIL_GATEWAY_TIMEOUT';
}
class ClientGone extends Error {
  readonly code = 'VIGIL_CLIENT_GONE';
}

class ForwardHandler implements Dispatcher.DispatchHandler {
  private controller: Dispatcher.DispatchController | null = null;
  private state = WAITING;
  private status = 0;
  private readonly timer: NodeJS.Timeout;
  private readonly o: ForwardOptions;

  constructor(o: ForwardOptions) {
    this.o = o;
    this.timer = setTimeout(this.onTimeout, o.timeoutMs);
    o.res.once('close', this.onClientClose);
  }

  private finish(status: number, failure: UpstreamFailure | null): void {
    this.state = DONE;
    clearTimeout(this.timer);
    if (this.draining) this.o.res.off('drain', this.onDrain);
    this.o.onDone?.(status, failure);
  }

  private fail(failure: UpstreamFailure, err: Error): void {
    if (this.state === DONE) return;
    const { res } = this.o;
    const started = this.state === STREAMING || res.headersSent;
    this.o.onFailure?.(started ? 'reset' : failure, err);
    if (started) {
      // Mid-body: the client cannot be told with a status, only by a cut connection.
      res.destroy();
      this.finish(this.status || 502, 'reset');
      return;
    }
    if (failure === 'timeout') {
      sendJson(
        res,
        504,
        {
          error: 'gateway_timeout',
          message: `origin ${this.o.origin.name} did not answer in time`,
        },
        { close: true },
      );
      this.finish(504, failure);
    } else if (failure === 'bad_request') {
      sendJson(
        res,
        400,
        { error: 'bad_request', message: 'the request body does not match its length' },
        { close: true },
      );
      this.finish(400, failure);
    } else {
      sendJson(
        res,
        502,
        { error: 'bad_gateway', message: `origin ${this.o.origin.name} is unavailable` },
        { close: true },
      );
      this.finish(502, failure);
    }
  }

  private readonly onTimeout = (): void => {
    if (this.state !== WAITING) return;
    const err = new GatewayTimeout('origin timed out');
    this.fail('timeout', err);
    this.controller?.abort(err);
  };

  private readonly onClientClose = (): void => {
    if (this.state === DONE || this.o.res.writableFinished) return;
    const err = new ClientGone('client closed the connection');
    this.o.onFailure?.('client', err);
    this.finish(this.status || 499, 'client');
    this.controller?.abort(err);
  };

  /** A 'drain' listener is added only once the client falls behind (most answers never do). */
  private draining = false;
  private readonly onDrain = (): void => {
    this.controller?.resume();
  };

  onRequestStart(controller: Dispatcher.DispatchController): void {
    // Queued in the pool past the deadline or the client left: 504 has been sent already.
    if (this.state === DONE) {
      controller.abort(new ClientGone('request no longer wanted'));
      return;
    }
    this.controller = controller;
  }

  onBodySent(): void {
    this.timer.refresh();
  }

  onRequestSent(): void {
    this.timer.refresh();
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    _headers: unknown,
    statusMessage?: string,
  ): void {
    // 1xx (100 Continue, 103 Early Hints) are the origin's business with us, not the client's.
    if (statusCode < 200 || this.state !== WAITING) return;
    this.state = STREAMING;
    this.status = statusCode;
    clearTimeout(this.timer);
    const { res } = this.o;
    const raw = controller.rawHeaders;
    const headers = Array.isArray(raw) ? clientResponseHeaders(raw) : [];
    try {
      if (statusMessage) res.writeHead(statusCode, statusMessage, headers);
      else res.writeHead(statusCode, headers);
    } catch (err) {
      // A header Node refuses to send (invalid characters): the origin's answer is unusable.
      this.state = WAITING;
      this.fail('connect', err as Error);
      controller.abort(err as Error);
      return;
    }
    // What arrives of the answer in this pass of the event loop goes out with the other
    // answers of the pass (../flush.ts): the client's socket is corked until then. Measured on
    // pass-through GET (bench/proxy.ts): 21,102 → 26,239 req/s, 48 → 38 µs of CPU per request.
    // Holding the requests to the origin the same way was measured too and made it worse
    // (55 µs): undici already writes them from a setImmediate.
    const socket = res.socket;
    if (socket && !socket.destroyed && !socket.writableCorked) {
      socket.cork();
      this.holding = true;
      writeBurst().then(this.release).catch(this.releaseFailed);
    }
  }

  /** Corked until this pass's burst; an end that arrives meanwhile waits for it too. */
  private holding = false;
  private endHeld = false;
  private readonly release = (): void => {
    this.holding = false;
    if (this.endHeld) {
      this.endHeld = false;
      this.end(); // res.end() uncorks fully
      return;
    }
    const socket = this.o.res.socket;
    if (socket?.writableCorked) socket.uncork();
  };

  /** Whatever went wrong writing the held answer: undici would have caught it in its callback. */
  private readonly releaseFailed = (err: unknown): void => {
    this.o.res.destroy();
    if (this.state !== DONE) {
      this.o.onFailure?.('reset', err as Error);
      this.finish(this.status || 502, 'reset');
    }
    this.controller?.abort(err as Error);
  };

  private end(): void {
    if (this.state !== STREAMING) return;
    this.o.res.end();
    this.finish(this.status, null);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.state !== STREAMING) return;
    if (!this.o.res.write(chunk)) {
      controller.pause();
      if (!this.draining) {
        this.draining = true;
        this.o.res.on('drain', this.onDrain);
      }
    }
  }

  onResponseEnd(): void {
    if (this.state !== STREAMING) return;
    if (this.holding) this.endHeld = true;
    else this.end();
  }

  onResponseError(_controller: Dispatcher.DispatchController | null, err: Error): void {
    if (this.state === DONE) return;
    this.fail(classify(err), err);
  }
}

/** Sends the request to the origin and the origin's answer to the client; never throws. */
export function forward(o: ForwardOptions): void {
  const handler = new ForwardHandler(o);
  try {
    o.origin.pool.dispatch(
      {
        method: o.method,
        path: o.path,
        headers: o.headers,
        body: o.body,
        // Ours: undici's header timer starts only once the request is on a socket.
        headersTimeout: BACKSTOP_HEADERS_TIMEOUT_MS,
      },
      handler,
    );
  } catch (err) {
    handler.onResponseError(null, err as Error);
  }
}
