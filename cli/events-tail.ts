// `vigil events tail`: the event stream, one readable line per event, from the local event
// files (the embedded default) or from the Kafka topics. With follow it keeps reading as
// events arrive, until the signal aborts.
import { randomUUID } from 'node:crypto';
import { open, stat } from 'node:fs/promises';
import path from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { setTimeout as sleep } from 'node:timers/promises';
import { Admin, Consumer, stringDeserializers } from '@platformatic/kafka';
import {
  EVENTS_DIR,
  EVENT_TOPICS,
  type EventTopic,
  EventFileLine,
  kafkaTopicNames,
  listEventFiles,
  parseEventValue,
} from '../storage/events/index.ts';

export interface EventsTailOptions {
  /** `vigil.decisions`, or just `decisions`; all three topics when absent. */
  topic?: string | undefined;
  /** Keep reading as events arrive (until `signal` aborts). */
  follow?: boolean | undefined;
  /** Where to start: every stored event (default), or only those published from now on. */
  from?: 'beginning' | 'end' | undefined;
  dataDir: string;
  /** Read the Kafka topics instead of the local files. */
  kafkaBrokers?: string[] | undefined;
  topicPrefix?: string | undefined;
  /** Print each event's JSON line as stored instead of the summary. */
  json?: boolean | undefined;
  out: (line: string) => void;
  signal?: AbortSignal | undefined;
  /** How often follow looks for new bytes in the files, ms. Default 200. */
  pollMs?: number | undefined;
}

export interface EventsTailResult {
  /** Events printed. */
  events: number;
  /** Lines that were not events (a line torn by a failed write, or not JSON). */
  skipped: number;
}

export function resolveTopic(t: string | undefined): EventTopic | undefined {
  if (t === undefined || t === '' || t === 'all') return undefined;
  const full = t.startsWith('vigil.') ? t : `vigil.${t}`;
  if ((EVENT_TOPICS as readonly string[]).includes(full)) return full as EventTopic;
  throw new Error(`unknown topic ${JSON.stringify(t)}: one of ${EVENT_TOPICS.join(', ')}`);
}

export async function eventsTail(opts: EventsTailOptions): Promise<EventsTailResult> {
  const topic = resolveTopic(opts.topic);
  return opts.kafkaBrokers && opts.kafkaBrokers.length > 0
    ? tailKafka(opts, topic, opts.kafkaBrokers)
    : tailFiles(opts, topic);
}

// --- Formatting -------------------------------------------------------------------------------

const str = (v: unknown, dflt = '-'): string =>
  typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'boolean' ? String(v) : dflt;

/** One line for an event: time, kind, then what an operator looks for first. */
export function formatEvent(topic: string, key: string, value: unknown, ts: string): string {
  const parsed = parseEventValue(value);
  const v = (value ?? {}) as Record<string, unknown>;
  const time = str(v.occurred_at, ts);
  const mark = parsed.ok
    ? ''
    : ` [${parsed.schema ?? 'no schema'}: ${parsed.error.split('\n')[0]}]`;
  const cut = Array.isArray(v.truncated) ? ` truncated=${v.truncated.length}` : '';
  if (parsed.ok && parsed.schema === 'vigil.decision/1') {
    const d = parsed.value as Extract<typeof parsed.value, { schema: 'vigil.decision/1' }>;
    const matched = d.rules
      .filter((r) => r.result === 'matched')
      .map((r) => `${r.rule_id}${r.shadow ? '(shadow)' : ''}`);
    return [
      time,
      'decision',
      d.id,
      d.final_decision ? `${d.decision}→${d.final_decision}` : d.decision,
      `context=${d.context}`,
      `key=${key}`,
      matched.length ? `matched=${matched.join(',')}` : '',
      d.degraded.length ? `degraded=${d.degraded.join(',')}` : '',
      d.workflow_id ? `workflow=${d.workflow_id}` : '',
      `${d.elapsed_ms}ms`,
    ]
      .filter(Boolean)
      .join(' ')
      .concat(cut);
  }
  if (parsed.ok && parsed.schema === 'vigil.request/1') {
    const r = parsed.value as Extract<typeof parsed.value, { schema: 'vigil.request/1' }>;
    return [
      time,
      'request',
      r.method,
      r.path,
      `→ ${r.status}`,
      r.decision ?? (r.fail_open ? `fail_open=${r.fail_open}` : '-'),
      r.decision_id ?? '',
      `ip=${r.ip ?? '-'}`,
      `key=${key}`,
      `${r.elapsed_ms}ms`,
    ]
      .filter(Boolean)
      .join(' ')
      .concat(cut);
  }
  if (parsed.ok && parsed.schema === 'vigil.action/1') {
    const a = parsed.value as Extract<typeof parsed.value, { schema: 'vigil.action/1' }>;
    return [
      time,
      'action',
      a.workflow_id,
      a.step,
      a.status,
      `attempts=${a.attempts}`,
      a.integration ? `${a.integration}${a.action_id ? `/${a.action_id}` : ''}` : '',
      a.final_decision ? `final=${a.final_decision}` : '',
      a.error ? `error=${a.error.type}: ${a.error.message}` : '',
    ]
      .filter(Boolean)
      .join(' ')
      .concat(cut);
  }
  const body = JSON.stringify(value);
  return `${time} ${topic} key=${key} ${body.length > 300 ? `${body.slice(0, 300)}…` : body}${mark}`;
}

// --- Files ------------------------------------------------------------------------------------

