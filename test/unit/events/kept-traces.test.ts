// The decision event keeps each engine trace entry's event form (storage/events/schemas.ts,
// ruleTraces): the engine shares one entry per rule and outcome across decisions. These hold
// the kept path to what building afresh gives, byte for byte, at every budget.
import { describe, expect, it } from 'vitest';
import { decisionEvent } from '../../../storage/events/index.ts';

// Shared as the compiled ruleset shares them: one frozen object per rule and outcome.
const entries = Array.from({ length: 20 }, (_, i) =>
  Object.freeze(
    i % 5 === 0
      ? {
          rule_id: `rule-${i}`,
          result: 'matched',
          action: 'REVIEW',
          reason: `why ${'x'.repeat(i * 3)}`,
        }
      : i % 7 === 0
        ? { rule_id: `rule-${i}`, result: 'skipped', reason: 'counter_unavailable', shadow: true }
        : { rule_id: `rule-${i}`, result: 'not_matched' },
  ),
);

function record(n: number, rules: object[] = entries): any {
  return {
    response: {
      id: `dec_${n}`,
      decision: 'REVIEW',
      context: 'login',
      ruleset_id: 'rs_1',
      credential_fingerprint: null,
      rules,
      backend_results: [],
      has_errors: false,
      degraded: [],
      evaluation_type: 'RULE_ENGINE',
      workflow_id: null,
      elapsed_ms: 0.2,
    },
    context: { context: 'login', customer: { email: `u${n}@example.com` } },
    session: `s${n}`,
    created_at: '2026-01-02T03:04:05.678Z',
  };
}

const fixed = { eventId: () => 'evt', now: () => 0, source: 'api' };
/** The same record with fresh trace objects: nothing kept applies to them. */
const fresh = (r: any) => structuredClone(r);

describe('kept rule trace entries', () => {
  it.each([
    ['default limits', undefined],
    // The budget holds a fixed reserve: these leave room for about 10 and 1 of the 20 rules.
    ['a budget that cuts the rules part-way', { maxEventBytes: 5_800 }],
    ['a budget that cuts them early', { maxEventBytes: 4_800 }],
    ['a string limit that truncates reasons', { maxStringChars: 8 }],
  ])('give the event building afresh would, with %s', (_name, limits) => {
    for (let round = 0; round < 3; round++) {
      for (let n = 0; n < 5; n++) {
        const opts = { ...fixed, limits };
        const kept = decisionEvent(record(n), opts);
        const built = decisionEvent(fresh(record(n)), opts);
        expect(JSON.stringify(kept)).toBe(JSON.stringify(built));
      }
    }
    const rules = decisionEvent(record(0), { ...fixed, limits }).rules.length;
    if (limits && 'maxEventBytes' in limits) {
      expect(rules).toBeGreaterThan(0);
      expect(rules).toBeLessThan(20);
    }
  });

  it("are kept for frozen entries (the engine's shared ones) only, never for fresh objects", () => {
    const a = decisionEvent(record(1), fixed);
    const b = decisionEvent(record(2), fixed);
    expect(b.rules[1]).toBe(a.rules[1]);
    expect(Object.isFrozen(a.rules[1])).toBe(true);
    // A backend rule's entry, or a record read back from the store, is a new object each time:
    // keeping it (a WeakMap entry per rule per decision) cost more than building it.
    const unfrozen = entries.map((e) => ({ ...e }));
    const c = decisionEvent(record(3, unfrozen), fixed);
    const d = decisionEvent(record(4, unfrozen), fixed);
    expect(d.rules[1]).not.toBe(c.rules[1]);
    expect(Object.isFrozen(c.rules[1])).toBe(false);
    expect(c.rules).toEqual(a.rules);
  });

  it('are not used across string limits, and a truncated entry is never kept', () => {
    const short = decisionEvent(record(1), { ...fixed, limits: { maxStringChars: 8 } });
    expect(short.truncated?.some((p) => p.startsWith('$.rules['))).toBe(true);
    const full = decisionEvent(record(1), fixed);
    expect(full.truncated).toBeUndefined();
    expect(full.rules[5]!.reason).toBe(`why ${'x'.repeat(15)}`);
    // Truncated again with the short limit: the note comes back every time.
    const again = decisionEvent(record(1), { ...fixed, limits: { maxStringChars: 8 } });
    expect(again).toEqual(short);
  });

  it('are never changed by a redaction that reaches into rules', () => {
    decisionEvent(record(1), fixed);
    const redacted = decisionEvent(record(2), { ...fixed, redact: ['$.rules.reason'] });
    expect(redacted.rules[0]!.reason).toMatch(/^sha256:/);
    const plain = decisionEvent(record(3), fixed);
    expect(plain.rules[0]!.reason).toBe('why ');
    expect(entries[0]).toEqual({
      rule_id: 'rule-0',
      result: 'matched',
      action: 'REVIEW',
      reason: 'why ',
    });
  });

  it('follow the entries and their index: an entry kept at one index is measured afresh at another', () => {
    const other = [Object.freeze({ rule_id: 'only', result: 'matched', action: 'BLOCK' })];
    const a = decisionEvent(record(1, other), fixed);
    expect(a.rules).toEqual([{ rule_id: 'only', result: 'matched', action: 'BLOCK' }]);
    // Kept at index 12 by the default list; here it comes first, and the budget counts each
    // item's path, so every cut point must still match the fresh build.
    decisionEvent(record(1), fixed);
    const moved = [entries[12]!, ...entries.slice(0, 12), ...entries.slice(13)];
    for (let max = 4_500; max <= 7_100; max++) {
      const opts = { ...fixed, limits: { maxEventBytes: max } };
      expect(JSON.stringify(decisionEvent(record(1, moved), opts))).toBe(
        JSON.stringify(decisionEvent(fresh(record(1, moved)), opts)),
      );
    }
  });
});
