// A Redis or PostgreSQL of the test's own, to kill and restart on the same port (the shared
// development services must stay up for everyone else).
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, '../../..');

function envValue(file: string, name: string): string {
  const line = readFileSync(file, 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${name}=`));
  if (!line) throw new Error(`${name} missing in ${file}`);
  return line.slice(name.length + 1).trim();
}

export class OwnRedis {
  readonly dir: string;
  url = '';
  port = 0;

  constructor() {
    this.dir = mkdtempSync(path.join(tmpdir(), 'vigil-redis-'));
  }

  async start(): Promise<void> {
    await run('bash', [path.join(root, 'scripts/redis.sh'), 'start', this.dir]);
    this.url = envValue(path.join(this.dir, 'redis.env'), 'REDIS_URL');
    this.port = Number(new URL(this.url).port);
  }

  pid(): number {
    return Number(readFileSync(path.join(this.dir, 'redis/pid'), 'utf8').trim());
  }

  signal(sig: NodeJS.Signals): void {
    process.kill(this.pid(), sig);
  }

  /** Same port, same options as scripts/redis.sh (empty: no persistence). */
  async restart(): Promise<void> {
    const d = path.join(this.dir, 'redis');
    rmSync(path.join(d, 'pid'), { force: true });
    await run('redis-server', [
      '--bind',
      '127.0.0.1',
      '--port',
      String(this.port),
      '--save',
      '',
      '--appendonly',
      'no',
      '--daemonize',
      'yes',
      '--pidfile',
      path.join(d, 'pid'),
      '--logfile',
      path.join(d, 'redis.log'),
      '--dir',
      d,
    ]);
    for (let i = 0; i < 100; i++) {
      try {
        const { stdout } = await run('redis-cli', ['-p', String(this.port), 'ping']);
        if (stdout.includes('PONG')) return;
      } catch {
        // not up yet
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error('redis did not restart');
  }

  async stop(): Promise<void> {
    try {
      this.signal('SIGCONT');
    } catch {
      // already gone
    }
    await run('bash', [path.join(root, 'scripts/redis.sh'), 'stop', this.dir]).catch(() => {});
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function pgBin(): string {
  const base = '/usr/lib/postgresql';
  const v = readdirSync(base)
    .sort((a, b) => Number(a) - Number(b))
    .pop();
  if (!v) throw new Error('no PostgreSQL server binaries');
  return path.join(base, v, 'bin');
}

/** As the cluster's owner: scripts/postgres.sh makes the cluster belong to `postgres` as root. */
function asOwner(cmd: string, args: string[]) {
  return process.getuid?.() === 0
    ? run('runuser', ['-u', 'postgres', '--', cmd, ...args])
    : run(cmd, args);
}

export class OwnPostgres {
  readonly dir: string;
  url = '';
  port = 0;

  constructor() {
    this.dir = mkdtempSync(path.join(tmpdir(), 'vigil-pg-'));
  }

  async start(): Promise<void> {
    await run('bash', [path.join(root, 'scripts/postgres.sh'), 'start', this.dir]);
    this.url = envValue(path.join(this.dir, 'postgres.env'), 'DATABASE_URL');
    this.port = Number(new URL(this.url).port);
  }

  /** A crash: no shutdown checkpoint, every connection cut. */
  async kill(): Promise<void> {
    await asOwner(path.join(pgBin(), 'pg_ctl'), [
      '-D',
      path.join(this.dir, 'postgres/data'),
      '-m',
      'immediate',
      '-w',
      'stop',
    ]);
  }

  async restart(): Promise<void> {
    const d = path.join(this.dir, 'postgres');
    await asOwner(path.join(pgBin(), 'pg_ctl'), [
      '-D',
      path.join(d, 'data'),
      '-l',
      path.join(d, 'postgres.log'),
      '-w',
      '-t',
      '30',
      '-o',
      `-p ${this.port} -k ${path.join(d, 'sock')} -c listen_addresses=127.0.0.1 -c fsync=off`,
      'start',
    ]);
  }

  async stop(): Promise<void> {
    await run('bash', [path.join(root, 'scripts/postgres.sh'), 'stop', this.dir]).catch(() => {});
    rmSync(this.dir, { recursive: true, force: true });
  }
}
