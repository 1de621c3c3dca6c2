#!/usr/bin/env bash
# Outside check for the mirrored DataDeckv2 schema (flask_models/datadeckv2.py): runs the
# REAL DataDeckv2 app against a database our create_all() made. Not part of the test suite:
# it needs a snapshot of github.com/admiralorbiter/DataDeckv2 (a bare git directory) and
# PyPI for the app's own, unpinned requirements (~1-2 minutes to install).
#
#   bash scripts/datadeckv2_outside_check.sh GIT_DIR [WORK_DIR]
#
# GIT_DIR: the app's git directory (e.g. the search tool's fetch mirror). WORK_DIR (default:
# a new mktemp dir) receives the checkout, a virtualenv with the app's requirements and
# the databases; it is reused when it already has them. Set DD2_PG_URL to a server URL
# (postgresql://postgres@127.0.0.1:5432/postgres) to repeat the schema comparison and the
# probe on PostgreSQL in throwaway databases (dd2_ours, dd2_apps); DD2_MARIADB_URL
# (mysql://root@127.0.0.1:3306/mysql) likewise on MariaDB, adding PyMySQL to the app venv.
# The server databases are dropped at the end unless DD2_KEEP=1. Our side runs in this
# project's .venv.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
GIT_DIR=${1:?usage: $0 GIT_DIR [WORK_DIR]}
WORK=${2:-$(mktemp -d /tmp/dd2check.XXXXXX)}
OURS_PY=.venv/bin/python
SCRIPT=scripts/datadeckv2_outside_check.py

echo "work dir: $WORK"
if [ ! -f "$WORK/app/app.py" ]; then
  mkdir -p "$WORK/app"
  git --git-dir "$GIT_DIR" archive HEAD | tar -x -C "$WORK/app"
fi
echo "app commit: $(git --git-dir "$GIT_DIR" rev-parse HEAD)"
if [ ! -x "$WORK/venv/bin/flask" ]; then
  python3 -m venv "$WORK/venv"
  "$WORK/venv/bin/pip" install -q -r "$WORK/app/requirements.txt"
fi
APP_PY="$WORK/venv/bin/python"
UPLOADS="$WORK/app/static/uploads"

ours_url() { local u=${1/+psycopg2/+psycopg}; echo "${u/+pymysql/+mysqldb}"; }  # our .venv: psycopg 3, mysqlclient

run_dialect() {  # $1 label, $2 URL for our DB, $3 URL for the app's own DB
  echo "== $1: schema created by the real app's db.create_all() vs ours"
  "$OURS_PY" - "$3" <<'EOF'
import sys, sqlalchemy as sa
url = sys.argv[1]
if url.startswith("sqlite"):
    import os; p = url.removeprefix("sqlite:///"); os.path.exists(p) and os.remove(p)
EOF
  "$APP_PY" "$SCRIPT" appschema "$3" "$WORK/app"
  "$OURS_PY" - "$2" <<'EOF'
import sys, sqlalchemy as sa
from flask_models import datadeckv2 as d
e = sa.create_engine(sys.argv[1].replace("+psycopg2", "+psycopg").replace("+pymysql", "+mysqldb"))
d.drop_all(e); d.create_all(e); e.dispose()
EOF
  "$OURS_PY" "$SCRIPT" compare "$(ours_url "$2")" "$(ours_url "$3")" || true
  echo "== $1: the real app on a database populated through flask_models.datadeckv2"
  IDS=$("$OURS_PY" "$SCRIPT" prepare "$(ours_url "$2")" "$UPLOADS")
  "$APP_PY" "$SCRIPT" probe "$2" "$WORK/app" "$IDS"
}

run_dialect sqlite "sqlite:///$WORK/ours.sqlite3" "sqlite:///$WORK/apps.sqlite3"

if [ -n "${DD2_PG_URL:-}" ]; then
  base=${DD2_PG_URL%/*}
  for db in dd2_ours dd2_apps; do
    "$OURS_PY" -c "import sqlalchemy as sa; e=sa.create_engine('${DD2_PG_URL/postgresql:\/\//postgresql+psycopg://}', isolation_level='AUTOCOMMIT');
c=e.connect(); c.execute(sa.text('DROP DATABASE IF EXISTS $db WITH (FORCE)')); c.execute(sa.text('CREATE DATABASE $db'))"
  done
  echo "== postgresql: the app as configured (DATABASE_URL=postgresql://...)"
  "$APP_PY" "$SCRIPT" appschema "$base/dd2_apps" "$WORK/app" 2>&1 | tail -1 || true
  echo "   (SQLAlchemy 2.1 maps postgresql:// to psycopg 3; the app installs psycopg2-binary:"
  echo "    the rest of the check names the driver: postgresql+psycopg2://)"
  pbase=${base/postgresql:\/\//postgresql+psycopg2://}
  run_dialect postgresql "$pbase/dd2_ours" "$pbase/dd2_apps"
fi

if [ -n "${DD2_MARIADB_URL:-}" ]; then
  # The app ships no MySQL driver; PyMySQL (pure Python, PyPI) is added to ITS venv only.
  "$WORK/venv/bin/pip" install -q pymysql
  base=${DD2_MARIADB_URL%/*}
  for db in dd2_ours dd2_apps; do
    "$OURS_PY" -c "import sqlalchemy as sa; e=sa.create_engine('${DD2_MARIADB_URL/mysql:\/\//mysql+mysqldb://}', isolation_level='AUTOCOMMIT');
c=e.connect(); c.execute(sa.text('DROP DATABASE IF EXISTS $db')); c.execute(sa.text('CREATE DATABASE $db CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci'))"
  done
  mbase=${base/mysql:\/\//mysql+pymysql://}
  run_dialect mariadb "$mbase/dd2_ours?charset=utf8mb4" "$mbase/dd2_apps?charset=utf8mb4"
fi

# Leave nothing on shared servers unless asked to (DD2_KEEP=1 keeps dd2_ours / dd2_apps).
if [ "${DD2_KEEP:-}" != "1" ]; then
  [ -n "${DD2_PG_URL:-}" ] && "$OURS_PY" -c "import sqlalchemy as sa; e=sa.create_engine('${DD2_PG_URL/postgresql:\/\//postgresql+psycopg://}', isolation_level='AUTOCOMMIT');
c=e.connect(); [c.execute(sa.text(f'DROP DATABASE IF EXISTS {db} WITH (FORCE)')) for db in ('dd2_ours', 'dd2_apps')]"
  [ -n "${DD2_MARIADB_URL:-}" ] && "$OURS_PY" -c "import sqlalchemy as sa; e=sa.create_engine('${DD2_MARIADB_URL/mysql:\/\//mysql+mysqldb://}', isolation_level='AUTOCOMMIT');
c=e.connect(); [c.execute(sa.text(f'DROP DATABASE IF EXISTS {db}')) for db in ('dd2_ours', 'dd2_apps')]"
fi
exit 0
