// Integration documents as calls use them: read from the store, secrets decrypted, parsed again
// (defaults applied), JSONPaths compiled, one HTTP pool and one breaker per backend — built once
// per document version and kept per process. A put or delete through this process invalidates at
// once; another process's change is seen within `ttlMs`: a stale entry keeps answering while one
// cheap re-read runs behind it, so the decision path never waits on the store for a known
// integration.
import { compilePath } from '../rulesets/jsonpath.ts';
import type { Outcome } from '../rulesets/ports.ts';
import { CircuitBreaker } from './breaker.ts';
import type { EgressPolicy } from './egress.ts';
import { IntegrationError, isIntegrationError } from './errors.ts';
import { IntegrationHttp } from './http.ts';
import type { IntegrationKind } from './kinds/kind.ts';
import {
  kindOf,
  parseIntegration,
  type ActionDoc,
  type BackendDoc,
  type IntegrationDocument,
} from './schema.ts';
import { aadFor, getAt, isEncrypted, secretPaths, setAt, type SecretBox } from './secrets.ts';
import { compileTemplate, type Render } from './template.ts';

/** The four storage methods integrations/ needs (storage/store.ts implements them). */
export interface IntegrationStorePort {
  putIntegration(input: { slug: string; kind: string; document: unknown }): Promise<unknown>;
  getIntegration(
    slug: string,
  ): Promise<{ slug: string; kind: string; document: unknown; updated_at?: string } | undefined>;
  listIntegrations(): Promise<
    { slug: string; kind: string; document: unknown; updated_at?: string }[]
  >;
  deleteIntegration(slug: string): Promise<boolean>;
}

export interface CompiledBackend {
  doc: BackendDoc;
  required: { path: string; get: (ctx: unknown) => unknown }[];
  render: Render | undefined;
  outcome: (body: unknown) => unknown;
  map: ReadonlyMap<string, Outcome>;
  breaker: CircuitBreaker;
  eventsPath: string;
}

export interface LoadedIntegration {
  slug: string;
  doc: IntegrationDocument;
  kind: IntegrationKind;
  http: IntegrationHttp;
  backends: ReadonlyMap<string, CompiledBackend>;
  actions: ReadonlyMap<string, ActionDoc>;
}

/** A stored document that no longer loads (the key changed, a kind's schema tightened). */
export interface BrokenIntegration {
  slug: string;
  error: IntegrationError;
}

export type Loaded = LoadedIntegration | BrokenIntegration;
export const isBroken = (l: Loaded): l is BrokenIntegration => 'error' in l;

interface Entry {
  /** The stored document's JSON: what tells a changed row from the one already built. */
  key: string;
  loaded: Loaded | undefined;
  checkedAt: number;
  refreshing?: Promise<void> | undefined;
}

export interface RegistryOptions {
  store: IntegrationStorePort;
  box: SecretBox;
  egress: EgressPolicy;
  now: () => number;
  ttlMs?: number;
  maxResponseBytes?: number;
}

/** Decrypts the secrets of a stored document (a copy). Throws `secret_key_mismatch`. */
export function decryptDocument(box: SecretBox, slug: string, stored: unknown): unknown {
  const doc = structuredClone(stored);
  const kind = kindOf(doc);
  const authType = getAt(doc, 'auth.type');
  for (const p of secretPaths(authType, kind?.secretSettings ?? [])) {
    const v = getAt(doc, p);
    if (isEncrypted(v)) setAt(doc, p, box.decrypt(v, aadFor(slug, p)));
  }
  return doc;
}

/** How long a call waits for the row to be read again after the TTL, ms. */
const FRESH_WAIT_MS = 50;
/** How long a replaced integration's connection pool lives on for calls that took it. */
const RETIRE_AFTER_MS = 30_000;
const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());

export class IntegrationRegistry {
  readonly #entries = new Map<string, Entry>();
  /** Pools of replaced integrations, closed a while later (or at close). */
  readonly #retired = new Set<LoadedIntegration['http']>();
  readonly #opts: RegistryOptions;
  readonly #ttl: number;
  #closed = false;

  constructor(opts: RegistryOptions) {
    this.#opts = opts;
    this.#ttl = opts.ttlMs ?? 2_000;
  }

