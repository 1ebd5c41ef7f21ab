#!/usr/bin/env bash
# Checks the C++ and proto sources (tracked *.cc, *.h, *.proto) against
# .clang-format (clang-format-14, Debian; Google style covers protos too).
#
#   bash scripts/check-format.sh          # check; fails on any file that drifts
#   bash scripts/check-format.sh --fix    # format the files that drift, in place
#
# Files listed in scripts/format-pending.txt predate .clang-format and are
# only reported until the tree is formatted once (--fix, then delete the
# list); every other tracked file, new ones included, must match.
# Ends with "format: N passed, M failed" (pending files count as neither).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$WAKE_ROOT"

fix=0
case "${1:-}" in
  --fix) fix=1 ;;
  "") ;;
  -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
  *) die "unknown argument: $1 (see --help)" ;;
esac

install_packages clang-format-14
PENDING_LIST=scripts/format-pending.txt
declare -A pending=()
if [ -f "$PENDING_LIST" ]; then
  while IFS= read -r line; do
    [[ -z "$line" || "$line" == \#* ]] && continue
    pending["$line"]=1
  done <"$PENDING_LIST"
fi

mapfile -t files < <(git ls-files -- '*.cc' '*.h' '*.proto' | grep -v '/node_modules/')
passed=0
failed=0
pending_drift=()
pending_clean=()
for file in "${files[@]}"; do
  if clang-format-14 --style=file --dry-run --Werror "$file" >/dev/null 2>&1; then
    passed=$((passed + 1))
    [ -n "${pending[$file]:-}" ] && pending_clean+=("$file")
    continue
  fi
  if [ "$fix" = 1 ]; then
    clang-format-14 --style=file -i "$file"
    log "formatted $file"
    passed=$((passed + 1))
  elif [ -n "${pending[$file]:-}" ]; then
    pending_drift+=("$file")
  else
    failed=$((failed + 1))
    echo "not formatted: $file (bash scripts/check-format.sh --fix, or clang-format-14 -i $file)"
    clang-format-14 --style=file "$file" | diff -u "$file" - | head -n 20 || true
  fi
done
if [ "${#pending_drift[@]}" -gt 0 ]; then
  echo "pending (listed in $PENDING_LIST, not yet formatted): ${#pending_drift[@]} files"
fi
if [ "${#pending_clean[@]}" -gt 0 ]; then
  echo "now formatted, can leave $PENDING_LIST: ${pending_clean[*]}"
fi
echo "format: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
