#!/usr/bin/env bash
# Checks the C++ and proto sources (tracked *.cc, *.h, *.proto) against
# .clang-format (clang-format-14, Debian; Google style covers protos too).
#
#   bash scripts/check-format.sh          # check; fails on any file that drifts
#   bash scripts/check-format.sh --fix    # format the files that drift, in place
#
# Every tracked file must match. Ends with "format: N passed, M failed".
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$WAKE_ROOT"

fix=0
case "${1:-}" in
  --fix) fix=1 ;;
  "") ;;
  -h | --help) sed -n '2,8p' "$0"; exit 0 ;;
  *) die "unknown argument: $1 (see --help)" ;;
esac

install_packages clang-format-14
mapfile -t files < <(git ls-files -- '*.cc' '*.h' '*.proto' | grep -v '/node_modules/')
passed=0
failed=0
for file in "${files[@]}"; do
  if clang-format-14 --style=file --dry-run --Werror "$file" >/dev/null 2>&1; then
    passed=$((passed + 1))
    continue
  fi
  if [ "$fix" = 1 ]; then
    clang-format-14 --style=file -i "$file"
    log "formatted $file"
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "not formatted: $file (bash scripts/check-format.sh --fix, or clang-format-14 -i $file)"
    clang-format-14 --style=file "$file" | diff -u "$file" - | head -n 20 || true
  fi
done
echo "format: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
