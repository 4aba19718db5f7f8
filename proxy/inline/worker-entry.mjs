// The script a forked proxy worker runs (runCluster's `exec`). Plain JavaScript, so that loading
// it needs no type stripping: with every TypeScript module it imports already in Node's compile
// cache (the primary filled it and flushed it before forking), the worker never loads the
// type stripper at all, which alone is some 17 MB of resident memory per worker.
import module from 'node:module';

module.enableCompileCache?.();
const { loadConfig } = await import('../../config/config.ts');
const { runProxyWorkerProcess } = await import('./worker.ts');
await runProxyWorkerProcess(loadConfig());
