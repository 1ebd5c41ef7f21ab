# A throwaway Wakeline stack for the polyglot and load tests: a private
# PostgreSQL cluster, registry-service and runtime-service on free loopback
# ports, all under one work directory. Source it after scripts/lib.sh.
#
#   stack_build [bazel flags...]   builds both binaries, copies them to $STACK_DIR/bin
#   stack_start                    cluster + database + both services; exports
#                                  DATABASE_URL, WAKE_REGISTRY_ADDR, WAKE_RUNTIME_ADDR
#   stack_stop                     stops what stack_start started (safe to call twice)
#
# The caller sets STACK_DIR (an empty directory, e.g. from mktemp -d) and traps
# stack_stop on EXIT.
# shellcheck shell=bash

STACK_REGISTRY_PID=""
STACK_RUNTIME_PID=""
STACK_PG_PORT=""
STACK_DB_NAME="${STACK_DB_NAME:-wakeline}"
STACK_LOG_LEVEL="${STACK_LOG_LEVEL:-info}"

stack_build() {
  log "building registry-service and runtime-service (bazel build $*)"
  bazel_cmd build "$@" //registry-service //runtime-service >&2
  mkdir -p "$STACK_DIR/bin"
  cp -f "$WAKE_ROOT/bazel-bin/registry-service/registry-service" \
    "$WAKE_ROOT/bazel-bin/runtime-service/runtime-service" "$STACK_DIR/bin/"
}

# stack_wait_serving NAME LOG PID: waits for `event=serving` in LOG.
stack_wait_serving() {
  local name=$1 logfile=$2 pid=$3 i
  for i in $(seq 1 600); do
    grep -q "event=serving" "$logfile" 2>/dev/null && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 40 "$logfile" >&2
      die "$name exited during startup (its last log lines are above)"
    fi
    sleep 0.2
  done
  tail -n 40 "$logfile" >&2
  die "$name did not log event=serving within 120s (its last log lines are above)"
}

stack_psql() {
  "$(pg_bin_dir)/psql" -h 127.0.0.1 -p "$STACK_PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qAt "$@"
}

stack_start() {
  [ -n "${STACK_DIR:-}" ] || die "stack_start: STACK_DIR is not set"
  [ -x "$STACK_DIR/bin/registry-service" ] || die "stack_start: run stack_build first"
  [ "$(id -u)" = 0 ] && chmod 755 "$STACK_DIR"
  init_cluster "$STACK_DIR/pg"
  STACK_PG_PORT=$(free_port "${STACK_PG_PORT_BASE:-57432}")
  start_cluster "$STACK_DIR/pg" "$STACK_PG_PORT"
  stack_psql -d postgres -c "CREATE DATABASE $STACK_DB_NAME"
  export DATABASE_URL="postgresql://postgres@127.0.0.1:$STACK_PG_PORT/$STACK_DB_NAME"
  log "PostgreSQL at $DATABASE_URL"

  local registry_port runtime_port
  registry_port=$(free_port "${STACK_REGISTRY_PORT_BASE:-58051}")
  "$STACK_DIR/bin/registry-service" --listen="127.0.0.1:$registry_port" \
    --database-url="$DATABASE_URL" --log-level="$STACK_LOG_LEVEL" --plaintext --no-auth \
    >"$STACK_DIR/registry.log" 2>&1 &
  STACK_REGISTRY_PID=$!
  stack_wait_serving registry-service "$STACK_DIR/registry.log" "$STACK_REGISTRY_PID"
  export WAKE_REGISTRY_ADDR="127.0.0.1:$registry_port"
  log "registry-service at $WAKE_REGISTRY_ADDR (pid $STACK_REGISTRY_PID)"

  runtime_port=$(free_port $((registry_port + 1)))
  "$STACK_DIR/bin/runtime-service" --listen="127.0.0.1:$runtime_port" \
    --registry="$WAKE_REGISTRY_ADDR" --log-level="$STACK_LOG_LEVEL" \
    --plaintext --no-auth --registry-plaintext \
    >"$STACK_DIR/runtime.log" 2>&1 &
  STACK_RUNTIME_PID=$!
  stack_wait_serving runtime-service "$STACK_DIR/runtime.log" "$STACK_RUNTIME_PID"
  export WAKE_RUNTIME_ADDR="127.0.0.1:$runtime_port"
  log "runtime-service at $WAKE_RUNTIME_ADDR (pid $STACK_RUNTIME_PID)"
}

# stack_kill PID: SIGTERM, then SIGKILL after 15s.
stack_kill() {
  local pid=$1 i
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null || true
}

stack_stop() {
  stack_kill "$STACK_RUNTIME_PID"
  STACK_RUNTIME_PID=""
  stack_kill "$STACK_REGISTRY_PID"
  STACK_REGISTRY_PID=""
  [ -n "${STACK_DIR:-}" ] && stop_cluster "$STACK_DIR/pg"
  return 0
}
