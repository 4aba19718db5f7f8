// The embedded event adapter (no KAFKA_BROKERS): append-only NDJSON in <dataDir>/events/, one
// line `{topic, key, value, ts}` per event, one write(2) per batch, files rotated by size
// (`events-000001.ndjson`, `events-000002.ndjson`, …), fsync at rotation and close.
// Several processes may share the directory (proxy workers, a separate worker): every file is
// opened O_APPEND and each batch is a single write, so lines from different processes never
// interleave; rotation looks at the file's real size, not only at what this process wrote: the
// size is asked of the file system when this process's own count says the next batch would
// cross the limit, and at least once a second (an fstat per batch was ~3% of a decision's CPU),
// so another writer can push a file past the limit by at most what it wrote in that second.
import { Buffer } from 'node:buffer';
import { mkdir, open, readdir, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { BufferedEvent, EventTransport } from './sink.ts';

export interface FileEventOptions {
  dataDir: string;
  /** A file that has reached this size is closed and the next one started. Default 64 MiB. */
  maxFileBytes?: number | undefined;
}

export const EVENTS_DIR = 'events';
const FILE_RE = /^events-(\d+)\.ndjson$/;
const SIZE_CHECK_MS = 1_000;

export function eventFileName(n: number): string {
  return `events-${String(n).padStart(6, '0')}.ndjson`;
}

/**
 * The event files of a directory in the order they were written. `events.ndjson` (the name
 * an earlier Vigil used, before rotation) comes first.
 */
export async function listEventFiles(dir: string): Promise<{ n: number; file: string }[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const files: { n: number; file: string }[] = [];
  for (const name of names) {
    if (name === 'events.ndjson') files.push({ n: 0, file: path.join(dir, name) });
    const m = FILE_RE.exec(name);
    if (m) files.push({ n: Number(m[1]), file: path.join(dir, name) });
  }
  return files.sort((a, b) => a.n - b.n);
}

/** The NDJSON lines of a batch; the values are already JSON, so they are copied in, not serialized again. */
export function eventLines(batch: readonly BufferedEvent[], torn = false): Buffer {
  const heads: string[] = [];
  const tails: string[] = [];
  let size = torn ? 1 : 0;
  for (const e of batch) {
    const head = `{"topic":${JSON.stringify(e.topic)},"key":${JSON.stringify(e.key)},"value":`;
    const tail = `,"ts":"${new Date(e.ts).toISOString()}"}\n`;
    heads.push(head);
    tails.push(tail);
    size += Buffer.byteLength(head) + e.value.length + tail.length;
  }
  const out = Buffer.allocUnsafe(size);
  let o = 0;
  if (torn) out[o++] = 0x0a;
  for (let i = 0; i < batch.length; i++) {
    o += out.write(heads[i]!, o, 'utf8');
    o += batch[i]!.value.copy(out, o);
    o += out.write(tails[i]!, o, 'latin1');
  }
  return out;
}

export class FileTransport implements EventTransport {
  readonly name = 'file' as const;
  readonly dir: string;
  readonly #maxFileBytes: number;
  #fh: FileHandle | undefined;
  #n = 0;
  /** A write failed part-way: the next one starts with a newline so the torn line stands alone. */
  #torn = false;
  #closed = false;
  #inflight: Promise<void> | undefined;
  /** The current file's size: as last asked of the file system, plus what this process wrote since. */
  #size = 0;
  #sizeAt = 0;

  constructor(opts: FileEventOptions) {
    this.dir = path.join(opts.dataDir, EVENTS_DIR);
    this.#maxFileBytes = Math.max(1024, opts.maxFileBytes ?? 64 * 1024 * 1024);
  }

  /** The file being written, once the first batch has been. */
  get currentFile(): string | undefined {
    return this.#n > 0 ? path.join(this.dir, eventFileName(this.#n)) : undefined;
  }

  send(batch: readonly BufferedEvent[]): Promise<void> {
    if (this.#closed) return Promise.reject(new Error('file event transport closed'));
    const p = this.#send(batch);
    this.#inflight = p;
    return p;
  }

  async #send(batch: readonly BufferedEvent[]): Promise<void> {
    const buf = eventLines(batch, this.#torn);
    const fh = await this.#fileFor(buf.length);
    let off = 0;
    try {
      while (off < buf.length) {
        const { bytesWritten } = await fh.write(buf, off, buf.length - off);
        off += bytesWritten;
        this.#size += bytesWritten;
      }
      this.#torn = false;
    } catch (err) {
      if (off > 0) this.#torn = true;
      // Reopen next time: the handle may be what failed.
      this.#fh = undefined;
      await fh.close().catch(() => {});
      throw err;
    }
  }

  /** The handle to append `bytes` to, rotating when the current file would grow past the limit. */
  async #fileFor(bytes: number): Promise<FileHandle> {
    if (this.#fh) {
      const now = Date.now();
      if (this.#size + bytes > this.#maxFileBytes || now - this.#sizeAt >= SIZE_CHECK_MS) {
        this.#size = (await this.#fh.stat()).size;
        this.#sizeAt = now;
      }
      const size = this.#size;
      if (size === 0 || size + bytes <= this.#maxFileBytes) return this.#fh;
      const old = this.#fh;
      this.#fh = undefined;
      await old.sync().catch(() => {});
      await old.close();
    }
    await mkdir(this.dir, { recursive: true });
    // The newest file, which another process may have started since we last looked.
    const files = (await listEventFiles(this.dir)).filter((f) => f.n > 0);
    const last = files.at(-1);
    let n = last ? last.n : 1;
    let size = 0;
    if (last) {
      size = (await stat(last.file)).size;
      if (size > 0 && size + bytes > this.#maxFileBytes) {
        n = last.n + 1;
        size = 0;
      }
    }
    this.#fh = await open(path.join(this.dir, eventFileName(n)), 'a', 0o640);
    this.#n = n;
    this.#size = size;
    this.#sizeAt = Date.now();
    return this.#fh;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // A write under way finishes first (its handle would be closed under it otherwise).
    await this.#inflight?.catch(() => {});
    const fh = this.#fh;
    this.#fh = undefined;
    if (!fh) return;
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  }
}
