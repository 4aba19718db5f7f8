// `vigil ruleset push|activate`, `decide`, `integration put`, `playbook put`, `simulate`.
import path from 'node:path';
import type { Config } from '../config/config.ts';
import {
  apiClient,
  formatDecision,
  formatError,
  readJsonFile,
  show,
  type ApiClient,
} from './client.ts';

type Out = (line: string) => void;

async function expectOk(
  client: ApiClient,
  method: 'GET' | 'POST' | 'PUT' | 'DELETE',
  url: string,
  body: unknown,
  err: Out,
): Promise<Record<string, unknown> | undefined> {
  const res = await client.call(method, url, body);
  if (res.status >= 400) {
    err(formatError(res.status, res.body));
    return undefined;
  }
  return (res.body ?? {}) as Record<string, unknown>;
}

/**
 * Whether an answer is the Vigil API's: a 2xx from elsewhere (the proxy's PORT, an origin)
 * would otherwise print `-` fields and exit 0.
 */
function isVigilAnswer(r: Record<string, unknown>, keys: readonly string[], err: Out): boolean {
  if (keys.every((k) => r[k] !== undefined && r[k] !== null)) return true;
  err(
    `vigil: the answer is not the Vigil API's (no ${keys.join(', ')}): is VIGIL_API_URL the API port (API_PORT), not the proxy's?`,
  );
  return false;
}

export async function runClientCommand(
  config: Config,
  argv: string[],
  out: Out,
  err: Out,
): Promise<number> {
  const [cmd, sub, arg] = argv;
  const client = apiClient(config);
  if (cmd === 'ruleset' && sub === 'push' && arg) {
    const doc = readJsonFile(arg);
    const r = await expectOk(client, 'POST', '/api/admin/rulesets', doc, err);
    if (!r || !isVigilAnswer(r, ['id', 'status'], err)) return 1;
    out(
      `pushed ${path.basename(arg)} as ${show(r.id)} (${show(r.status)}, context ${show(r.context)})`,
    );
    out(`activate it with: vigil ruleset activate ${show(r.id)}`);
    return 0;
  }
  if (cmd === 'ruleset' && sub === 'activate' && arg) {
    const r = await expectOk(
      client,
      'POST',
      `/api/admin/rulesets/${encodeURIComponent(arg)}/activate`,
      undefined,
      err,
    );
    if (!r || !isVigilAnswer(r, ['id', 'context'], err)) return 1;
    out(`${show(r.id)} is ACTIVE for context ${show(r.context)}`);
    return 0;
  }
  if (cmd === 'decide' && sub) {
    const r = await expectOk(client, 'POST', '/api/decisions', readJsonFile(sub), err);
    if (!r || !isVigilAnswer(r, ['id', 'decision'], err)) return 1;
    out(formatDecision(r));
    return 0;
  }
  if ((cmd === 'integration' || cmd === 'playbook') && sub === 'put' && arg) {
    const doc = readJsonFile(arg) as { slug?: string; name?: string };
    const name = cmd === 'integration' ? doc.slug : doc.name;
    if (!name) {
      err(`${arg}: the document needs a ${cmd === 'integration' ? 'slug' : 'name'}`);
      return 1;
    }
    const route = cmd === 'integration' ? 'integrations' : 'playbooks';
    const r = await expectOk(
      client,
      'PUT',
      `/api/admin/${route}/${encodeURIComponent(name)}`,
      doc,
      err,
    );
    if (!r) return 1;
    out(`${cmd} ${name} stored${r.version ? ` (version ${show(r.version)})` : ''}`);
    // Accepted, but something it names is missing (an integration, a backend, a workflow).
    for (const w of (r.warnings ?? []) as { path: string; message: string }[]) {
      out(`  warning: ${w.path}: ${w.message}`);
    }
    return 0;
  }
  if (cmd === 'simulate' && sub && arg) {
    // vigil simulate RULESET_ID CONTEXTS.json   (a JSON array of decision contexts, or the
    //                                             API's body: {"decisions": [...]})
    //   or    simulate RULESET_ID SINCE [UNTIL]  (ISO times: replay logged decisions)
    const file = arg.endsWith('.json') ? readJsonFile(arg) : undefined;
    const body =
      file === undefined
        ? { since: arg, until: argv[3] ?? new Date().toISOString() }
        : Array.isArray(file)
          ? { decisions: file }
          : file;
    const r = await expectOk(
      client,
      'POST',
      `/api/admin/rulesets/${encodeURIComponent(sub)}/simulate`,
      body,
      err,
    );
    if (!r) return 1;
    const s = r.summary as {
      total: number;
      changed: number;
      decisions: object;
      active_decisions: object;
    };
    out(
      `simulated ${s.total} decisions on ${show(r.ruleset_id)} vs active ${show(r.active_ruleset_id)}: ${s.changed} changed`,
    );
    out(`  this ruleset: ${JSON.stringify(s.decisions)}`);
    out(`  active:       ${JSON.stringify(s.active_decisions)}`);
    for (const row of (
      r.results as {
        input: unknown;
        decision: string;
        active_decision: string | null;
        changed: boolean;
      }[]
    ).filter((x) => x.changed)) {
      out(`  ${show(row.input)}: ${row.active_decision ?? '-'} -> ${row.decision}`);
    }
    return 0;
  }
  err(`vigil: unknown or incomplete command '${argv.join(' ')}'`);
  return 2;
}
