// WebSocket (and any HTTP/1.1 Upgrade) pass-through. The upgrade request goes to the origin
// through node:http, which parses the answer: only a real 101 turns the connection into a
// tunnel. A refused upgrade is relayed as a normal response and the connection closed, so a
// client cannot get a raw pipe to the origin (and past the proxy's routing) by asking for an
// upgrade the origin declines.
import http, { type IncomingMessage } from 'node:http';
import { performance } from 'node:perf_hooks';
import https from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { rootCertificates } from 'node:tls';
import { renderBlock, type CompiledConfig } from './config.ts';
import { buildDecisionContext } from './extract.ts';
import type { OriginPool } from './forward.ts';
import {
  clientResponseHeaders,
  hostCount,
  originRequestHeaders,
  type ForwardedFacts,
} from './headers.ts';
import { parseTarget } from './match.ts';
import type { ProxyMetrics } from './metrics.ts';
import { decideWithin } from './decide.ts';
import type { DecideFn, ProxyDecision, ProxyLogger, RequestEvent } from './types.ts';

export interface UpgradeContext {
  req: IncomingMessage;
  socket: Duplex;
  head: Buffer;
  cfg: CompiledConfig;
  pools: Map<string, OriginPool>;
  facts: ForwardedFacts;
  decide: DecideFn;
  metrics: ProxyMetrics;
  upgraded: Set<Duplex>;
  emit: (e: RequestEvent) => void;
  log: ProxyLogger;
}

function rawResponse(status: number, headers: [string, string][], body: string): string {
  let head = `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? 'Error'}\r\n`;
  for (const [k, v] of headers) head += `${k}: ${v}\r\n`;
  return `${head}content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`;
}

function refuse(socket: Duplex, status: number, error: string, message: string): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  socket.end(
    rawResponse(status, [['content-type', 'application/json']], JSON.stringify({ error, message })),
  );
  setTimeout(() => socket.destroy(), 1_000).unref();
}

export function handleUpgrade(u: UpgradeContext): void {
  u.socket.on('error', () => u.socket.destroy());
  run(u).catch((err: unknown) => {
    u.log.error({ error: (err as Error).message }, 'upgrade failed');
    refuse(u.socket, 500, 'internal', 'internal error');
  });
}

