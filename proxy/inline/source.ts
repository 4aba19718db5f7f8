// Where the live config comes from and how it changes: a file watched for edits (and SIGHUP),
// or a document handed in. A bad new file never replaces a good config: it is logged, counted
// and the old one keeps serving.
import { watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import {
  compileRoutesDocument,
  compileRoutesText,
  hashOf,
  readRoutesFile,
  RoutesConfigError,
  loadRoutesFileSync,
  type CompiledConfig,
  type ConfigIssue,
  type Limits,
} from './config.ts';
import type { ProxyLogger } from './types.ts';

export type ReloadResult =
  | { ok: true; version: number; hash: string; changed: boolean }
  | { ok: false; version: number; hash: string; error: string; issues: ConfigIssue[] };

export interface ConfigSource {
  current(): CompiledConfig;
  /** Re-reads the file, or compiles `doc` when given; the old config stays on failure. */
  reload(doc?: unknown): Promise<ReloadResult>;
  /** Called after each successful change, with the config it replaced. */
  onChange(fn: (next: CompiledConfig, prev: CompiledConfig) => void): void;
  close(): void;
}

export interface ConfigSourceOptions {
  /** A route file path, a document, or an already compiled config. */
  config: string | object | CompiledConfig;
  limitDefaults?: Partial<Limits> | undefined;
  /** Watch the file for changes (default true for a file). */
  watch?: boolean | undefined;
  /** Reload on SIGHUP (default true for a file). */
  sighup?: boolean | undefined;
  /** Editors write in several steps; one reload after the last (default 150 ms). */
  debounceMs?: number | undefined;
  log: ProxyLogger;
  onResult?: ((r: ReloadResult) => void) | undefined;
}

/** The link a Kubernetes ConfigMap volume swaps to update every file in it at once. */
const CONFIGMAP_DATA = '..data';

function isCompiled(c: object): c is CompiledConfig {
  return typeof (c as CompiledConfig).match === 'function';
}

export function openConfigSource(opts: ConfigSourceOptions): ConfigSource {
  const file = typeof opts.config === 'string' ? path.resolve(opts.config) : undefined;
  let current: CompiledConfig =
    file !== undefined
      ? loadRoutesFileSync(file, 1, opts.limitDefaults)
      : isCompiled(opts.config as object)
        ? (opts.config as CompiledConfig)
        : compileRoutesDocument(opts.config, 1, opts.limitDefaults);
  const listeners: ((next: CompiledConfig, prev: CompiledConfig) => void)[] = [];
  // Reloads run one after the other: two quick edits must not race to install the older one.
  let chain: Promise<unknown> = Promise.resolve();

  const attempt = async (doc?: unknown): Promise<ReloadResult> => {
    const prev = current;
    try {
      let next: CompiledConfig;
      if (doc !== undefined) {
        if (hashOf(JSON.stringify(doc)) === prev.hash) {
          return { ok: true, version: prev.version, hash: prev.hash, changed: false };
        }
        next = compileRoutesDocument(doc, prev.version + 1, opts.limitDefaults);
      } else if (file !== undefined) {
        const text = await readRoutesFile(file);
        if (hashOf(text) === prev.hash) {
          return { ok: true, version: prev.version, hash: prev.hash, changed: false };
        }
        next = compileRoutesText(text, file, prev.version + 1, opts.limitDefaults);
      } else {
        return { ok: true, version: prev.version, hash: prev.hash, changed: false };
      }
      current = next;
      for (const fn of listeners) fn(next, prev);
      opts.log.info(
        { version: next.version, hash: next.hash, source: next.source },
        'proxy config reloaded',
      );
      return { ok: true, version: next.version, hash: next.hash, changed: true };
    } catch (err) {
      const issues = err instanceof RoutesConfigError ? err.issues : [];
      const error = err instanceof Error ? err.message : String(err);
      opts.log.warn(
        { error, version: prev.version, source: file ?? 'inline config' },
        'proxy config reload refused; the previous config stays',
      );
      return { ok: false, version: prev.version, hash: prev.hash, error, issues };
    }
  };

  const reload = (doc?: unknown): Promise<ReloadResult> => {
    const run = chain.then(() => attempt(doc));
    chain = run.catch(() => undefined);
    return run.then((r) => {
      opts.onResult?.(r);
      return r;
    });
  };

  let watcher: FSWatcher | undefined;
  let timer: NodeJS.Timeout | undefined;
  const onSighup = () => void reload();
  if (file !== undefined) {
    if (opts.watch !== false) {
      // The folder, not the file: editors and Kubernetes ConfigMaps replace the file (a new
      // inode) and a watch on the old one would go quiet. Unchanged content is a no-op.
      const debounce = opts.debounceMs ?? 150;
      const base = path.basename(file);
      try {
        watcher = watch(path.dirname(file), { persistent: false }, (_event, name) => {
          // The folder may hold files that change all the time (a data folder, logs): each
          // would otherwise re-read the route file, and re-log and re-count a bad one. A
          // ConfigMap swaps its `..data` link, not the file's own name; no name: cannot tell.
          if (name !== null && name !== base && name !== CONFIGMAP_DATA) return;
          clearTimeout(timer);
          timer = setTimeout(() => void reload(), debounce);
          timer.unref();
        });
        watcher.on('error', (err) =>
          opts.log.warn(
            { error: err.message, file },
            'proxy config watch failed; SIGHUP still reloads',
          ),
        );
      } catch (err) {
        opts.log.warn({ error: (err as Error).message, file }, 'cannot watch the proxy config');
      }
    }
    if (opts.sighup !== false) process.on('SIGHUP', onSighup);
  }

  return {
    current: () => current,
    reload,
    onChange: (fn) => void listeners.push(fn),
    close() {
      clearTimeout(timer);
      watcher?.close();
      process.off('SIGHUP', onSighup);
    },
  };
}
