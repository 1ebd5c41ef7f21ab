#!/usr/bin/env bash
# Runs the product on the embedded default: a local PostgreSQL cluster in
# .wakeline/ inside the checkout (logical replication on), registry-service
# with the `postgres` sync source, and runtime-service. Installs missing Debian
# packages and builds first. Stop everything with: bash scripts/stop.sh
#
# Both services use TLS and bearer tokens: the first run makes a local CA,
# certificates and tokens in .wakeline/credentials (scripts/gen-credentials.sh)
# and prints how to call the services with them. `--plaintext` runs them
# without TLS or authentication instead, on loopback only (development).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$WAKE_ROOT"

PLAINTEXT=0
for arg in "$@"; do
  case "$arg" in
    --plaintext) PLAINTEXT=1 ;;
    *) die "unknown argument '$arg' (run.sh [--plaintext])" ;;
  esac
done

STATE="$WAKE_ROOT/.wakeline"
mkdir -p "$STATE"

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if running "$STATE/registry.pid" && running "$STATE/runtime.pid"; then
  log "already running:"
  cat "$STATE/addresses"
  exit 0
fi

install_debian_packages
log "building (bazel -c opt)"
bazel_cmd build -c opt //registry-service //runtime-service >&2
mkdir -p "$STATE/bin"
cp -f bazel-bin/registry-service/registry-service bazel-bin/runtime-service/runtime-service \
  "$STATE/bin/"

PGDATA_DIR="$STATE/pgdata"
if ! pg_can_use_dir "$PGDATA_DIR"; then
  PGDATA_DIR="/var/tmp/wakeline-$(echo "$WAKE_ROOT" | md5sum | cut -c1-8)/pgdata"
  log "the postgres user cannot reach $STATE; using $PGDATA_DIR"
fi
[ -f "$PGDATA_DIR/PG_VERSION" ] || { log "initialising PostgreSQL in $PGDATA_DIR"; init_cluster "$PGDATA_DIR"; }
if [ -f "$PGDATA_DIR/postmaster.pid" ] && as_pg_user "$(pg_bin_dir)/pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1; then
  PG_PORT=$(sed -n 4p "$PGDATA_DIR/postmaster.pid")
else
  PG_PORT=$(free_port "${WAKE_PG_PORT:-55432}")
  start_cluster "$PGDATA_DIR" "$PG_PORT"
fi
echo "$PGDATA_DIR" >"$STATE/pgdata.path"
"$(pg_bin_dir)/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -tAc \
  "SELECT 1 FROM pg_database WHERE datname = 'wakeline'" | grep -q 1 ||
  "$(pg_bin_dir)/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -qc "CREATE DATABASE wakeline"
# The services reach the cluster through its Unix socket when it has one
# (cheaper than loopback TCP; see cluster_url in lib.sh).
DATABASE_URL=$(cluster_url "$PGDATA_DIR" "$PG_PORT" wakeline)

REGISTRY_PORT=$(free_port "${WAKE_REGISTRY_PORT:-50051}")
RUNTIME_PORT=$(free_port "${WAKE_RUNTIME_PORT:-$((REGISTRY_PORT + 1))}")
[ "$RUNTIME_PORT" = "$REGISTRY_PORT" ] && RUNTIME_PORT=$(free_port $((REGISTRY_PORT + 1)))

wait_serving() {  # wait_serving NAME LOG PID
  local i
  for i in $(seq 1 600); do
    grep -q "event=serving" "$2" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || { cat "$2" >&2; die "$1 exited during startup (log above)"; }
    sleep 0.2
  done
  cat "$2" >&2
  die "$1 did not become ready within 120s"
}

CREDS="$STATE/credentials"
if [ "$PLAINTEXT" = 1 ]; then
  SERVER_FLAGS=(--plaintext --no-auth)
  REGISTRY_CLIENT_FLAGS=(--registry-plaintext)
else
  bash "$WAKE_ROOT/scripts/gen-credentials.sh" "$CREDS" >/dev/null
  SERVER_FLAGS=(--tls-cert="$CREDS/server.pem" --tls-key="$CREDS/server.key"
    --auth-tokens="$CREDS/tokens")
  REGISTRY_CLIENT_FLAGS=(--registry-ca="$CREDS/ca.pem" --registry-token-file="$CREDS/token.runtime")
fi

: >"$STATE/registry.log"
nohup "$STATE/bin/registry-service" --listen="127.0.0.1:$REGISTRY_PORT" \
  --database-url="$DATABASE_URL" "${SERVER_FLAGS[@]}" >>"$STATE/registry.log" 2>&1 &
echo $! >"$STATE/registry.pid"
wait_serving registry-service "$STATE/registry.log" "$(cat "$STATE/registry.pid")"

: >"$STATE/runtime.log"
nohup "$STATE/bin/runtime-service" --listen="127.0.0.1:$RUNTIME_PORT" \
  --registry="127.0.0.1:$REGISTRY_PORT" "${SERVER_FLAGS[@]}" "${REGISTRY_CLIENT_FLAGS[@]}" \
  >>"$STATE/runtime.log" 2>&1 &
echo $! >"$STATE/runtime.pid"
wait_serving runtime-service "$STATE/runtime.log" "$(cat "$STATE/runtime.pid")"

cat >"$STATE/addresses" <<MSG
  registry-service  127.0.0.1:$REGISTRY_PORT   (wake.v1.WakeRegistry)  log: $STATE/registry.log
  runtime-service   127.0.0.1:$RUNTIME_PORT   (wake.v1.WakeRuntime)   log: $STATE/runtime.log
  PostgreSQL        $DATABASE_URL
  stop with:        bash scripts/stop.sh
MSG
if [ "$PLAINTEXT" = 1 ]; then
  echo "  plaintext, no authentication (loopback development)" >>"$STATE/addresses"
else
  cat >>"$STATE/addresses" <<MSG
  TLS with the local CA $CREDS/ca.pem; tokens in $CREDS/token.{admin,client,runner,runtime}
  e.g. grpcurl -cacert $CREDS/ca.pem -H "authorization: Bearer \$(cat $CREDS/token.client)" \\
         127.0.0.1:$REGISTRY_PORT list
MSG
fi
log "Wakeline is running:"
cat "$STATE/addresses"
