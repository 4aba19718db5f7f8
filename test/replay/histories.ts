// Replay fixtures: histories of real case runs, recorded by the workflow tests and replayed
// by test/workflows/replay.test.ts on every run. Each file is `{workflowId, history}`: the case
// reads its own id (idempotency keys, child ids), so the id travels with its history.
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { WorkflowHandle } from '@temporalio/client';
import { historyToJSON } from '@temporalio/common/lib/proto-utils.js';

export const HISTORIES_DIR = path.resolve(import.meta.dirname, 'histories');

export interface HistoryFixture {
  workflowId: string;
  /** Temporal's proto JSON of the history (what `temporal workflow show -o json` prints). */
  history: {
    events: {
      eventType: string;
      activityTaskScheduledEventAttributes?: { activityType: { name: string } };
    }[];
  };
}

export function fixtureNames(): string[] {
  return readdirSync(HISTORIES_DIR)
    .filter((f) => f.endsWith('.json'))
    .sort();
}

export function loadFixture(name: string): HistoryFixture {
  return JSON.parse(readFileSync(path.join(HISTORIES_DIR, name), 'utf8')) as HistoryFixture;
}

/**
 * With VIGIL_RECORD_HISTORIES=1, saves the run's history as `histories/<name>.json`;
 * otherwise does nothing, so ordinary test runs never rewrite the committed fixtures.
 * Re-record after a deliberate, patched() change to workflows/, keeping the old files for the
 * runs still in flight.
 */
export async function recordHistory(handle: WorkflowHandle, name: string): Promise<void> {
  if (process.env.VIGIL_RECORD_HISTORIES !== '1') return;
  const history = await handle.fetchHistory();
  const fixture = { workflowId: handle.workflowId, history: JSON.parse(historyToJSON(history)) };
  mkdirSync(HISTORIES_DIR, { recursive: true });
  writeFileSync(path.join(HISTORIES_DIR, `${name}.json`), `${JSON.stringify(fixture, null, 1)}\n`);
}
