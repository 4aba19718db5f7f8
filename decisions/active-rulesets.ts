// The ACTIVE ruleset of each context, compiled once per version. A refresh builds a whole new
// map and swaps the reference, so a decision holds one consistent snapshot: it never sees half
// of two rulesets, even while an activation lands.
import { compileRuleset, mergeCounting, type CompiledRuleset } from '../rulesets/compile.ts';
import type { CounterRequest } from '../rulesets/ports.ts';
import type { RulesetDocument } from '../rulesets/schema.ts';

export interface ActiveRuleset {
  id: string;
  context: string;
  version: number;
  compiled: CompiledRuleset;
}

export interface ActiveSource {
  activeRulesets(): Promise<
    { id: string; context: string; version: number; document: RulesetDocument }[]
  >;
}

export class ActiveRulesets {
  #byContext = new Map<string, ActiveRuleset>();
  #counting: (ctx: unknown) => CounterRequest[] = () => [];
  // Compiled rulesets are immutable per id: keep them across refreshes.
  #compiled = new Map<string, CompiledRuleset>();
  #source: ActiveSource;
  #refreshing: Promise<void> | undefined;
  #again = false;

  constructor(source: ActiveSource) {
    this.#source = source;
  }

  /** The context's ACTIVE ruleset, else `default`'s, else none (CONTRACT §2). */
  resolve(context: string): ActiveRuleset | undefined {
    const map = this.#byContext;
    return map.get(context) ?? map.get('default');
  }

  /**
   * What a decision is counted on, in any context: every field some ACTIVE ruleset counts, with
   * the windows they ask (rulesets/compile.ts mergeCounting). Swapped with the rulesets.
   */
  counterRequests(ctx: unknown): CounterRequest[] {
    return this.#counting(ctx);
  }

  list(): ActiveRuleset[] {
    return [...this.#byContext.values()];
  }

  /** Reloads from the store; concurrent calls coalesce into at most one more load. */
  refresh(): Promise<void> {
    if (this.#refreshing) {
      this.#again = true;
      return this.#refreshing;
    }
    this.#refreshing = (async () => {
      try {
        do {
          this.#again = false;
          const rows = await this.#source.activeRulesets();
          const next = new Map<string, ActiveRuleset>();
          const keep = new Map<string, CompiledRuleset>();
          for (const r of rows) {
            const compiled = this.#compiled.get(r.id) ?? compileRuleset(r.document);
            keep.set(r.id, compiled);
            next.set(r.context, { id: r.id, context: r.context, version: r.version, compiled });
          }
          this.#compiled = keep;
          this.#byContext = next;
          this.#counting = mergeCounting([...next.values()].map((a) => a.compiled));
        } while (this.#again);
      } finally {
        this.#refreshing = undefined;
      }
    })();
    return this.#refreshing;
  }
}
