// The embedded event sink (no KAFKA_BROKERS): append-only NDJSON in <dataDir>/events/, one
// line `{topic, key, value, ts}` per event, written in batches off the answer path. publish()
// never blocks and never throws: events wait in a bounded buffer, and when it is full the
// newest are dropped and counted.
import { appendFile, mkdir } from 'node:fs/promises';
import path from 'node:path';

export interface EventSinkStats {
  buffered: number;
  delivered: number;
  dropped: number;
  failed: number;
}

export interface FileEventSinkOptions {
  dataDir: string;
  capacity?: number;
  flushIntervalMs?: number;
  onError?: (err: unknown) => void;
}

export class FileEventSink {
  #file: string;
  #dir: string;
  #buffer: string[] = [];
  #capacity: number;
  #interval: number;
  #timer: NodeJS.Timeout | undefined;
  #writing: Promise<void> | undefined;
  #stats = { delivered: 0, dropped: 0, failed: 0 };
  #onError: ((err: unknown) => void) | undefined;

  constructor(opts: FileEventSinkOptions) {
    this.#dir = path.join(opts.dataDir, 'events');
    this.#file = path.join(this.#dir, 'events.ndjson');
    this.#capacity = opts.capacity ?? 100_000;
    this.#interval = opts.flushIntervalMs ?? 50;
    this.#onError = opts.onError;
  }

  get file(): string {
    return this.#file;
  }

  publish(topic: string, key: string, value: object): void {
    if (this.#buffer.length >= this.#capacity) {
      this.#stats.dropped++;
      return;
    }
    let line: string;
    try {
      line = JSON.stringify({ topic, key, value, ts: new Date().toISOString() });
    } catch {
      this.#stats.dropped++;
      return;
    }
    this.#buffer.push(line);
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined;
      void this.flush();
    }, this.#interval);
  }

  flush(): Promise<void> {
    if (this.#writing) return this.#writing.then(() => this.flush());
    if (this.#buffer.length === 0) return Promise.resolve();
    const batch = this.#buffer;
    this.#buffer = [];
    this.#writing = (async () => {
      try {
        await mkdir(this.#dir, { recursive: true });
        await appendFile(this.#file, `${batch.join('\n')}\n`);
        this.#stats.delivered += batch.length;
      } catch (err) {
        this.#stats.failed += batch.length;
        this.#onError?.(err);
      } finally {
        this.#writing = undefined;
      }
    })();
    return this.#writing;
  }

  stats(): EventSinkStats {
    return { buffered: this.#buffer.length, ...this.#stats };
  }

  async close(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.flush();
  }
}
