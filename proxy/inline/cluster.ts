// Several proxy processes sharing one listening socket (node:cluster), so the proxy uses every
// core. State that must be exact across them (velocity counts) lives in the counter store the
// composition root wires (Redis, or the primary's one store over IPC), never in a worker's memory.
// The primary only supervises: it forks, restarts the dead, relays SIGHUP (config reload) and
// stops everyone on SIGTERM/SIGINT.
import cluster, { type Worker } from 'node:cluster';
import module from 'node:module';
import os from 'node:os';
import { stderrLogger, type ProxyLogger } from './types.ts';

export interface WorkerHandle {
  close(): Promise<void>;
}

export interface ClusterOptions {
  /** Worker processes; default os.availableParallelism(). */
  workers?: number | undefined;
  /** Runs in each worker (starts the proxy); what it returns is closed on shutdown. */
  worker: () => Promise<WorkerHandle | void> | WorkerHandle | void;
  log?: ProxyLogger | undefined;
  /** First restart delay; doubles while workers keep dying young, up to 30 s. */
  restartDelayMs?: number | undefined;
  /**
   * Who hands out connections: `os` (default: every worker accepts on the shared socket, the
   * kernel picks) or `rr` (the primary accepts and passes each connection on). `os` has no
   * accept bottleneck in the primary and loses nothing when a worker dies: connections still
   * queued in the kernel go to a live worker, while under `rr` one handed to a dying worker is
   * gone.
   */
  scheduling?: 'os' | 'rr' | undefined;
  /** Install SIGTERM/SIGINT/SIGHUP handlers (default true). */
  handleSignals?: boolean | undefined;
  /** The script workers run (default: the primary's own, process.argv[1]). */
  exec?: string | undefined;
  /** Node/V8 flags the workers run with besides the primary's (default WORKER_NODE_FLAGS). */
  execArgv?: readonly string[] | undefined;
  /** Primary only: every message a worker sends (IPC counters, init requests). */
  onMessage?: ((worker: Worker, message: unknown) => void) | undefined;
}

export type WorkerState = 'starting' | 'listening';

export interface ClusterHandle {
  role: 'primary' | 'worker';
  /** Live worker pids (primary only). */
  pids(): number[];
  /** Restarts so far (primary only). */
  restarts(): number;
  /** Live workers and whether each listens yet (primary only). */
  workers(): { pid: number; state: WorkerState }[];
  stop(): Promise<void>;
}

/**
 * A worker's young generation is kept at 1 MB per semi-space (V8's default grows it to 16 MB).
 * A streamed body arrives as one fresh buffer per socket read, dead as soon as it is written on;
 * those die young and are freed at the next scavenge, which with a large young generation comes
 * only after some 64 MB of them have piled up (V8's external-memory trigger).
 */
export const WORKER_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1'];

/** A worker that dies sooner than this after starting counts as crash-looping. */
const YOUNG_MS = 5_000;
const MAX_DELAY_MS = 30_000;

export function workerCount(requested: number | undefined): number {
  if (requested === undefined || !Number.isFinite(requested) || requested < 1) {
    return os.availableParallelism();
  }
  return Math.min(Math.floor(requested), 512);
}

async function runWorker(opts: ClusterOptions): Promise<ClusterHandle> {
  const log = opts.log ?? stderrLogger;
  const handle = (await opts.worker()) ?? undefined;
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      try {
        await handle?.close();
      } catch (err) {
        log.error({ error: (err as Error).message }, 'worker close failed');
      }
    })());
  if (opts.handleSignals !== false) {
    const exit = () => void stop().finally(() => process.exit(0));
    process.once('SIGTERM', exit);
    // A terminal's Ctrl-C reaches the whole process group: a worker that left on it would be
    // restarted by a primary that has not begun its own shutdown yet. The primary decides, and
    // stops the workers with SIGTERM.
    if (cluster.isWorker) process.on('SIGINT', () => {});
    else process.once('SIGINT', exit);
    // The primary went away: finish what is in flight, then leave.
    process.once('disconnect', exit);
  }
  return {
    role: 'worker',
    pids: () => [process.pid],
    restarts: () => 0,
    workers: () => [{ pid: process.pid, state: 'listening' }],
    stop,
  };
}

function runPrimary(opts: ClusterOptions): ClusterHandle {
  const log = opts.log ?? stderrLogger;
  const n = workerCount(opts.workers);
  const baseDelay = opts.restartDelayMs ?? 500;
  let delay = baseDelay;
  let restarts = 0;
  let stopping = false;
  const started = new Map<Worker, number>();
  const listening = new WeakSet<Worker>();
  const timers = new Set<NodeJS.Timeout>();

  cluster.schedulingPolicy = opts.scheduling === 'rr' ? cluster.SCHED_RR : cluster.SCHED_NONE;
  const flags = opts.execArgv ?? WORKER_NODE_FLAGS;
  // What the primary compiled so far goes to disk now, for the workers to load from.
  module.flushCompileCache?.();
  cluster.setupPrimary({
    ...(opts.exec ? { exec: opts.exec } : {}),
    execArgv: [
      ...process.execArgv.filter((f) => !flags.some((x) => f.split('=')[0] === x.split('=')[0])),
      ...flags,
    ],
  });
  const fork = () => {
    const w = cluster.fork();
    started.set(w, Date.now());
    w.once('listening', () => listening.add(w));
  };
  const onMessage = opts.onMessage;
  if (onMessage) cluster.on('message', onMessage);

  cluster.on('exit', (w, code, signal) => {
    const bornAt = started.get(w) ?? 0;
    started.delete(w);
    if (stopping) return;
    const young = Date.now() - bornAt < YOUNG_MS;
    delay = young ? Math.min(delay * 2, MAX_DELAY_MS) : baseDelay;
    const wait = young ? delay : 0;
    log.warn(
      { pid: w.process.pid, code, signal, restart_in_ms: wait },
      'proxy worker exited; starting another',
    );
    const t = setTimeout(() => {
      timers.delete(t);
      if (stopping) return;
      restarts++;
      fork();
    }, wait);
    timers.add(t);
  });

  for (let i = 0; i < n; i++) fork();
  log.info({ workers: n, pid: process.pid }, 'proxy cluster started');

  const pids = () =>
    [...started.keys()].map((w) => w.process.pid).filter((p): p is number => p !== undefined);

  const stop = async () => {
    stopping = true;
    for (const t of timers) clearTimeout(t);
    const exits = [...started.keys()].map(
      (w) =>
        new Promise<void>((resolve) => (w.isDead() ? resolve() : w.once('exit', () => resolve()))),
    );
    for (const w of started.keys()) w.process.kill('SIGTERM');
    await Promise.all(exits);
    if (onMessage) cluster.off('message', onMessage);
  };

  if (opts.handleSignals !== false) {
    const shutdown = () => void stop().finally(() => process.exit(0));
    process.once('SIGTERM', shutdown);
    process.once('SIGINT', shutdown);
    process.on('SIGHUP', () => {
      for (const w of started.keys()) w.process.kill('SIGHUP');
    });
  }
  const workers = () =>
    [...started.keys()]
      .filter((w) => w.process.pid !== undefined)
      .map((w) => ({
        pid: w.process.pid!,
        state: listening.has(w) ? ('listening' as const) : ('starting' as const),
      }));
  return { role: 'primary', pids, restarts: () => restarts, workers, stop };
}

/** In the primary: forks and supervises workers. In a worker: runs `worker`. */
export async function runCluster(opts: ClusterOptions): Promise<ClusterHandle> {
  return cluster.isPrimary ? runPrimary(opts) : runWorker(opts);
}
