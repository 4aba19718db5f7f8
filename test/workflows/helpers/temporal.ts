// Connections to the real Temporal dev server, one worker per test on its own task queue,
// and the small waits the tests need (poll the case query until a predicate holds).
import { randomUUID } from 'node:crypto';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { NativeConnection, type Worker } from '@temporalio/worker';
import type { ActivityDeps } from '../../../activities/deps.ts';
import { bundleWorkflows, createWorker } from '../../../activities/worker.ts';
import { caseQuery, type CaseView } from '../../../workflows/contracts.ts';

export interface Temporal {
  client: Client;
  native: NativeConnection;
  close(): Promise<void>;
}

export async function connect(address: string, namespace = 'default'): Promise<Temporal> {
  const native = await NativeConnection.connect({ address });
  const connection = await Connection.connect({ address });
  const client = new Client({ connection, namespace });
  return {
    client,
    native,
    async close() {
      await connection.close();
      await native.close();
    },
  };
}

let bundle: Promise<{ code: string }> | undefined;
/** One webpack bundle per test file (about 1.5 s). */
export function sharedBundle(): Promise<{ code: string }> {
  bundle ??= bundleWorkflows().then((b) => ({ code: b.code }));
  return bundle;
}

export function uniqueQueue(prefix: string): string {
  return `${prefix}-${randomUUID()}`;
}

export async function startWorker(
  t: Temporal,
  taskQueue: string,
  deps: ActivityDeps,
): Promise<{ worker: Worker; stop(): Promise<void> }> {
  const worker = await createWorker({
    connection: t.native,
    taskQueue,
    deps,
    workflowBundle: await sharedBundle(),
    tuning: { stickyQueueScheduleToStartTimeout: '2s' },
  });
  const running = worker.run();
  return {
    worker,
    async stop() {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await running;
    },
  };
}

export async function until<T>(
  what: string,
  probe: () => Promise<T | undefined | false>,
  timeoutMs = 30_000,
  everyMs = 100,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) {
      throw new Error(
        `timed out waiting for ${what}${last instanceof Error ? `: ${last.message}` : ''}`,
      );
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export function caseWhere(
  handle: WorkflowHandle,
  what: string,
  pred: (c: CaseView) => boolean,
  timeoutMs?: number,
): Promise<CaseView> {
  return until(
    what,
    async () => {
      const c = await handle.query(caseQuery);
      return pred(c) ? c : undefined;
    },
    timeoutMs,
  );
}
