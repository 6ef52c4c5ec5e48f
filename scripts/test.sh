#!/usr/bin/env bash
# Install what the test suite needs into the current Python environment, then run it.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -m "not browser"`).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

"$PY" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
"$PY" -m pip install --quiet -e ".[test]" || { echo "pip install failed" >&2; exit 1; }

"$PY" -m ruff check . || exit 1

"$PY" -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "error: pytest collected no tests" >&2
    exit 1
fi
exit "$rc"
