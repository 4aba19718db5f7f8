// The embedded adapter on a real directory: NDJSON lines, one write per batch, rotation by size,
// and `events tail` reading them back (once, and following).
import {
  appendFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { eventsTail, formatEvent } from '../../../cli/events-tail.ts';
import {
  EventFileLine,
  createEventSink,
  decisionEvent,
  eventFileName,
  listEventFiles,
  requestEvent,
} from '../../../storage/events/index.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'vigil-events-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const eventsDir = () => path.join(dir, 'events');
const readLines = async () => {
  const out: string[] = [];
  for (const f of await listEventFiles(eventsDir())) {
    out.push(...readFileSync(f.file, 'utf8').split('\n').filter(Boolean));
  }
  return out;
};

function decision(i: number, session: string | null = `sess_${i % 5}`) {
  return decisionEvent({
    response: {
      id: `dec_${i}`,
      decision: i % 3 === 0 ? 'BLOCK' : 'ALLOW',
      context: 'checkout',
      ruleset_id: 'rs_1',
      credential_fingerprint: null,
      rules: [{ rule_id: 'big', result: i % 3 === 0 ? 'matched' : 'not_matched', action: 'BLOCK' }],
      backend_results: [],
      has_errors: false,
      degraded: [],
      evaluation_type: 'RULE_ENGINE',
      workflow_id: null,
      elapsed_ms: 0.2,
    },
    context: { transaction: { amount: i, seq: i } },
    session,
    created_at: new Date(1_700_000_000_000 + i).toISOString(),
  });
}

describe('file event adapter', () => {
  it('appends one {topic, key, value, ts} line per event, one write per batch', async () => {
    const registry = new Registry();
    const sink = createEventSink({ dataDir: dir, registry });
    expect(sink.adapter).toBe('file');
    for (let i = 0; i < 10_000; i++) sink.publish('vigil.decisions', `sess_${i % 5}`, decision(i));
    sink.publish('vigil.requests', 'sess_1', { schema: 'vigil.request/1', n: 1 });
    await sink.close();
    expect(sink.stats()).toEqual({ buffered: 0, delivered: 10_001, dropped: 0, failed: 0 });
    const lines = await readLines();
    expect(lines).toHaveLength(10_001);
    const first = EventFileLine.parse(JSON.parse(lines[0]!));
    expect(first).toMatchObject({ topic: 'vigil.decisions', key: 'sess_0' });
    expect(first.value).toMatchObject({ schema: 'vigil.decision/1', id: 'dec_0' });
    expect(lines.map((l) => JSON.parse(l).value.transaction?.seq)).toEqual([
      ...Array(10_000).keys(),
      undefined,
    ]);
    // 10,001 events in a handful of writes (batches of up to 5,000), not one write each.
    const m = (await registry.getSingleMetricAsString('vigil_events_send_seconds')).match(
      /vigil_events_send_seconds_count\{adapter="file"\} (\d+)/,
    );
    expect(Number(m![1])).toBeLessThanOrEqual(10);
    expect(Number(m![1])).toBeGreaterThanOrEqual(3);
  });

  it('rotates by size into events-<n>.ndjson, never cutting a line', async () => {
    const sink = createEventSink({
      dataDir: dir,
      maxFileBytes: 64 * 1024,
      buffer: { batchSize: 50, lingerMs: 1 },
    });
    for (let i = 0; i < 2_000; i++) {
      sink.publish('vigil.decisions', `s${i % 4}`, decision(i));
      if (i % 100 === 99) await sink.flush();
    }
    await sink.close();
    const files = await listEventFiles(eventsDir());
    expect(files.length).toBeGreaterThan(5);
    expect(files.map((f) => path.basename(f.file))).toEqual(
      files.map((_, i) => eventFileName(i + 1)),
    );
    for (const f of files) {
      expect(statSync(f.file).size).toBeLessThanOrEqual(64 * 1024);
      expect(readFileSync(f.file, 'utf8').endsWith('\n')).toBe(true);
    }
    const seqs = (await readLines()).map((l) => JSON.parse(l).value.transaction.seq);
    expect(seqs).toEqual([...Array(2_000).keys()]);
  });

  it('shares the directory with another writer: lines whole, each writer in order', async () => {
    const opts = { dataDir: dir, maxFileBytes: 16 * 1024, buffer: { batchSize: 20 } };
    const a = createEventSink(opts);
    const b = createEventSink(opts);
    for (let i = 0; i < 500; i++) {
      a.publish('vigil.decisions', 'a', decision(i));
      b.publish('vigil.actions', 'b', { schema: 'vigil.action/1', i });
    }
    await Promise.all([a.close(), b.close()]);
    expect((await listEventFiles(eventsDir())).length).toBeGreaterThan(3);
    const lines = (await readLines()).map((l) => JSON.parse(l));
    expect(lines).toHaveLength(1_000);
    expect(lines.filter((l) => l.key === 'a').map((l) => l.value.transaction.seq)).toEqual([
      ...Array(500).keys(),
    ]);
    expect(lines.filter((l) => l.key === 'b').map((l) => l.value.i)).toEqual([
      ...Array(500).keys(),
    ]);
  });

  it('continues the newest file after a restart', async () => {
    for (let run = 0; run < 3; run++) {
      const sink = createEventSink({ dataDir: dir });
      sink.publish('vigil.requests', 'k', { run });
      await sink.close();
    }
    const files = await listEventFiles(eventsDir());
    expect(files.map((f) => path.basename(f.file))).toEqual([eventFileName(1)]);
    expect((await readLines()).map((l) => JSON.parse(l).value.run)).toEqual([0, 1, 2]);
  });

  it('keeps events buffered while the directory cannot be written, then writes them', async () => {
    // A file where the events directory should be: mkdir fails until it is removed.
    writeFileSync(eventsDir(), 'in the way');
    const errors: unknown[] = [];
    const sink = createEventSink({
      dataDir: dir,
      onError: (e) => errors.push(e),
      buffer: { retryInitialMs: 5, retryMaxMs: 20 },
    });
    for (let i = 0; i < 100; i++) sink.publish('vigil.decisions', 'k', decision(i));
    await new Promise((r) => setTimeout(r, 100));
    expect(errors.length).toBeGreaterThan(0);
    expect(sink.stats()).toMatchObject({ buffered: 100, delivered: 0 });
    expect(sink.health().ok).toBe(false);
    rmSync(eventsDir());
    await sink.flush();
    expect(sink.stats()).toEqual({ buffered: 0, delivered: 100, dropped: 0, failed: 0 });
    await sink.close();
    expect(await readLines()).toHaveLength(100);
  });
});

describe('events tail (files)', () => {
  async function writeSome(n: number, maxFileBytes = 8 * 1024) {
    const sink = createEventSink({ dataDir: dir, maxFileBytes, buffer: { batchSize: 20 } });
    for (let i = 0; i < n; i++) {
      sink.publish('vigil.decisions', `sess_${i % 5}`, decision(i));
      sink.publish(
        'vigil.requests',
        `sess_${i % 5}`,
        requestEvent({
          method: 'POST',
          path: '/checkout',
          route: '/checkout',
          status: 200,
          decision_id: `dec_${i}`,
          decision: 'ALLOW',
          ip: '203.0.113.7',
          elapsed_ms: 1,
          session: `sess_${i % 5}`,
        }),
      );
    }
    await sink.close();
  }

  it('reads every file back in order, one readable line per event, filtered by topic', async () => {
    await writeSome(200);
    expect((await listEventFiles(eventsDir())).length).toBeGreaterThan(3);
    const out: string[] = [];
    const r = await eventsTail({ dataDir: dir, topic: 'decisions', out: (l) => out.push(l) });
    expect(r).toEqual({ events: 200, skipped: 0 });
    expect(out[0]).toBe(
      '2023-11-14T22:13:20.000Z decision dec_0 BLOCK context=checkout key=sess_0 matched=big 0.2ms',
    );
    expect(out.map((l) => l.split(' ')[2])).toEqual([...Array(200).keys()].map((i) => `dec_${i}`));
    const all: string[] = [];
    expect((await eventsTail({ dataDir: dir, out: (l) => all.push(l) })).events).toBe(400);
    expect(all[1]).toMatch(
      / request POST \/checkout → 200 ALLOW dec_0 ip=203\.0\.113\.7 key=sess_0 1ms$/,
    );
    const json: string[] = [];
    await eventsTail({
      dataDir: dir,
      topic: 'vigil.requests',
      json: true,
      out: (l) => json.push(l),
    });
    expect(JSON.parse(json[0]!)).toMatchObject({ topic: 'vigil.requests', key: 'sess_0' });
    await expect(eventsTail({ dataDir: dir, topic: 'nope', out: () => {} })).rejects.toThrow(
      /unknown topic/,
    );
  });

  it('skips torn lines and reads the earlier single-file name first', async () => {
    mkdirSync(eventsDir(), { recursive: true });
    const line = (n: number) =>
      `${JSON.stringify({ topic: 'vigil.actions', key: 'w', value: { schema: 'vigil.action/9', n }, ts: new Date(n).toISOString() })}\n`;
    writeFileSync(path.join(eventsDir(), 'events.ndjson'), line(1));
    writeFileSync(
      path.join(eventsDir(), eventFileName(1)),
      `${line(2)}{"topic":"vigil.act\n${line(3)}`,
    );
    const out: string[] = [];
    expect(await eventsTail({ dataDir: dir, out: (l) => out.push(l) })).toEqual({
      events: 3,
      skipped: 1,
    });
    expect(out.map((l) => JSON.parse(l.slice(l.indexOf('{'), l.lastIndexOf('}') + 1)).n)).toEqual([
      1, 2, 3,
    ]);
    expect(out[0]).toContain('[vigil.action/9: unknown schema]');
  });

  it('follows: prints events as they are written, across rotations, until aborted', async () => {
    await writeSome(10);
    const out: string[] = [];
    const ac = new AbortController();
    const tail = eventsTail({
      dataDir: dir,
      topic: 'decisions',
      follow: true,
      pollMs: 20,
      out: (l) => out.push(l),
      signal: ac.signal,
    });
    const waitFor = async (n: number) => {
      for (let i = 0; i < 250 && out.length < n; i++) await new Promise((r) => setTimeout(r, 20));
      expect(out.length).toBe(n);
    };
    await waitFor(10);
    const sink = createEventSink({
      dataDir: dir,
      maxFileBytes: 8 * 1024,
      buffer: { batchSize: 5 },
    });
    for (let i = 10; i < 100; i++) {
      sink.publish('vigil.decisions', 's', decision(i));
      if (i % 10 === 0) await sink.flush();
    }
    await sink.close();
    await waitFor(100);
    // A line written in two pieces is printed once, whole.
    const f = (await listEventFiles(eventsDir())).at(-1)!.file;
    const text = `${JSON.stringify({ topic: 'vigil.decisions', key: 'x', value: decision(100), ts: new Date().toISOString() })}\n`;
    appendFileSync(f, text.slice(0, 50));
    await new Promise((r) => setTimeout(r, 60));
    appendFileSync(f, text.slice(50));
    await waitFor(101);
    ac.abort();
    expect(await tail).toEqual({ events: 101, skipped: 0 });
    expect(out.at(-1)).toContain('dec_100');
  });

  it('from the end: only events written after it started', async () => {
    await writeSome(5);
    const out: string[] = [];
    const ac = new AbortController();
    const tail = eventsTail({
      dataDir: dir,
      follow: true,
      from: 'end',
      pollMs: 20,
      out: (l) => out.push(l),
      signal: ac.signal,
    });
    await new Promise((r) => setTimeout(r, 100));
    const sink = createEventSink({ dataDir: dir });
    sink.publish('vigil.decisions', 's', decision(77));
    await sink.close();
    for (let i = 0; i < 100 && out.length < 1; i++) await new Promise((r) => setTimeout(r, 20));
    ac.abort();
    await tail;
    expect(out).toHaveLength(1);
    expect(out[0]).toContain('dec_77');
  });

  it('formats unknown values compactly', () => {
    expect(formatEvent('vigil.decisions', 'k', { x: 1 }, '2026-01-01T00:00:00.000Z')).toBe(
      '2026-01-01T00:00:00.000Z vigil.decisions key=k {"x":1} [no schema: unknown schema]',
    );
  });
});
