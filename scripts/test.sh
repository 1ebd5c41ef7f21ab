#!/usr/bin/env bash
# Runs every test: installs missing Debian packages, starts a throwaway
# PostgreSQL cluster (removed afterwards), then `bazel test //...` (unit,
# integration and end-to-end tests; benchmarks are only built).
# Extra arguments go to bazel test, e.g. --config=asan or a target pattern.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$WAKE_ROOT"

install_debian_packages

PG_DIR=$(mktemp -d /tmp/wakeline-test-pg.XXXXXX)
cleanup() {
  stop_cluster "$PG_DIR/data"
  rm -rf "$PG_DIR"
}
trap cleanup EXIT
[ "$(id -u)" = 0 ] && chmod 755 "$PG_DIR"
init_cluster "$PG_DIR/data"
PG_PORT=$(free_port 56432)
start_cluster "$PG_DIR/data" "$PG_PORT"
export DATABASE_URL="postgresql://postgres@127.0.0.1:$PG_PORT/postgres"
export WAKE_PG_BIN
WAKE_PG_BIN=$(pg_bin_dir)
log "throwaway PostgreSQL at $DATABASE_URL"

targets=("$@")
[ "${#targets[@]}" -eq 0 ] && targets=(//...)
set +e
bazel test --test_summary=short "${targets[@]}" 2>&1 | tee "$PG_DIR/bazel-test.log"
status=${PIPESTATUS[0]}
set -e
passed=$(grep -cE '^//[^ ]+ +(\(cached\) )?PASSED' "$PG_DIR/bazel-test.log" || true)
failed=$(grep -cE '^//[^ ]+ +(\(cached\) )?(FAILED|TIMEOUT|NO STATUS|FAILED TO BUILD|INCOMPLETE|FLAKY)' \
  "$PG_DIR/bazel-test.log" || true)
echo "bazel: $passed passed, $failed failed"
exit "$status"
