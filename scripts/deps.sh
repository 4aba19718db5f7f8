#!/usr/bin/env bash
# Source after node-env.sh: installs the locked npm dependencies when node_modules is missing or
# was installed from another package-lock.json (idempotent; a stamp records the lock's hash).
# Why `npm install` and not `npm ci`: the registry reachable here serves a snapshot in which some
# other platforms' optional binaries (e.g. @swc/core-darwin-arm64) stop at older versions, so npm
# leaves them out of the lock and `npm ci` refuses the lock as out of sync. `npm install` with the
# committed lock installs exactly the locked versions and leaves the lock as it is (checked below).
_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
_stamp="$_root/node_modules/.vigil-lock-hash"
_hash=$( (cat "$_root/package-lock.json"; node --version) | sha256sum | cut -d' ' -f1)
if [ ! -f "$_stamp" ] || [ "$(cat "$_stamp")" != "$_hash" ]; then
  _t0=$(date +%s)
  echo "[deps] npm install from package-lock.json (node $(node --version), npm $(npm --version 2>/dev/null))" >&2
  # Install scripts stay gated (npm 11 allowScripts): better-sqlite3 13 loads its bundled
  # prebuild and nothing else we use needs one.
  _before=$(sha256sum "$_root/package-lock.json" | cut -d' ' -f1)
  (cd "$_root" && npm install --no-audit --no-fund --loglevel=error) || { echo "[deps] npm install failed" >&2; return 1 2>/dev/null || exit 1; }
  if [ "$(sha256sum "$_root/package-lock.json" | cut -d' ' -f1)" != "$_before" ]; then
    echo "[deps] warning: npm rewrote package-lock.json; commit it if the change is intended" >&2
  fi
  echo "$_hash" >"$_stamp"
  echo "[deps] installed in $(( $(date +%s) - _t0 ))s" >&2
fi
unset _root _stamp _hash _t0 _before
