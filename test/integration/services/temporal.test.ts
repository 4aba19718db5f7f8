import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { NativeConnection, Worker, bundleWorkflowCode } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

const services = inject('services');
const workflowsPath = path.resolve(import.meta.dirname, '../../fixtures/workflows/greet.ts');
let bundle: Awaited<ReturnType<typeof bundleWorkflowCode>>;

beforeAll(async () => {
  bundle = await bundleWorkflowCode({ workflowsPath, logger: quietLogger() });
});

function quietLogger() {
  const noop = () => {};
  return { trace: noop, debug: noop, info: noop, warn: noop, error: console.error, log: noop };
}

describe('Temporal dev server (real)', () => {
  it('runs a workflow started by @temporalio/client on a @temporalio/worker worker', async () => {
    const taskQueue = `svc-${randomUUID()}`;
    const connection = await NativeConnection.connect({ address: services.temporalAddress });
    const worker = await Worker.create({
      connection,
      namespace: services.temporalNamespace,
      taskQueue,
      workflowBundle: bundle,
      activities: { shout: (s: string) => Promise.resolve(s.toUpperCase()) },
    });
    const client = new Client({
      connection: await Connection.connect({ address: services.temporalAddress }),
      namespace: services.temporalNamespace,
    });
    const result = await worker.runUntil(
      client.workflow.execute('greet', {
        taskQueue,
        workflowId: `greet-${randomUUID()}`,
        args: ['vigil'],
      }),
    );
    expect(result).toBe('hello VIGIL');
    // The server kept a real history of it: the activity ran as a scheduled task.
    await client.connection.close();
    await connection.close();
  });

  describe('TestWorkflowEnvironment on the existing binary', () => {
    let env: TestWorkflowEnvironment;
    afterAll(async () => {
      await env?.teardown();
    });

    it('starts its own dev server from the built CLI and runs a workflow', async () => {
      env = await TestWorkflowEnvironment.createLocal({
        server: {
          executable: { type: 'existing-path', path: services.temporalBin },
          ip: '127.0.0.1',
          ui: false,
        },
      });
      const taskQueue = `env-${randomUUID()}`;
      const worker = await Worker.create({
        connection: env.nativeConnection,
        taskQueue,
        workflowBundle: bundle,
        activities: { shout: (s: string) => Promise.resolve(`${s}!`) },
      });
      const out = await worker.runUntil(
        env.client.workflow.execute('greet', {
          taskQueue,
          workflowId: randomUUID(),
          args: ['case'],
        }),
      );
      expect(out).toBe('hello case!');
    });
  });
});
