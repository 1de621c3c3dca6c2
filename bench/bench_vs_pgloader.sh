#!/usr/bin/env bash
# bench_vs_pgloader in one command: starts MariaDB/PostgreSQL when down, makes .venv when
# missing, then runs bench/bench_vs_pgloader.py with the given options (pgloader itself is
# installed by the Python script when missing).
#   bash bench/bench_vs_pgloader.sh --scale small
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/ensure_services.sh
[ -x .venv/bin/python ] || source scripts/bootstrap.sh
exec .venv/bin/python bench/bench_vs_pgloader.py "$@"
