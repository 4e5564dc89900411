#!/usr/bin/env bash
# `make test`'s two test runs, at the same time: every test on SQLite, and the database
# tests (marker `db`) on PostgreSQL. Both spend much of their time waiting on server and
# worker processes, sockets and deadlines, so together they take little more than the
# longer one alone (measured in docs/status.md). Each run has its own database, its own
# temporary directory and its own Redis database number (TEST_REDIS_URL, read by
# tests/helpers.py). The SQLite run prints as it goes; the PostgreSQL run's output is
# printed when both are done. Exit status: non-zero if either run failed.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
log=$(mktemp -t printvault-postgres-run.XXXXXX)
postgres_pid=""

stop_postgres_run() {
    if [ -n "$postgres_pid" ] && kill -0 "$postgres_pid" 2>/dev/null; then
        kill "$postgres_pid" 2>/dev/null
        wait "$postgres_pid" 2>/dev/null
    fi
    rm -f "$log"
}
# A background job of a script ignores Ctrl-C: stop it ourselves when we are stopped.
trap stop_postgres_run EXIT
trap 'exit 130' INT TERM

echo "=== test run 2/2 started in the background: database tests, backend PostgreSQL (127.0.0.1:5432) ==="
TEST_DATABASE=postgres TEST_REDIS_URL=redis://127.0.0.1:6379/1 \
    "$PYTHON" -m pytest -m db -p no:cacheprovider "$@" >"$log" 2>&1 &
postgres_pid=$!

echo "=== test run 1/2: every test, database backend SQLite ==="
TEST_DATABASE=sqlite TEST_REDIS_URL=redis://127.0.0.1:6379/0 "$PYTHON" -m pytest "$@"
sqlite_status=$?

wait "$postgres_pid"
postgres_status=$?
postgres_pid=""
echo "=== test run 2/2: database tests, backend PostgreSQL (127.0.0.1:5432) ==="
cat "$log"
echo "=== SQLite run: exit $sqlite_status; PostgreSQL run: exit $postgres_status ==="
[ "$sqlite_status" -eq 0 ] && [ "$postgres_status" -eq 0 ]
