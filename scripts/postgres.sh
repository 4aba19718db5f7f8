#!/usr/bin/env bash
# PostgreSQL from Debian's postgresql package: a throwaway cluster (initdb) in DIR/postgres on a
# free loopback port, its socket in a directory we own. initdb refuses to run as root, so as
# root the cluster belongs to the `postgres` user the package creates.
#   scripts/postgres.sh install | start DIR | stop DIR   (start writes DIR/postgres.env)
set -euo pipefail
VIGIL_SERVICE=postgres
source "$(dirname "$0")/lib.sh"

pg_bin() {
  local d; d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$d" ] && [ -x "$d/postgres" ] && echo "$d"
}

install() {
  if pg_bin >/dev/null; then log "found PostgreSQL $("$(pg_bin)/postgres" --version | awk '{print $3}')"; return; fi
  apt_install postgresql
  pg_bin >/dev/null || die "postgresql installed but no server binaries under /usr/lib/postgresql"
  log "installed PostgreSQL $("$(pg_bin)/postgres" --version | awk '{print $3}')"
}

as_owner() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

start() {
  local dir=$1
  install
  local bin port data="$dir/postgres/data" sock="$dir/postgres/sock" logf="$dir/postgres/postgres.log"
  bin=$(pg_bin); port=$(free_port)
  mkdir -p "$dir/postgres" "$sock"
  if [ "$(id -u)" -eq 0 ]; then
    # The cluster's owner must be able to walk into DIR, which mkdtemp makes 0700 for root.
    chmod a+x "$dir"
    chown -R postgres "$dir/postgres"
  fi
  if [ ! -f "$data/PG_VERSION" ]; then
    as_owner "$bin/initdb" -D "$data" -U vigil --auth=trust -E UTF8 >"$dir/postgres/initdb.log" 2>&1 \
      || { cat "$dir/postgres/initdb.log" >&2; die "initdb"; }
  fi
  as_owner "$bin/pg_ctl" -D "$data" -l "$logf" -w -t 30 \
    -o "-p $port -k $sock -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null \
    || { tail -n 40 "$logf" >&2; die "pg_ctl start"; }
  wait_for "PostgreSQL" 20 "$logf" "$bin/pg_isready" -h 127.0.0.1 -p "$port" || die "PostgreSQL did not answer"
  as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U vigil vigil 2>/dev/null || true
  echo "DATABASE_URL=postgres://vigil@127.0.0.1:$port/vigil" >"$dir/postgres.env"
  echo "$port" >"$dir/postgres/port"
  log "PostgreSQL answering on 127.0.0.1:$port"
}

stop() {
  local dir=$1 bin; bin=$(pg_bin || true)
  if [ -n "$bin" ] && [ -f "$dir/postgres/data/postmaster.pid" ]; then
    as_owner "$bin/pg_ctl" -D "$dir/postgres/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  rm -f "$dir/postgres.env"; log "stopped"
}

case "${1:-}" in
  install) install ;;
  start) start "${2:?DIR}" ;;
  stop) stop "${2:?DIR}" ;;
  *) echo "usage: $0 install|start DIR|stop DIR" >&2; exit 2 ;;
esac
