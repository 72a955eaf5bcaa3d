#!/usr/bin/env bash
# Runs the compiled test files (*.test.js) under the given dist/ folders, one
# file at a time. Files are listed explicitly because Node 20's `node --test
# <dir>` also runs every other .js under a folder named `test` (fixtures such
# as the netns agent, which would wait on stdin forever).
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(find "$@" -name '*.test.js' -type f | sort)
if [ "${#files[@]}" -eq 0 ]; then
  echo "scripts/test.sh: no *.test.js under $*" >&2
  exit 1
fi
exec node --test --test-concurrency=1 "${files[@]}"
