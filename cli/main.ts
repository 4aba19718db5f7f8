// The `vigil` command. `start` runs everything from one command; `api`, `proxy` and `worker`
// run one role each; the other commands talk to a running API.
import module from 'node:module';
import type { Config } from '../config/config.ts';
import type { Roles } from './runtime.ts';

// Type-stripped modules are cached on disk (NODE_COMPILE_CACHE, else the OS temp dir): a later
// start skips the stripping, and forked proxy workers, which load only modules compiled here,
// never load the type stripper (some 17 MB resident each). Everything TypeScript is imported
// after this line, hence the dynamic imports.
module.enableCompileCache?.();

const { loadConfig } = await import('../config/config.ts');

async function runRoles(config: Config, roles: Roles): Promise<number> {
  return (await import('./runtime.ts')).runRoles(config, roles);
}

const USAGE = `usage: vigil <command>

  start                 API, proxy, worker and (without TEMPORAL_ADDRESS) the embedded Temporal dev server
  api | proxy | worker  one role alone (they share the data dir's embedded store)
  ruleset push FILE     upload a ruleset document as a DRAFT
  ruleset activate ID   make a ruleset ACTIVE for its context
  decide FILE           ask for a decision on the context in FILE
  integration put FILE  register or replace a Link integration
  playbook put FILE     register or replace a playbook
  simulate ID FILE|SINCE [UNTIL]   a ruleset's decisions beside the active one's
  events tail [--topic T] [--follow] [--json]   print the event stream (local file or Kafka)

The client commands use VIGIL_TOKEN (or VIGIL_ADMIN_TOKEN, or the token file 'vigil start'
writes into the data dir) and VIGIL_API_URL (default http://127.0.0.1:$API_PORT).

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
    case 'ruleset':
    case 'decide':
    case 'integration':
    case 'playbook':
    case 'simulate':
      return (await import('./commands.ts')).runClientCommand(
        loadConfig(),
        argv,
        (l) => console.log(l),
        (l) => console.error(l),
      );
    case 'events': {
      if (argv[1] !== 'tail') {
        console.error(`vigil: unknown command 'events ${argv[1] ?? ''}' (try: events tail)`);
        return 2;
      }
      const config = loadConfig();
      const args = argv.slice(2);
      const topicAt = args.indexOf('--topic');
      const ac = new AbortController();
      process.once('SIGINT', () => ac.abort());
      const { eventsTail } = await import('./events-tail.ts');
      const r = await eventsTail({
        topic: topicAt >= 0 ? args[topicAt + 1] : undefined,
        follow: args.includes('--follow') || args.includes('-f'),
        json: args.includes('--json'),
        dataDir: config.dataDir,
        kafkaBrokers: config.kafka?.brokers,
        out: (l) => console.log(l),
        signal: ac.signal,
      });
      if (r.skipped) console.error(`(${r.skipped} lines were not events)`);
      return 0;
    }
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
    // What failed was closed; should anything still hold the event loop (a native thread, a
    // socket of a half-started client), the process must not hang with its error printed:
    // a supervisor restarts only what exits.
    setTimeout(() => process.exit(1), 3_000).unref();
  },
);
