import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../config/config.ts';

describe('config', () => {
  it('gives the embedded defaults when nothing is set', () => {
    const c = loadConfig({});
    expect(c.temporal.address).toBeUndefined();
    expect(c.kafka).toBeUndefined();
    expect(c.redisUrl).toBeUndefined();
    expect(c.databaseUrl).toBeUndefined();
    expect(c.proxyPort).toBe(8080);
    expect(c.apiPort).toBe(8081);
    expect(c.decisionDeadlineMs).toBe(300);
    expect(c.edition).toBe('connect');
    expect(c.demo).toBe(true);
    expect(c.dataDir.endsWith('.vigil')).toBe(true);
    expect(c.proxyWorkerYoungMb).toBe(1);
  });

  it('parses lists and clamps the decision deadline', () => {
    const c = loadConfig({
      KAFKA_BROKERS: '127.0.0.1:9092, 127.0.0.1:9093',
      VIGIL_EGRESS_ALLOW: '127.0.0.1:4000,risk.example',
      VIGIL_DECISION_DEADLINE_MS: '999999',
    });
    expect(c.kafka?.brokers).toEqual(['127.0.0.1:9092', '127.0.0.1:9093']);
    expect(c.egressAllow).toEqual(['127.0.0.1:4000', 'risk.example']);
    expect(c.decisionDeadlineMs).toBe(30_000);
  });

  it('names the variable that is wrong', () => {
    expect(() => loadConfig({ VIGIL_EDITION: 'gold' })).toThrow(ConfigError);
    expect(() => loadConfig({ DATABASE_URL: 'mysql://x' })).toThrow(/DATABASE_URL/);
    expect(() => loadConfig({ PORT: 'eighty' })).toThrow(/PORT/);
    expect(() => loadConfig({ VIGIL_PROXY_WORKER_YOUNG_MB: '0' })).toThrow(
      /VIGIL_PROXY_WORKER_YOUNG_MB/,
    );
    expect(() => loadConfig({ VIGIL_PROXY_WORKER_YOUNG_MB: 'big' })).toThrow(
      /VIGIL_PROXY_WORKER_YOUNG_MB/,
    );
    expect(loadConfig({ VIGIL_PROXY_WORKER_YOUNG_MB: '8' }).proxyWorkerYoungMb).toBe(8);
  });

  it('refuses list entries of the wrong shape and short secrets, naming the entry', () => {
    expect(() => loadConfig({ KAFKA_BROKERS: 'nohostport' })).toThrow(
      /KAFKA_BROKERS: "nohostport" is not host:port/,
    );
    expect(() => loadConfig({ VIGIL_EGRESS_ALLOW: 'ok.example,http://[bad' })).toThrow(
      /VIGIL_EGRESS_ALLOW: "http:\/\/\[bad" is not a host/,
    );
    expect(() => loadConfig({ VIGIL_ADMIN_TOKEN: 'a' })).toThrow(/VIGIL_ADMIN_TOKEN/);
    expect(() => loadConfig({ VIGIL_SECRET_KEY: 'short' })).toThrow(/VIGIL_SECRET_KEY/);
    expect(loadConfig({ KAFKA_BROKERS: '[::1]:9092' }).kafka?.brokers).toEqual(['[::1]:9092']);
    // Container names (underscores), bare IPv6 and zone ids are hosts too.
    expect(loadConfig({ KAFKA_BROKERS: 'kafka_1:9092' }).kafka?.brokers).toEqual(['kafka_1:9092']);
    expect(
      loadConfig({ VIGIL_EGRESS_ALLOW: 'risk_api:8080,fd00::10,[fe80::1%eth0]:443' }).egressAllow,
    ).toHaveLength(3);
  });
});
