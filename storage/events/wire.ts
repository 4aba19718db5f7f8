// A batch of events as one ArrayBuffer, to hand it to the Kafka worker thread by transfer (a
// move, not a copy per event): [topic u8][schemaLen u8][keyLen u32][valueLen u32][ts f64]
// [schema][key][value], one after another.
import { Buffer } from 'node:buffer';
import { EVENT_TOPICS, type BufferedEvent, type EventTopic } from './sink.ts';

const HEAD = 18;
const TOPIC_INDEX = new Map<EventTopic, number>(EVENT_TOPICS.map((t, i) => [t, i]));

export function packBatch(batch: readonly BufferedEvent[]): ArrayBuffer {
  let size = 0;
  const keyLens: number[] = [];
  const schemaLens: number[] = [];
  for (const e of batch) {
    const k = Buffer.byteLength(e.key);
    const s = e.schema ? Math.min(255, Buffer.byteLength(e.schema)) : 0;
    keyLens.push(k);
    schemaLens.push(s);
    size += HEAD + s + k + e.value.length;
  }
  const ab = new ArrayBuffer(size);
  const out = Buffer.from(ab);
  let o = 0;
  for (let i = 0; i < batch.length; i++) {
    const e = batch[i]!;
    const s = schemaLens[i]!;
    const k = keyLens[i]!;
    out[o] = TOPIC_INDEX.get(e.topic)!;
    out[o + 1] = s;
    out.writeUInt32LE(k, o + 2);
    out.writeUInt32LE(e.value.length, o + 6);
    out.writeDoubleLE(e.ts, o + 10);
    o += HEAD;
    if (s > 0) o += out.write(e.schema!, o, s, 'utf8');
    o += out.write(e.key, o, k, 'utf8');
    o += e.value.copy(out, o);
  }
  return ab;
}

export function unpackBatch(ab: ArrayBuffer): BufferedEvent[] {
  const b = Buffer.from(ab);
  const out: BufferedEvent[] = [];
  let o = 0;
  while (o < b.length) {
    const s = b[o + 1]!;
    const k = b.readUInt32LE(o + 2);
    const v = b.readUInt32LE(o + 6);
    const topic = EVENT_TOPICS[b[o]!]!;
    const ts = b.readDoubleLE(o + 10);
    o += HEAD;
    const schema = s > 0 ? b.toString('utf8', o, o + s) : undefined;
    o += s;
    const key = b.toString('utf8', o, o + k);
    o += k;
    out.push({ topic, key, value: b.subarray(o, o + v), schema, ts });
    o += v;
  }
  return out;
}
