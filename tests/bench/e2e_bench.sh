#!/usr/bin/env bash
# End-to-end benchmark, run by hand: a throwaway cluster, an optimised
# registry-service and runtime-service, tests/bench:e2e_latency measuring
# EvaluateRunFinished-returned -> runner-received latency, and pgbench
# running the durable minimum of a wake, all on this machine in this run.
#
#   bash tests/bench/e2e_bench.sh [--seconds N] [--rounds N] [--local] [--perf DIR]
#                                 [-- extra e2e_latency flags...]
#   (a bare number as the first argument is --seconds, as before)
#
# Each round runs three sections back to back, the durable minimum first in
# odd rounds and last in even ones (what drifts during a round then favours
# neither side across rounds):
#   * DM, the durable minimum: pgbench, 32 clients, prepared, each wake two
#     autocommit transactions: the store's persist statement (the wake and
#     its event key, as EvaluateRunFinished writes it) and the ack's delete.
#   * one wake per stream (every claim and ack carries one wake): paced at
#     DM/5 wakes/s (the latest DM measured), then saturation (32
#     evaluations always in flight).
#   * 20 siblings per parent (a claim batches the siblings that finished
#     meanwhile): the same two rows.
# Every pipeline row prints the CPU microseconds per delivered wake of the
# registry, the runtime, PostgreSQL (all its processes) and the client (the
# load generator and its runners). The summary gives, per round and as the
# median of the rounds, each saturation row as a ratio to the round's DM and
# the paced rows' p50/p99, against the targets of issue 18 (2 cores,
# everything on them): one wake per stream >= 0.6x DM, siblings >= 1.0x DM,
# p99 <= 5 ms and p50 <= 2 ms at DM/5 in both shapes.
# --local adds a row of siblings with consistency LOCAL (no read barrier).
# --perf DIR records `perf record -a -g` of every saturation row into DIR.
# Last, the runtime alone against an in-memory registry
# (tests/bench:runtime_latency) shows what the runtime itself costs.
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib.sh"
cd "$WAKE_ROOT"

SECONDS_PER_ROW=10
ROUNDS=3
LOCAL=0
PERF_DIR=""
EXTRA=()
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then
  SECONDS_PER_ROW=$1
  shift
fi
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECONDS_PER_ROW=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --local) LOCAL=1 ;;
    --perf) PERF_DIR=$2; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    -h | --help) sed -n '2,31p' "$0"; exit 0 ;;
    *) EXTRA+=("$1") ;;
  esac
  shift
done
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "--rounds: a positive whole number, not '$ROUNDS'"
DM_CLIENTS=32

install_debian_packages
bazel_cmd build -c opt //registry-service //runtime-service //tests/bench:e2e_latency \
  //tests/bench:runtime_latency >&2
BIN="$WAKE_ROOT/bazel-bin"
PG_BIN=$(pg_bin_dir)

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
psql_db() { "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -qAtX -v ON_ERROR_STOP=1 "$@"; }
psql_db -d postgres -c "CREATE DATABASE bench" -c "CREATE DATABASE dm"
DB="postgresql://postgres@127.0.0.1:$PG_PORT/bench"
# The durable minimum runs in its own database, so the services' sync
# stream never sees its rows; the same migrations make the same tables.
for migration in registry-service/migrations/*.sql; do psql_db -d dm -f "$migration" >/dev/null; done

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
RUNTIME_METRICS_PORT=$(free_port $((RUNTIME_PORT + 1)))
start runtime "$WORK/runtime.log" "$BIN/runtime-service/runtime-service" \
  --listen="127.0.0.1:$RUNTIME_PORT" --registry="127.0.0.1:$REGISTRY_PORT" \
  --metrics-listen="127.0.0.1:$RUNTIME_METRICS_PORT" \
  --plaintext --no-auth --registry-plaintext
POSTMASTER=$(head -n 1 "$WORK/pg/postmaster.pid")
CPU_SPEC="registry=${PIDS[0]},runtime=${PIDS[1]},postgres=${POSTMASTER}+"

# What went wrong during a row, if anything: the runtime's claim outcomes,
# change-stream reconnects and rescan finds (its /metrics), and the warnings
# and errors both services logged. A row far below the others (a stall) is
# then explained by its own output.
runtime_counters() {
  python3 - "http://127.0.0.1:$RUNTIME_METRICS_PORT/metrics" <<'PY'
import re, sys, urllib.request
text = urllib.request.urlopen(sys.argv[1], timeout=5).read().decode()
want = {
    'wake_runtime_claims_total{outcome="succeeded"}': "claimed",
    'wake_runtime_claims_total{outcome="skipped"}': "skipped",
    'wake_runtime_claims_total{outcome="failed"}': "failed",
    'wake_runtime_claims_total{outcome="released"}': "released",
    "wake_runtime_registry_reconnects_total": "reconnects",
    "wake_runtime_rescan_found_total": "rescan_found",
}
got = {}
for line in text.splitlines():
    parts = line.rsplit(" ", 1)
    if len(parts) == 2 and parts[0] in want:
        got[want[parts[0]]] = int(float(parts[1]))
print(" ".join(f"{name}={got.get(name, 0)}" for name in want.values()))
PY
}
log_problems() { grep -cE 'level=(warn|error)' "$1" || true; }
# row_health BEFORE_COUNTERS REGISTRY_LINES RUNTIME_LINES: prints the row's deltas.
row_health() {
  local before=$1 registry_from=$2 runtime_from=$3 after events
  after=$(runtime_counters)
  python3 - "$before" "$after" <<'PY'
import sys
b = dict(kv.split("=") for kv in sys.argv[1].split())
a = dict(kv.split("=") for kv in sys.argv[2].split())
print("runtime during the rows: " + " ".join(f"{k}=+{int(a[k]) - int(b.get(k, 0))}" for k in a))
PY
  events=$( (tail -n +$((registry_from + 1)) "$WORK/registry.log" | sed 's/^/registry /'
    tail -n +$((runtime_from + 1)) "$WORK/runtime.log" | sed 's/^/runtime /') |
    grep -E 'level=(warn|error)' | sed -E 's/^([a-z]+) .*event=([a-z_]+).*/\1:\2/' |
    sort | uniq -c | awk '{printf " %s=%s", $2, $1}' || true)
  echo "warnings and errors logged during the rows:${events:- none}"
}