  /** The integration as calls use it; undefined when none is stored under `slug`. */
  async get(slug: string): Promise<Loaded | undefined> {
    const e = this.#entries.get(slug);
    if (e && this.#opts.now() - e.checkedAt < this.#ttl) return e.loaded;
    if (e) {
      e.refreshing ??= this.#refresh(slug).finally(() => {
        e.refreshing = undefined;
      });
      if (!e.loaded) {
        await e.refreshing;
        return this.#entries.get(slug)?.loaded;
      }
      // Past its TTL the row is read again before use, so an edit (a moved base_url, a rotated
      // secret) applies to the next call; answering with the old one while reloading sent the
      // first call after every edit to the old host. Only a store slower than this keeps the
      // old one for that call, as a store that fails does.
      await Promise.race([e.refreshing, delay(FRESH_WAIT_MS)]);
      // A row deleted meanwhile answers undefined, not the old copy; an entry invalidated by
      // an edit in this process is read again.
      const cur = this.#entries.get(slug);
      if (cur) return cur.loaded;
      await this.#refresh(slug);
      return this.#entries.get(slug)?.loaded;
    }
    await this.#refresh(slug);
    return this.#entries.get(slug)?.loaded;
  }

  /** Reads the row again now (admin test calls, after a put). */
  async fresh(slug: string): Promise<Loaded | undefined> {
    await this.#refresh(slug);
    return this.#entries.get(slug)?.loaded;
  }

  invalidate(slug: string): void {
    const e = this.#entries.get(slug);
    if (!e) return;
    this.#entries.delete(slug);
    this.#retire(e.loaded);
  }

  async close(): Promise<void> {
    this.#closed = true;
    const all = [...this.#entries.values()];
    this.#entries.clear();
    const retired = [...this.#retired];
    this.#retired.clear();
    await Promise.all([
      ...all.map((e) =>
        e.loaded && !isBroken(e.loaded) ? e.loaded.http.close() : Promise.resolve(),
      ),
      ...retired.map((h) => h.close()),
    ]);
  }

  async #refresh(slug: string): Promise<void> {
    let row;
    try {
      row = await this.#opts.store.getIntegration(slug);
    } catch {
      // The store is unreachable: keep answering with what was built (a known integration keeps
      // working), and look again after the TTL.
      const e = this.#entries.get(slug);
      if (e) e.checkedAt = this.#opts.now();
      return;
    }
    if (this.#closed) return;
    const now = this.#opts.now();
    const prev = this.#entries.get(slug);
    if (!row) {
      this.#entries.set(slug, { key: '', loaded: undefined, checkedAt: now });
      if (prev) this.#retire(prev.loaded);
      return;
    }
    const key = JSON.stringify(row.document);
    if (prev && prev.key === key) {
      prev.checkedAt = now;
      return;
    }
    const loaded = this.#build(slug, row.document, prev?.loaded);
    this.#entries.set(slug, { key, loaded, checkedAt: now });
    if (prev) this.#retire(prev.loaded);
  }

  #retire(loaded: Loaded | undefined): void {
    // close() lets requests in flight finish, then frees the sockets; but a call that took the
    // old one a moment ago may not have sent its request yet, and a closed pool refuses it
    // (UND_ERR_CLOSED, a spurious `connection` failure): the old pool goes a while later.
    if (loaded && !isBroken(loaded)) {
      const http = loaded.http;
      this.#retired.add(http);
      setTimeout(() => {
        if (this.#retired.delete(http)) void http.close();
      }, RETIRE_AFTER_MS).unref();
    }
  }

  #build(slug: string, stored: unknown, prev: Loaded | undefined): Loaded {
    let plain: unknown;
    try {
      plain = decryptDocument(this.#opts.box, slug, stored);
    } catch (err) {
      return {
        slug,
        error: isIntegrationError(err)
          ? err
          : new IntegrationError('secret_key_mismatch', 'a stored secret does not decrypt'),
      };
    }
    const parsed = parseIntegration(plain, { slug });
    if (!parsed.ok) {
      const first = parsed.issues[0];
      return {
        slug,
        error: new IntegrationError(
          'invalid_integration',
          `the stored document no longer parses${first ? ` (${first.path}: ${first.message})` : ''}`,
          { retryable: false },
        ),
      };
    }
    const doc = parsed.value;
    const kind = kindOf(doc)!;
    const http = new IntegrationHttp({
      baseUrl: doc.base_url,
      auth: doc.auth,
      connections: doc.pool.connections,
      egress: this.#opts.egress,
      now: this.#opts.now,
      ...(this.#opts.maxResponseBytes ? { maxResponseBytes: this.#opts.maxResponseBytes } : {}),
    });
    const oldBackends =
      prev && !isBroken(prev) && JSON.stringify(prev.doc.circuit) === JSON.stringify(doc.circuit)
        ? prev.backends
        : undefined;
    const backends = new Map<string, CompiledBackend>();
    for (const b of doc.backends) {
      const outcome = compilePath(b.response.outcome_path);
      const old = oldBackends?.get(b.backend_id);
      backends.set(b.backend_id, {
        doc: b,
        required: b.required_fields.map((p) => ({ path: p, get: compilePath(p).one })),
        render: b.request === undefined ? undefined : compileTemplate(b.request),
        outcome: outcome.one,
        map: new Map(Object.entries(b.response.map)),
        // An edit keeps the backend's breaker: a document change does not make a dead backend
        // healthy, and resetting would let one decision per edit wait on it again.
        breaker:
          old?.breaker ??
          new CircuitBreaker({
            failureThreshold: doc.circuit.failure_threshold,
            openMs: doc.circuit.open_ms,
            now: this.#opts.now,
          }),
        eventsPath: b.events_path ?? `${b.path.replace(/\/+$/, '')}/events`,
      });
    }
    return {
      slug,
      doc,
      kind,
      http,
      backends,
      actions: new Map(doc.actions.map((a) => [a.action_id, a])),
    };
  }
}
