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
#   6. the unit tests and the in-process integration tests again, built with
#      TSan (`bazel test --config=tsan`; the list and what is left out below);
#   7. the tree built with clang's -Wthread-safety as errors (`--config=tsa`,
#      in an output base of its own: see .bazelrc);
#   8. scripts/check-format.sh: the C++ and proto sources against .clang-format;
#   9. tests/fuzz/run.sh --seconds 5: every libFuzzer target, 5 s each.
#  10. deploy/test-images.sh: both images built from source with podman, the
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
# bazel_suite NAME LOG ARGS...: runs `bazel ARGS...` into LOG, adds
# "NAME: N passed, M failed (time)" to the summary and a failure to status.
bazel_suite() {
  local name=$1 log=$2
  shift 2
  local started suite_status suite_passed suite_failed
  started=$(date +%s)
  set +e
  bazel "$@" 2>&1 | tee "$log"
  suite_status=${PIPESTATUS[0]}
  set -e
  suite_passed=$(grep -cE '^//[^ ]+ +(\(cached\) )?PASSED' "$log" || true)
  suite_failed=$(grep -cE '^//[^ ]+ +(\(cached\) )?(FAILED|TIMEOUT|NO STATUS|FAILED TO BUILD|INCOMPLETE|FLAKY)' \
    "$log" || true)
  [ "$suite_status" -ne 0 ] && [ "$suite_failed" -eq 0 ] && suite_failed=1
  summary+=("$name: $suite_passed passed, $suite_failed failed ($(elapsed "$started"))")
  if [ "$suite_status" -ne 0 ] && [ "$status" -eq 0 ]; then status=$suite_status; fi
  return 0
}
status=0
summary=()
bazel_suite bazel "$PG_DIR/bazel-test.log" test --test_summary=short "${targets[@]}"
if [ "$all_suites" = 1 ]; then
  # ASan + UBSan: the same tests but the end-to-end ones (their many processes
  # under ASan add minutes and find nothing the unit and integration tests
  # do not reach) and the benchmarks. --build_tests_only: only what those
  # tests need is built with ASan (no benchmarks, chaos tools or end-to-end
  # tests).
  bazel_suite asan+ubsan "$PG_DIR/asan.log" test --config=asan --build_tests_only \
    --test_summary=short --test_tag_filters=-e2e,-benchmark-build //...
  # TSan: every unit test, and the integration tests that run the store and
  # the sync sources in-process against PostgreSQL (threads of their own and
  # of libpqxx). Left out for time: the tests that drive the service
  # binaries as processes (integration registry/startup/limits, security,
  # end-to-end: the same code the in-process tests run, at many times the
  # cost under TSan), the Electric client conformance test (node), the fuzz
  # corpora and the benchmarks.
  bazel_suite tsan "$PG_DIR/tsan.log" test --config=tsan --build_tests_only \
    --test_summary=short --test_tag_filters=-e2e,-benchmark-build \
    //common/... //registry-service/... //runtime-service/... //tests/support/... \
    //tests/integration:postgres_wake_store_test //tests/integration:durable_events_test \
    //tests/sync_postgres:postgres_sync_source_test //tests/electric:electric_sync_source_test \
    //tests/electric:electric_postgres_integration_test
  # The other suites start their own stack; this cluster is no longer needed.
  stop_cluster "$PG_DIR/data"
  # Thread-safety analysis: a build, no tests, with clang in its own output
  # base (shut down afterwards: its server would hold a gigabyte meanwhile).
  # Not //...: it would walk into the default output base's bazel-* links.
  tsa_base="$HOME/.cache/bazel/wakeline-tsa-$(printf '%s' "$WAKE_ROOT" | md5sum | cut -c1-8)"
  started=$(date +%s)
  set +e
  bazel --output_base="$tsa_base" build --config=tsa //common/... //proto/... \
    //registry-service/... //runtime-service/... //tests/... //scripts/... 2>&1 | tee "$PG_DIR/tsa.log"
  tsa_status=${PIPESTATUS[0]}
  bazel --output_base="$tsa_base" shutdown
  set -e
  tsa_findings=$(grep -cE '\[-Werror,-Wthread-safety' "$PG_DIR/tsa.log" || true)
  if [ "$tsa_status" -eq 0 ]; then
    summary+=("thread-safety (clang -Wthread-safety): clean ($(elapsed "$started"))")
  else
    summary+=("thread-safety (clang -Wthread-safety): FAILED, $tsa_findings findings ($(elapsed "$started"))")
    [ "$status" -eq 0 ] && status=$tsa_status
  fi
  started=$(date +%s)
  set +e
  bash scripts/check-format.sh 2>&1 | tee "$PG_DIR/format.log"
  format_status=${PIPESTATUS[0]}
  set -e
  format_line=$(grep -E '^format: ' "$PG_DIR/format.log" | tail -n 1 || true)
  summary+=("${format_line:-format: did not report (exit $format_status)} ($(elapsed "$started"))")
  [ "$format_status" -ne 0 ] && [ "$status" -eq 0 ] && status=$format_status
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
