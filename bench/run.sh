#!/usr/bin/env bash
# One command for the HTTP bench (docs/performance.md, "Issue and list under gunicorn"):
#   bench/run.sh [--quick] [--rounds N] [--seconds S] [--workers W] [--connections C] [--profile] [--ab NAME=VALUE]
# Installs wrk (Debian) if absent and the project's dependencies (.venv), starts a throwaway
# PostgreSQL 15 (scripts/pg_test_cluster.sh), runs bench/http_bench.py against it, removes it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v wrk >/dev/null 2>&1; then
    echo "[bench] installing wrk" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q wrk >&2 || { apt-get update -q >&2 && apt-get install -y -q wrk >&2; }
fi
make -s install
exec scripts/pg_test_cluster.sh with .venv/bin/python bench/http_bench.py "$@"
