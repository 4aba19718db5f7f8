#!/usr/bin/env bash
# vegeta: a constant-rate HTTP load generator (Go), the proxy benchmark's fixed-rate generator
# for latency at half load. Built from its Go module into the cache, like the Temporal CLI.
#   scripts/vegeta.sh install   build it into $VIGIL_CACHE/vegeta-<version>/ (skipped when present)
#   scripts/vegeta.sh path      print the binary's path (installing it first)
set -euo pipefail
VIGIL_SERVICE=vegeta
source "$(dirname "$0")/lib.sh"
VEGETA_VERSION="${VIGIL_VEGETA_VERSION:-12.12.0}"
BIN_DIR="$VIGIL_CACHE/vegeta-$VEGETA_VERSION"
BIN="$BIN_DIR/vegeta"

install() {
  if [ -x "$BIN" ]; then log "vegeta $VEGETA_VERSION found at $BIN"; return; fi
  command -v go >/dev/null || die "go is not on PATH (needed to build vegeta)"
  log "building vegeta $VEGETA_VERSION with go install"
  mkdir -p "$BIN_DIR"
  GOBIN="$BIN_DIR.tmp" CGO_ENABLED=0 GOFLAGS=-mod=mod \
    go install "github.com/tsenart/vegeta/v12@v$VEGETA_VERSION" >"$VIGIL_CACHE/vegeta-build.log" 2>&1 \
    || { tail -n 40 "$VIGIL_CACHE/vegeta-build.log" >&2; die "go install of vegeta"; }
  mv "$BIN_DIR.tmp/vegeta" "$BIN" && rmdir "$BIN_DIR.tmp"
  log "vegeta built: $BIN"
}

case "${1:-}" in
  install) install ;;
  path) install >&2; echo "$BIN" ;;
  *) echo "usage: $0 install|path" >&2; exit 2 ;;
esac
