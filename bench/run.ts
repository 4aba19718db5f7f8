// `npm run bench`: every benchmark, each beside its anchor measured in the same run, printed as
// ratios with PASS/FAIL against the issue targets. Loopback only, bounded in time.
//   npm run bench                 all benchmarks that exist
//   npm run bench -- api engine   only those named
// REDIS_URL, when set, adds the Redis-counter run of the API benchmark.
import { existsSync } from 'node:fs';
import path from 'node:path';
import type * as ApiBench from './api.ts';

type Bench = { name: string; file: string; run: (mod: Record<string, unknown>) => Promise<void> };

const log = (s: string) => console.log(s);
const here = import.meta.dirname;

const BENCHES: Bench[] = [
  {
    name: 'engine',
    file: 'engine.ts',
    run: async (m) => {
      const fn = m.runEngineBench as ((o?: object) => unknown) | undefined;
      if (!fn) throw new Error('bench/engine.ts exports no runEngineBench');
      log(JSON.stringify(await fn({}), null, 2));
    },
  },
  {
    name: 'api',
    file: 'api.ts',
    run: async (m) => {
      const { runApiBench, printApiBench } = m as typeof ApiBench;
      // Only the environment's REDIS_URL: bench/ may read process.env (it is not a room).
      printApiBench(await runApiBench({ redisUrl: process.env.REDIS_URL }), log);
    },
  },
  {
    name: 'proxy',
    file: 'proxy.ts',
    run: async (m) => {
      const fn = m.runProxyBench as ((o?: object) => unknown) | undefined;
      if (!fn) throw new Error('bench/proxy.ts exports no runProxyBench');
      log(JSON.stringify(await fn({}), null, 2));
    },
  },
  {
    name: 'events',
    file: 'events.ts',
    run: async (m) => {
      const fn = m.runEventsBench as ((o?: object) => unknown) | undefined;
      if (!fn) throw new Error('bench/events.ts exports no runEventsBench');
      log(JSON.stringify(await fn({}), null, 2));
    },
  },
  {
    name: 'handoff',
    file: 'handoff.ts',
    run: async (m) => {
      const run = m.runHandoffBench as ((o: object) => Promise<unknown>) | undefined;
      const print = m.printHandoffBench as ((r: unknown, l: typeof log) => void) | undefined;
      if (!run || !print) throw new Error('bench/handoff.ts exports no runHandoffBench');
      // TEMPORAL_ADDRESS, when set, is the Temporal it runs against (else a dev server of its own).
      for (const layout of ['start', 'split']) print(await run({ layout }), log);
    },
  },
  {
    name: 'backend',
    file: 'backend.ts',
    run: async (m) => {
      const fn = m.runBackendBench as ((o?: object) => unknown) | undefined;
      if (!fn) throw new Error('bench/backend.ts exports no runBackendBench');
      log(JSON.stringify(await fn({}), null, 2));
    },
  },
];

const wanted = process.argv.slice(2);
let failed = 0;
for (const b of BENCHES) {
  if (wanted.length && !wanted.includes(b.name)) continue;
  const file = path.join(here, b.file);
  if (!existsSync(file)) {
    log(`== ${b.name}: ${b.file} not present, skipped`);
    continue;
  }
  log(`== ${b.name}`);
  const t0 = Date.now();
  try {
    await b.run((await import(file)) as Record<string, unknown>);
  } catch (err) {
    failed++;
    log(`  failed: ${(err as Error).message}`);
  }
  log(`   (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
}
process.exitCode = failed ? 1 : 0;
