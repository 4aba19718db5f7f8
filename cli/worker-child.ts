// `vigil start` runs its worker role (Temporal worker, activities, handoff relay) as a child
// process rather than on the API's event loop. In one process every activity, workflow
// activation hand-off and signal-with-start ran between decisions, and the handoff bench showed
// it: p99 with 10 % REVIEW traffic 1.49× that with none in one process, 1.16× with the worker in
// a process of its own. The child is `vigil worker` with the parent's environment plus the
// embedded Temporal's address; it shares the data dir (store, outbox, instance secret, event
// files) like a `vigil worker` started by hand.
//
// Supervision: a child that exits unexpectedly is started again (1 s, doubling while it keeps
// dying young, up to 30 s). The child runs in a process group of its own and ignores SIGINT (a
// Ctrl-C is the parent's to act on: it decides the order of shutdown); it stops on SIGTERM or
// when the IPC channel to its parent closes, so it never outlives a parent that was killed.
import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { childEnv } from '../config/config.ts';

/** Set on the child: ignore SIGINT, stop when the parent goes (config: `supervised`). */
export const SUPERVISED_ENV = 'VIGIL_SUPERVISED';

const YOUNG_MS = 5_000;
const MAX_DELAY_MS = 30_000;
const STOP_GRACE_MS = 15_000;

export interface WorkerChild {
  /** The running child's pid, if one runs. */
  pid(): number | undefined;
  restarts(): number;
  /** SIGTERM, then SIGKILL after a grace period; resolves once the child has exited. */
  stop(): Promise<void>;
}

export function superviseWorkerRole(opts: {
  /** Added to this process's environment for the child. */
  env: Record<string, string>;
  log: (msg: string) => void;
  /** The script to run (default: this CLI). */
  entry?: string;
}): WorkerChild {
  const entry = opts.entry ?? path.join(import.meta.dirname, 'main.ts');
  let child: ChildProcess | undefined;
  let stopping = false;
  let restarts = 0;
  let delay = 1_000;
  let timer: NodeJS.Timeout | undefined;

  const start = () => {
    timer = undefined;
    if (stopping) return;
    const startedAt = Date.now();
    const c = fork(entry, ['worker'], {
      env: childEnv({ ...opts.env, [SUPERVISED_ENV]: '1' }),
      execArgv: process.execArgv,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      // A process group of its own: a Ctrl-C in the terminal reaches the parent only, which
      // stops the child in order (it is not restarted while the parent shuts down).
      detached: true,
    });
    child = c;
    c.once('exit', (code, signal) => {
      if (child === c) child = undefined;
      if (stopping) return;
      const young = Date.now() - startedAt < YOUNG_MS;
      const wait = young ? delay : 1_000;
      delay = young ? Math.min(MAX_DELAY_MS, delay * 2) : 1_000;
      restarts++;
      opts.log(
        `worker process ${c.pid} exited (${signal ?? code}); starting another in ${wait / 1000} s`,
      );
      timer = setTimeout(start, wait);
    });
    // A failed fork (no such script, no resources) surfaces as an exit too.
    c.once('error', (err) => opts.log(`worker process: ${err.message}`));
  };
  start();

  return {
    pid: () => child?.pid,
    restarts: () => restarts,
    async stop() {
      stopping = true;
      if (timer) clearTimeout(timer);
      const c = child;
      if (!c || c.exitCode !== null || c.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
      c.kill('SIGTERM');
      const kill = setTimeout(() => c.kill('SIGKILL'), STOP_GRACE_MS);
      await exited;
      clearTimeout(kill);
    },
  };
}
