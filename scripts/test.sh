#!/usr/bin/env bash
# Runs every test: installs missing Debian packages, starts a throwaway
# PostgreSQL cluster (removed afterwards), then
#   1. `bazel test //...`: unit, integration and end-to-end tests (benchmarks
#      are only built), including Electric's TypeScript client against the
#      scripted Electric (npm ci in tests/electric/conformance first);
#   2. tests/polyglot/run.sh: the Python, Go and TypeScript clients against the
#      real binaries;
#   3. tests/load/run.sh --smoke: every ghz load row for a second, so the load
#      suite cannot rot;
#   4. tests/chaos/run.sh --smoke: 1,500 wakes through two registries and two
#      runtimes while a registry, a runtime, a runner and PostgreSQL are
#      killed or restarted and a connection cut (about 30 s of faults);
#   5. the unit and integration tests again, built with ASan and UBSan
#      (`bazel test --config=asan`, end-to-end tests and benchmarks left out);
#   6. tests/fuzz/run.sh --seconds 5: every libFuzzer target, 5 s each.
#   7. deploy/test-images.sh: both images built from source with podman, the
#      embedded default started with podman-compose, a wake end to end,
#      metrics, clean SIGTERM exits (as root; the base image is kept between
#      runs).
# Ends with one summary line per suite, with its duration, and the total, and
# fails if any suite failed.
# Extra arguments go to bazel test (e.g. --config=asan or a target pattern);
# with any, only the bazel suite runs.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$WAKE_ROOT/scripts/toolchains.sh"
cd "$WAKE_ROOT"
script_started=$(date +%s)

