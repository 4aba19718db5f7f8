#!/usr/bin/env bash
# loadgen: the benchmarks' own open-loop HTTP/1.1 generator (bench/loadgen, Go, standard library
# only), about half of vegeta's CPU per request. Built into the cache, keyed by its source.
#   scripts/loadgen.sh install   build it into $VIGIL_CACHE/loadgen-<hash>/ (skipped when present)
#   scripts/loadgen.sh path      print the binary's path (building it first)
set -euo pipefail
VIGIL_SERVICE=loadgen
source "$(dirname "$0")/lib.sh"
SRC="$(cd "$(dirname "$0")/../bench/loadgen" && pwd)"
HASH="$(cat "$SRC/go.mod" "$SRC/main.go" | sha256sum | cut -c1-12)"
BIN_DIR="$VIGIL_CACHE/loadgen-$HASH"
BIN="$BIN_DIR/loadgen"

install() {
  if [ -x "$BIN" ]; then log "loadgen found at $BIN"; return; fi
  command -v go >/dev/null || die "go is not on PATH (needed to build loadgen)"
  mkdir -p "$BIN_DIR"
  (cd "$SRC" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -o "$BIN.tmp" .) || die "go build of bench/loadgen"
  mv "$BIN.tmp" "$BIN"
  log "loadgen built: $BIN"
}

case "${1:-}" in
  install) install ;;
  path) install >&2; echo "$BIN" ;;
  *) echo "usage: $0 install|path" >&2; exit 2 ;;
esac
