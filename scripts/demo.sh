#!/usr/bin/env bash
# A two-minute tour on the default SQLite queue ($XDG_DATA_HOME/queuectl/queuectl.db):
# installs queuectl into .venv if needed, enqueues a few jobs in a queue named `demo`,
# runs a worker on that queue, and shows retries, the DLQ and a DLQ retry.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/queuectl ]; then
    "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
fi
export PATH="$PWD/.venv/bin:$PATH"

run() { printf '\n$ %s\n' "$*"; "$@"; }
tag=$(date +%s)

run queuectl enqueue "{\"id\":\"hello-$tag\",\"command\":\"echo Hello World\",\"queue\":\"demo\"}"
run queuectl enqueue "{\"id\":\"nap-$tag\",\"command\":\"sleep 2; echo rested\",\"queue\":\"demo\"}"
run queuectl enqueue --queue demo --priority 10 "{\"id\":\"urgent-$tag\",\"command\":\"echo I jump the line\"}"
run queuectl enqueue --queue demo --max-retries 2 "{\"id\":\"flaky-$tag\",\"command\":\"echo trying; exit 3\"}"
run queuectl status

printf '\n$ queuectl worker start --count 2 --queue demo   (in the background)\n'
queuectl worker start --count 2 --queue demo &
worker=$!
trap 'kill -TERM $worker 2>/dev/null || true' EXIT

# Wait until every demo job has finished (completed or dead); `flaky` fails twice (2 s backoff).
for _ in $(seq 1 150); do
    left=$(queuectl list --queue demo --json | "$PYTHON" -c \
        'import json,sys; print(sum(j["state"] not in ("completed","dead") for j in json.load(sys.stdin)))')
    [ "$left" = 0 ] && break
    sleep 0.2
done

run queuectl list --queue demo
run queuectl logs "nap-$tag"
run queuectl dlq list
run queuectl dlq retry "flaky-$tag"
run queuectl show "flaky-$tag"

printf '\n$ kill -TERM %s   (like Ctrl+C: finish running jobs, then exit)\n' "$worker"
kill -TERM "$worker"
wait "$worker" || true
trap - EXIT
# The retried `flaky` job would otherwise wait in your queue for your next worker.
queuectl cancel "flaky-$tag" >/dev/null 2>&1 || true  # unless it is dead again already
run queuectl status
