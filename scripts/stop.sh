#!/usr/bin/env bash
# Stops what scripts/run.sh started: the two services (SIGTERM, by PID) and
# the local PostgreSQL cluster. Data stays in .wakeline/ for the next run.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
STATE="$WAKE_ROOT/.wakeline"

stop_pid() {  # stop_pid NAME PIDFILE
  [ -f "$2" ] || return 0
  local pid i
  pid=$(cat "$2")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for i in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && { log "$1 did not stop in 30s; killing"; kill -KILL "$pid"; }
    log "stopped $1 (pid $pid)"
  fi
  rm -f "$2"
}

stop_pid runtime-service "$STATE/runtime.pid"
stop_pid registry-service "$STATE/registry.pid"
if [ -f "$STATE/pgdata.path" ]; then
  stop_cluster "$(cat "$STATE/pgdata.path")"
  log "stopped PostgreSQL"
fi