async function tailFiles(
  opts: EventsTailOptions,
  topic: EventTopic | undefined,
): Promise<EventsTailResult> {
  const dir = path.join(opts.dataDir, EVENTS_DIR);
  const pollMs = Math.max(10, opts.pollMs ?? 200);
  const result: EventsTailResult = { events: 0, skipped: 0 };
  const onLine = (line: string) => {
    if (line.trim() === '') return;
    let e: EventFileLine;
    try {
      const parsed = EventFileLine.safeParse(JSON.parse(line));
      if (!parsed.success) throw new Error('not an event line');
      e = parsed.data;
    } catch {
      result.skipped++;
      return;
    }
    if (topic && e.topic !== topic) return;
    result.events++;
    opts.out(opts.json ? line : formatEvent(e.topic, e.key, e.value, e.ts));
  };

  let files = await listEventFiles(dir);
  let index = 0;
  let offset = 0;
  if (opts.from === 'end' && files.length > 0) {
    index = files.length - 1;
    offset = (await stat(files[index]!.file)).size;
  }
  let pending = '';
  let decoder = new StringDecoder('utf8');
  const chunk = Buffer.alloc(1 << 20);

  for (;;) {
    if (opts.signal?.aborted) break;
    const current = files[index];
    let grew = false;
    if (current) {
      const fh = await open(current.file, 'r').catch(() => undefined);
      if (fh) {
        try {
          for (;;) {
            const { bytesRead } = await fh.read(chunk, 0, chunk.length, offset);
            if (bytesRead === 0) break;
            grew = true;
            offset += bytesRead;
            const text = pending + decoder.write(chunk.subarray(0, bytesRead));
            const lines = text.split('\n');
            // The last piece has no newline yet: a line still being written.
            pending = lines.pop() ?? '';
            for (const line of lines) onLine(line);
          }
        } finally {
          await fh.close();
        }
      }
    }
    if (grew) continue;
    // This file is read to its end: go on to the next one if there is one.
    files = await listEventFiles(dir);
    const next = files.findIndex((f) => f.n > (current?.n ?? -1));
    if (next >= 0) {
      if (pending !== '') onLine(pending);
      pending = '';
      decoder = new StringDecoder('utf8');
      index = next;
      offset = 0;
      continue;
    }
    if (!opts.follow) break;
    try {
      await sleep(pollMs, undefined, { signal: opts.signal });
    } catch {
      break;
    }
  }
  if (!opts.follow && pending !== '') onLine(pending);
  return result;
}

// --- Kafka ------------------------------------------------------------------------------------

async function tailKafka(
  opts: EventsTailOptions,
  topic: EventTopic | undefined,
  brokers: string[],
): Promise<EventsTailResult> {
  const names = kafkaTopicNames(opts.topicPrefix);
  const byName = new Map<string, EventTopic>(EVENT_TOPICS.map((t) => [names[t], t]));
  const topics = (topic ? [topic] : [...EVENT_TOPICS]).map((t) => names[t]);
  const result: EventsTailResult = { events: 0, skipped: 0 };
  const consumer = new Consumer({
    // A group of its own, never committed: tailing moves no one else's offsets.
    groupId: `vigil-tail-${randomUUID()}`,
    clientId: 'vigil-events-tail',
    bootstrapBrokers: brokers,
    deserializers: stringDeserializers,
    autocommit: false,
    maxWaitTime: 500,
  });
  try {
    // Vigil creates all three topics together, when it first publishes: follow waits for them.
    let present = await existingTopics(brokers, topics);
    while (present.length === 0 && opts.follow && !opts.signal?.aborted) {
      await sleep(1_000, undefined, { signal: opts.signal }).catch(() => {});
      present = await existingTopics(brokers, topics);
    }
    if (present.length === 0) return result;
    // Without follow, stop at the end the topics had when the tail started.
    let remaining = 0;
    const ends = new Map<string, bigint>();
    if (!opts.follow) {
      const offsets = await consumer.listOffsets({ topics: present });
      for (const [t, parts] of offsets) {
        parts.forEach((end, p) => {
          if (end > 0n) {
            ends.set(`${t}:${p}`, end);
            remaining++;
          }
        });
      }
      if (remaining === 0 || opts.from === 'end') return result;
    }
    const stream = await consumer.consume({
      topics: present,
      mode: opts.from === 'end' ? 'latest' : 'earliest',
      autocommit: false,
    });
    const stop = () => {
      void stream.close();
    };
    opts.signal?.addEventListener('abort', stop, { once: true });
    if (opts.signal?.aborted) stop();
    try {
      for await (const m of stream) {
        const t = byName.get(m.topic);
        if (t && (!topic || t === topic)) {
          let value: unknown;
          try {
            value = JSON.parse(m.value);
          } catch {
            value = undefined;
          }
          if (value === undefined) result.skipped++;
          else {
            result.events++;
            const ts = new Date(Number(m.timestamp)).toISOString();
            opts.out(
              opts.json
                ? JSON.stringify({ topic: t, key: m.key, value, ts })
                : formatEvent(t, m.key, value, ts),
            );
          }
        }
        if (!opts.follow) {
          const k = `${m.topic}:${m.partition}`;
          const end = ends.get(k);
          if (end !== undefined && m.offset + 1n >= end) {
            ends.delete(k);
            if (--remaining === 0) break;
          }
        }
      }
    } finally {
      opts.signal?.removeEventListener('abort', stop);
      await stream.close().catch(() => {});
    }
  } finally {
    await consumer.close(true).catch(() => {});
  }
  return result;
}

async function existingTopics(brokers: string[], wanted: string[]): Promise<string[]> {
  const admin = new Admin({ clientId: 'vigil-events-tail-admin', bootstrapBrokers: brokers });
  try {
    const all = new Set(await admin.listTopics());
    return wanted.filter((t) => all.has(t));
  } finally {
    await admin.close().catch(() => {});
  }
}