# CPU ticks (user+system) of a process, 0 once it is gone; of PostgreSQL:
# the postmaster, its children alive now (backends, walsender, ...) and
# those that ended (the postmaster's cutime and cstime).
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
pg_ticks() {
  local pid sum
  sum=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$POSTMASTER/stat")
  for pid in $(pgrep -P "$POSTMASTER"); do sum=$((sum + $(ticks "$pid"))); done
  echo "$sum"
}
us_per_wake() {
  awk -v t="$1" -v w="$2" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { if (w > 0) printf "%.0f", t * 1e6 / hz / w; else print "n/a" }'
}

# The durable minimum of one wake, as the store writes it: registry-service/
# store_sql.cc "persist_wake" with an event key ("update:<run>",
# as EvaluateRunFinished without an offset makes), no one-shot or timeout
# gate, and the message e2e_latency's wakes carry; then the delete of that
# wake, as an ack makes it. Two autocommit statements: two transactions, two
# WAL flushes. (pgbench reads `:name` as a variable: the key's colon is chr(58).)
cat >"$WORK/dm.sql" <<'SQL'
\set n random(1, 2000000000)
\set r random(1, 1000)
WITH keyed_events AS (INSERT INTO wake_event_keys (tenant_id, registration_id, source_event_key) SELECT 'default', :r, 'update' || chr(58) || 'run-' || :client_id || '-' || :n WHERE 1 = 1 AND true ON CONFLICT DO NOTHING RETURNING 1), keyed_offsets AS (INSERT INTO wake_offset_keys (tenant_id, registration_id, source_event_key) SELECT 'default', :r, 'update' || chr(58) || 'run-' || :client_id || '-' || :n WHERE 1 = 2 AND true AND NOT EXISTS (SELECT 1 FROM wake_offset_marks m WHERE m.tenant_id = 'default' AND m.registration_id = :r AND ('update' || chr(58) || 'run-' || :client_id || '-' || :n) COLLATE "C" <= m.offset_mark) ON CONFLICT DO NOTHING RETURNING 1), keyed AS (SELECT 1 FROM keyed_events UNION ALL SELECT 1 FROM keyed_offsets), admit AS (SELECT 1 WHERE 1 = 0 OR EXISTS (SELECT 1 FROM keyed)), deleted AS (DELETE FROM wake_registrations WHERE false AND id = :r AND tenant_id = 'default' AND (NOT false OR NOT timeout_consumed) AND EXISTS (SELECT 1 FROM admit) RETURNING id), consumed AS (UPDATE wake_registrations SET timeout_consumed = true WHERE (false OR false) AND NOT false AND id = :r AND tenant_id = 'default' AND NOT timeout_consumed AND EXISTS (SELECT 1 FROM admit) RETURNING id), gate AS (SELECT 1 FROM admit WHERE (NOT false OR EXISTS (SELECT 1 FROM deleted)) AND (NOT false OR false OR EXISTS (SELECT 1 FROM consumed))) INSERT INTO wakes (tenant_id, stream, registration_id, source_event_key, message, run_finished_status, include_response, size_bytes) SELECT 'default', '/dm/parent/' || :r || '-0', :r, 'update' || chr(58) || 'run-' || :client_id || '-' || :n, '{"source":"/dm/child/1","changes":[{"collection":"runs","kind":"UPDATE","key":"run-0-1"}]}'::jsonb, 'COMPLETED', true, 160 FROM gate ON CONFLICT (tenant_id, registration_id, source_event_key) DO NOTHING RETURNING id AS wake_id, (extract(epoch from created_at) * 1000000)::bigint AS created, pg_current_xact_id()::text::bigint AS txid \gset
DELETE FROM wakes WHERE id = :wake_id;
SQL

