// The worker role: the Temporal worker (case workflows, playbooks, async backend rules) and
// the relay that drains the durable handoff outbox into signal-with-start. Both run where
// Temporal is reachable; the relay keeps the backlog when it is not.
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime as TemporalRuntime } from '@temporalio/worker';
import type { ActivityDeps } from '../activities/deps.ts';
import { createRelay } from '../activities/relay.ts';
import { bundleWorkflows, createWorker } from '../activities/worker.ts';
import { actionEvent, actionKey, decisionEvent, decisionKey } from '../storage/events/schemas.ts';
import { settleDecision } from '../decisions/settle.ts';
import type { Runtime } from './runtime.ts';

export function activityDeps(rt: Runtime): ActivityDeps {
  return {
    // Errors thrown here carry `retryable`, `retryAfterMs`, `code` and `status` (ActionError).
    invokeAction: (req) => rt.integrations.invokeAction(req),
    callBackend: (req) => rt.integrations.callBackend(req),
    blacklistAdd: async (req) => {
      const e = await rt.store.addBlacklist({
        field_path: req.field_path,
        value: req.value,
        ttl_seconds: req.ttl_seconds,
        source_decision_id: req.source_decision_id,
      });
      return { id: e.id };
    },
    loadPlaybooks: async () =>
      (await rt.store.listPlaybooks()).map((p) => ({
        name: p.name,
        version: p.version,
        document: p.document,
      })),
    emitAction: (event) =>
      rt.decideDeps.events.publish('vigil.actions', actionKey(event), actionEvent(event)),
    setFinalOutcome: async (decisionId, proposed, detail) => {
      // Settled from the stored decision in rule order (decisions/settle.ts); the workflow's
      // merge is only the fallback for a record this process cannot read.
      const record = await rt.log.get(decisionId);
      const settled = record ? settleDecision(record.response, detail) : undefined;
      const outcome = settled?.decision ?? proposed;
      const final = outcome === 'PROVISIONAL' ? proposed : outcome;
      await rt.log.setFinalOutcome(
        decisionId,
        final,
        settled
          ? {
              ...detail,
              rules: settled.rules,
              backend_results: settled.backend_results,
              has_errors: settled.has_errors,
              degraded: settled.degraded,
            }
          : detail,
      );
      // The final outcome of an async rule is published as the decision again, with
      // final_decision and the settled traces.
      if (record) {
        const updated = {
          ...record,
          response: {
            ...record.response,
            ...(settled
              ? {
                  rules: settled.rules,
                  backend_results: settled.backend_results,
                  has_errors: settled.has_errors,
                  degraded: settled.degraded,
                }
              : {}),
            final_decision: final,
          },
        };
        rt.decideDeps.events.publish(
          'vigil.decisions',
          decisionKey(updated),
          decisionEvent(updated),
        );
      }
      return final;
    },
    resolveDecisionRecord: async (decisionId, resolution, note) => {
      // 'already_resolved' is success here: the API may have written it first.
      await rt.log.resolve(decisionId, resolution, note);
    },
  };
}

export async function startWorkerRole(
  rt: Runtime,
  temporal: { address: string; namespace: string },
  log: (msg: string) => void,
): Promise<() => Promise<void>> {
  // The SDK's runtime handles SIGINT/SIGTERM itself by default, which pre-empted vigil's own
  // shutdown (the embedded dev server was left running). vigil stops the worker in order.
  try {
    TemporalRuntime.install({ shutdownSignals: [], logger: new DefaultLogger('WARN') });
  } catch {
    // Installed already in this process.
  }
  const nativeConnection = await NativeConnection.connect({ address: temporal.address });
  const worker = await createWorker({
    connection: nativeConnection,
    namespace: temporal.namespace,
    deps: activityDeps(rt),
    workflowBundle: await bundleWorkflows(),
  });
  const running = worker.run();
  const connection = await Connection.connect({ address: temporal.address });
  const client = new Client({ connection, namespace: temporal.namespace });
  const relay = createRelay({
    client,
    outbox: {
      claim: async (batch, leaseMs) =>
        (await rt.store.claim(batch, leaseMs)).map((r) => ({
          id: r.id,
          key: r.key,
          payload: r.payload,
          attempts: r.attempts,
        })),
      markDelivered: (ids) => rt.store.markDelivered(ids),
      markFailed: (id, error, nextAttemptAt) => rt.store.markFailed(id, error, nextAttemptAt),
      stats: () => rt.store.outboxStats(),
    },
    onError: (err) => log(`relay: ${err instanceof Error ? err.message : String(err)}`),
  });
  relay.start();
  log(`worker and handoff relay on Temporal ${temporal.address} (task queue vigil)`);
  return async () => {
    await relay.stop();
    worker.shutdown();
    await running;
    await connection.close();
    await nativeConnection.close();
  };
}
