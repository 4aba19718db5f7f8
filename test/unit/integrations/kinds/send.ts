// Sends what a kind built to a nock-intercepted third party, the way the HTTP client would:
// `base_url` + path, the kind's method, headers and body, over undici.
import { request } from 'undici';
import type { OutboundRequest } from '../../../../integrations/kinds/kind.ts';

export interface Answer {
  status: number;
  /** Parsed JSON when the answer is JSON, the text otherwise. */
  body: unknown;
}

export async function send(baseUrl: string, req: OutboundRequest): Promise<Answer> {
  const res = await request(baseUrl + req.path, {
    method: req.method,
    headers: req.headers,
    body: req.body,
  });
  const raw = await res.body.text();
  const type = String(res.headers['content-type'] ?? '');
  return { status: res.statusCode, body: type.includes('json') ? JSON.parse(raw) : raw };
}

/** What the intercepted request carried, for assertions a nock matcher cannot express. */
export interface Seen {
  method: string;
  url: string;
  headers: Record<string, string>;
  body: string;
}

export async function seen(req: Request): Promise<Seen> {
  return {
    method: req.method,
    url: req.url,
    headers: Object.fromEntries(req.headers),
    body: await req.clone().text(),
  };
}
