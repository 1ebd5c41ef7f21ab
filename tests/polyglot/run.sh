#!/usr/bin/env bash
# Polyglot client tests: the Python, Go and TypeScript clients (clients/)
# against the real registry-service and runtime-service on a throwaway
# PostgreSQL cluster. Builds the binaries, generates the stubs, runs pytest,
# go test and node --test, cleans everything up, and ends with the line
#   polyglot: N passed, M failed
#   bash tests/polyglot/run.sh [python] [go] [typescript]   (default: all three)
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib.sh"
source "$WAKE_ROOT/scripts/toolchains.sh"
source "$WAKE_ROOT/scripts/stack.sh"
cd "$WAKE_ROOT"

languages=("$@")
[ "${#languages[@]}" -eq 0 ] && languages=(python go typescript)
for language in "${languages[@]}"; do
  case "$language" in
    python | go | typescript) ;;
    *) die "unknown language '$language' (python, go, typescript)" ;;
  esac
done

install_debian_packages
STACK_DIR=$(mktemp -d /tmp/wakeline-polyglot.XXXXXX)
PASSED=0
FAILED=0
REPORTED=0
cleanup() {
  stack_stop
  rm -rf "$STACK_DIR"
  # Stopped before the tests finished (build, stubs or services failed): the
  # suites that did not report count as failed.
  if [ "$REPORTED" = 0 ]; then
    echo "polyglot: $PASSED passed, $((FAILED + ${#languages[@]} - SUITES_DONE)) failed"
  fi
}
SUITES_DONE=0
trap cleanup EXIT
trap 'exit 130' INT TERM

stack_build
bash clients/generate.sh "${languages[@]}"
stack_start

# count SUITE PASSED FAILED STATUS: adds one suite's counts; a suite that failed
# without reporting a failed test (build error, crash) counts as one failure.
count() {
  local suite=$1 passed=${2:-0} failed=${3:-0} status=$4
  if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
  if [ "$status" -eq 0 ] && [ "$passed" -eq 0 ]; then
    log "$suite ran no test"
    failed=$((failed + 1))
  fi
  log "$suite: $passed passed, $failed failed"
  PASSED=$((PASSED + passed))
  FAILED=$((FAILED + failed))
  SUITES_DONE=$((SUITES_DONE + 1))
}

run_python() {
  local out="$STACK_DIR/python.out" status=0
  log "pytest (clients/python)"
  clients/python/.venv/bin/python -m pytest -v clients/python 2>&1 | tee "$out" || status=$?
  local summary
  summary=$(grep -E '^=+ .* in [0-9.]+s' "$out" | tail -n 1 || true)
  count python "$(grep -oE '[0-9]+ passed' <<<"$summary" | grep -oE '[0-9]+' || echo 0)" \
    "$(grep -oE '[0-9]+ (failed|error)' <<<"$summary" | awk '{ n += $1 } END { print n + 0 }')" "$status"
}

run_go() {
  local out="$STACK_DIR/go.out" status=0
  ensure_go
  log "go test (clients/go)"
  (cd clients/go && go test -count=1 -v ./...) 2>&1 | tee "$out" || status=$?
  count go "$(grep -cE '^--- PASS' "$out" || true)" "$(grep -cE '^--- FAIL' "$out" || true)" "$status"
}

run_typescript() {
  local out="$STACK_DIR/typescript.out" status=0
  log "node --test (clients/typescript)"
  (cd clients/typescript && node_modules/.bin/tsc -p tsconfig.json &&
    node --test --test-reporter=tap dist/test/wake.test.js) 2>&1 | tee "$out" || status=$?
  count typescript "$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$out" | tail -n 1)" \
    "$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$out" | tail -n 1)" "$status"
}

for language in "${languages[@]}"; do
  "run_$language"
done

if [ "$FAILED" -ne 0 ]; then
  for service in registry runtime; do
    log "last lines of the $service-service log:"
    tail -n 15 "$STACK_DIR/$service.log" >&2 || true
  done
fi
REPORTED=1
echo "polyglot: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