RESULTS="$WORK/results.txt"
: >"$RESULTS"
DM_LATEST=0

# dm ROUND: one durable-minimum row.
dm() {
  local round=$1 pg_before pg_after out tps wakes client_s
  echo "== round $round: durable minimum (pgbench, $DM_CLIENTS clients, prepared: the store's" \
    "persist statement, then the ack's delete, each its own transaction)"
  echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  psql_db -d dm -c "TRUNCATE wakes, wake_event_keys" -c "VACUUM ANALYZE wakes" -c "CHECKPOINT"
  pg_before=$(pg_ticks)
  # pgbench's own CPU from getrusage of its process.
  out=$(python3 - "$PG_BIN/pgbench" -h 127.0.0.1 -p "$PG_PORT" -U postgres -n -M prepared \
    -c "$DM_CLIENTS" -j 2 -T "$SECONDS_PER_ROW" -f "$WORK/dm.sql" dm <<'PY'
import resource, subprocess, sys
p = subprocess.run(sys.argv[1:], capture_output=True, text=True)
sys.stdout.write(p.stdout + p.stderr)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"client_cpu_s={r.ru_utime + r.ru_stime:.3f}")
sys.exit(p.returncode)
PY
  ) || { echo "$out" >&2; die "pgbench failed"; }
  pg_after=$(pg_ticks)
  tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out")
  wakes=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
  client_s=$(sed -n 's/^client_cpu_s=//p' <<<"$out")
  local pg_us client_us
  pg_us=$(us_per_wake $((pg_after - pg_before)) "$wakes")
  client_us=$(awk -v s="$client_s" -v w="$wakes" 'BEGIN { printf "%.0f", s * 1e6 / w }')
  printf '%-16s %10s %12.0f %8s   p50/p99 not measured by pgbench\n' "durable minimum" "-" \
    "$tps" "$wakes"
  echo "cpu us per wake: postgres=$pg_us client=$client_us" \
    "total=$((pg_us + client_us))"
  echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
  DM_LATEST=${tps%.*}
  echo "round=$round section=dm delivered=$tps wakes=$wakes postgres=$pg_us client=$client_us" \
    >>"$RESULTS"
}

# pipeline ROUND NAME TITLE [e2e_latency flags...]: paced at DM/5, then saturation.
status=0
pipeline() {
  local round=$1 name=$2 title=$3 rate out
  shift 3
  rate=$((DM_LATEST / 5))
  [ "$rate" -ge 1 ] || rate=1
  echo "== round $round: $title (paced at DM/5 = $rate wakes/s, then saturation)"
  echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  local perf_pid=""
  if [ -n "$PERF_DIR" ]; then
    mkdir -p "$PERF_DIR"
    # Started late enough to miss the registrations, warm-up and paced row.
    (sleep $((SECONDS_PER_ROW + 8)) &&
      exec perf record -a -g -F 499 -o "$PERF_DIR/round$round-$name.data" -- \
        sleep "$SECONDS_PER_ROW" >/dev/null 2>&1) &
    perf_pid=$!
  fi
  local counters_before registry_lines runtime_lines
  counters_before=$(runtime_counters)
  registry_lines=$(wc -l <"$WORK/registry.log")
  runtime_lines=$(wc -l <"$WORK/runtime.log")
  out=$("$BIN/tests/bench/e2e_latency" --registry="127.0.0.1:$REGISTRY_PORT" \
    --runtime="127.0.0.1:$RUNTIME_PORT" --seconds="$SECONDS_PER_ROW" --rates="$rate" \
    --prefix="$name" --cpu="$CPU_SPEC" "$@" "${EXTRA[@]}") || status=1
  [ -n "$perf_pid" ] && wait "$perf_pid" || true
  grep -v '^result ' <<<"$out" || true
  grep '^result ' <<<"$out" | sed 's/^result //; s/ cpu_us_per_wake / /' |
    sed "s/^/round=$round section=$name /" >>"$RESULTS"
  grep '^result ' <<<"$out" | sed -n 's/.*kind=\([a-z]*\).*cpu_us_per_wake \(.*\)/cpu us per wake (\1): \2/p'
  row_health "$counters_before" "$registry_lines" "$runtime_lines"
  echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
}

