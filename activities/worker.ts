// The worker bootstrap: one Temporal worker on the case task queue, running the workflows of
// workflows/index.ts (or a prebuilt bundle of them) and the activities over the dependencies
// the composition root passes in.
import { fileURLToPath } from 'node:url';
import {
  DefaultLogger,
  Worker,
  bundleWorkflowCode,
  type Logger,
  type NativeConnection,
  type WorkerOptions,
  type WorkflowBundleWithSourceMap,
} from '@temporalio/worker';
import { DEFAULT_TASK_QUEUE } from '../workflows/contracts.ts';
import type { ActivityDeps } from './deps.ts';
import { createActivities } from './index.ts';

/** The module whose exports are the worker's workflow types. */
export const WORKFLOWS_PATH = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));

/** Webpack's progress chatter is INFO; a bundle that fails still reports at WARN/ERROR. */
function bundlerLogger(): Logger {
  return new DefaultLogger('WARN');
}

/**
 * Bundles the workflow code once (a few seconds of webpack). Tests, `vigil start` and a worker
 * process restarted in place reuse the bundle instead of paying that per worker.
 */
export async function bundleWorkflows(
  opts: { logger?: Logger } = {},
): Promise<WorkflowBundleWithSourceMap> {
  return bundleWorkflowCode({
    workflowsPath: WORKFLOWS_PATH,
    logger: opts.logger ?? bundlerLogger(),
  });
}

export interface CreateWorkerOptions {
  connection: NativeConnection;
  namespace?: string;
  /** Default `vigil`. */
  taskQueue?: string;
  deps: ActivityDeps;
  /** A bundle from bundleWorkflows() (`{code}`) or a file (`{codePath}`); else built here. */
  workflowBundle?: { code: string } | { codePath: string };
  identity?: string;
  /** Tuning passed through (concurrency, sticky queue timeout, shutdown grace, …). */
  tuning?: Partial<
    Pick<
      WorkerOptions,
      | 'maxConcurrentActivityTaskExecutions'
      | 'maxConcurrentWorkflowTaskExecutions'
      | 'maxConcurrentLocalActivityExecutions'
      | 'maxCachedWorkflows'
      | 'stickyQueueScheduleToStartTimeout'
      | 'shutdownGraceTime'
    >
  >;
}

export async function createWorker(opts: CreateWorkerOptions): Promise<Worker> {
  return Worker.create({
    connection: opts.connection,
    namespace: opts.namespace ?? 'default',
    taskQueue: opts.taskQueue ?? DEFAULT_TASK_QUEUE,
    activities: createActivities(opts.deps),
    ...(opts.workflowBundle
      ? { workflowBundle: opts.workflowBundle }
      : { workflowsPath: WORKFLOWS_PATH, bundlerOptions: {} }),
    ...(opts.identity ? { identity: opts.identity } : {}),
    ...opts.tuning,
  });
}
