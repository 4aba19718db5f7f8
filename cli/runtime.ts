// The composition root: builds the adapters the configuration names (or the embedded
// defaults), wires them into the roles asked for and runs until SIGINT/SIGTERM.
import { Connection } from '@temporalio/client';
import type { Config } from '../config/config.ts';
import { buildApp, type HealthCheck } from '../proxy/app.ts';
import { createMetrics } from '../proxy/metrics.ts';
import { startEmbeddedTemporal, type EmbeddedTemporal } from './embedded-temporal.ts';

export interface Roles {
  api: boolean;
  proxy: boolean;
  worker: boolean;
  /** Start the embedded dev server when TEMPORAL_ADDRESS is unset (`start` only). */
  embedded: boolean;
}

const log = (msg: string) => console.log(`[vigil] ${msg}`);

export async function runRoles(config: Config, roles: Roles): Promise<number> {
  const closers: (() => Promise<void>)[] = [];
  const metrics = createMetrics();
  let embedded: EmbeddedTemporal | undefined;
  let temporalAddress = config.temporal.address;
  if (!temporalAddress && roles.embedded) {
    embedded = await startEmbeddedTemporal({
      bin: config.temporalBin,
      dataDir: config.dataDir,
      log,
    });
    temporalAddress = embedded.address;
    closers.push(() => embedded!.stop());
  }

  const health: HealthCheck[] = [
    {
      name: 'temporal',
      required: false,
      check: async () => {
        if (!temporalAddress) return { state: 'disabled', detail: 'TEMPORAL_ADDRESS unset' };
        const c = await Connection.connect({ address: temporalAddress, connectTimeout: 500 });
        try {
          await c.workflowService.describeNamespace({ namespace: config.temporal.namespace });
          return { state: 'up', detail: temporalAddress };
        } finally {
          await c.close();
        }
      },
    },
  ];

  const app = await buildApp({
    metrics,
    health,
    verifyToken: () => Promise.resolve(undefined),
    serveApi: roles.api,
  });
  await app.listen({ port: config.apiPort, host: config.host });
  closers.unshift(() => app.close());
  log(
    `API on http://${config.host}:${config.apiPort} (health: /healthz /readyz, metrics: /metrics)`,
  );

  await new Promise<void>((resolve) => {
    const stop = (sig: string) => {
      log(`${sig}: shutting down`);
      resolve();
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
  for (const close of closers) {
    try {
      await close();
    } catch (err) {
      console.error('[vigil] close failed:', err);
    }
  }
  return 0;
}
