// Lifecycle events (CONTRACT §2): stored, forwarded to the backends that took part in the
// decision, used to fill the blacklist for rules whose `populate_on` names the type, and
// signalled into the decision's case workflow.
import { z } from 'zod';
import { valuesAt } from '../rulesets/jsonpath.ts';
import type { RulesetDocument } from '../rulesets/schema.ts';
import { newId } from './ids.ts';
import type {
  BlacklistRepo,
  DecisionLogPort,
  DecisionRecord,
  LifecycleEvent,
  LifecycleEventRepo,
  RulesetRepo,
} from './ports.ts';

export const EVENT_TYPES = [
  'authorization',
  'capture',
  'refund',
  'void',
  'chargeback',
  'fraud_report',
  'failed',
] as const;

export const LifecycleEventRequest = z.object({
  type: z.enum(EVENT_TYPES),
  decision_id: z.string().regex(/^dec_[a-z0-9]{1,40}$/, 'a decision id (dec_…)'),
  occurred_at: z.iso.datetime({ offset: true }),
  data: z.record(z.string(), z.unknown()).default({}),
});
export type LifecycleEventRequest = z.infer<typeof LifecycleEventRequest>;

export interface BackendNotification {
  integration: string;
  backend_id: string;
  status: 'sent' | 'failed' | 'skipped';
  error?: string;
}

export interface LifecycleDeps {
  log: DecisionLogPort;
  events: LifecycleEventRepo;
  rulesets: Pick<RulesetRepo, 'get'>;
  blacklist: Pick<BlacklistRepo, 'add'>;
  notifyBackends?: (
    record: DecisionRecord,
    event: LifecycleEvent,
  ) => Promise<BackendNotification[]>;
  signalCase?: (workflowId: string, event: LifecycleEvent) => Promise<void>;
  now: () => number;
}

export interface LifecycleResult {
  id: string;
  type: string;
  decision_id: string;
  backend_notifications: BackendNotification[];
  blacklisted: { rule_id: string; field_path: string; entry_id: string }[];
  workflow_signalled: boolean;
}

export class DecisionNotFound extends Error {
  readonly code = 'not_found';
}

export async function recordLifecycleEvent(
  deps: LifecycleDeps,
  req: LifecycleEventRequest,
): Promise<LifecycleResult> {
  const record = await deps.log.get(req.decision_id);
  if (!record) throw new DecisionNotFound(`decision ${req.decision_id} was not found`);
  const event: LifecycleEvent = {
    id: newId('evt', deps.now()),
    type: req.type,
    decision_id: req.decision_id,
    occurred_at: new Date(req.occurred_at).toISOString(),
    data: req.data,
    received_at: new Date(deps.now()).toISOString(),
  };
  await deps.events.insert(event);

  const blacklisted: LifecycleResult['blacklisted'] = [];
  const rulesetId = record.response.ruleset_id;
  const ruleset = rulesetId ? await deps.rulesets.get(rulesetId) : undefined;
  const doc = ruleset?.document as RulesetDocument | undefined;
  for (const rule of doc?.rules ?? []) {
    if (rule.type !== 'blacklist' || !rule.populate_on?.includes(req.type)) continue;
    for (const field of rule.fields) {
      for (const value of valuesAt(field, record.context)) {
        if (typeof value !== 'string' && typeof value !== 'number') continue;
        const entry = await deps.blacklist.add({
          field_path: field,
          value: String(value),
          ttl_seconds: rule.ttl_seconds,
          source_decision_id: record.response.id,
        });
        blacklisted.push({ rule_id: rule.id, field_path: field, entry_id: entry.id });
      }
    }
  }

  const backend_notifications = deps.notifyBackends ? await deps.notifyBackends(record, event) : [];
  let workflow_signalled = false;
  if (record.response.workflow_id && deps.signalCase) {
    try {
      await deps.signalCase(record.response.workflow_id, event);
      workflow_signalled = true;
    } catch {
      // The event is stored; the case picks it up from the decision record when it asks.
      workflow_signalled = false;
    }
  }
  return {
    id: event.id,
    type: event.type,
    decision_id: event.decision_id,
    backend_notifications,
    blacklisted,
    workflow_signalled,
  };
}
