// `jira`: Jira Cloud REST v3 create issue. Jira takes no idempotency key, so the step's key is
// stored as an issue label and looked up before creating: a retry after a lost answer finds the
// issue the first attempt opened. Auth (basic email:api_token) is the integration's `auth`.
//
// The lookup uses GET /rest/api/3/search/jql, the enhanced search: Atlassian removed the older
// GET /rest/api/3/search from Jira Cloud in 2025 (it answers 410 Gone). It returns only issue ids
// unless `fields` asks for more, so it asks for `key`.
import { z } from 'zod';
import type { ActionCall, IntegrationKind, Lookup, OutboundRequest } from './kind.ts';
import {
  actionOf,
  field,
  getRequest,
  isRecord,
  jsonRequest,
  keyToken,
  lookupFailed,
  parsedBody,
  requiredText,
  settingsOf,
  text,
  truncate,
} from './util.ts';

export const jiraSettings = z.strictObject({
  project_key: z.string().regex(/^[A-Z][A-Z0-9_]{0,254}$/, 'must be a Jira project key (ABC)'),
  issue_type: z.string().min(1).max(255).default('Task'),
});
type JiraSettings = z.infer<typeof jiraSettings>;

// Jira labels cannot hold whitespace and keep 255 characters.
const labelSchema = z.string().regex(/^\S{1,255}$/, 'labels hold no whitespace');

export const jiraAction = z.strictObject({
  /** The issue summary (a template); Jira keeps one line of 255 characters. */
  summary: z.string().min(1),
  /** The description (a template): plain text, blank lines start new paragraphs. */
  description: z.string().default(''),
  labels: z.array(labelSchema).max(20).default([]),
  /** A priority name (e.g. "High"); the project's default when absent. */
  priority: z.string().min(1).max(255).optional(),
  /** Overrides the integration's `issue_type` for this action. */
  issue_type: z.string().min(1).max(255).optional(),
});

const SUMMARY_MAX = 255;
const LABEL_PREFIX = 'vigil-';

/** The label that carries an idempotency key: identical for every retry of a step. */
export function jiraIdempotencyLabel(idempotencyKey: string): string {
  return keyToken(idempotencyKey, 255, { prefix: LABEL_PREFIX });
}

/** Atlassian Document Format: one paragraph per blank-line block, line breaks kept. */
export function adfDoc(value: string): Record<string, unknown> {
  const paragraphs = value
    .replace(/\r\n?/g, '\n')
    .split(/\n\s*\n/)
    .map((block) => block.trim())
    .filter((block) => block.length > 0)
    .map((block) => {
      const content: Record<string, unknown>[] = [];
      block.split('\n').forEach((line, i) => {
        if (i > 0) content.push({ type: 'hardBreak' });
        // ADF refuses empty text nodes.
        if (line.length > 0) content.push({ type: 'text', text: line });
      });
      return { type: 'paragraph', content };
    });
  return { type: 'doc', version: 1, content: paragraphs };
}

/** JQL string literal: the label has no whitespace, but quotes and backslashes must not escape. */
function jqlString(value: string): string {
  return `"${value.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

export const jiraKind: IntegrationKind = {
  name: 'jira',
  settings: jiraSettings,
  secretSettings: [],
  action: jiraAction,
  build(call: ActionCall): OutboundRequest {
    const settings: JiraSettings = settingsOf('jira', jiraSettings, call.settings);
    const action = actionOf('jira', jiraAction, call);
    const { declared } = action;
    const summary = truncate(
      requiredText(action, 'summary', call).replace(/\s+/g, ' ').trim(),
      SUMMARY_MAX,
    );
    const labels = [...new Set([...declared.labels, jiraIdempotencyLabel(call.idempotencyKey)])];
    const fields: Record<string, unknown> = {
      project: { key: settings.project_key },
      issuetype: { name: declared.issue_type ?? settings.issue_type },
      summary,
      description: adfDoc(text(field(action, 'description'))),
      labels,
    };
    if (declared.priority !== undefined) fields.priority = { name: declared.priority };
    return jsonRequest('POST', '/rest/api/3/issue', { fields });
  },
  lookup(call: ActionCall): Lookup {
    const settings = settingsOf('jira', jiraSettings, call.settings);
    const label = jiraIdempotencyLabel(call.idempotencyKey);
    // The oldest match: if two creates ever raced, every retry settles on the same issue.
    const jql =
      `project = ${jqlString(settings.project_key)} AND labels = ${jqlString(label)} ` +
      'ORDER BY created ASC';
    const query = `jql=${encodeURIComponent(jql)}&fields=key&maxResults=1`;
    return {
      request: getRequest(`/rest/api/3/search/jql?${query}`),
      found(status: number, body: unknown): string | undefined {
        if (status < 200 || status >= 300) throw lookupFailed('jira', status);
        const parsed = parsedBody(body);
        if (!isRecord(parsed) || !Array.isArray(parsed.issues)) return undefined;
        const first: unknown = parsed.issues[0];
        if (!isRecord(first)) return undefined;
        if (typeof first.key === 'string') return first.key;
        return typeof first.id === 'string' ? first.id : undefined;
      },
    };
  },
  /** The created issue's key (ABC-123), from the 201 answer `{id, key, self}`. */
  ref(status: number, body: unknown): string | undefined {
    const parsed = parsedBody(body);
    if (status < 200 || status >= 300 || !isRecord(parsed)) return undefined;
    return typeof parsed.key === 'string' ? parsed.key : undefined;
  },
  // Reads the authenticated user: proves the base URL and credentials without writing anything.
  testCall(settings: unknown): OutboundRequest {
    settingsOf('jira', jiraSettings, settings);
    return getRequest('/rest/api/3/myself');
  },
};
