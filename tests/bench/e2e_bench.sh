#!/usr/bin/env bash
# End-to-end benchmark, run by hand: a throwaway cluster, an optimised
# registry-service and runtime-service, and tests/bench:e2e_latency measuring
# EvaluateRunFinished-returned -> runner-received latency (p50/p99) at paced
# rates, then the maximum sustained wakes/s with evaluations always in flight:
# first with every wake on its own parent stream (the worst case: one claim
# and one ack per wake), then with 20 children per parent, then that again
# with evaluations that skip the read barrier (consistency LOCAL).
#   bash tests/bench/e2e_bench.sh [seconds-per-row] [extra e2e_latency flags...]
# Targets (2 cores): p99 <= 5 ms at 1,000 wakes/s; sustained >= 2,000 wakes/s.
# A last section runs the runtime alone against an in-memory registry
# (tests/bench:runtime_latency), which shows what the runtime itself costs.
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib.sh"
cd "$WAKE_ROOT"
SECONDS_PER_ROW=${1:-10}
shift || true

install_debian_packages
bazel_cmd build -c opt //registry-service //runtime-service //tests/bench:e2e_latency \
  //tests/bench:runtime_latency >&2
BIN="$WAKE_ROOT/bazel-bin"

WORK=$(mktemp -d /tmp/wakeline-e2e-bench.XXXXXX)
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  done
  stop_cluster "$WORK/pg"
  rm -rf "$WORK"
}
trap cleanup EXIT
[ "$(id -u)" = 0 ] && chmod 755 "$WORK"
init_cluster "$WORK/pg"
PG_PORT=$(free_port 57532)
start_cluster "$WORK/pg" "$PG_PORT"
"$(pg_bin_dir)/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -qAt -d postgres \
  -c "CREATE DATABASE bench"
DB="postgresql://postgres@127.0.0.1:$PG_PORT/bench"

# start NAME LOGFILE COMMAND...: runs it in the background, waits for "event=serving".
start() {
  local name=$1 logfile=$2
  shift 2
  "$@" >"$logfile" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 300); do
    grep -q "event=serving" "$logfile" 2>/dev/null && return 0
    sleep 0.2
  done
  cat "$logfile" >&2
  die "$name did not start"
}

REGISTRY_PORT=$(free_port 58151)
start registry "$WORK/registry.log" "$BIN/registry-service/registry-service" \
  --listen="127.0.0.1:$REGISTRY_PORT" --database-url="$DB" --plaintext --no-auth
RUNTIME_PORT=$(free_port $((REGISTRY_PORT + 1)))
start runtime "$WORK/runtime.log" "$BIN/runtime-service/runtime-service" \
  --listen="127.0.0.1:$RUNTIME_PORT" --registry="127.0.0.1:$REGISTRY_PORT" \
  --plaintext --no-auth --registry-plaintext

# CPU ticks (user+system) of a process, 0 once it is gone.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# PostgreSQL: the postmaster and every child (backends, walsender, ...).
pg_pids() {
  local postmaster
  postmaster=$(head -n 1 "$WORK/pg/postmaster.pid")
  echo "$postmaster" $(pgrep -P "$postmaster")
}
secs() { awk -v t="$1" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", t / hz }'; }
# cpu_mark: remembers the CPU ticks of the registry, the runtime and Postgres.
declare -A PG_MARK
cpu_mark() {
  local pid
  PG_MARK=()
  for pid in $(pg_pids); do PG_MARK[$pid]=$(ticks "$pid"); done
  REGISTRY_MARK=$(ticks "${PIDS[0]}")
  RUNTIME_MARK=$(ticks "${PIDS[1]}")
}
# cpu_since_mark: CPU seconds each used since cpu_mark.
cpu_since_mark() {
  local pid pg=0
  for pid in $(pg_pids); do pg=$((pg + $(ticks "$pid") - ${PG_MARK[$pid]:-0})); done
  echo "cpu seconds of this section: registry $(secs $(($(ticks "${PIDS[0]}") - REGISTRY_MARK)))" \
    "runtime $(secs $(($(ticks "${PIDS[1]}") - RUNTIME_MARK))) postgres $(secs "$pg")"
}

# section TITLE [e2e_latency flags...]: one e2e_latency run, with the load
# average around it and the CPU seconds it cost each service.
status=0
section() {
  echo "== $1"
  shift
  echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  cpu_mark
  "$BIN/tests/bench/e2e_latency" --registry="127.0.0.1:$REGISTRY_PORT" \
    --runtime="127.0.0.1:$RUNTIME_PORT" --seconds="$SECONDS_PER_ROW" "$@" || status=$?
  echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
  cpu_since_mark
}
section "end-to-end latency (EvaluateRunFinished returned -> runner received), $(nproc) cores" "$@"
section "the same with 20 children per parent (a claim batches the siblings that finished meanwhile)" \
  --siblings=20 --prefix=siblings "$@"
section "20 children per parent, evaluations with consistency LOCAL (no read barrier)" \
  --siblings=20 --prefix=siblings-local "$@" --consistency=local

echo "== the runtime alone (in-memory registry, no database)"
FAKE_PORT=$(free_port $((RUNTIME_PORT + 1)))
ALONE_PORT=$(free_port $((FAKE_PORT + 1)))
"$BIN/runtime-service/runtime-service" --listen="127.0.0.1:$ALONE_PORT" \
  --registry="127.0.0.1:$FAKE_PORT" --retry-initial=20ms \
  --plaintext --no-auth --registry-plaintext >"$WORK/runtime-alone.log" 2>&1 &
PIDS+=($!)
ALONE_BEFORE=$(ticks "${PIDS[2]}")
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$BIN/tests/bench/runtime_latency" --listen="127.0.0.1:$FAKE_PORT" \
  --runtime="127.0.0.1:$ALONE_PORT" --seconds="$SECONDS_PER_ROW" || status=$?
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "cpu seconds of the runtime: $(secs $(($(ticks "${PIDS[2]}") - ALONE_BEFORE)))"
exit "$status"
