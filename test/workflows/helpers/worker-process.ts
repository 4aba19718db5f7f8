// A case worker in its own process, so a test can SIGKILL it in the middle of a step.
// Configured through the environment by test/workflows/crash.test.ts; prints "ready" once
// polling.
import { readFileSync } from 'node:fs';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import type { StoredPlaybook } from '../../../activities/deps.ts';
import { createWorker } from '../../../activities/worker.ts';
import { httpDeps } from './deps.ts';

const env = (name: string): string => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is required`);
  return v;
};

Runtime.install({ logger: new DefaultLogger('ERROR') });
const playbooks = JSON.parse(readFileSync(env('VIGIL_TEST_PLAYBOOKS'), 'utf8')) as StoredPlaybook[];
const connection = await NativeConnection.connect({ address: env('TEMPORAL_ADDRESS') });
const { deps } = httpDeps(env('VIGIL_TEST_THIRD_PARTY'), playbooks);
const worker = await createWorker({
  connection,
  taskQueue: env('VIGIL_TEST_TASK_QUEUE'),
  deps,
  workflowBundle: { codePath: env('VIGIL_TEST_BUNDLE') },
  identity: `crash-test-${process.pid}`,
  tuning: { stickyQueueScheduleToStartTimeout: '1s', shutdownGraceTime: '1s' },
});
process.on('SIGTERM', () => worker.shutdown());
const running = worker.run();
process.stdout.write('ready\n');
await running;
await connection.close();
