// The event buffer's storage: records packed into 1 MiB Buffers (memory outside the V8 heap).
// Hundreds of thousands of buffered events as JavaScript objects would sit in the old
// generation, and every garbage collection during an outage would walk them, slowing every
// decision of the process; as bytes in slabs they cost the collector nothing, and the bound is
// exact in bytes. A record never spans two slabs; a slab is let go once the head has passed it.
import { Buffer } from 'node:buffer';

// keyLen u32, valueLen u32, topic u8, schema u8, ts f64
const HEADER = 18;
const SLAB = 1 << 20;
const NO_SCHEMA = 255;

/** One record as the drainer hands it to an adapter: views into the slab, not copies. */
export interface QueuedRecord {
  topic: number;
  key: string;
  /** The value's JSON as UTF-8: a view into the slab, valid until the record is shifted off. */
  value: Buffer;
  schema: string | undefined;
  ts: number;
}

interface Slab {
  buf: Buffer;
  used: number;
}

export class SlabQueue {
  #slabs: Slab[] = [];
  /** Read offset in the first slab. */
  #head = 0;
  /** Records queued, and their bytes (headers included). */
  length = 0;
  bytes = 0;
  // Schemas are few (`vigil.decision/1` …): kept once, referenced by index in each record.
  readonly #schemas: string[] = [];
  readonly #schemaIndex = new Map<string, number>();
  /** The next slab, its pages already touched, so push() neither allocates nor page-faults. */
  #spare: Buffer | undefined;
  #preparing = false;

  static recordBytes(keyBytes: number, valueBytes: number): number {
    return HEADER + keyBytes + valueBytes;
  }

  push(
    topic: number,
    key: string,
    keyBytes: number,
    json: string,
    valueBytes: number,
    schema: string | undefined,
    ts: number,
  ): void {
    const size = HEADER + keyBytes + valueBytes;
    let slab = this.#slabs.at(-1);
    if (!slab || slab.buf.length - slab.used < size) {
      const spare = size <= SLAB ? this.#spare : undefined;
      if (spare) this.#spare = undefined;
      slab = { buf: spare ?? Buffer.allocUnsafeSlow(Math.max(SLAB, size)), used: 0 };
      this.#slabs.push(slab);
      this.#prepare();
    }
    const b = slab.buf;
    let o = slab.used;
    b.writeUInt32LE(keyBytes, o);
    b.writeUInt32LE(valueBytes, o + 4);
    b[o + 8] = topic;
    b[o + 9] = this.#schemaRef(schema);
    b.writeDoubleLE(ts, o + 10);
    o += HEADER;
    o += b.write(key, o, keyBytes, 'utf8');
    o += b.write(json, o, valueBytes, 'utf8');
    slab.used = o;
    this.length++;
    this.bytes += size;
  }

  /**
   * Up to `limit` records from the head (left in place), while their values total at most
   * `maxBytes` (the first one always comes).
   */
  peek(limit: number, maxBytes: number): QueuedRecord[] {
    const out: QueuedRecord[] = [];
    let bytes = 0;
    let s = 0;
    let o = this.#head;
    while (out.length < limit && out.length < this.length) {
      let slab = this.#slabs[s]!;
      if (o >= slab.used) {
        s++;
        o = 0;
        slab = this.#slabs[s]!;
      }
      const b = slab.buf;
      const keyBytes = b.readUInt32LE(o);
      const valueBytes = b.readUInt32LE(o + 4);
      if (out.length > 0 && bytes + valueBytes > maxBytes) break;
      const k = o + HEADER;
      const v = k + keyBytes;
      const schemaRef = b[o + 9]!;
      out.push({
        topic: b[o + 8]!,
        key: b.toString('utf8', k, v),
        value: b.subarray(v, v + valueBytes),
        schema: schemaRef === NO_SCHEMA ? undefined : this.#schemas[schemaRef],
        ts: b.readDoubleLE(o + 10),
      });
      bytes += valueBytes;
      o = v + valueBytes;
    }
    return out;
  }

  /** Drops n records from the head; `each` sees each one's topic first. */
  shift(n: number, each: (topic: number) => void): void {
    for (let i = 0; i < n && this.length > 0; i++) {
      let slab = this.#slabs[0]!;
      if (this.#head >= slab.used) {
        this.#slabs.shift();
        this.#head = 0;
        slab = this.#slabs[0]!;
      }
      const b = slab.buf;
      const size = HEADER + b.readUInt32LE(this.#head) + b.readUInt32LE(this.#head + 4);
      each(b[this.#head + 8]!);
      this.#head += size;
      this.length--;
      this.bytes -= size;
    }
    if (this.length === 0) {
      // Empty: the last slab is kept and written from its start again. Letting it go made every
      // batch under a light load take a fresh 1 MiB slab (and prepare another): some 50 MiB a
      // second of external memory churn at 100 decisions/s, which kept V8 collecting.
      const last = this.#slabs.at(-1);
      this.#slabs = last && last.buf.length === SLAB ? [{ buf: last.buf, used: 0 }] : [];
      this.#head = 0;
    }
  }

  #prepare(): void {
    if (this.#spare || this.#preparing) return;
    this.#preparing = true;
    setImmediate(() => {
      this.#preparing = false;
      this.#spare ??= Buffer.allocUnsafeSlow(SLAB).fill(0);
    }).unref();
  }

  #schemaRef(schema: string | undefined): number {
    if (schema === undefined) return NO_SCHEMA;
    const known = this.#schemaIndex.get(schema);
    if (known !== undefined) return known;
    // A caller inventing schemas per event must not grow this table without bound.
    if (this.#schemas.length >= NO_SCHEMA || schema.length > 200) return NO_SCHEMA;
    this.#schemas.push(schema);
    this.#schemaIndex.set(schema, this.#schemas.length - 1);
    return this.#schemas.length - 1;
  }
}
