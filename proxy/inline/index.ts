// The inline proxy's public surface for the composition root (cli/, proxy/server.ts).
export {
  createInlineProxy,
  shutdownGraceMs,
  type InlineProxy,
  type InlineProxyOptions,
} from './server.ts';
export {
  WORKER_NODE_FLAGS,
  runCluster,
  workerCount,
  type ClusterHandle,
  type ClusterOptions,
} from './cluster.ts';
export {
  DEFAULT_LIMITS,
  RoutesConfigError,
  compileRoutesDocument,
  loadRoutesFileSync,
  parseRoutesText,
  type CompiledConfig,
  type Limits,
  type RoutesFileInput,
} from './config.ts';
export { openConfigSource, type ConfigSource, type ReloadResult } from './source.ts';
export { parseTrustedProxies, clientAddress, type TrustedProxies } from './client-ip.ts';
export { proxyMetrics, type ProxyMetrics } from './metrics.ts';
export type {
  DecideFn,
  DecideInput,
  ProxyDecision,
  ProxyLogger,
  RequestEvent,
  OnRequestEvent,
} from './types.ts';
export { stderrLogger } from './types.ts';
