// The worker side of KafkaThreadTransport (thread.ts): one KafkaTransport, fed batches that
// arrive packed in transferred buffers, answering each with ok or the error (and whether a
// resend could help). One batch at a time, in arrival order, so per-key order holds.
import { parentPort, workerData } from 'node:worker_threads';
import { KafkaTransport, type KafkaEventOptions } from './kafka.ts';
import { unpackBatch, type FromKafkaThread, type ToKafkaThread } from './thread.ts';

const port = parentPort;
if (!port) throw new Error('kafka-thread.ts runs as a worker thread only');

const transport = new KafkaTransport(workerData as KafkaEventOptions);
// Topics created before the first batch needs them; a failure here is retried by that send.
let queue: Promise<void> = transport.ensureTopics().catch(() => {});

port.on('message', (msg: ToKafkaThread) => {
  queue = queue.then(async () => {
    let reply: FromKafkaThread;
    try {
      if (msg.op === 'send') await transport.send(unpackBatch(msg.packed, msg.count));
      else await transport.close();
      reply = { id: msg.id, ok: true };
    } catch (err) {
      reply = {
        id: msg.id,
        ok: false,
        message: err instanceof Error ? err.message : String(err),
        permanent: transport.isPermanent(err),
      };
    }
    port.postMessage(reply);
  });
});
