#!/usr/bin/env bash
# All the real services the tests need, started together on free loopback ports.
#   scripts/services.sh install            install or build what is missing (idempotent, cached)
#   scripts/services.sh up DIR [svc...]    start them (default: temporal kafka redis postgres);
#                                          DIR/services.env collects their addresses
#   scripts/services.sh down DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ALL=(temporal kafka redis postgres)

case "${1:-}" in
  install)
    # The Go build is the slow one; the others run beside it.
    "$here/temporal.sh" install & t=$!
    "$here/redis.sh" install; "$here/postgres.sh" install; "$here/kafka.sh" install
    # nginx: the proxy's auth_request end-to-end test runs a real one (Debian package).
    (VIGIL_SERVICE=nginx; source "$here/lib.sh"; command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || apt_install nginx; log "nginx ready")
    # wrk: the proxy benchmark's throughput generator (a C load generator keeps the 2 cores for
    # the proxies being measured); the bench falls back to undici without it.
    (VIGIL_SERVICE=wrk; source "$here/lib.sh"; command -v wrk >/dev/null || apt_install wrk; log "wrk ready") \
      || echo "[wrk] not installed (optional: the proxy bench falls back to undici)" >&2
    # vegeta: the proxy benchmark's fixed-rate generator for latency at half load (optional).
    "$here/vegeta.sh" install || echo "[vegeta] not built (optional: the proxy bench falls back to undici)" >&2
    # loadgen: the benchmarks' own lighter fixed-rate generator (optional: vegeta otherwise).
    "$here/loadgen.sh" install || echo "[loadgen] not built (optional: the benches use vegeta)" >&2
    wait "$t"
    ;;
  up)
    dir=${2:?DIR}; shift 2; svcs=("${@:-${ALL[@]}}"); [ $# -eq 0 ] && svcs=("${ALL[@]}")
    mkdir -p "$dir"; pids=()
    # A second `up` of a DIR whose services still run would start new ones over their pid files
    # and leave the old ones running (and a second broker on the same Kafka storage fails).
    for s in "${svcs[@]}"; do
      if [ -f "$dir/$s/pid" ] && kill -0 "$(cat "$dir/$s/pid")" 2>/dev/null; then
        echo "[$s] already running in $dir (pid $(cat "$dir/$s/pid")): run '$0 down $dir' first" >&2
        exit 1
      fi
    done
    for s in "${svcs[@]}"; do "$here/$s.sh" start "$dir" & pids+=($!); done
    rc=0; for p in "${pids[@]}"; do wait "$p" || rc=1; done
    # Each service's own env file; a services.env from an earlier `up` of DIR is not one of them.
    for f in "$dir"/*.env; do [ "$f" = "$dir/services.env" ] || cat "$f"; done >"$dir/services.env.tmp" 2>/dev/null || true
    grep -v '^$' "$dir/services.env.tmp" >"$dir/services.env" || true; rm -f "$dir/services.env.tmp"
    [ $rc -eq 0 ] || { "$0" down "$dir"; exit 1; }
    ;;
  down)
    dir=${2:?DIR}
    for s in "${ALL[@]}"; do "$here/$s.sh" stop "$dir" 2>/dev/null || true; done
    ;;
  *) echo "usage: $0 install|up DIR [svc...]|down DIR" >&2; exit 2 ;;
esac
