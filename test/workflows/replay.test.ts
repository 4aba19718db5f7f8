// Replay tests (ARCHITECTURE habit 7): every history recorded from a real run of the case
// workflow (test/replay/histories/*.json, written by the workflow tests with
// VIGIL_RECORD_HISTORIES=1) must replay against today's workflow code: a change to workflows/
// that would break a case already running fails here, before it reaches a worker. It needs no
// server; it sits in test/workflows/ so that the integration project runs it every time.
import { Worker } from '@temporalio/worker';
import { DeterminismViolationError } from '@temporalio/workflow';
import { beforeAll, describe, expect, it } from 'vitest';
import { fixtureNames, loadFixture } from '../replay/histories.ts';
import { sharedBundle } from './helpers/temporal.ts';

const files = fixtureNames();
let bundle: { code: string };

beforeAll(async () => {
  bundle = await sharedBundle();
});

describe('replay of recorded case histories', () => {
  it('has fixtures to replay', () => {
    expect(files.length).toBeGreaterThanOrEqual(6);
  });

  it('replays every recorded history without a determinism error', async () => {
    const fixtures = files.map(loadFixture);
    const results: { file: string; error?: unknown }[] = [];
    let i = 0;
    for await (const r of Worker.runReplayHistories({ workflowBundle: bundle }, fixtures)) {
      results.push({ file: files[i++]!, ...(r.error ? { error: r.error } : {}) });
      expect(r.workflowId).toBe(fixtures[i - 1]!.workflowId);
    }
    expect(results).toHaveLength(files.length);
    expect(results.filter((r) => r.error).map((r) => `${r.file}: ${String(r.error)}`)).toEqual([]);
  });

  it('fails a history whose ticket step was scheduled as another activity', async () => {
    // The deliberately altered history: the case's ticket activity recorded under another
    // type, as if the workflow code had reordered or swapped its steps since the recording.
    const { workflowId, history } = loadFixture('three-reviews-one-ticket.json');
    const scheduled = history.events.find(
      (e) => e.activityTaskScheduledEventAttributes?.activityType.name === 'ticket',
    );
    expect(scheduled).toBeDefined();
    scheduled!.activityTaskScheduledEventAttributes!.activityType.name = 'alert';
    const err = await Worker.runReplayHistory(
      { workflowBundle: bundle },
      history,
      workflowId,
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeterminismViolationError);
  });
});
