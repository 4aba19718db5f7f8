import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import pg from 'pg';
import { describe, expect, inject, it } from 'vitest';

const services = inject('services');

describe('Redis (real)', () => {
  it('round-trips a sorted set and evaluates Lua with the server clock', async () => {
    const redis = new Redis(services.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 0 });
    await redis.connect();
    const key = `svc:${randomUUID()}`;
    await redis.zadd(key, '1', 'a', '2', 'b');
    expect(await redis.zrange(key, '0', '-1')).toEqual(['a', 'b']);
    const [secs] = (await redis.eval("return redis.call('TIME')", 0)) as [string, string];
    expect(Math.abs(Number(secs) - Date.now() / 1000)).toBeLessThan(5);
    await redis.del(key);
    redis.disconnect();
  });
});

describe('PostgreSQL (real)', () => {
  it('round-trips rows in a transaction and reports its version', async () => {
    const client = new pg.Client({ connectionString: services.databaseUrl });
    await client.connect();
    const table = `svc_${randomUUID().replaceAll('-', '')}`;
    await client.query('BEGIN');
    await client.query(`CREATE TABLE ${table} (id int primary key, doc jsonb)`);
    await client.query(`INSERT INTO ${table} VALUES (1, $1)`, [{ a: [1, 2] }]);
    await client.query('COMMIT');
    const { rows } = await client.query<{ doc: unknown }>(`SELECT doc FROM ${table} WHERE id = 1`);
    expect(rows[0]?.doc).toEqual({ a: [1, 2] });
    const v = await client.query<{ server_version: string }>('SHOW server_version');
    expect(Number.parseInt(v.rows[0]!.server_version, 10)).toBeGreaterThanOrEqual(13);
    await client.query(`DROP TABLE ${table}`);
    await client.end();
  });
});
