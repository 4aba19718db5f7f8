// The Kafka producer's thread. Encoding records, checksums and socket writes cost about ten
// microseconds an event; here they run beside the answer path instead of on it. The main
// thread keeps the buffer, the order and the retries (sink.ts) and sends one batch at a time.
import { parentPort, workerData } from 'node:worker_threads';
import { KafkaTransport, type KafkaEventOptions } from './kafka.ts';
import { unpackBatch } from './wire.ts';

export type WorkerRequest =
  { id: number; kind: 'send'; batch: ArrayBuffer } | { id: number; kind: 'close' };

export type WorkerReply =
  { id: number; ok: true } | { id: number; ok: false; message: string; permanent: boolean };

const port = parentPort;
if (!port) throw new Error('kafka-worker.ts runs as a worker thread');
const transport = new KafkaTransport(workerData as KafkaEventOptions);

port.on('message', async (req: WorkerRequest) => {
  let reply: WorkerReply;
  try {
    if (req.kind === 'send') await transport.send(unpackBatch(req.batch));
    else await transport.close();
    reply = { id: req.id, ok: true };
  } catch (err) {
    reply = {
      id: req.id,
      ok: false,
      message: err instanceof Error ? err.message : String(err),
      permanent: transport.isPermanent(err),
    };
  }
  port.postMessage(reply);
});
