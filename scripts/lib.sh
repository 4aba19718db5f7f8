#!/usr/bin/env bash
# Shared helpers for the service scripts: logging with elapsed time, free loopback ports,
# readiness waits that keep the service's log when something fails.
VIGIL_CACHE="${VIGIL_CACHE:-$HOME/.cache/vigil}"
mkdir -p "$VIGIL_CACHE"

_vigil_t0=$(date +%s%3N)
log() {
  local ms=$(( $(date +%s%3N) - _vigil_t0 ))
  printf '[%s %d.%01ds] %s\n' "${VIGIL_SERVICE:-vigil}" $((ms / 1000)) $(((ms % 1000) / 100)) "$*" >&2
}
die() { log "FAILED: $*"; exit 1; }

# A free TCP port on 127.0.0.1, asked from the kernel (bind to port 0).
free_port() {
  python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1]);s.close()'
}

# wait_for "description" timeout_seconds logfile command...: polls the command until it succeeds.
wait_for() {
  local what=$1 timeout=$2 logfile=$3; shift 3
  local deadline=$(( $(date +%s) + timeout ))
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "$what did not answer within ${timeout}s; last lines of $logfile:"
      tail -n 40 "$logfile" >&2 2>/dev/null || true
      return 1
    fi
    sleep 0.2
  done
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# apt_install pkg...: installs Debian packages only when a binary is missing (idempotent).
apt_install() {
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  # apt's package lists may be absent on a fresh machine: update once, then install.
  $sudo apt-get update -qq >/dev/null || die "apt-get update"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]}"
}

# stop_pidfile file: stops the process whose pid the file holds, then removes the file.
stop_pidfile() {
  local f=$1 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}
