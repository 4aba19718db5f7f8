// The embedded Temporal dev server of `vigil start` (no TEMPORAL_ADDRESS): the CLI binary
// built by scripts/temporal.sh, its SQLite file in the data dir so cases survive restarts.
// Its address goes to <dataDir>/temporal.address so `vigil worker`/`api` started alone find it.
import { spawn, type ChildProcess } from 'node:child_process';
import {
  existsSync,
  statSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
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
const CHRT = '/usr/bin/chrt';
const DEV_SERVER_NICENESS = 10;

/** `<dev server pid> <vigil start pid>`: who runs the data dir's dev server. */
const OWNER_FILE = 'temporal.pid';

function readOwner(file: string): { server: number; owner: number } | undefined {
  try {
    const [server, owner] = readFileSync(file, 'utf8').trim().split(/\s+/).map(Number);
    return server && owner ? { server, owner } : undefined;
  } catch {
    return undefined;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Whether a pid (reused since a reboot, say) is still a vigil process. */
function isVigil(pid: number): boolean {
  try {
    return /cli\/main\.ts|vigil/.test(readFileSync(`/proc/${pid}/cmdline`, 'utf8'));
  } catch {
    return false;
  }
}

/** Whether a pid (possibly reused since) is still a Temporal dev server before it is stopped. */
function isTemporal(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('start-dev');
  } catch {
    return false;
  }
}

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
  const ownerFile = path.join(opts.dataDir, OWNER_FILE);
  const owner = readOwner(ownerFile);
  if (owner && owner.owner !== process.pid && alive(owner.owner) && isVigil(owner.owner)) {
    // Two `vigil start`s on one data dir shared its dev server, and the first to stop took it
    // from the other (and each re-registered the demo's integrations as its own).
    throw Object.assign(
      new Error(
        `VIGIL_DATA_DIR ${opts.dataDir}: another vigil start (pid ${owner.owner}) runs on it; stop it or use another data dir`,
      ),
      { code: 'data_dir_in_use' },
    );
  }
  if (owner && alive(owner.server) && isTemporal(owner.server)) {
    // Left by a start that was killed (SIGKILL leaves no time to stop it): ours now, to stop.
    opts.log(`stopping the Temporal dev server (pid ${owner.server}) a killed vigil start left`);
    process.kill(owner.server, 'SIGTERM');
    for (let i = 0; i < 50 && alive(owner.server); i++) await sleep(100);
    if (alive(owner.server)) process.kill(owner.server, 'SIGKILL');
  } else if (!owner && existsSync(addrFile)) {
    // Started by something else than a `vigil start` of this version: reuse when it answers.
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
  const logFile = path.join(opts.dataDir, 'temporal.log');
  // Ports are asked of the kernel and then given to the server, which binds more than these:
  // another process (or the server's own internal services) can take one in between. A start
  // that failed on a taken port is tried again on fresh ones.
  for (let attempt = 1; ; attempt++) {
    const logFrom = existsSync(logFile) ? statSync(logFile).size : 0;
    try {
      return await launch(opts, logFile, addrFile);
    } catch (err) {
      const log = readFileSync(logFile, 'utf8').slice(logFrom);
      if (attempt >= 3 || !/address already in use/.test(log)) throw err;
      opts.log(`the Temporal dev server found a port taken; starting it again on others`);
    }
  }
}

async function launch(
  opts: { bin: string; dataDir: string; log: (msg: string) => void },
  logFile: string,
  addrFile: string,
): Promise<EmbeddedTemporal> {
  const [port, http, metrics] = [await freePort(), await freePort(), await freePort()];
  const address = `127.0.0.1:${port}`;
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
  // case may wait a few ms where an answer may not. SCHED_IDLE (util-linux `chrt`) where it
  // can, else nice 10; both exec the server (same pid).
  const child: ChildProcess = existsSync(CHRT)
    ? spawn(CHRT, ['--idle', '0', opts.bin, ...args], { stdio: ['ignore', out, out] })
    : existsSync(NICE)
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
  if (child.pid !== undefined) {
    writeFileSync(path.join(opts.dataDir, OWNER_FILE), `${child.pid} ${process.pid}\n`);
  }
  opts.log(
    `embedded Temporal dev server on ${address} (db ${path.join(opts.dataDir, 'temporal.sqlite')})`,
  );
  return {
    address,
    stop: async () => {
      rmSync(path.join(opts.dataDir, OWNER_FILE), { force: true });
      if (exited) return;
      child.kill('SIGTERM');
      for (let i = 0; i < 50 && !exited; i++) await sleep(100);
      if (!exited) child.kill('SIGKILL');
    },
  };
}
