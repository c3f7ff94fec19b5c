#!/usr/bin/env bash
# The test command of the README and of CI. pytest's exit code 5 ("no tests ran")
# means the suite was not found or everything was deselected: that is a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
export QT_QPA_PLATFORM="${QT_QPA_PLATFORM:-offscreen}"
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "run_tests: pytest collected no tests — treating as a failure" >&2
  exit 1
fi
exit "$rc"
