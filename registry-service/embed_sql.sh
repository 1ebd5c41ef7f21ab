#!/usr/bin/env bash
# Turns migrations/NNNN_name.sql files into C++ initializers:
#   {NNNN, "NNNN_name", R"wakesql(...)wakesql"},
set -euo pipefail
for file in "$@"; do
  base=$(basename "$file" .sql)
  version=$((10#${base%%_*}))
  printf '{%d, "%s", R"wakesql(' "$version" "$base"
  cat "$file"
  printf ')wakesql"},\n'
done
