#!/bin/sh
# One-command benchmark: see bench/README.md. Arguments are passed to run.py.
set -e
here=$(cd "$(dirname "$0")" && pwd)
py="${BENCH_PYTHON:-$here/../.venv/bin/python}"
[ -x "$py" ] || py=python3
exec "$py" "$here/run.py" "$@"
