#!/usr/bin/env bash
# The Electric read barrier's latency (tests/electric/electric_barrier_benchmark.cc)
# on a throwaway PostgreSQL cluster, built with -c opt. Prints one row per case.
#   bash tests/electric/run_barrier_benchmark.sh
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib.sh"
cd "$WAKE_ROOT"

install_debian_packages
PG_DIR=$(mktemp -d /tmp/wakeline-barrier-bench.XXXXXX)
cleanup() {
  stop_cluster "$PG_DIR/data"
  rm -rf "$PG_DIR"
}
trap cleanup EXIT
[ "$(id -u)" = 0 ] && chmod 755 "$PG_DIR"
init_cluster "$PG_DIR/data"
PG_PORT=$(free_port 56532)
start_cluster "$PG_DIR/data" "$PG_PORT"

bazel build -c opt //tests/electric:electric_barrier_benchmark
DATABASE_URL="postgresql://postgres@127.0.0.1:$PG_PORT/postgres" \
  bazel-bin/tests/electric/electric_barrier_benchmark
