// The one small interface every integration kind implements (CONTRACT §3: `http`, `webhook`,
// `slack`, `pagerduty`, `jira`, `servicenow`). A kind turns an action call into the exact HTTP
// request the third party expects and reads back what it created. Kinds are pure: no I/O, no
// clock (time comes in), no secrets in thrown messages. The HTTP client (integrations/http.ts)
// sends what a kind builds, under the egress guard, the deadline and the response cap.
import type { z } from 'zod';

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** A request relative to the integration's `base_url`. The client adds the integration's auth. */
export interface OutboundRequest {
  method: HttpMethod;
  /** Path and query, starting with `/`, appended to `base_url`'s path. */
  path: string;
  headers: Record<string, string>;
  /** Serialized body (JSON text for every built-in kind), or none. */
  body?: string;
}

/** What one action call gives a kind. */
export interface ActionCall {
  /** The integration's `settings` as the kind's own schema parsed them, secrets decrypted. */
  settings: unknown;
  /** The action as declared in the integration document (its kind-specific fields included). */
  action: { action_id: string } & Record<string, unknown>;
  /**
   * The action's payload with every template already rendered (`{{decision.id}}` placeholders
   * and `$.…` JSONPath values substituted from the call's context).
   */
  payload: unknown;
  /** `{workflow_id}:{opened_by}:{step}`: identical on every retry of the same step. */
  idempotencyKey: string;
  /** Milliseconds since the epoch (Standard Webhooks timestamps, PagerDuty `timestamp`). */
  nowMs: number;
}

/**
 * A request to run before the create, for receivers that do not honour an idempotency key
 * (Jira, ServiceNow): when `found` returns a ref, the create is skipped and that ref returned.
 */
export interface Lookup {
  request: OutboundRequest;
  found(status: number, body: unknown): string | undefined;
}

export interface IntegrationKind {
  name: 'http' | 'webhook' | 'slack' | 'pagerduty' | 'jira' | 'servicenow';
  /** The kind's `settings` object on the integration document (strict; defaults applied). */
  settings: z.ZodType;
  /** Dotted paths inside `settings` that hold secrets: encrypted at rest, shown as `"***"`. */
  secretSettings: readonly string[];
  /** The action fields this kind accepts beside `action_id` (strict). */
  action: z.ZodType;
  /** The request that performs the action. */
  build(call: ActionCall): OutboundRequest;
  /** Optional look-before-create for receivers without idempotency keys. */
  lookup?(call: ActionCall): Lookup;
  /** What the third party created (ticket key, incident sys_id, message ts), from a 2xx answer. */
  ref?(status: number, body: unknown): string | undefined;
  /** A harmless call for `POST /api/admin/integrations/{slug}/test` (e.g. a test message). */
  testCall(settings: unknown, nowMs: number): OutboundRequest;
}
