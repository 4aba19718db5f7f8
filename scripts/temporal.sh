#!/usr/bin/env bash
# The Temporal CLI dev server (`temporal server start-dev`), built from its Go module.
# v1.5.1 is the newest CLI that `go install` accepts as is (from 1.6.0 the module replaces
# ./cliext, which go install refuses). SQLite is pure Go, so CGO_ENABLED=0.
#   scripts/temporal.sh install       build the binary into $VIGIL_CACHE/temporal-<version>/ (skipped when present)
#   scripts/temporal.sh path          print the binary's path (installing it first)
#   scripts/temporal.sh start DIR     start on free loopback ports, SQLite in DIR/temporal; writes DIR/temporal.env
#   scripts/temporal.sh stop DIR
set -euo pipefail
VIGIL_SERVICE=temporal
source "$(dirname "$0")/lib.sh"
TEMPORAL_CLI_VERSION="${VIGIL_TEMPORAL_CLI_VERSION:-1.5.1}"
BIN_DIR="$VIGIL_CACHE/temporal-$TEMPORAL_CLI_VERSION"
BIN="$BIN_DIR/temporal"

install() {
  if [ -x "$BIN" ]; then log "temporal CLI $TEMPORAL_CLI_VERSION found at $BIN"; return; fi
  command -v go >/dev/null || die "go is not on PATH (needed to build the Temporal CLI)"
  log "building temporal CLI $TEMPORAL_CLI_VERSION with go install (a few minutes on 2 cores)"
  mkdir -p "$BIN_DIR"
  GOBIN="$BIN_DIR.tmp" CGO_ENABLED=0 GOFLAGS=-mod=mod \
    go install "github.com/temporalio/cli/cmd/temporal@v$TEMPORAL_CLI_VERSION" >"$VIGIL_CACHE/temporal-build.log" 2>&1 \
    || { tail -n 40 "$VIGIL_CACHE/temporal-build.log" >&2; die "go install of the Temporal CLI"; }
  mv "$BIN_DIR.tmp/temporal" "$BIN" && rmdir "$BIN_DIR.tmp"
  log "temporal CLI built: $("$BIN" --version)"
}

start() {
  local dir=$1; mkdir -p "$dir/temporal"
  install
  local port http metrics logf="$dir/temporal/temporal.log"
  port=$(free_port); http=$(free_port); metrics=$(free_port)
  log "starting dev server on 127.0.0.1:$port (db $dir/temporal/temporal.sqlite)"
  nohup "$BIN" server start-dev --headless --ip 127.0.0.1 --port "$port" --http-port "$http" \
    --metrics-port "$metrics" --namespace default --db-filename "$dir/temporal/temporal.sqlite" \
    --log-level warn >"$logf" 2>&1 &
  echo $! >"$dir/temporal/pid"
  wait_for "Temporal" 60 "$logf" "$BIN" operator namespace describe default --address "127.0.0.1:$port" \
    || die "Temporal did not start (log kept at $logf)"
  printf 'TEMPORAL_ADDRESS=127.0.0.1:%s\nTEMPORAL_NAMESPACE=default\nVIGIL_TEMPORAL_BIN=%s\n' "$port" "$BIN" >"$dir/temporal.env"
  log "Temporal answering on 127.0.0.1:$port"
}

stop() { stop_pidfile "$1/temporal/pid"; rm -f "$1/temporal.env"; log "stopped"; }

case "${1:-}" in
  install) install ;;
  path) install >&2; echo "$BIN" ;;
  start) start "${2:?DIR}" ;;
  stop) stop "${2:?DIR}" ;;
  *) echo "usage: $0 install|path|start DIR|stop DIR" >&2; exit 2 ;;
esac
