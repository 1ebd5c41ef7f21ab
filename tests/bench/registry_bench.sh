#!/usr/bin/env bash
# Registry benchmark, run by hand: one script, one throwaway cluster, rows
# comparable within the run.
#   bash tests/bench/registry_bench.sh [seconds-per-row]
# Rows: in-process evaluation (0/1/100 matches, 1k vs 100k registrations),
# resident memory per 100k registrations, RegisterWake over gRPC through the
# real database at 1 and 32 callers, and pgbench running the same upsert;
# EvaluateRunFinished with 1 match at 16 callers, and pgbench's wake insert.
# Ends with the machine's load average (other work skews the rows).
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib.sh"
cd "$WAKE_ROOT"
SECONDS_PER_ROW=${1:-10}

install_debian_packages
bazel_cmd build -c opt //registry-service //registry-service:evaluation_benchmark \
  //tests/bench:register_load >&2
BIN="$WAKE_ROOT/bazel-bin"

WORK=$(mktemp -d /tmp/wakeline-bench.XXXXXX)
REGISTRY_PID=""
cleanup() {
  [ -n "$REGISTRY_PID" ] && kill "$REGISTRY_PID" 2>/dev/null && wait "$REGISTRY_PID" 2>/dev/null
  stop_cluster "$WORK/pg"
  rm -rf "$WORK"
}
trap cleanup EXIT
[ "$(id -u)" = 0 ] && chmod 755 "$WORK"
init_cluster "$WORK/pg"
PG_PORT=$(free_port 57432)
start_cluster "$WORK/pg" "$PG_PORT"
PSQL=("$(pg_bin_dir)/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -qAt)
"${PSQL[@]}" -d postgres -c "CREATE DATABASE bench"
DB="postgresql://postgres@127.0.0.1:$PG_PORT/bench"

echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== in-process evaluation"
"$BIN/registry-service/evaluation_benchmark"

PORT=$(free_port 58051)
"$BIN/registry-service/registry-service" --listen="127.0.0.1:$PORT" --database-url="$DB" \
  --log-level=info --plaintext --no-auth >"$WORK/registry.log" 2>&1 &
REGISTRY_PID=$!
for _ in $(seq 1 300); do
  grep -q "event=serving" "$WORK/registry.log" 2>/dev/null && break
  sleep 0.2
done
grep -q "event=serving" "$WORK/registry.log" || { cat "$WORK/registry.log"; die "registry did not start"; }

echo "== RegisterWake over gRPC (distinct rows) vs pgbench of the same upsert"
for callers in 1 32; do
  "$BIN/tests/bench/register_load" --target="127.0.0.1:$PORT" --rpc=register \
    --callers="$callers" --seconds="$SECONDS_PER_ROW" --prefix="grpc$callers"
done
cat >"$WORK/upsert.sql" <<'SQL'
\set n random(1, 2000000000)
INSERT INTO wake_registrations (tenant_id, subscriber_url, source_url, condition, debounce_ms,
  timeout_ms, one_shot, include_response, manifest_key)
VALUES ('default', '/pgbench/parent-' || :n || '-' || :client_id, '/pgbench/child-' || :n,
  '{"on":"runFinished"}'::jsonb, 0, 0, false, true, '')
ON CONFLICT (tenant_id, subscriber_url, source_url, one_shot, debounce_ms, timeout_ms, condition,
  manifest_key) DO NOTHING
RETURNING id, created_at, pg_current_xact_id();
SQL
# pgbench_rate SQL_FILE CLIENTS: transactions per second of pgbench -M prepared.
pgbench_rate() {
  "$(pg_bin_dir)/pgbench" -h 127.0.0.1 -p "$PG_PORT" -U postgres -n -M prepared \
    -c "$2" -j "$([ "$2" -gt 2 ] && echo 2 || echo 1)" -T "$SECONDS_PER_ROW" \
    -f "$1" bench 2>/dev/null | sed -n 's/^tps = \([0-9.]*\).*/\1/p'
}
for clients in 1 32; do
  rate=$(pgbench_rate "$WORK/upsert.sql" "$clients")
  echo "pgbench upsert clients=$clients rate=${rate%.*}/s"
done

echo "== EvaluateRunFinished, 1 match (1 wake per call), default consistency, vs pgbench of the wake insert"
"$BIN/tests/bench/register_load" --target="127.0.0.1:$PORT" --rpc=register --callers=1 --seconds=1 \
  --prefix=evalseed >/dev/null
"$BIN/tests/bench/register_load" --target="127.0.0.1:$PORT" --rpc=evaluate --callers=16 \
  --seconds="$SECONDS_PER_ROW" --prefix=eval16 --source=/evalseed/child-0-0
cat >"$WORK/wake.sql" <<'SQL'
\set n random(1, 2000000000)
INSERT INTO wakes (tenant_id, stream, registration_id, source_event_key, message,
  run_finished_status, include_response)
VALUES ('default', '/pgbench/parent', :n::bigint,
  'update' || chr(58) || 'r' || :client_id::text || '-' || :n::text,
  '{"source":"/pgbench/child","changes":[{"collection":"runs","kind":"UPDATE","key":"r1"}]}'::jsonb,
  'COMPLETED', true)
ON CONFLICT (tenant_id, registration_id, source_event_key) DO NOTHING
RETURNING id, (extract(epoch from created_at) * 1000000)::bigint, pg_current_xact_id()::text::bigint;
SQL
rate=$(pgbench_rate "$WORK/wake.sql" 16)
echo "pgbench wake insert clients=16 rate=${rate%.*}/s"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
