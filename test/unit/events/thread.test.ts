import { Buffer } from 'node:buffer';
import { describe, expect, it } from 'vitest';
import { packBatch, unpackBatch } from '../../../storage/events/thread.ts';
import type { BufferedEvent } from '../../../storage/events/index.ts';

describe('Kafka thread batch packing', () => {
  it('round-trips topic, key, schema, timestamp and value bytes, multi-byte text included', () => {
    // Values are views into a larger buffer, as the sink's slab hands them out.
    const slab = Buffer.from('xx{"a":1}{"b":"é€😀"}yy');
    const batch: BufferedEvent[] = [
      {
        topic: 'vigil.decisions',
        key: 'sess_ü1',
        schema: 'vigil.decision/1',
        ts: 1_764_633_600_123,
        value: slab.subarray(2, 9),
      },
      {
        topic: 'vigil.actions',
        key: '',
        schema: undefined,
        ts: 1,
        value: slab.subarray(9, slab.length - 2),
      },
      { topic: 'vigil.requests', key: 'k', schema: 's', ts: 2, value: Buffer.alloc(0) },
    ];
    const packed = packBatch(batch);
    // Only the batch itself is packed, never the rest of the slab.
    expect(Buffer.from(packed).includes('yy')).toBe(false);
    const out = unpackBatch(packed, batch.length);
    expect(out.map((e) => ({ ...e, value: e.value.toString() }))).toEqual(
      batch.map((e) => ({ ...e, value: e.value.toString() })),
    );
  });
});