for round in $(seq 1 "$ROUNDS"); do
  # Odd rounds measure DM first, even rounds last; the first round always
  # starts with it (the paced rate needs a DM).
  [ $((round % 2)) = 1 ] && dm "$round"
  pipeline "$round" single "one wake per stream (one claim and one ack per wake)"
  pipeline "$round" siblings "20 children per parent (a claim batches siblings)" --siblings=20
  if [ "$LOCAL" = 1 ]; then
    pipeline "$round" siblings-local "20 children per parent, consistency LOCAL" \
      --siblings=20 --consistency=local
  fi
  [ $((round % 2)) = 0 ] && dm "$round"
done

echo "== summary: $ROUNDS rounds of ${SECONDS_PER_ROW}s rows, $(nproc) cores;" \
  "ratios to the durable minimum (DM) of the same round"
python3 - "$RESULTS" <<'PY'
import statistics, sys

rows = []
for line in open(sys.argv[1]):
    fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
    rows.append(fields)

rounds = sorted({int(r["round"]) for r in rows})
def find(round_, section, kind=None):
    for r in rows:
        if int(r["round"]) == round_ and r["section"] == section and (kind is None or r.get("kind") == kind):
            return r
    return None

dm = {n: float(find(n, "dm")["delivered"]) for n in rounds if find(n, "dm")}
lines = []
def line(label, values, target=None, fmt="{:.3f}", better="higher"):
    shown = [fmt.format(v) if v is not None else "-" for v in values]
    present = [v for v in values if v is not None]
    median = statistics.median(present) if present else None
    verdict = ""
    if target is not None and median is not None:
        ok = median >= target if better == "higher" else median <= target
        verdict = ("met" if ok else "MISSED") + f" (target {'>=' if better == 'higher' else '<='} {target})"
    print(f"{label:<44} " + " ".join(f"{s:>8}" for s in shown) +
          f" {fmt.format(median) if median is not None else '-':>9}  {verdict}")

print(f"{'':<44} " + " ".join(f"{'round ' + str(n):>8}" for n in rounds) + f" {'median':>9}")
line("DM wakes/s", [dm.get(n) for n in rounds], fmt="{:.0f}")
sections = [s for s in ("single", "siblings", "siblings-local") if any(r["section"] == s for r in rows)]
targets = {"single": 0.6, "siblings": 1.0}
for s in sections:
    sat = [find(n, s, "saturation") for n in rounds]
    line(f"{s}: saturation wakes/s", [float(r["delivered"]) if r else None for r in sat], fmt="{:.0f}")
    line(f"{s}: saturation / DM",
         [float(r["delivered"]) / dm[n] if r and n in dm else None for n, r in zip(rounds, sat)],
         target=targets.get(s))
    paced = [find(n, s, "paced") for n in rounds]
    line(f"{s}: offered at DM/5 (wakes/s)", [float(r["offered"]) if r else None for r in paced], fmt="{:.0f}")
    line(f"{s}: p50 ms at DM/5", [float(r["p50_ms"]) if r else None for r in paced],
         target=2.0 if s in targets else None, fmt="{:.2f}", better="lower")
    line(f"{s}: p99 ms at DM/5", [float(r["p99_ms"]) if r else None for r in paced],
         target=5.0 if s in targets else None, fmt="{:.2f}", better="lower")
print()
print("CPU us per wake (median of rounds)")
components = ["registry", "runtime", "postgres", "client", "total"]
print(f"{'':<28} " + " ".join(f"{c:>9}" for c in components))
def cpu_row(label, picked):
    values = []
    for c in components:
        got = [float(r[c]) for r in picked if r and c in r and r[c] != "n/a"]
        values.append(f"{statistics.median(got):.0f}" if got else "-")
    print(f"{label:<28} " + " ".join(f"{v:>9}" for v in values))
dm_rows = [find(n, "dm") for n in rounds]
for r in dm_rows:
    if r:
        r["total"] = str(float(r["postgres"]) + float(r["client"]))
cpu_row("durable minimum", dm_rows)
for s in sections:
    for kind in ("paced", "saturation"):
        cpu_row(f"{s} {kind}", [find(n, s, kind) for n in rounds])
lost = sum(int(r.get("lost", 0)) for r in rows)
errors = sum(int(r.get("errors", 0)) for r in rows)
print(f"\nwakes lost (evaluated, never received): {lost}; evaluation errors: {errors}")
PY

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
echo "cpu seconds of the runtime: $(awk -v t=$(($(ticks "${PIDS[2]}") - ALONE_BEFORE)) \
  -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", t / hz }')"
exit "$status"
