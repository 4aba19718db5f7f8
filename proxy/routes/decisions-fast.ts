// POST /api/decisions on node:http directly, in front of fastify. The decision route is the one
// route on the answer path of every monitored payment, and fastify's request pipeline (routing,
// hooks, async scopes, content-type parsing, the reply's hook chain) was about a third of its
// CPU per request. The fast path takes only the plain case: POST to exactly /api/decisions
// (optionally `?dry_run=true|false`), a JSON content type, a Content-Length within the body
// limit, no Content-Encoding or Transfer-Encoding. Anything else goes to the fastify route
// untouched, before a byte of the body is read. What it answers it answers as that route does:
// the same authorization, the same JSON parser and its prototype-poisoning checks, the same
// validation and decide, the same error answers (app.ts errorAnswer); test/integration/api/
// decisions-fast.test.ts holds the two paths to the same answers.
import type { IncomingMessage, ServerResponse } from 'node:http';
import sjson from 'secure-json-parse';
import type { DecideDeps } from '../../decisions/decide.ts';
import { authorize, type TokenVerifier } from '../auth.ts';
import { answerDecision } from './decisions.ts';

/** Answers the request and returns true, or returns false having touched nothing. */
export type FastRoute = (req: IncomingMessage, res: ServerResponse) => boolean;

export interface FastRouteContext {
  verify: TokenVerifier;
  bodyLimit: number;
  /** Answers an error as the app's error handler would. */
  fail(res: ServerResponse, err: unknown): void;
}

// Fastify's own answer to a body that is not JSON (FST_ERR_CTP_INVALID_JSON_BODY).
const INVALID_JSON = "Body is not valid JSON but content-type is set to 'application/json'";
// Fastify's defaults: a body with a __proto__ or constructor key is refused, not cleaned.
const PARSE_OPTIONS = { protoAction: 'error', constructorAction: 'error' } as const;

function jsonType(type: string | undefined): boolean {
  if (type === undefined) return false;
  if (type === 'application/json') return true;
  const t = type.toLowerCase().replaceAll(' ', '');
  return t === 'application/json' || t === 'application/json;charset=utf-8';
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      text += chunk;
    });
    req.once('end', () => resolve(text));
    req.once('error', reject);
    req.once('close', () => {
      if (!req.complete) reject(new Error('the client went away before its body was read'));
    });
  });
}

function parseJson(text: string): unknown {
  try {
    return sjson.parse(text, PARSE_OPTIONS);
  } catch {
    throw Object.assign(new Error(INVALID_JSON), { statusCode: 400 });
  }
}

export function decisionFastRoute(deps: DecideDeps) {
  return (ctx: FastRouteContext): FastRoute => {
    const handle = async (req: IncomingMessage, res: ServerResponse, dryRun: boolean) => {
      await authorize(ctx.verify, req.headers.authorization, 'decisions:write');
      const body = parseJson(await readBody(req));
      const answer = await answerDecision(deps, body, dryRun, req.headers['idempotency-key']);
      const out = JSON.stringify(answer);
      res.writeHead(200, {
        'content-type': 'application/json; charset=utf-8',
        'content-length': Buffer.byteLength(out),
      });
      res.end(out);
    };
    return (req, res) => {
      if (req.method !== 'POST') return false;
      const url = req.url;
      let dryRun = false;
      if (url !== '/api/decisions') {
        if (url === '/api/decisions?dry_run=true') dryRun = true;
        else if (url !== '/api/decisions?dry_run=false') return false;
      }
      const h = req.headers;
      if (!jsonType(h['content-type'])) return false;
      if (h['content-encoding'] !== undefined || h['transfer-encoding'] !== undefined) return false;
      const length = Number(h['content-length'] ?? Number.NaN);
      if (!(length > 0 && length <= ctx.bodyLimit)) return false;
      handle(req, res, dryRun).catch((err: unknown) => ctx.fail(res, err));
      return true;
    };
  };
}
