// The `vigil` command. `start` runs everything from one command; `api`, `proxy` and `worker`
// run one role each; the other commands talk to a running API.
import { loadConfig } from '../config/config.ts';
import { runRoles } from './runtime.ts';

const USAGE = `usage: vigil <command>

  start                 API, proxy, worker and (without TEMPORAL_ADDRESS) the embedded Temporal dev server
  api | proxy | worker  one role alone (they share the data dir's embedded store)

Environment: see README.md (PORT, API_PORT, VIGIL_DATA_DIR, TEMPORAL_ADDRESS, DATABASE_URL, ...).`;

async function main(argv: string[]): Promise<number> {
  const [cmd] = argv;
  switch (cmd) {
    case 'start':
      return runRoles(loadConfig(), { api: true, proxy: true, worker: true, embedded: true });
    case 'api':
      return runRoles(loadConfig(), { api: true, proxy: false, worker: false, embedded: false });
    case 'proxy':
      return runRoles(loadConfig(), { api: false, proxy: true, worker: false, embedded: false });
    case 'worker':
      return runRoles(loadConfig(), { api: false, proxy: false, worker: true, embedded: false });
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      console.log(USAGE);
      return cmd ? 0 : 2;
    default:
      console.error(`vigil: unknown command '${cmd}'\n\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== 0) process.exitCode = code;
  },
  (err: unknown) => {
    const e = err as { code?: string; message?: string };
    console.error(`vigil: ${e.message ?? String(err)}`);
    process.exitCode = 1;
  },
);
