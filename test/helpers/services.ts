import { z } from 'zod';

export const Services = z.object({
  dir: z.string(),
  temporalAddress: z.string(),
  temporalNamespace: z.string(),
  temporalBin: z.string(),
  kafkaBrokers: z.string(),
  redisUrl: z.string(),
  databaseUrl: z.string(),
});
export type Services = z.infer<typeof Services>;

export function parseServicesEnv(text: string, dir: string): Services {
  const env = new Map<string, string>();
  for (const line of text.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) env.set(line.slice(0, i).trim(), line.slice(i + 1).trim());
  }
  return Services.parse({
    dir,
    temporalAddress: env.get('TEMPORAL_ADDRESS'),
    temporalNamespace: env.get('TEMPORAL_NAMESPACE') ?? 'default',
    temporalBin: env.get('VIGIL_TEMPORAL_BIN'),
    kafkaBrokers: env.get('KAFKA_BROKERS'),
    redisUrl: env.get('REDIS_URL'),
    databaseUrl: env.get('DATABASE_URL'),
  });
}
