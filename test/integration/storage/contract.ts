// The store contract: one suite, run against both adapters (sqlite.test.ts, postgres.test.ts).
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlacklistIndex } from '../../../storage/blacklist-index.ts';
import { newId as newDecisionId } from '../../../decisions/ids.ts';
import { DecisionLog } from '../../../storage/decision-log.ts';
import { StoreError } from '../../../storage/errors.ts';
import { MIGRATIONS } from '../../../storage/migrations.ts';
import type { Store } from '../../../storage/store.ts';
import { sleep, waitFor, type Db, type Target } from './targets.ts';

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(StoreError);
    return (err as StoreError).code;
  }
  return 'resolved';
}

function record(id: string, context = 'checkout', createdAt = new Date().toISOString()) {
  return {
    response: {
      id,
      decision: 'REVIEW',
      context,
      ruleset_id: null,
      credential_fingerprint: 'crd_abc',
      rules: [{ rule_id: 'r1', result: 'matched', action: 'REVIEW' }],
    },
    context: { transaction: { amount: 100 } },
    session: 'sess_1',
    created_at: createdAt,
  };
}

let seq = 0;
const uniq = (p: string) => `${p}-${process.pid}-${Date.now()}-${++seq}`;

export function storeContract(target: Target): void {
  describe(`Store contract (${target.name})`, () => {
    let db: Db;
    let store: Store;
    let other: Store;
    let skewMs = 0;
    const now = () => Date.now() + skewMs;

    beforeAll(async () => {
      db = await target.create();
      store = await db.open({ now });
      other = await db.open({ now });
    });
    afterAll(async () => {
      await db.drop();
    });

    describe('rulesets', () => {
      it('creates drafts with rs_ ids and per-context monotonic versions, documents intact', async () => {
        const ctx = uniq('ctx');
        const doc = { name: 'n', context: ctx, z: 1, a: { y: [3, 2, 1], b: null } };
        const a = await store.createRuleset({ name: 'A', context: ctx, document: doc });
        const b = await other.createRuleset({ name: 'B', context: ctx, document: doc });
        const c = await store.createRuleset({ name: 'C', context: `${ctx}-x`, document: doc });
        expect(a.id).toMatch(/^rs_[a-z0-9]{20,40}$/);
        expect(a.status).toBe('DRAFT');
        expect([a.version, b.version, c.version]).toEqual([1, 2, 1]);
        expect(a.activated_at).toBeNull();
        const got = await other.getRuleset(a.id);
        expect(got).toEqual(a);
        // Key order survives the round trip (users read their documents back).
        expect(JSON.stringify(got!.document)).toBe(JSON.stringify(doc));
        const listed = await store.listRulesets({ context: ctx });
        expect(listed.map((r) => r.id).sort()).toEqual([a.id, b.id].sort());
        expect((await store.listRulesets()).length).toBeGreaterThanOrEqual(3);
        expect(await store.getRuleset('rs_missing')).toBeUndefined();
      });

      it('allocates unique versions under concurrent creates from two instances', async () => {
        const ctx = uniq('ctx');
        const rows = await Promise.all(
          Array.from({ length: 30 }, (_, i) =>
            (i % 2 ? store : other).createRuleset({ name: `r${i}`, context: ctx, document: {} }),
          ),
        );
        expect(rows.map((r) => r.version).sort((x, y) => x - y)).toEqual(
          Array.from({ length: 30 }, (_, i) => i + 1),
        );
      });

      it('edits only drafts: not_draft otherwise, not_found for unknown ids', async () => {
        const ctx = uniq('ctx');
        const a = await store.createRuleset({ name: 'A', context: ctx, document: { v: 1 } });
        const edited = await store.updateDraft(a.id, {
          name: 'A2',
          context: ctx,
          document: { v: 2 },
        });
        expect(edited).toMatchObject({
          name: 'A2',
          status: 'DRAFT',
          version: a.version,
          document: { v: 2 },
        });
        const moved = await store.updateDraft(a.id, {
          name: 'A3',
          context: `${ctx}-2`,
          document: {},
        });
        expect(moved.context).toBe(`${ctx}-2`);
        expect(moved.version).toBe(1);
        await store.activate(a.id);
        expect(await code(store.updateDraft(a.id, { name: 'x', context: ctx, document: {} }))).toBe(
          'not_draft',
        );
        const b = await store.createRuleset({ name: 'B', context: `${ctx}-2`, document: {} });
        await store.activate(b.id);
        expect((await store.getRuleset(a.id))!.status).toBe('INACTIVE');
        expect(await code(store.updateDraft(a.id, { name: 'x', context: ctx, document: {} }))).toBe(
          'not_draft',
        );
        expect(
          await code(store.updateDraft('rs_nope', { name: 'x', context: ctx, document: {} })),
        ).toBe('not_found');
        expect(await code(store.createRuleset({ name: '', context: ctx, document: {} }))).toBe(
          'invalid',
        );
      });

      it('activates: the previous ACTIVE of the context becomes INACTIVE, other contexts untouched', async () => {
        const ctx = uniq('ctx');
        const elsewhere = await store.createRuleset({
          name: 'E',
          context: `${ctx}-e`,
          document: {},
        });
        await store.activate(elsewhere.id);
        const a = await store.createRuleset({ name: 'A', context: ctx, document: { a: 1 } });
        const b = await store.createRuleset({ name: 'B', context: ctx, document: { b: 1 } });
        const act = await store.activate(a.id);
        expect(act.status).toBe('ACTIVE');
        expect(act.activated_at).not.toBeNull();
        expect((await store.activate(a.id)).status).toBe('ACTIVE');
        await other.activate(b.id);
        expect((await store.getRuleset(a.id))!.status).toBe('INACTIVE');
        expect((await store.getRuleset(b.id))!.status).toBe('ACTIVE');
        expect((await store.getRuleset(elsewhere.id))!.status).toBe('ACTIVE');
        const active = await other.activeRulesets();
        expect(active.filter((r) => r.context === ctx).map((r) => r.id)).toEqual([b.id]);
        expect(active.find((r) => r.id === b.id)!.document).toEqual({ b: 1 });
        expect(await code(store.activate('rs_nope'))).toBe('not_found');
      });

      it('leaves exactly one ACTIVE after many concurrent activations from two instances', async () => {
        const ctx = uniq('ctx');
        const drafts = await Promise.all(
          Array.from({ length: 24 }, (_, i) =>
            store.createRuleset({ name: `d${i}`, context: ctx, document: { i } }),
          ),
        );
        const t0 = performance.now();
        const results = await Promise.allSettled(
          drafts.map((d, i) => (i % 2 ? store : other).activate(d.id)),
        );
        const ms = performance.now() - t0;
        expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
        const rows = await store.listRulesets({ context: ctx });
        expect(rows.filter((r) => r.status === 'ACTIVE')).toHaveLength(1);
        expect(rows.filter((r) => r.status === 'INACTIVE')).toHaveLength(23);
        console.log(`[${target.name}] 24 concurrent activations in ${ms.toFixed(0)} ms`);
      });

      it('refuses a second ACTIVE in a context at the schema level (partial unique index)', async () => {
        const ctx = uniq('ctx');
        const a = await store.createRuleset({ name: 'A', context: ctx, document: {} });
        const b = await store.createRuleset({ name: 'B', context: ctx, document: {} });
        await store.activate(a.id);
        await expect(
          db.query("UPDATE rulesets SET status = 'ACTIVE' WHERE id = ?", [b.id]),
        ).rejects.toThrow(/unique/i);
      });

      it('rolls back an INACTIVE ruleset atomically; not_inactive otherwise', async () => {
        const ctx = uniq('ctx');
        const a = await store.createRuleset({ name: 'A', context: ctx, document: {} });
        const b = await store.createRuleset({ name: 'B', context: ctx, document: {} });
        await store.activate(a.id);
        await store.activate(b.id);
        const back = await other.rollback(a.id);
        expect(back.status).toBe('ACTIVE');
        expect((await store.getRuleset(b.id))!.status).toBe('INACTIVE');
        expect(await code(store.rollback(a.id))).toBe('not_inactive');
        const c = await store.createRuleset({ name: 'C', context: ctx, document: {} });
        expect(await code(store.rollback(c.id))).toBe('not_inactive');
        expect(await code(store.rollback('rs_nope'))).toBe('not_found');
        // Concurrent rollbacks and activations still leave one ACTIVE.
        await Promise.allSettled([
          other.rollback(b.id),
          store.activate(c.id),
          other.rollback(a.id),
        ]);
        const rows = await store.listRulesets({ context: ctx });
        expect(rows.filter((r) => r.status === 'ACTIVE')).toHaveLength(1);
      });

      it('tells a second instance of an activation within a second (watchRulesets)', async () => {
        const ctx = uniq('ctx');
        const a = await store.createRuleset({ name: 'A', context: ctx, document: {} });
        let calls = 0;
        const unwatch = other.watchRulesets(() => calls++);
        await waitFor(() => calls >= 1, 2_000); // the initial call: the watch is in place
        const before = calls;
        const t0 = performance.now();
        await store.activate(a.id);
        await waitFor(() => calls > before, 1_000, 5);
        const ms = performance.now() - t0;
        unwatch();
        console.log(
          `[${target.name}] watchRulesets fired ${ms.toFixed(0)} ms after the activation`,
        );
        expect(ms).toBeLessThan(1_000);
        const seen = calls;
        const b = await store.createRuleset({ name: 'B', context: ctx, document: {} });
        await store.activate(b.id);
        await sleep(400);
        expect(calls).toBe(seen); // unsubscribed
      });
    });

    describe('decisions', () => {
      it('inserts idempotently and lists by time range and context', async () => {
        const ctx = uniq('ctx');
        const t = Date.parse('2030-01-01T00:00:00.000Z');
        const rows = Array.from({ length: 5 }, (_, i) => ({
          id: `dec_${uniq('d').replace(/[^a-z0-9]/g, '')}${i}`,
          created_at: new Date(t + i * 1000).toISOString(),
          context: ctx,
          decision: 'ALLOW',
          ruleset_id: null,
          session: null,
          credential_fingerprint: null,
          record: { i },
        }));
        await store.insertDecisions(rows);
        await store.insertDecisions(rows.slice(0, 2)); // a retried batch is a no-op
        const listed = await other.listDecisions({
          context: ctx,
          since: new Date(t + 1000).toISOString(),
          until: t + 4000,
        });
        expect(listed.map((r) => r.record)).toEqual([{ i: 1 }, { i: 2 }, { i: 3 }]);
        expect(await other.listDecisions({ context: ctx, limit: 2 })).toHaveLength(2);
        const one = await other.getDecision(rows[0]!.id);
        expect(one).toMatchObject({
          context: ctx,
          decision: 'ALLOW',
          resolution: null,
          created_at: rows[0]!.created_at,
        });
      });

      it('a DecisionLog finds a decision right after append, before any write', async () => {
        const log = new DecisionLog(store, { flushIntervalMs: 10_000, batchSize: 1_000 });
        const id = `dec_${uniq('ryw').replace(/[^a-z0-9]/g, '')}`;
        const rec = record(id);
        const t0 = performance.now();
        log.append(rec);
        const appendMs = performance.now() - t0;
        expect(await log.get(id)).toBe(rec);
        expect(await store.getDecision(id)).toBeUndefined();
        await log.flush();
        expect((await store.getDecision(id))?.record).toEqual(rec);
        expect(await log.get(id)).toEqual(rec);
        expect(log.stats()).toMatchObject({ buffered: 0, written: 1, dropped: 0 });
        await log.close();
        expect(appendMs).toBeLessThan(5);
      });

      it('another instance’s DecisionLog finds a decision minted a moment ago, once its batch is written', async () => {
        const mine = new DecisionLog(store, { flushIntervalMs: 25 });
        const theirs = new DecisionLog(other, { flushIntervalMs: 25 });
        const id = newDecisionId('dec', Date.now());
        const rec = record(id);
        mine.append(rec);
        // Not written yet when asked: the read waits for the batch instead of saying 404.
        expect(await other.getDecision(id)).toBeUndefined();
        expect((await theirs.get(id))?.response.id).toBe(id);
        // An id of long ago (or one derived from a key) that is not there is not waited for.
        const t0 = performance.now();
        expect(await theirs.get(newDecisionId('dec', Date.now() - 60_000))).toBeUndefined();
        expect(performance.now() - t0).toBeLessThan(100);
        await mine.close();
        await theirs.close();
      });

      it('a DecisionLog writes in the background in batches', async () => {
        const log = new DecisionLog(store, { flushIntervalMs: 20, batchSize: 100 });
        const ids = Array.from(
          { length: 1_000 },
          (_, i) => `dec_${uniq('bg').replace(/[^a-z0-9]/g, '')}x${i}`,
        );
        const t0 = performance.now();
        for (const id of ids) log.append(record(id));
        const appendUs = ((performance.now() - t0) * 1000) / ids.length;
        await waitFor(() => log.stats().buffered === 0 || undefined, 5_000);
        const ms = performance.now() - t0;
        const rows = await db.query<{ n: number | string }>(
          `SELECT COUNT(*) AS n FROM decisions WHERE id IN (${ids.map(() => '?').join(',')})`,
          ids,
        );
        expect(Number(rows[0]!.n)).toBe(1_000);
        console.log(
          `[${target.name}] DecisionLog: append ${appendUs.toFixed(1)} µs each; 1,000 stored in ${ms.toFixed(0)} ms without flush()`,
        );
        await log.close();
      });

      it('resolves once: ok, then already_resolved; not_found for unknown ids; the record shows it', async () => {
        const log = new DecisionLog(store, { flushIntervalMs: 10_000 });
        const id = `dec_${uniq('res').replace(/[^a-z0-9]/g, '')}`;
        log.append(record(id));
        // Still in memory: resolve writes it first.
        expect(await log.resolve(id, 'reject', 'chargeback')).toBe('ok');
        expect(await log.resolve(id, 'accept')).toBe('already_resolved');
        const id2 = `dec_${uniq('res').replace(/[^a-z0-9]/g, '')}`;
        log.append(record(id2));
        await log.flush();
        const results = await Promise.all(
          Array.from({ length: 10 }, (_, i) =>
            (i % 2 ? store : other).resolveDecision(id2, 'accept'),
          ),
        );
        expect(results.filter((r) => r === 'ok')).toHaveLength(1);
        expect(results.filter((r) => r === 'already_resolved')).toHaveLength(9);
        expect(await store.resolveDecision('dec_nope', 'accept')).toBe('not_found');
        const row = await other.getDecision(id);
        expect(row?.resolved_at).not.toBeNull();
        const rec = (await log.get(id)) as unknown as { response: { resolution: unknown } };
        expect(rec.response.resolution).toMatchObject({ resolution: row!.resolution });
        await log.close();
      });

      it('stores the final outcome of an async decision on the record', async () => {
        const log = new DecisionLog(store);
        const id = `dec_${uniq('fin').replace(/[^a-z0-9]/g, '')}`;
        const ctx = uniq('ctx');
        log.append(record(id, ctx));
        expect(await log.setFinalOutcome(id, 'BLOCK', { rule_id: 'risk-api' })).toBe('ok');
        expect(await store.setFinalOutcome('dec_nope', 'BLOCK')).toBe('not_found');
        const row = await other.getDecision(id);
        expect(row).toMatchObject({
          final_outcome: 'BLOCK',
          final_detail: { rule_id: 'risk-api' },
        });
        const rec = (await log.get(id)) as unknown as { response: { final_decision: string } };
        expect(rec.response.final_decision).toBe('BLOCK');
        expect(
          (await log.list({ context: ctx, since: Date.now() - 60_000 })).some(
            (r) => r.response.id === id,
          ),
        ).toBe(true);
        await log.close();
      });
    });

    describe('blacklist', () => {
      it('adds with a masked display hint; re-adding extends the TTL, never shortens it', async () => {
        const field = uniq('$.device.ip');
        const value = 'crd_0123456789abcdef';
        const a = await store.addBlacklist({
          field_path: field,
          value,
          ttl_seconds: 60,
          source_decision_id: 'dec_1',
        });
        expect(a.id).toMatch(/^bl_[a-z0-9]+$/);
        expect(a.display_hint).toBe('cr…cdef');
        expect(a.display_hint).not.toContain(value);
        expect(Date.parse(a.expires_at!) - Date.parse(a.inserted_at)).toBe(60_000);
        const longer = await other.addBlacklist({
          field_path: field,
          value,
          ttl_seconds: 600,
          source_decision_id: 'dec_2',
        });
        expect(longer.id).toBe(a.id);
        expect(longer.source_decision_id).toBe('dec_1');
        expect(Date.parse(longer.expires_at!) - Date.parse(a.inserted_at)).toBeGreaterThanOrEqual(
          600_000,
        );
        const shorter = await store.addBlacklist({ field_path: field, value, ttl_seconds: 5 });
        expect(shorter.expires_at).toBe(longer.expires_at);
        const forever = await store.addBlacklist({ field_path: field, value });
        expect(forever.expires_at).toBeNull();
        expect(
          (await store.addBlacklist({ field_path: field, value, ttl_seconds: 5 })).expires_at,
        ).toBeNull();
        expect(await other.getBlacklist(a.id)).toEqual(forever);
        const short = await store.addBlacklist({ field_path: field, value: '1.2.3.4' });
        expect(short.display_hint).not.toContain('1.2.3.4');
        expect((await store.listBlacklist({ field_path: field })).map((e) => e.id).sort()).toEqual(
          [a.id, short.id].sort(),
        );
        expect(await code(store.addBlacklist({ field_path: field, value, ttl_seconds: -1 }))).toBe(
          'invalid',
        );
      });

      it('deletes, and expires by time; a listing after either comes back as a new entry', async () => {
        const field = uniq('$.customer.id');
        const a = await store.addBlacklist({ field_path: field, value: 'cus_1', ttl_seconds: 30 });
        expect(await store.deleteBlacklist(a.id)).toBe(true);
        expect(await store.deleteBlacklist(a.id)).toBe(false);
        expect(await store.getBlacklist(a.id)).toBeUndefined();
        const again = await store.addBlacklist({
          field_path: field,
          value: 'cus_1',
          ttl_seconds: 30,
        });
        expect(again.id).not.toBe(a.id);
        skewMs = 31_000;
        try {
          expect(await store.getBlacklist(again.id)).toBeUndefined();
          expect(await store.listBlacklist({ field_path: field })).toEqual([]);
          const fresh = await store.addBlacklist({
            field_path: field,
            value: 'cus_1',
            ttl_seconds: 30,
          });
          expect(fresh.id).not.toBe(again.id);
          expect(Date.parse(fresh.expires_at!)).toBe(Date.parse(fresh.inserted_at) + 30_000);
        } finally {
          skewMs = 0;
        }
      });

      it('an index answers synchronously, respects expiry and follows another instance within a second', async () => {
        const field = uniq('$.credential_fingerprint');
        const kept = await store.addBlacklist({ field_path: field, value: 'crd_kept' });
        const index = await BlacklistIndex.open(other);
        try {
          expect(index.has(field, 'crd_kept', Date.now())).toBe(true);
          expect(index.has(field, 'crd_other', Date.now())).toBe(false);
          const t0 = performance.now();
          const e = await store.addBlacklist({
            field_path: field,
            value: 'crd_new',
            ttl_seconds: 60,
          });
          await waitFor(() => index.has(field, 'crd_new', Date.now()) || undefined, 1_000, 5);
          const ms = performance.now() - t0;
          console.log(
            `[${target.name}] BlacklistIndex saw another instance's add after ${ms.toFixed(0)} ms`,
          );
          const exp = Date.parse(e.expires_at!);
          expect(index.has(field, 'crd_new', exp - 1)).toBe(true);
          expect(index.has(field, 'crd_new', exp)).toBe(false);
          await store.deleteBlacklist(kept.id);
          await waitFor(() => !index.has(field, 'crd_kept', Date.now()) || undefined, 1_000, 5);
        } finally {
          index.close();
        }
      });

      it('an index reloads in full after a purge', async () => {
        const fresh = await target.create();
        try {
          const a = await fresh.open({ now });
          const b = await fresh.open({ now });
          const gone = await a.addBlacklist({ field_path: '$.device.ip', value: '198.51.100.1' });
          await a.addBlacklist({ field_path: '$.device.ip', value: '198.51.100.2' });
          const index = await BlacklistIndex.open(b, { watch: false });
          expect(index.has('$.device.ip', '198.51.100.1', Date.now())).toBe(true);
          await a.deleteBlacklist(gone.id);
          // The follower never saw the tombstone before it was purged.
          skewMs = 10_000;
          expect(await a.purgeBlacklist(1_000)).toBe(1);
          skewMs = 0;
          await index.refresh();
          expect(index.has('$.device.ip', '198.51.100.1', Date.now())).toBe(false);
          expect(index.has('$.device.ip', '198.51.100.2', Date.now())).toBe(true);
          expect(index.size).toBe(1);
          index.close();
        } finally {
          skewMs = 0;
          await fresh.drop();
        }
      });
    });

    describe('lifecycle events, tokens, integrations, playbooks', () => {
      it('stores lifecycle events idempotently by id, listed per decision in time order', async () => {
        const dec = `dec_${uniq('ev').replace(/[^a-z0-9]/g, '')}`;
        const e1 = await store.insertEvent({
          type: 'chargeback',
          decision_id: dec,
          occurred_at: '2030-01-02T00:00:00.000Z',
          data: { amount: 100 },
        });
        expect(e1.id).toMatch(/^evt_/);
        const e0 = await other.insertEvent({
          id: 'evt_fixed' + String(seq++),
          type: 'capture',
          decision_id: dec,
          occurred_at: '2030-01-01T00:00:00.000Z',
          data: {},
        });
        const again = await store.insertEvent({ ...e0, data: { changed: true } });
        expect(again).toEqual(e0);
        expect((await other.listEvents(dec)).map((e) => e.id)).toEqual([e0.id, e1.id]);
      });

      it('keeps only the SHA-256 of a token; finds it by plaintext; revocation is immediate', async () => {
        const t = await store.createToken({
          name: 'ci',
          scopes: ['decisions:write', 'decisions:read'],
        });
        expect(t.token).toMatch(/^vgl_[A-Za-z0-9_-]{43}$/);
        expect(t.id).toMatch(/^tok_/);
        const rows = await db.query<Record<string, unknown>>('SELECT * FROM tokens WHERE id = ?', [
          t.id,
        ]);
        expect(rows[0]!.token_hash).toBe(createHash('sha256').update(t.token).digest('hex'));
        expect(JSON.stringify(rows)).not.toContain(t.token.slice(4));
        expect(await other.findToken(t.token)).toEqual({
          id: t.id,
          name: 'ci',
          scopes: ['decisions:write', 'decisions:read'],
          created_at: t.created_at,
          revoked_at: null,
        });
        expect(await other.findToken(`${t.token}x`)).toBeUndefined();
        expect(await other.revokeToken(t.id)).toBe(true);
        expect(await store.findToken(t.token)).toBeUndefined();
        expect(await store.revokeToken(t.id)).toBe(true);
        expect(await store.revokeToken('tok_nope')).toBe(false);
        const admin = `vgl_${uniq('admin')}`;
        const i1 = await store.importToken({
          token: admin,
          name: 'admin',
          scopes: ['admin:tokens:write'],
        });
        const i2 = await other.importToken({
          token: admin,
          name: 'admin',
          scopes: ['admin:tokens:write'],
        });
        expect(i2.id).toBe(i1.id);
        expect((await store.findToken(admin))?.id).toBe(i1.id);
        expect((await store.listTokens()).some((x) => x.id === t.id && x.revoked_at !== null)).toBe(
          true,
        );
      });

      it('puts, replaces, lists and deletes integrations', async () => {
        const slug = uniq('acme');
        const put = await store.putIntegration({
          slug,
          kind: 'http',
          document: { base_url: 'https://x', auth: { token: 'enc:1' } },
        });
        expect(put).toMatchObject({ slug, kind: 'http' });
        await other.putIntegration({ slug, kind: 'webhook', document: { v: 2 } });
        expect(await store.getIntegration(slug)).toMatchObject({
          kind: 'webhook',
          document: { v: 2 },
        });
        expect((await store.listIntegrations()).some((i) => i.slug === slug)).toBe(true);
        expect(await store.deleteIntegration(slug)).toBe(true);
        expect(await store.deleteIntegration(slug)).toBe(false);
        expect(await store.getIntegration(slug)).toBeUndefined();
      });

      it('versions playbooks; old versions stay readable, even after a delete', async () => {
        const name = uniq('review');
        const v1 = await store.putPlaybook({ name, document: { steps: [1] } });
        const v2 = await other.putPlaybook({ name, document: { steps: [1, 2] } });
        expect([v1.version, v2.version]).toEqual([1, 2]);
        expect(await store.getPlaybook(name)).toMatchObject({
          version: 2,
          document: { steps: [1, 2] },
        });
        expect(await store.getPlaybook(name, 1)).toMatchObject({
          version: 1,
          document: { steps: [1] },
        });
        expect(await store.deletePlaybook(name)).toBe(true);
        expect(await store.getPlaybook(name)).toBeUndefined();
        expect(await store.getPlaybook(name, 2)).toMatchObject({ version: 2 });
        expect((await store.listPlaybooks()).some((p) => p.name === name)).toBe(false);
        const v3 = await store.putPlaybook({ name, document: { steps: [] } });
        expect(v3.version).toBe(3);
        const concurrent = await Promise.all(
          Array.from({ length: 10 }, (_, i) =>
            (i % 2 ? store : other).putPlaybook({ name, document: { i } }),
          ),
        );
        expect(concurrent.map((p) => p.version).sort((x, y) => x - y)).toEqual(
          Array.from({ length: 10 }, (_, i) => i + 4),
        );
      });
    });

    describe('outbox', () => {
      it('enqueues, leases, retries and delivers', async () => {
        const fresh = await target.create();
        let skew = 0;
        const clock = () => Date.now() + skew;
        try {
          const s = await fresh.open({ now: clock });
          const t0 = performance.now();
          const item = await s.enqueue({
            kind: 'handoff',
            key: 'session-s1',
            payload: { decision_id: 'dec_1' },
          });
          const enqueueMs = performance.now() - t0;
          expect(item).toMatchObject({
            kind: 'handoff',
            key: 'session-s1',
            attempts: 0,
            delivered_at: null,
          });
          const first = await s.claim(10, 5_000);
          expect(first.map((r) => r.id)).toEqual([item.id]);
          expect(first[0]!.attempts).toBe(1);
          expect(await s.claim(10, 5_000)).toEqual([]); // leased
          skew = 6_000; // the lease ran out (the claimer died): claimable again
          const second = await s.claim(10, 5_000);
          expect(second[0]!.attempts).toBe(2);
          await s.markFailed(item.id, 'temporal unreachable', clock() + 60_000);
          expect(await s.claim(10, 5_000)).toEqual([]);
          expect(await s.outboxStats()).toEqual({
            size: 1,
            oldestAgeMs: expect.any(Number) as number,
          });
          expect((await s.outboxStats()).oldestAgeMs).toBeGreaterThanOrEqual(6_000);
          skew = 70_000;
          const third = await s.claim(10, 5_000);
          expect(third[0]).toMatchObject({
            attempts: 3,
            last_error: 'temporal unreachable',
            payload: { decision_id: 'dec_1' },
          });
          await s.markDelivered([item.id]);
          expect(await s.claim(10, 5_000)).toEqual([]);
          expect(await s.outboxStats()).toEqual({ size: 0, oldestAgeMs: 0 });
          expect(await s.purgeOutbox(clock() + 1)).toBe(1);
          console.log(`[${target.name}] outbox enqueue: ${enqueueMs.toFixed(2)} ms`);
        } finally {
          await fresh.drop();
        }
      });

      it('writes a decision and its handoff together: both, or neither', async () => {
        const fresh = await target.create();
        try {
          const s = await fresh.open();
          const row = {
            id: 'dec_handoff_1',
            created_at: Date.now(),
            context: 'checkout',
            decision: 'REVIEW',
            ruleset_id: null,
            session: 'sess_h',
            credential_fingerprint: null,
            record: { response: { id: 'dec_handoff_1' } },
          };
          const payload = { workflow_id: 'session-sess_h', decision_id: 'dec_handoff_1' };
          await s.enqueueWithDecision({ kind: 'handoff', key: 'session-sess_h', payload }, row);
          expect((await s.getDecision('dec_handoff_1'))?.decision).toBe('REVIEW');
          const [claimed] = await s.claim(10, 30_000);
          expect(claimed).toMatchObject({ kind: 'handoff', key: 'session-sess_h', payload });

          // The handoff cannot be stored (its payload does not serialize): no decision row.
          await expect(
            s.enqueueWithDecision(
              { kind: 'handoff', key: 'k', payload: { n: 1n } },
              { ...row, id: 'dec_handoff_2' },
            ),
          ).rejects.toThrow();
          expect(await s.getDecision('dec_handoff_2')).toBeUndefined();
          // The database refuses the decision row (NOT NULL), after the outbox row went in:
          // the transaction takes the outbox row back with it.
          await expect(
            s.enqueueWithDecision(
              { kind: 'handoff', key: 'session-x', payload: {} },
              { ...row, id: 'dec_handoff_3', context: null as unknown as string },
            ),
          ).rejects.toThrow();
          expect(await s.getDecision('dec_handoff_3')).toBeUndefined();
          expect((await s.outboxStats()).size).toBe(1);
        } finally {
          await fresh.drop();
        }
      });

      it('never hands one item to two concurrent claimers', async () => {
        const fresh = await target.create();
        try {
          const a = await fresh.open();
          const b = await fresh.open();
          const n = 300;
          for (let i = 0; i < n; i += 50) {
            await Promise.all(
              Array.from({ length: 50 }, (_, j) =>
                a.enqueue({ kind: 'handoff', key: `k${i + j}`, payload: { i: i + j } }),
              ),
            );
          }
          const got: string[] = [];
          const claimer = async (s: Store) => {
            for (;;) {
              const rows = await s.claim(7, 60_000);
              if (rows.length === 0) return;
              got.push(...rows.map((r) => r.id));
              await s.markDelivered(rows.map((r) => r.id));
            }
          };
          await Promise.all([claimer(a), claimer(b), claimer(a), claimer(b)]);
          expect(got).toHaveLength(n);
          expect(new Set(got).size).toBe(n);
        } finally {
          await fresh.drop();
        }
      });
    });

    describe('migrations', () => {
      it('apply once when several instances open a new database at the same moment', async () => {
        const fresh = await target.create();
        try {
          const stores = await Promise.all([
            fresh.open(),
            fresh.open(),
            fresh.open(),
            fresh.open(),
          ]);
          const rows = await fresh.query<{ version: number }>(
            'SELECT version FROM schema_migrations ORDER BY version',
          );
          expect(rows.map((r) => Number(r.version))).toEqual(MIGRATIONS.map((m) => m.version));
          await Promise.all(stores.map((s) => s.ping()));
          await fresh.open(); // and a later open is a no-op
          expect(await fresh.query('SELECT version FROM schema_migrations')).toHaveLength(
            MIGRATIONS.length,
          );
        } finally {
          await fresh.drop();
        }
      });

      it('refuse a database migrated by a newer version', async () => {
        const fresh = await target.create();
        try {
          await fresh.open();
          await fresh.query(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, 'future', 0)",
          );
          await expect(fresh.open()).rejects.toMatchObject({ code: 'schema_mismatch' });
        } finally {
          await fresh.drop();
        }
      });
    });

    it('rejects calls on a closed store with code closed', async () => {
      const s = await db.open();
      await s.close();
      expect(await code(s.getRuleset('rs_x'))).toBe('closed');
    });
  });
}
