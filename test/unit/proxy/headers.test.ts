import { describe, expect, it } from 'vitest';
import { decideWithin } from '../../../proxy/inline/decide.ts';
import { clientResponseHeaders, originRequestHeaders } from '../../../proxy/inline/headers.ts';

function headerMap(raw: readonly string[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (let i = 0; i < raw.length; i += 2) (out[raw[i]!.toLowerCase()] ??= []).push(raw[i + 1]!);
  return out;
}

function dict(raw: string[]): NodeJS.Dict<string | string[]> {
  const out: NodeJS.Dict<string> = {};
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i]!.toLowerCase();
    out[k] = out[k] === undefined ? raw[i + 1] : `${out[k]}, ${raw[i + 1]}`;
  }
  return out;
}

const facts = {
  peer: '198.51.100.4',
  clientIp: '198.51.100.4',
  peerTrusted: false,
  proto: 'http' as const,
};

describe('request headers to the origin', () => {
  const raw = [
    'Host',
    'shop.example',
    'Connection',
    'keep-alive, X-Secret',
    'X-Secret',
    'drop me',
    'Keep-Alive',
    'timeout=5',
    'Proxy-Authorization',
    'Basic abc',
    'TE',
    'trailers',
    'Trailer',
    'x-t',
    'Transfer-Encoding',
    'chunked',
    'Upgrade',
    'h2c',
    'Expect',
    '100-continue',
    'X-Vigil-Decision',
    'ALLOW',
    'x-vigil-decision-id',
    'dec_forged',
    'X-Forwarded-For',
    '203.0.113.1',
    'X-Forwarded-Proto',
    'https',
    'X-Real-IP',
    '1.2.3.4',
    'Content-Length',
    '5',
    'Cookie',
    'sid=1',
    'Accept',
    'a/b',
    'Accept',
    'c/d',
  ];

  it('drops hop-by-hop, client-forged x-vigil-* and forwarding headers, then sets ours', () => {
    const out = headerMap(
      originRequestHeaders(raw, dict(raw), facts, {
        keepContentLength: true,
        extra: ['x-vigil-decision', 'REVIEW'],
      }),
    );
    expect(Object.keys(out).sort()).toEqual(
      [
        'accept',
        'content-length',
        'cookie',
        'x-forwarded-for',
        'x-forwarded-host',
        'x-forwarded-proto',
        'x-real-ip',
        'x-vigil-decision',
      ].sort(),
    );
    expect(out.accept).toEqual(['a/b', 'c/d']);
    expect(out['x-forwarded-for']).toEqual(['203.0.113.1, 198.51.100.4']);
    // An untrusted peer does not get to say it spoke HTTPS.
    expect(out['x-forwarded-proto']).toEqual(['http']);
    expect(out['x-forwarded-host']).toEqual(['shop.example']);
    expect(out['x-real-ip']).toEqual(['198.51.100.4']);
    expect(out['x-vigil-decision']).toEqual(['REVIEW']);
  });

  it("keeps a trusted proxy's X-Forwarded-Proto and drops Content-Length when re-framed", () => {
    const out = headerMap(
      originRequestHeaders(
        raw,
        dict(raw),
        { ...facts, peerTrusted: true },
        { keepContentLength: false },
      ),
    );
    expect(out['x-forwarded-proto']).toEqual(['https']);
    expect(out['content-length']).toBeUndefined();
  });

  it('keeps Upgrade and Connection: upgrade for upgrades only', () => {
    const ws = [
      'Host',
      'h',
      'Connection',
      'Upgrade',
      'Upgrade',
      'websocket',
      'Sec-WebSocket-Key',
      'k',
    ];
    const out = headerMap(
      originRequestHeaders(ws, dict(ws), facts, { keepContentLength: false, upgrade: true }),
    );
    expect(out.connection).toEqual(['upgrade']);
    expect(out.upgrade).toEqual(['websocket']);
    expect(out['sec-websocket-key']).toEqual(['k']);
  });
});

describe('response headers to the client', () => {
  it('drops hop-by-hop headers and those Connection names', () => {
    const raw = [
      'Content-Type',
      'text/plain',
      'Connection',
      'close, X-Internal',
      'X-Internal',
      'secret',
      'Keep-Alive',
      'timeout=99',
      'Transfer-Encoding',
      'chunked',
      'Proxy-Authenticate',
      'Basic',
      'Set-Cookie',
      'a=1',
      'Set-Cookie',
      'b=2',
    ].map((s) => Buffer.from(s, 'latin1'));
    expect(clientResponseHeaders(raw)).toEqual([
      'Content-Type',
      'text/plain',
      'Set-Cookie',
      'a=1',
      'Set-Cookie',
      'b=2',
    ]);
  });
});

describe('decide under a deadline', () => {
  const input = { context: 'login', body: {}, source: 'proxy' as const };
  it('passes a decision through', async () => {
    await expect(
      decideWithin(() => Promise.resolve({ id: 'dec_1', decision: 'REVIEW' }), input, 100),
    ).resolves.toEqual({
      id: 'dec_1',
      decision: 'REVIEW',
    });
  });
  it('turns throws, rejections and garbage into error, and slowness into timeout', async () => {
    await expect(
      decideWithin(
        () => {
          throw new Error('sync');
        },
        input,
        100,
      ),
    ).resolves.toBe('error');
    await expect(decideWithin(() => Promise.reject(new Error('x')), input, 100)).resolves.toBe(
      'error',
    );
    await expect(
      decideWithin(() => Promise.resolve({ id: 'dec\r\nx: y', decision: 'ALLOW' }), input, 100),
    ).resolves.toBe('error');
    await expect(
      decideWithin(() => Promise.resolve({ id: 'd', decision: 'MAYBE' }) as never, input, 100),
    ).resolves.toBe('error');
    await expect(decideWithin(() => new Promise(() => {}), input, 30)).resolves.toBe('timeout');
  });
});
