#!/usr/bin/env node
// The `vigil` bin: runs the TypeScript CLI with Node's type stripping (Node >= 22.12 needs the
// flag until 23.6; Node 24 strips types by default and ignores it).
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const main = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'cli', 'main.ts');
const r = spawnSync(
  process.execPath,
  [
    '--experimental-strip-types',
    '--no-warnings=ExperimentalWarning',
    main,
    ...process.argv.slice(2),
  ],
  {
    stdio: 'inherit',
  },
);
process.exit(r.status ?? 1);
