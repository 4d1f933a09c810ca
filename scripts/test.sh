#!/usr/bin/env bash
# The test command: sets up .venv if needed, installs queuectl with its dev tools,
# then runs the linter, the formatter check, the strict type checker and pytest.
# Extra arguments go to pytest (e.g. scripts/test.sh -k kill -x; -n 0 for one process).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -c 'import sys; assert sys.version_info >= (3, 11), "queuectl needs Python 3.11+"'
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'

echo "== ruff check"; .venv/bin/ruff check .
echo "== ruff format --check"; .venv/bin/ruff format --check .
echo "== mypy (strict)"; .venv/bin/mypy
# Two test processes (pytest-xdist): most tests wait on real workers and
# subprocesses, so two at a time roughly halve the wall time on two cores.
# `scripts/test.sh -n 0 ...` runs them in one process (for -s or --pdb).
echo "== pytest"; .venv/bin/python -m pytest -m "not slow" -n 2 "$@"
