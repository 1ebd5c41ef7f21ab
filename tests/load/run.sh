#!/usr/bin/env bash
# Load test with ghz (through server reflection: no proto files) against the
# embedded default, compared with pgbench running the same SQL on the same
# database. Prints one table (rps, p50, p95, p99, errors) and the ratio rows;
# exits non-zero when any row had errors (ratios are reported, not enforced).
# The rows compared by a ratio run in adjacent pairs, for several rounds with
# the order alternating; a ratio is the median of its rounds.
#
#   bash tests/load/run.sh            full run: bazel -c opt, 10 s per row, 3 rounds
#   bash tests/load/run.sh --smoke    CI: default build, 1 s per row, 2 rounds
# Options: --seconds N (per row), --rounds N, --concurrency N, --out DIR
# (reports; default .wakeline/load/<time>), --registry ADDR --database-url URL
# (use running services instead of starting a throwaway stack; their data stays).
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib.sh"
source "$WAKE_ROOT/scripts/toolchains.sh"
source "$WAKE_ROOT/scripts/stack.sh"
cd "$WAKE_ROOT"

GHZ_VERSION="v0.121.0"
SMOKE=0
SECONDS_PER_ROW=""
ROUNDS=""
CONCURRENCY=16
OUT=""
REGISTRY_ADDR=""
EXTERNAL_DATABASE_URL=""
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) SMOKE=1 ;;
    --seconds) SECONDS_PER_ROW=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --concurrency) CONCURRENCY=$2; shift ;;
    --out) OUT=$2; shift ;;
    --registry) REGISTRY_ADDR=$2; shift ;;
    --database-url) EXTERNAL_DATABASE_URL=$2; shift ;;
    -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done
if [ "$SMOKE" = 1 ]; then
  SECONDS_PER_ROW=${SECONDS_PER_ROW:-1}
  ROUNDS=${ROUNDS:-2}
  SEED_REGISTRATIONS=500
else
  SECONDS_PER_ROW=${SECONDS_PER_ROW:-10}
  ROUNDS=${ROUNDS:-3}
  SEED_REGISTRATIONS=10000