async function run(u: UpgradeContext): Promise<void> {
  const { req, socket, cfg } = u;
  const method = req.method ?? 'GET';
  const hosts = hostCount(req.rawHeaders);
  if (hosts > 1) return refuse(socket, 400, 'bad_request', 'more than one Host header');
  if (hosts === 0 && req.httpVersionMinor === 1) {
    return refuse(socket, 400, 'bad_request', 'the Host header is required');
  }
  const target = parseTarget(req.url ?? '');
  if (target === null)
    return refuse(socket, 400, 'bad_request', 'the request target must be a path');
  const route = cfg.match(method, target.matchPath.toLowerCase());
  if (!route) return refuse(socket, 404, 'not_found', 'no route for this request');
  const origin = u.pools.get(route.origin);
  if (!origin)
    return refuse(socket, 502, 'bad_gateway', `origin ${route.origin} is not configured`);

  const extra: string[] = [];
  // A monitored upgrade is reported once, when its fate is known.
  let report: (status: number) => void = () => {};
  if (route.context !== null) {
    // An upgrade has no body to read: the route's query, header and cookie extractors apply.
    const built = buildDecisionContext(
      route.extractors,
      {
        method,
        path: target.path,
        search: target.search,
        headers: req.headers,
        ip: u.facts.clientIp,
      },
      cfg.session,
      route.label,
    );
    const t0 = performance.now();
    const outcome = await decideWithin(
      u.decide,
      { context: route.context, body: built.body, source: 'proxy' },
      cfg.limits.decision_timeout_ms,
    );
    const d: ProxyDecision | null = typeof outcome === 'string' ? null : outcome;
    const event = (status: number) =>
      u.emit({
        method,
        path: target.path,
        route: route.label,
        context: route.context!,
        mode: route.mode,
        status,
        decision_id: d?.id ?? null,
        decision: d?.decision ?? null,
        fail_open: typeof outcome === 'string' ? outcome : null,
        ip: u.facts.clientIp,
        elapsed_ms: Math.round((performance.now() - t0) * 1000) / 1000,
        session: built.session,
      });
    if (d === null) {
      u.metrics.failOpen.inc({
        context: route.context,
        reason: outcome as string,
        source: 'proxy',
      });
    } else {
      u.metrics.decisions.inc({
        context: route.context,
        decision: d.decision,
        mode: route.mode,
        source: 'proxy',
      });
      if (route.mode === 'active' && d.decision === 'BLOCK') {
        const b = route.block;
        const headers: [string, string][] = [
          ['content-type', b.contentType],
          ['x-vigil-decision', d.decision],
          ['x-vigil-decision-id', d.id],
          ...b.headers.map(([k, v]): [string, string] => [
            k,
            v.split('{{decision_id}}').join(d.id),
          ]),
        ];
        socket.end(rawResponse(b.status, headers, renderBlock(b, d.id)));
        event(b.status);
        return;
      }
      extra.push('x-vigil-decision', d.decision, 'x-vigil-decision-id', d.id);
    }
    let reported = false;
    report = (status) => {
      if (reported) return;
      reported = true;
      event(status);
    };
  }
  if (socket.destroyed) return;

  const url = new URL(origin.url);
  const tls = url.protocol === 'https:';
  const headers = originRequestHeaders(req.rawHeaders, req.headers, u.facts, {
    keepContentLength: false,
    upgrade: true,
    extra,
  });
  const upstream = (tls ? https : http).request({
    host: url.hostname,
    port: url.port || (tls ? 443 : 80),
    method,
    path: target.path + target.search,
    headers: [...headers, 'host', url.host],
    agent: false,
    timeout: route.timeoutMs,
    ...(tls
      ? {
          rejectUnauthorized: true,
          servername: url.hostname,
          ...(origin.ca ? { ca: [...rootCertificates, origin.ca] } : {}),
        }
      : {}),
  });
  let answered = false;
  upstream.on('timeout', () => {
    if (!answered) {
      answered = true;
      u.metrics.upstreamErrors.inc({ origin: origin.name, kind: 'timeout' });
      report(504);
      refuse(socket, 504, 'gateway_timeout', `origin ${origin.name} did not answer in time`);
    }
    upstream.destroy();
  });
  upstream.on('error', () => {
    if (answered) return;
    answered = true;
    u.metrics.upstreamErrors.inc({ origin: origin.name, kind: 'connect' });
    report(502);
    refuse(socket, 502, 'bad_gateway', `origin ${origin.name} is unavailable`);
  });
  socket.once('close', () => upstream.destroy());

  upstream.on('upgrade', (res: IncomingMessage, upSocket: Socket, upHead: Buffer) => {
    answered = true;
    upSocket.setTimeout(0);
    if (socket.destroyed) {
      upSocket.destroy();
      return;
    }
    let head = `HTTP/1.1 101 ${res.statusMessage || 'Switching Protocols'}\r\n`;
    const raw = res.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) head += `${raw[i]}: ${raw[i + 1]}\r\n`;
    socket.write(`${head}\r\n`);
    if (upHead.length) socket.write(upHead);
    if (u.head.length) upSocket.write(u.head);
    u.upgraded.add(socket);
    const teardown = () => {
      u.upgraded.delete(socket);
      socket.destroy();
      upSocket.destroy();
    };
    upSocket.on('error', teardown);
    upSocket.on('close', teardown);
    socket.on('close', teardown);
    upSocket.pipe(socket);
    socket.pipe(upSocket);
    u.metrics.countRequest(route.label, 101);
    report(101);
  });

  upstream.on('response', (res: IncomingMessage) => {
    answered = true;
    u.metrics.countRequest(route.label, res.statusCode ?? 502);
    report(res.statusCode ?? 502);
    let head = `HTTP/1.1 ${res.statusCode ?? 502} ${res.statusMessage ?? ''}\r\n`;
    const kept = clientResponseHeaders(res.rawHeaders);
    for (let i = 0; i < kept.length; i += 2) {
      // The body is delimited by closing the connection; a length could disagree with that.
      if (kept[i]!.toLowerCase() === 'content-length') continue;
      head += `${kept[i]}: ${kept[i + 1]}\r\n`;
    }
    socket.write(`${head}connection: close\r\n\r\n`);
    res.pipe(socket);
    res.on('error', () => socket.destroy());
  });
  upstream.end();
}
