#!/usr/bin/env bash
# Installs what the tests need and runs them: bash scripts/test.sh [pytest args]
# Tests against MariaDB (127.0.0.1:3306, root) and PostgreSQL (127.0.0.1:5432, postgres)
# skip when the server is unreachable, except under CI=true where they must run.
source "$(dirname "$0")/bootstrap.sh" dev

if [ "${CI:-}" = "true" ]; then
  bash scripts/ensure_services.sh
fi
exec "$PY" -m pytest "$@"