fi
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "--rounds: a positive whole number, not '$ROUNDS'"
[ -n "$REGISTRY_ADDR" ] && [ -z "$EXTERNAL_DATABASE_URL" ] && die "--registry needs --database-url (for pgbench)"
OUT=${OUT:-$WAKE_ROOT/.wakeline/load/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

install_debian_packages
ensure_python
go_tool ghz "github.com/bojand/ghz/cmd/ghz@$GHZ_VERSION"
GHZ="$WAKE_TOOLS_BIN/ghz"
PGBENCH="$(pg_bin_dir)/pgbench"

STACK_DIR=$(mktemp -d /tmp/wakeline-load.XXXXXX)
cleanup() {
  stack_stop
  rm -rf "$STACK_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

BUILD_FLAGS=()
[ "$SMOKE" = 1 ] || BUILD_FLAGS=(-c opt)
log "building tests/load:ghz_payloads"
bazel_cmd build "${BUILD_FLAGS[@]}" //tests/load:ghz_payloads >&2
PAYLOADS_TOOL="$STACK_DIR/ghz_payloads"
cp -f "$WAKE_ROOT/bazel-bin/tests/load/ghz_payloads" "$PAYLOADS_TOOL"
if [ -n "$REGISTRY_ADDR" ]; then
  export WAKE_REGISTRY_ADDR="$REGISTRY_ADDR" DATABASE_URL="$EXTERNAL_DATABASE_URL"
else
  stack_build "${BUILD_FLAGS[@]}"
  STACK_LOG_LEVEL=info stack_start  # `event=serving` is an info line; requests log nothing at info
fi
RUN_ID=$(date +%s)-$$  # keeps rows distinct when the database is reused

# ghz_call NAME METHOD DATA [ghz flags...]: one ghz run writing $OUT/NAME.json.
# No row uses template functions; turning them off saves ghz CPU on every call.
ghz_call() {
  local name=$1 method=$2 data=$3 data_flags=()
  shift 3
  [ -n "$data" ] && data_flags=(-d "$data")
  "$GHZ" --insecure --call "$method" "${data_flags[@]}" -c "$CONCURRENCY" --connections=1 \
    --disable-template-functions --duration-stop=ignore -O json -o "$OUT/$name.json" "$@" \
    "$WAKE_REGISTRY_ADDR" || die "ghz failed for $name ($method)"
}

# Distinct requests per timed row: more than any row sends in its time here.
PAYLOADS_PER_ROW=$((SECONDS_PER_ROW * 12000))

# row NAME METHOD NOTE DATA [ghz flags...]: a timed table row. Server streams
# (--stream-call-count) end by client cancellation; the summary knows that.
# DATA with {{.RequestNumber}} is rendered ahead of time by ghz_payloads into
# $PAYLOADS_PER_ROW binary requests that ghz sends in turn: ghz rendering the
# template and parsing JSON per call cost it about as much CPU as the
# registry spends on a RegisterWake, on the same 2 cores. pgbench's rows
# have no such client cost either.
row() {
  local name=$1 method=$2 note=$3 data=$4 kind=ghz request_type
  shift 4
  case "$*" in *--stream-call-count*) kind=ghz-stream ;; esac
  log "row $name: $method for ${SECONDS_PER_ROW}s ($note)"
  if [[ "$data" == *"{{.RequestNumber}}"* ]]; then
    request_type="wake.v1.${method##*/}Request"
    "$PAYLOADS_TOOL" --type="$request_type" --count="$PAYLOADS_PER_ROW" --json="$data" \
      --out="$STACK_DIR/$name.bin" || die "ghz_payloads failed for $name"
    ghz_call "$name" "$method" "" -z "${SECONDS_PER_ROW}s" --binary-file="$STACK_DIR/$name.bin" \
      --disable-template-data "$@"
    rm -f "$STACK_DIR/$name.bin"
    python3 - "$OUT/$name.json" "$PAYLOADS_PER_ROW" <<'PY'
import json, sys
count = json.load(open(sys.argv[1])).get("count", 0)
if count > int(sys.argv[2]):
    print(f"warning: {sys.argv[1]}: {count} calls, but only {sys.argv[2]} distinct requests;"
          " later calls repeated earlier ones", file=sys.stderr)
PY
  else
    ghz_call "$name" "$method" "$data" -z "${SECONDS_PER_ROW}s" "$@"
  fi
  printf '%s\t%s\t%s.json\t%s\n' "$name" "$kind" "$name" "$note" >>"$OUT/rows.tsv"
}

# seed NAME COUNT DATA: COUNT RegisterWake calls, which must all succeed.
seed() {
  local name=$1 count=$2 data=$3
  ghz_call "seed_$name" wake.v1.WakeRegistry/RegisterWake "$data" -n "$count"
  python3 - "$OUT/seed_$name.json" "$count" <<'PY' || die "seeding $1 failed"
import json, sys
report = json.load(open(sys.argv[1]))
codes = report.get("statusCodeDistribution") or {}
if codes.get("OK", 0) != int(sys.argv[2]):
    sys.exit(f"seed {sys.argv[1]}: {codes}")
PY
  rm -f "$OUT/seed_$name.json"
}

# pgbench_row NAME NOTE SQL: pgbench -M prepared with the same concurrency.
pgbench_row() {
  local name=$1 note=$2 sql=$3 threads
  threads=$((CONCURRENCY < 2 ? CONCURRENCY : 2))
  printf '%s\n' "$sql" >"$OUT/$name.sql"
  log "row $name: pgbench for ${SECONDS_PER_ROW}s ($note)"
  "$PGBENCH" -d "$DATABASE_URL" -n -M prepared -c "$CONCURRENCY" -j "$threads" \
    -T "$SECONDS_PER_ROW" -f "$OUT/$name.sql" -l --log-prefix="$OUT/$name.log" \
    >"$OUT/$name.pgbench.txt" 2>&1 || { cat "$OUT/$name.pgbench.txt" >&2; die "pgbench failed for $name"; }
  printf '%s\tpgbench\t%s.pgbench.txt\t%s\n' "$name" "$name" "$note" >>"$OUT/rows.tsv"
}

: >"$OUT/rows.tsv"
RUN_FINISHED='"condition":{"run_finished":{}}'
log "seeding: $SEED_REGISTRATIONS registrations, plus 1 and 5 on the evaluated sources, 100 in tenant load-sub"
seed bulk "$SEED_REGISTRATIONS" \
  "{\"subscriber_url\":\"/load/seed/$RUN_ID/parent-{{.RequestNumber}}\",\"source_url\":\"/load/seed/$RUN_ID/child-{{.RequestNumber}}\",$RUN_FINISHED}"
seed one 1 "{\"subscriber_url\":\"/load/one/$RUN_ID/parent\",\"source_url\":\"/load/one/$RUN_ID/child\",$RUN_FINISHED}"
seed many 5 "{\"subscriber_url\":\"/load/many/$RUN_ID/parent-{{.RequestNumber}}\",\"source_url\":\"/load/many/$RUN_ID/child\",$RUN_FINISHED}"
seed sub 100 "{\"tenant_id\":\"load-sub-$RUN_ID\",\"subscriber_url\":\"/load/sub/parent-{{.RequestNumber}}\",\"source_url\":\"/load/sub/child\",$RUN_FINISHED}"

# The rows a ratio compares, one function each; $1 is the round ("" when there
# is only one), which keeps every round's rows and run keys distinct.
# Health/Check resolves through reflection too: common/grpc_server links the
# grpc.health.v1 descriptor (proto/grpc/health/v1/health.proto).
health_check() {
  row "health_check$1" grpc.health.v1.Health/Check "baseline: standard health service" \
    '{"service":"wake.v1.WakeRegistry"}'
}
eval_0_local() {
  row "eval_0_local$1" wake.v1.WakeRegistry/EvaluateRunFinished "0 matches, consistency LOCAL" \
    "{\"source_url\":\"/load/none/$RUN_ID/child\",\"run_key\":\"r$1-{{.RequestNumber}}\",\"status\":\"COMPLETED\",\"consistency\":\"LOCAL\"}"
}
register_wake() {
  row "register_wake$1" wake.v1.WakeRegistry/RegisterWake "distinct row per call" \
    "{\"subscriber_url\":\"/load/reg/$RUN_ID$1/parent-{{.RequestNumber}}\",\"source_url\":\"/load/reg/$RUN_ID$1/child-{{.RequestNumber}}\",$RUN_FINISHED}"
}
pgbench_upsert() {
  pgbench_row "pgbench_upsert$1" "the RegisterWake upsert, prepared" "\
\\set n random(1, 2000000000)
INSERT INTO wake_registrations (tenant_id, subscriber_url, source_url, condition, debounce_ms,
  timeout_ms, one_shot, include_response, manifest_key)
VALUES ('default', '/load/pgbench/$RUN_ID$1/parent-' || :client_id::text || '-' || :n::text,
  '/load/pgbench/$RUN_ID$1/child-' || :n::text, '{\"on\":\"runFinished\"}'::jsonb, 0, 0, false, true, '')
ON CONFLICT (tenant_id, subscriber_url, source_url, one_shot, debounce_ms, timeout_ms, condition,
  manifest_key) DO NOTHING
RETURNING id, tenant_id, subscriber_url, source_url, condition::text, debounce_ms, timeout_ms,
  one_shot, timeout_consumed, include_response, manifest_key,
  (extract(epoch from created_at) * 1000000)::bigint, pg_current_xact_id()::text::bigint;"
}
eval_1_default() {
  row "eval_1_default$1" wake.v1.WakeRegistry/EvaluateRunFinished "1 match (1 wake per call), default" \
    "{\"source_url\":\"/load/one/$RUN_ID/child\",\"run_key\":\"r$1-{{.RequestNumber}}\",\"status\":\"COMPLETED\"}"
}
# (pgbench reads \`:name\` as a variable even inside quotes: the key's colon is chr(58).)
# The wake goes in with its event key, as the registry's persist does.
pgbench_wake_insert() {
  pgbench_row "pgbench_wake_insert$1" "a wake and its event key, prepared" "\
\\set n random(1, 2000000000)
WITH keyed AS (INSERT INTO wake_event_keys (tenant_id, registration_id, source_event_key)
  VALUES ('default', :n::bigint, 'update' || chr(58) || 'r$1-' || :client_id::text || '-' || :n::text)
  ON CONFLICT DO NOTHING RETURNING 1)
INSERT INTO wakes (tenant_id, stream, registration_id, source_event_key, message,
  run_finished_status, include_response)
SELECT 'default', '/load/pgbench/$RUN_ID/parent', :n::bigint,
  'update' || chr(58) || 'r$1-' || :client_id::text || '-' || :n::text,
  '{\"source\":\"/load/pgbench/$RUN_ID/child\",\"changes\":[{\"collection\":\"runs\",\"kind\":\"UPDATE\",\"key\":\"r1\"}]}'::jsonb,
  'COMPLETED', true FROM keyed
ON CONFLICT (tenant_id, registration_id, source_event_key) DO NOTHING
RETURNING id, (extract(epoch from created_at) * 1000000)::bigint, pg_current_xact_id()::text::bigint;"
}

# Machine speed here drifts by more than the margins the ratios are judged
# by, so each pair runs back to back, the order alternating between rounds
# (what drifts during a round favours neither side across rounds), and the
# summary takes the median of the rounds' ratios.
for round in $(seq 1 "$ROUNDS"); do
  suffix=""
  [ "$ROUNDS" -gt 1 ] && suffix=".$round"
  for pair in "health_check eval_0_local" "register_wake pgbench_upsert" \
    "eval_1_default pgbench_wake_insert"; do
    read -r first second <<<"$pair"
    [ $((round % 2)) = 0 ] && read -r second first <<<"$pair"
    "$first" "$suffix"
    "$second" "$suffix"
  done
done
row eval_0_default wake.v1.WakeRegistry/EvaluateRunFinished "0 matches, default consistency" \
  "{\"source_url\":\"/load/none/$RUN_ID/child\",\"run_key\":\"r{{.RequestNumber}}\",\"status\":\"COMPLETED\"}"
row eval_5_default wake.v1.WakeRegistry/EvaluateRunFinished "5 matches (5 wakes per call), default" \
  "{\"source_url\":\"/load/many/$RUN_ID/child\",\"run_key\":\"r{{.RequestNumber}}\",\"status\":\"COMPLETED\"}"
row list_registrations wake.v1.WakeRegistry/ListRegistrations "first page of 100, default tenant" \
  '{"page_size":100}'
row subscribe_changes wake.v1.WakeRegistry/SubscribeChanges "stream: snapshot of 100 registrations" \
  "{\"tenant_id\":\"load-sub-$RUN_ID\",\"from_offset\":\"-1\",\"kinds\":[\"REGISTRATION\"]}" \
  --stream-call-count=100 --timeout=10s

python3 "$WAKE_ROOT/tests/load/summarize.py" "$OUT" "$CONCURRENCY" | tee "$OUT/summary.txt"
