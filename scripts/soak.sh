#!/usr/bin/env bash
# The soak tier: the tests marked `slow` (full-size fault runs, on SQLite and
# PostgreSQL), which print their figures: recovery time after kill -9 (median and
# worst), duplicate runs, "locked" errors seen, peak worker memory. A few minutes.
# Needs .venv (scripts/test.sh creates it) and, for the PostgreSQL half, the server
# of $QUEUECTL_TEST_PG. Extra arguments go to pytest (scripts/soak.sh -k sqlite).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m pytest -m slow -s -q -p no:cacheprovider "$@"
