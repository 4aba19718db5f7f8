// TLS is always verified: a backend with a certificate no CA vouches for is a connection error,
// never a request. The egress connector connects to the checked address but keeps the name for
// SNI and the certificate check.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createIntegrations, type IntegrationStorePort } from '../../../integrations/index.ts';

let dir: string;
let server: Server;
let port: number;
const sni: string[] = [];
let requests = 0;

function memoryStore(): IntegrationStorePort {
  const rows = new Map<string, { slug: string; kind: string; document: unknown }>();
  return {
    putIntegration: (i) => Promise.resolve(void rows.set(i.slug, i)),
    getIntegration: (s) => Promise.resolve(rows.get(s)),
    listIntegrations: () => Promise.resolve([...rows.values()]),
    deleteIntegration: (s) => Promise.resolve(rows.delete(s)),
  };
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'vigil-tls-'));
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      path.join(dir, 'key.pem'),
      '-out',
      path.join(dir, 'cert.pem'),
      '-days',
      '1',
      '-subj',
      '/CN=tls.internal',
      '-addext',
      'subjectAltName=DNS:tls.internal,IP:127.0.0.1',
    ],
    { stdio: 'ignore' },
  );
  const key = readFileSync(path.join(dir, 'key.pem'));
  const cert = readFileSync(path.join(dir, 'cert.pem'));
  server = createServer(
    {
      key,
      cert,
      SNICallback: (name, cb) => {
        sni.push(name);
        cb(null, undefined);
      },
    },
    (_req, res) => {
      requests++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"verdict":"approve"}');
    },
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
  rmSync(dir, { recursive: true, force: true });
});

describe('TLS', () => {
  it('refuses a certificate no trusted CA signed; SNI carries the name, not the address', async () => {
    const integ = createIntegrations({
      store: memoryStore(),
      secretKey: randomBytes(32),
      egressAllow: [`tls.internal:${port}`],
      resolver: (h) => Promise.resolve(h === 'tls.internal' ? ['127.0.0.1'] : []),
    });
    try {
      const put = await integ.put('tls', {
        kind: 'http',
        base_url: `https://tls.internal:${port}`,
        backends: [
          {
            backend_id: 'b',
            path: '/',
            response: { outcome_path: '$.verdict', map: { approve: 'ALLOW' } },
          },
        ],
      });
      expect(put.ok).toBe(true);
      const r = await integ.callBackend({ integration: 'tls', backend_id: 'b', context: {} });
      expect(r).toEqual({ status: 'error', error: 'connection' });
      expect(sni).toContain('tls.internal');
      expect(requests).toBe(0);
    } finally {
      await integ.close();
    }
  });
});
