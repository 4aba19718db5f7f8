// The embedded Temporal dev server of `vigil start` (no TEMPORAL_ADDRESS): the CLI binary
// built by scripts/temporal.sh, its SQLite file in the data dir so cases survive restarts.
// Its address goes to <dataDir>/temporal.address so `vigil worker`/`api` started alone find it.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Connection } from '@temporalio/client';

export interface EmbeddedTemporal {
  address: string;
  stop(): Promise<void>;
}

const START_TIMEOUT_MS = 60_000;
const NICE = '/usr/bin/nice';
const DEV_SERVER_NICENESS = 10;

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

async function answers(address: string): Promise<boolean> {
  try {
    const c = await Connection.connect({ address, connectTimeout: 1_000 });
    try {
      await c.workflowService.describeNamespace({ namespace: 'default' });
      return true;
    } finally {
      await c.close();
    }
  } catch {
    return false;
  }
}

export async function startEmbeddedTemporal(opts: {
  bin: string;
  dataDir: string;
  log: (msg: string) => void;
}): Promise<EmbeddedTemporal> {
  const addrFile = path.join(opts.dataDir, 'temporal.address');
  // Another vigil process (or an earlier start) may already run it: reuse when it answers.
  if (existsSync(addrFile)) {
    const address = readFileSync(addrFile, 'utf8').trim();
    if (address && (await answers(address))) {
      opts.log(`reusing the embedded Temporal dev server at ${address}`);
      return { address, stop: async () => {} };
    }
  }
  if (!existsSync(opts.bin)) {
    throw Object.assign(
      new Error(
        `the Temporal CLI is not built at ${opts.bin}: run scripts/temporal.sh install (scripts/start.sh does)`,
      ),
      { code: 'temporal_missing' },
    );
  }
  mkdirSync(opts.dataDir, { recursive: true });
  const [port, http, metrics] = [await freePort(), await freePort(), await freePort()];
  const address = `127.0.0.1:${port}`;
  const logFile = path.join(opts.dataDir, 'temporal.log');
  const out = openSync(logFile, 'a');
  const args = [
    'server',
    'start-dev',
    '--headless',
    '--ip',
    '127.0.0.1',
    '--port',
    String(port),
    '--http-port',
    String(http),
    '--metrics-port',
    String(metrics),
    '--namespace',
    'default',
    '--db-filename',
    path.join(opts.dataDir, 'temporal.sqlite'),
    '--log-level',
    'warn',
  ];
  // At a lower CPU priority than the process answering decisions: on a small machine the dev
  // server's bursts (ten cases a second) otherwise land in the decisions' tail latency, and a
  // case may wait a few ms where an answer may not. `nice` execs the server (same pid).
  const child: ChildProcess = existsSync(NICE)
    ? spawn(NICE, ['-n', String(DEV_SERVER_NICENESS), opts.bin, ...args], {
        stdio: ['ignore', out, out],
      })
    : spawn(opts.bin, args, { stdio: ['ignore', out, out] });
  let exited = false;
  child.once('exit', () => (exited = true));
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (!(await answers(address))) {
    if (exited) throw new Error(`the Temporal dev server exited at start; see ${logFile}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(
        `the Temporal dev server did not answer within ${START_TIMEOUT_MS} ms; see ${logFile}`,
      );
    }
    await sleep(200);
  }
  writeFileSync(addrFile, `${address}\n`);
  opts.log(
    `embedded Temporal dev server on ${address} (db ${path.join(opts.dataDir, 'temporal.sqlite')})`,
  );
  return {
    address,
    stop: async () => {
      if (exited) return;
      child.kill('SIGTERM');
      for (let i = 0; i < 50 && !exited; i++) await sleep(100);
      if (!exited) child.kill('SIGKILL');
    },
  };
}
