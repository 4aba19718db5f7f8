#!/usr/bin/env bash
# Source after node-env.sh: runs `npm ci` when node_modules is missing or was installed from
# another package-lock.json (idempotent; a stamp in node_modules records the lock's hash).
_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
_stamp="$_root/node_modules/.vigil-lock-hash"
_hash=$( (cat "$_root/package-lock.json"; node --version) | sha256sum | cut -d' ' -f1)
if [ ! -f "$_stamp" ] || [ "$(cat "$_stamp")" != "$_hash" ]; then
  _t0=$(date +%s)
  echo "[deps] npm ci (node $(node --version), npm $(npm --version 2>/dev/null))" >&2
  # Install scripts stay gated (npm 11 allowScripts): better-sqlite3 13 loads its bundled
  # prebuild and nothing else we use needs one.
  (cd "$_root" && npm ci --no-audit --no-fund --loglevel=error) || { echo "[deps] npm ci failed" >&2; return 1 2>/dev/null || exit 1; }
  echo "$_hash" >"$_stamp"
  echo "[deps] installed in $(( $(date +%s) - _t0 ))s" >&2
fi
unset _root _stamp _hash _t0