install_debian_packages
# Electric's TypeScript client checks the scripted Electric from the client
# side (//tests/electric:electric_client_conformance_test).
ensure_electric_client
export WAKE_ELECTRIC_CLIENT_DIR="$WAKE_ROOT/tests/electric/conformance"
export WAKE_NODE
WAKE_NODE=$(command -v node)

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
all_suites=0
[ "${#targets[@]}" -eq 0 ] && targets=(//...) && all_suites=1
# elapsed SINCE: seconds since SINCE (from `date +%s`), as "Ns".
elapsed() { echo "$(($(date +%s) - $1))s"; }
started=$(date +%s)
set +e
bazel test --test_summary=short "${targets[@]}" 2>&1 | tee "$PG_DIR/bazel-test.log"
status=${PIPESTATUS[0]}
set -e
bazel_time=$(elapsed "$started")
passed=$(grep -cE '^//[^ ]+ +(\(cached\) )?PASSED' "$PG_DIR/bazel-test.log" || true)
failed=$(grep -cE '^//[^ ]+ +(\(cached\) )?(FAILED|TIMEOUT|NO STATUS|FAILED TO BUILD|INCOMPLETE|FLAKY)' \
  "$PG_DIR/bazel-test.log" || true)
summary=("bazel: $passed passed, $failed failed ($bazel_time)")
if [ "$all_suites" = 1 ]; then
  # ASan + UBSan: the same tests but the end-to-end ones (their many processes
  # under ASan add minutes and find nothing the unit and integration tests
  # do not reach) and the benchmarks.
  started=$(date +%s)
  set +e
  # --build_tests_only: only what those tests need is built with ASan (no
  # benchmarks, chaos tools or end-to-end tests).
  bazel test --config=asan --build_tests_only --test_summary=short \
    --test_tag_filters=-e2e,-benchmark-build //... 2>&1 | tee "$PG_DIR/asan.log"
  asan_status=${PIPESTATUS[0]}
  set -e
  asan_time=$(elapsed "$started")
  asan_passed=$(grep -cE '^//[^ ]+ +(\(cached\) )?PASSED' "$PG_DIR/asan.log" || true)
  asan_failed=$(grep -cE '^//[^ ]+ +(\(cached\) )?(FAILED|TIMEOUT|NO STATUS|FAILED TO BUILD|INCOMPLETE|FLAKY)' \
    "$PG_DIR/asan.log" || true)
  [ "$asan_status" -ne 0 ] && [ "$asan_failed" -eq 0 ] && asan_failed=1
  summary+=("asan+ubsan: $asan_passed passed, $asan_failed failed ($asan_time)")
  [ "$asan_status" -ne 0 ] && [ "$status" -eq 0 ] && status=$asan_status
  # The other suites start their own stack; this cluster is no longer needed.
  stop_cluster "$PG_DIR/data"
  set +e
  started=$(date +%s)
  bash tests/polyglot/run.sh 2>&1 | tee "$PG_DIR/polyglot.log"
  polyglot_status=${PIPESTATUS[0]}
  polyglot_time=$(elapsed "$started")
  started=$(date +%s)
  bash tests/load/run.sh --smoke --out "$PG_DIR/load" 2>&1 | tee "$PG_DIR/load.log"
  load_status=${PIPESTATUS[0]}
  load_time=$(elapsed "$started")
  started=$(date +%s)
  bash tests/chaos/run.sh --smoke 2>&1 | tee "$PG_DIR/chaos.log"
  chaos_status=${PIPESTATUS[0]}
  chaos_time=$(elapsed "$started")
  started=$(date +%s)
  WAKE_FUZZ_WORK="$PG_DIR/fuzz" bash tests/fuzz/run.sh --seconds 5 2>&1 | tee "$PG_DIR/fuzz.log"
  fuzz_status=${PIPESTATUS[0]}
  fuzz_time=$(elapsed "$started")
  started=$(date +%s)
  images_status=0
  if [ "$(id -u)" = 0 ]; then
    bash deploy/test-images.sh 2>&1 | tee "$PG_DIR/images.log"
    images_status=${PIPESTATUS[0]}
  else
    echo "image test: skipped (podman runs rootful here: run as root)" | tee "$PG_DIR/images.log"
  fi
  images_time=$(elapsed "$started")
  set -e
  polyglot_line=$(grep -E '^polyglot: ' "$PG_DIR/polyglot.log" | tail -n 1 || true)
  summary+=("${polyglot_line:-polyglot: did not report (exit $polyglot_status)} ($polyglot_time)")
  [ "$polyglot_status" -ne 0 ] && [ "$status" -eq 0 ] && status=$polyglot_status
  if [ "$load_status" -eq 0 ]; then
    summary+=("load smoke: passed (every ghz row ran without errors) ($load_time)")
  else
    summary+=("load smoke: FAILED (exit $load_status) ($load_time)")
    [ "$status" -eq 0 ] && status=$load_status
  fi
  chaos_line=$(grep -E '^RESULT: ' "$PG_DIR/chaos.log" | tail -n 1 || true)
  summary+=("chaos smoke: ${chaos_line:-did not report (exit $chaos_status)} ($chaos_time)")
  [ "$chaos_status" -ne 0 ] && [ "$status" -eq 0 ] && status=$chaos_status
  fuzz_line=$(grep -E '^fuzz: ' "$PG_DIR/fuzz.log" | tail -n 1 || true)
  summary+=("${fuzz_line:-fuzz: did not report (exit $fuzz_status)} ($fuzz_time)")
  [ "$fuzz_status" -ne 0 ] && [ "$status" -eq 0 ] && status=$fuzz_status
  images_line=$(grep -E '^image test: ' "$PG_DIR/images.log" | tail -n 1 || true)
  summary+=("images: ${images_line#image test: }${images_line:+ }($images_time)")
  if [ -z "$images_line" ] || [ "$images_status" -ne 0 ]; then
    summary[-1]="images: FAILED (exit $images_status) ($images_time)"
    [ "$status" -eq 0 ] && status=$images_status
    [ "$status" -eq 0 ] && status=1
  fi
fi
summary+=("total: $(elapsed "$script_started") (packages, cluster and every suite)")
echo
printf '%s\n' "${summary[@]}"
exit "$status"
