#!/usr/bin/env bash
# Redis from Debian's redis-server package, on a free loopback port, no persistence.
#   scripts/redis.sh install | start DIR | stop DIR   (start writes DIR/redis.env)
set -euo pipefail
VIGIL_SERVICE=redis
source "$(dirname "$0")/lib.sh"

install() {
  if command -v redis-server >/dev/null; then log "found $(redis-server --version | cut -d' ' -f1-3)"; return; fi
  apt_install redis-server
  log "installed $(redis-server --version | cut -d' ' -f1-3)"
}

start() {
  local dir=$1; mkdir -p "$dir/redis"
  install
  local port logf="$dir/redis/redis.log"; port=$(free_port)
  redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --daemonize yes \
    --pidfile "$dir/redis/pid" --logfile "$logf" --dir "$dir/redis" || die "redis-server"
  wait_for "Redis" 20 "$logf" bash -c "redis-cli -p $port ping | grep -q PONG" || die "Redis did not start"
  echo "REDIS_URL=redis://127.0.0.1:$port" >"$dir/redis.env"
  log "Redis answering on 127.0.0.1:$port"
}

stop() { stop_pidfile "$1/redis/pid"; rm -f "$1/redis.env"; log "stopped"; }

case "${1:-}" in
  install) install ;;
  start) start "${2:?DIR}" ;;
  stop) stop "${2:?DIR}" ;;
  *) echo "usage: $0 install|start DIR|stop DIR" >&2; exit 2 ;;
esac
