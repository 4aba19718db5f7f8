// Decisions and playbooks the workflow tests share.
import { randomUUID } from 'node:crypto';
import type { StoredPlaybook } from '../../../activities/deps.ts';
import type { DecisionSignal } from '../../../workflows/contracts.ts';

/** Retries fast enough for a test, with the contract's shape. */
export const FAST_RETRY = {
  initial_interval: '100ms',
  backoff: 2,
  maximum_interval: '1s',
  maximum_attempts: 5,
};

export function reviewPlaybook(overrides: Record<string, unknown> = {}): StoredPlaybook {
  return {
    name: 'review-default',
    version: 3,
    document: {
      name: 'review-default',
      on: { decision: ['REVIEW'], contexts: ['checkout'] },
      steps: [
        { enrich: { integration: 'ipcheck', backend_id: 'ip' } },
        { ticket: { integration: 'jira', action_id: 'create-issue' } },
        {
          alert: {
            integration: 'slack',
            action_id: 'post',
            condition: { gte: { path: '$.transaction.amount', value: 500000 } },
          },
        },
        { wait_for_resolution: { timeout: '1h', on_timeout: 'escalate' } },
      ],
      on_resolution: {
        reject: [
          { blacklist_add: { field_path: '$.credential_fingerprint', ttl_seconds: 15552000 } },
          { action: { integration: 'merchant', action_id: 'cancel-order' } },
        ],
        accept: [{ action: { integration: 'merchant', action_id: 'release-order' } }],
      },
      after_decision: [{ action: { integration: 'merchant-hook', action_id: 'notify' } }],
      retry: FAST_RETRY,
      ...overrides,
    },
  };
}

export function session(): string {
  return `sess_${randomUUID().slice(0, 8)}`;
}

let seq = 0;
export function review(
  sessionId: string | null,
  opts: {
    amount?: number;
    card?: string;
    decision?: DecisionSignal['decision'];
    context?: string;
  } = {},
): DecisionSignal {
  seq += 1;
  const id = `dec_${randomUUID().replaceAll('-', '').slice(0, 16)}${seq}`;
  const card = opts.card ?? 'crd_card1';
  return {
    decision_id: id,
    decision: opts.decision ?? 'REVIEW',
    context: opts.context ?? 'checkout',
    ruleset_id: 'rs_1',
    occurred_at: new Date().toISOString(),
    session: sessionId,
    credential_fingerprint: card,
    context_data: {
      context: opts.context ?? 'checkout',
      transaction: { reference: `ord_${seq}`, amount: opts.amount ?? 14999, currency: 'EUR' },
      customer: { id: 'cus_1', email: 'a@example.com' },
      device: { ip: '203.0.113.7', ...(sessionId ? { session: sessionId } : {}) },
      credential_fingerprint: card,
    },
  };
}
