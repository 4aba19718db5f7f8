// What both counter stores share: the answer type and the request normalization. A decision's
// requests are merged per (field, value) before counting, so a value asked for by several rules
// is recorded once and counted once per distinct window.
import type { CounterRequest, Counts } from '../../rulesets/ports.ts';

function keyOf(field: string, value: string, windowMs: number, distinctPath?: string): string {
  return `${field}\u0000${value}\u0000${windowMs}\u0000${distinctPath ?? ''}`;
}

export class CountsMap implements Counts {
  #counts = new Map<string, number>();

  set(
    field: string,
    value: string,
    windowMs: number,
    distinctPath: string | undefined,
    n: number,
  ): void {
    this.#counts.set(keyOf(field, value, windowMs, distinctPath), n);
  }

  get(field: string, value: string, windowMs: number, distinctPath?: string): number | undefined {
    return this.#counts.get(keyOf(field, value, windowMs, distinctPath));
  }

  get size(): number {
    return this.#counts.size;
  }
}

export interface NormalizedDistinct {
  path: string;
  /** The distinct value in this decision; undefined when the path is missing. */
  value: string | undefined;
  windowsMs: number[];
}

export interface NormalizedRequest {
  field: string;
  value: string;
  windowsMs: number[];
  distinct: NormalizedDistinct[];
  /** The longest window anything on this value asks for: how long its history must be kept. */
  retainMs: number;
}

function windows(ws: Iterable<number>): number[] {
  const out = new Set<number>();
  for (const w of ws) if (Number.isFinite(w) && w >= 1) out.add(Math.trunc(w));
  return [...out].sort((a, b) => a - b);
}

export function normalizeRequests(requests: readonly CounterRequest[]): NormalizedRequest[] {
  const byValue = new Map<
    string,
    {
      field: string;
      value: string;
      ws: number[];
      distinct: Map<string, { value: string | undefined; ws: number[] }>;
    }
  >();
  for (const r of requests) {
    const k = `${r.field}\u0000${r.value}`;
    let acc = byValue.get(k);
    if (!acc) {
      acc = { field: r.field, value: r.value, ws: [], distinct: new Map() };
      byValue.set(k, acc);
    }
    acc.ws.push(...r.windowsMs);
    for (const d of r.distinct) {
      const prev = acc.distinct.get(d.path);
      if (prev) {
        prev.ws.push(...d.windowsMs);
        prev.value ??= d.value;
      } else {
        acc.distinct.set(d.path, { value: d.value, ws: [...d.windowsMs] });
      }
    }
  }
  return [...byValue.values()].map((acc) => {
    const distinct = [...acc.distinct].map(([path, d]) => ({
      path,
      value: d.value,
      windowsMs: windows(d.ws),
    }));
    const all = [...windows(acc.ws), ...distinct.flatMap((d) => d.windowsMs)];
    return {
      field: acc.field,
      value: acc.value,
      windowsMs: windows(acc.ws),
      distinct,
      retainMs: Math.max(1, ...all),
    };
  });
}
