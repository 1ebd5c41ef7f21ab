#!/usr/bin/env bash
# What remembering event keys costs, run by hand: pgbench on a throwaway
# cluster runs the life of one wake (insert it, then delete it, as an ack
# does) in two forms: as before event keys ("plain": the wake row alone) and
# as the registry now does it ("keyed": the key row gates the insert in the
# same statement and stays behind). Each form runs paced at a rate (default
# 1,000 wakes/s) and then unpaced (saturation). Prints per form: wakes,
# WAL bytes per wake, mean latency, and for "keyed" the bytes each kept key
# costs on disk (heap + indexes) and what the default retentions (1 h for
# offsets, 24 h for keys without one; same row size) hold at the paced rate.
#   bash tests/bench/event_keys_bench.sh [seconds-per-row] [rate] [clients]
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib.sh"
cd "$WAKE_ROOT"
SECONDS_PER_ROW=${1:-20}
RATE=${2:-1000}
CLIENTS=${3:-8}

install_debian_packages
WORK=$(mktemp -d /tmp/wakeline-keys-bench.XXXXXX)
cleanup() {
  stop_cluster "$WORK/pg"
  rm -rf "$WORK"
}
trap cleanup EXIT
[ "$(id -u)" = 0 ] && chmod 755 "$WORK"
init_cluster "$WORK/pg"
PG_PORT=$(free_port 57632)
start_cluster "$WORK/pg" "$PG_PORT"
BIN=$(pg_bin_dir)
psql_bench() { "$BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -qAtX -v ON_ERROR_STOP=1 -d bench "$@"; }
"$BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -qAt -d postgres -c "CREATE DATABASE bench"
for migration in registry-service/migrations/*.sql; do psql_bench -f "$migration" >/dev/null; done
psql_bench -c "INSERT INTO wake_registrations (subscriber_url, source_url, condition)
  SELECT '/parents/p' || g, '/children/c' || g, '{\"on\":\"runFinished\"}' FROM generate_series(1, 5000) g"

# The statements follow registry-service/store_sql.cc (persist_wake
# without gates, and the ack's delete). Keys are ordered offsets.
MESSAGE='{"source":"/children/c1","changes":[{"collection":"runs","kind":"UPDATE","key":"run-1"}]}'
cat >"$WORK/plain.sql" <<SQL
\set n random(1, 2000000000)
\set r random(1, 5000)
INSERT INTO wakes (tenant_id, stream, registration_id, source_event_key, message) VALUES ('default', '/parents/p' || :r, :r, '0000000000000001_' || lpad(:n::text, 16, '0') || '_' || :client_id, '$MESSAGE') ON CONFLICT (tenant_id, registration_id, source_event_key) DO NOTHING;
DELETE FROM wakes WHERE tenant_id = 'default' AND registration_id = :r AND source_event_key = '0000000000000001_' || lpad(:n::text, 16, '0') || '_' || :client_id;
SQL
cat >"$WORK/keyed.sql" <<SQL
\set n random(1, 2000000000)
\set r random(1, 5000)
WITH keyed AS (INSERT INTO wake_offset_keys (tenant_id, registration_id, source_event_key) SELECT 'default', :r, '0000000000000001_' || lpad(:n::text, 16, '0') || '_' || :client_id WHERE NOT EXISTS (SELECT 1 FROM wake_offset_marks m WHERE m.tenant_id = 'default' AND m.registration_id = :r AND ('0000000000000001_' || lpad(:n::text, 16, '0') || '_' || :client_id) COLLATE "C" <= m.offset_mark) ON CONFLICT DO NOTHING RETURNING 1) INSERT INTO wakes (tenant_id, stream, registration_id, source_event_key, message) SELECT 'default', '/parents/p' || :r, :r, '0000000000000001_' || lpad(:n::text, 16, '0') || '_' || :client_id, '$MESSAGE' FROM keyed ON CONFLICT (tenant_id, registration_id, source_event_key) DO NOTHING;
DELETE FROM wakes WHERE tenant_id = 'default' AND registration_id = :r AND source_event_key = '0000000000000001_' || lpad(:n::text, 16, '0') || '_' || :client_id;
SQL

ROWS=()
# run FORM LABEL [pgbench rate flags...]
run() {
  local form=$1 label=$2
  shift 2
  psql_bench -c "TRUNCATE wakes, wake_offset_keys" -c "CHECKPOINT"
  local lsn_before lsn_after out tx latency wal keys key_bytes
  lsn_before=$(psql_bench -c "SELECT pg_current_wal_insert_lsn()")
  out=$("$BIN/pgbench" -h 127.0.0.1 -p "$PG_PORT" -U postgres -n -M prepared -c "$CLIENTS" -j 2 \
    -T "$SECONDS_PER_ROW" "$@" -f "$WORK/$form.sql" bench 2>&1)
  lsn_after=$(psql_bench -c "SELECT pg_current_wal_insert_lsn()")
  tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
  latency=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' <<<"$out")
  wal=$(psql_bench -c "SELECT round(pg_wal_lsn_diff('$lsn_after', '$lsn_before') / GREATEST($tx, 1))")
  keys=$(psql_bench -c "SELECT count(*) FROM wake_offset_keys")
  key_bytes="-"
  if [ "$keys" -gt 0 ]; then
    psql_bench -c "VACUUM ANALYZE wake_offset_keys" >/dev/null
    key_bytes=$(psql_bench -c "SELECT round(pg_total_relation_size('wake_offset_keys')::numeric / $keys)")
  fi
  ROWS+=("$(printf '%-6s %-11s %9s %9s %10s %12s %10s' "$form" "$label" "$tx" \
    "$((tx / SECONDS_PER_ROW))" "$wal" "${latency:-?}" "$key_bytes")")
}

run plain "${RATE}/s" -R "$RATE"
run keyed "${RATE}/s" -R "$RATE"
run plain saturation
run keyed saturation

echo
echo "event keys: one wake's insert + delete, $CLIENTS clients, ${SECONDS_PER_ROW}s per row"
printf '%-6s %-11s %9s %9s %10s %12s %10s\n' form rate wakes wakes/s WAL_B/wake latency_ms B/key
printf '%s\n' "${ROWS[@]}"
key_bytes=$(awk '$1 == "keyed" && $2 != "saturation" { print $7 }' <<<"$(printf '%s\n' "${ROWS[@]}")")
if [ -n "$key_bytes" ] && [ "$key_bytes" != "-" ]; then
  awk -v b="$key_bytes" -v r="$RATE" 'BEGIN {
    printf "kept keys at %d wakes/s: offsets (1 h) %.1f M rows, %.2f GB; keys without an offset (24 h) %.1f M rows, %.1f GB\n",
      r, r * 3600 / 1e6, r * 3600 * b / 1e9, r * 86400 / 1e6, r * 86400 * b / 1e9 }'
fi
