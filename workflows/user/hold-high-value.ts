// An example user workflow, named in a playbook step as `{ "workflow": "holdHighValue" }`.
// User workflows run in the same deterministic sandbox as the case: only @temporalio/workflow,
// activities through proxyActivities, time from the workflow clock. They receive the case's
// data and an idempotency key prefix that stays the same on every retry and replay.
import { proxyActivities } from '@temporalio/workflow';
import type { VigilActivities } from '../../activities/index.ts';
import type { UserWorkflowInput } from '../contracts.ts';

/** Orders at or above this amount (minor units) are put on hold at the merchant. */
const HOLD_FROM = 100_000;

const { action } = proxyActivities<VigilActivities>({
  startToCloseTimeout: '1m',
  heartbeatTimeout: '20s',
  retry: {
    initialInterval: '1s',
    backoffCoefficient: 2,
    maximumInterval: '1m',
    maximumAttempts: 10,
  },
});

export async function holdHighValue(
  input: UserWorkflowInput,
): Promise<{ held: boolean; ref: string | null }> {
  const tx = input.context.transaction as { amount?: unknown } | undefined;
  const amount = typeof tx?.amount === 'number' ? tx.amount : 0;
  if (amount < HOLD_FROM) return { held: false, ref: null };
  const res = await action({
    step: `${input.step}.hold-order`,
    integration: 'merchant',
    action_id: 'hold-order',
    context: input.context,
    idempotency_key: `${input.idempotency_key}:hold-order`,
  });
  return { held: true, ref: res.ref };
}
