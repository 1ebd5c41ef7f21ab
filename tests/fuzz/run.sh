#!/usr/bin/env bash
# Builds the fuzz targets of tests/fuzz/ with clang and libFuzzer (ASan and
# UBSan on) and runs each one from its checked-in corpus.
#
#   bash tests/fuzz/run.sh [--seconds S | --runs N] [--jobs J] [TARGET ...]
#
# Default: every target for 10 s (the CI smoke; scripts/test.sh runs it with
# --seconds 5). The manual run: --runs 1000000. New inputs libFuzzer finds go
# to a scratch copy of the corpus (WORK/corpus/TARGET), not into the tree;
# crashes go to WORK/crashes/ and fail the run. Ends with one line per target
# (executions, coverage, crashes) and "fuzz: N passed, M failed".
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib.sh"
cd "$WAKE_ROOT"

seconds=10
runs=""
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift ;;
    --runs) runs=$2; shift ;;
    -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
    *) targets+=("$1") ;;
  esac
  shift
done
all_targets=(registry_validation runtime_validation pgoutput electric condition_json token_file)
[ "${#targets[@]}" -eq 0 ] && targets=("${all_targets[@]}")

install_debian_packages clang-14 libfuzzer-14-dev
WORK=${WAKE_FUZZ_WORK:-$WAKE_ROOT/.wakeline/fuzz}
mkdir -p "$WORK/bin" "$WORK/crashes" "$WORK/corpus"

# The generated protobuf sources come from the ordinary build.
bazel_cmd build //proto:registry_cc_grpc //proto:runtime_cc_grpc >&2
GEN="$WAKE_ROOT/bazel-bin/proto"
ABSL_LIBS=()
for lib in /usr/lib/x86_64-linux-gnu/libabsl_*.so; do
  name=$(basename "$lib" .so)
  ABSL_LIBS+=("-l${name#lib}")
done
CXXFLAGS=(-std=c++17 -O1 -g -fno-omit-frame-pointer
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
  -I. -I"$GEN" -Iproto -Wno-deprecated-declarations)
LIBS=(-lgrpc++ -lgrpc -lgpr -lprotobuf -lssl -lcrypto -lpthread "${ABSL_LIBS[@]}")

# build TARGET: the sources Bazel knows for its corpus test, minus the plain
# main and //bazel/tsan (`query` follows both branches of a select(); that
# library belongs to --config=tsan builds only).
build() {
  local target=$1 sources=()
  mapfile -t sources < <(
    bazel_cmd query "kind('source file', deps(//tests/fuzz:${target}_fuzz_corpus_test))" \
      2>/dev/null | grep -E '^//[^@]*\.cc$' | grep -v -e 'fuzz_main.cc' -e '^//bazel/tsan:' |
      sed -e 's|^//||' -e 's|:|/|' -e 's|^/||')
  local generated=()
  mapfile -t generated < <(
    bazel_cmd query "kind('generated file', deps(//tests/fuzz:${target}_fuzz_corpus_test))" \
      2>/dev/null | grep -E 'pb\.cc$' | sed -e 's|^//proto:|'"$GEN"'/|')
  log "clang++ $target (${#sources[@]} sources, ${#generated[@]} generated)"
  clang++-14 "${CXXFLAGS[@]}" "${sources[@]}" "${generated[@]}" "${LIBS[@]}" \
    -o "$WORK/bin/${target}_fuzz"
}

passed=0
failed=0
summary=()
for target in "${targets[@]}"; do
  build "$target"
  rm -rf "$WORK/corpus/$target"
  cp -r "tests/fuzz/corpus/$target" "$WORK/corpus/$target"
  limit=(-max_total_time="$seconds")
  [ -n "$runs" ] && limit=(-runs="$runs")
  status=0
  (cd "$WORK" && "./bin/${target}_fuzz" "${limit[@]}" -max_len=65536 -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="crashes/${target}-" \
    "corpus/$target") >"$WORK/$target.log" 2>&1 || status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$WORK/$target.log" | tail -n 1)
  cov=$(grep -oE 'cov: [0-9]+' "$WORK/$target.log" | tail -n 1 || true)
  crashes=$(find "$WORK/crashes" -name "${target}-*" | wc -l)
  if [ "$status" -eq 0 ] && [ "$crashes" -eq 0 ]; then
    passed=$((passed + 1))
    summary+=("$target: ${execs:-?} executions, ${cov:-cov: ?}, 0 crashes")
  else
    failed=$((failed + 1))
    summary+=("$target: FAILED (exit $status, $crashes crash files in $WORK/crashes; log $WORK/$target.log)")
    tail -n 30 "$WORK/$target.log" >&2
  fi
done
printf '%s\n' "${summary[@]}"
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
