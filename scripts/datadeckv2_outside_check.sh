#!/usr/bin/env bash
# Outside check against the REAL DataDeckv2 app (github.com/admiralorbiter/DataDeckv2).
# Not part of the test suite: it needs a snapshot of the app (a bare git directory) and
# PyPI for the app's own, unpinned requirements (~1-2 minutes to install).
#
#   bash scripts/datadeckv2_outside_check.sh GIT_DIR [WORK_DIR]
#   DD2_MODES="schema export" bash scripts/datadeckv2_outside_check.sh GIT_DIR [WORK_DIR]
#
# Two modes (DD2_MODES, default "schema"):
#   schema  the app on a database our flask_models.datadeckv2 create_all() made, with a small
#           world inserted by hand; the app's own create_all() compared with ours
#   export  the app on a target PRODUCED by the migration: seed_legacy --scale small --seed 1,
#           export_to_flask --target-schema datadeckv2 (files into the checkout's
#           static/uploads/, where the app serves them), verify_flask; then logins and pages
#           of people picked from legacy_id_map and the seed manifest, and a sweep of every
#           migrated row's pages. Also bench/bench_pin_hash.py (the PIN methods' rates).
#
# GIT_DIR: the app's git directory (e.g. the search tool's fetch mirror). WORK_DIR (default:
# a new mktemp dir) receives the checkout, a virtualenv with the app's requirements and
# the databases; it is reused when it already has them (the export mode's legacy database,
# target and reports, in WORK_DIR/export, are made anew each time). Set DD2_PG_URL to a
# server URL (postgresql://postgres@127.0.0.1:5432/postgres) to repeat each mode on
# PostgreSQL in throwaway databases (dd2_ours, dd2_apps; dd2_export); DD2_MARIADB_URL
# (mysql://root@127.0.0.1:3306/mysql) likewise on MariaDB (schema mode only), adding
# PyMySQL to the app venv. The server databases are dropped at the end unless DD2_KEEP=1.
# Our side runs in this project's .venv.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
GIT_DIR=${1:?usage: $0 GIT_DIR [WORK_DIR]}
WORK=${2:-$(mktemp -d /tmp/dd2check.XXXXXX)}
OURS_PY=.venv/bin/python
SCRIPT=scripts/datadeckv2_outside_check.py
MODES=" ${DD2_MODES:-schema} "

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

pg_db() {  # $1 database: (re)created empty on the DD2_PG_URL server
  "$OURS_PY" -c "import sqlalchemy as sa; e=sa.create_engine('${DD2_PG_URL/postgresql:\/\//postgresql+psycopg://}', isolation_level='AUTOCOMMIT');
c=e.connect(); c.execute(sa.text('DROP DATABASE IF EXISTS $1 WITH (FORCE)')); c.execute(sa.text('CREATE DATABASE $1'))"
}

if [[ "$MODES" == *" schema "* ]]; then
run_dialect sqlite "sqlite:///$WORK/ours.sqlite3" "sqlite:///$WORK/apps.sqlite3"

if [ -n "${DD2_PG_URL:-}" ]; then
  base=${DD2_PG_URL%/*}
  pg_db dd2_ours
  pg_db dd2_apps
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
fi  # schema mode

if [[ "$MODES" == *" export "* ]]; then
  # The migration's own output: a seeded legacy database exported by export_to_flask with the
  # datadeckv2 profile, files copied into the app checkout's static/uploads/.
  E="$WORK/export"
  rm -rf "$E" && mkdir -p "$E"
  legacy_env() {
    LEGACY_DATABASE_URL="sqlite:///$E/legacy.sqlite3" LEGACY_MEDIA_ROOT="$E/media" FLASK_MEDIA_ROOT="$UPLOADS" "$@"
  }
  load() { echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) CPUs)"; }
  echo "== export: PIN hashing rate on this machine (bench/bench_pin_hash.py --seconds 4)"
  load
  "$OURS_PY" bench/bench_pin_hash.py --seconds 4
  echo "== export: the legacy database (seed_legacy --scale small --seed 1)"
  legacy_env "$OURS_PY" manage.py migrate -v0 2>/dev/null
  legacy_env "$OURS_PY" manage.py seed_legacy --scale small --seed 1 --manifest "$E/manifest.json" | tail -1

  run_export() {  # $1 label, $2 target URL for our side (manage.py, pick), $3 the same for the app
    echo "== export ($1): export_to_flask --target-schema datadeckv2 (no --pin-hash-method)"
    load
    legacy_env /usr/bin/time -o "$E/export-$1.time" -f "export_to_flask: %e s wall, %U s user, %S s system" \
      "$OURS_PY" manage.py export_to_flask --target "$2" --target-schema datadeckv2 --create-schema \
      --allow-live --report-dir "$E/report-$1" > "$E/export-$1.log" 2>&1 \
      || { tail -20 "$E/export-$1.log"; return 1; }
    tail -1 "$E/export-$1.time"
    # the table and the file summary (the progress lines and the root causes are in the log)
    awk '/^entity /{p=1} /^rejected or skipped/{p=0} p' "$E/export-$1.log"
    "$OURS_PY" -c "import json,sys; r=json.load(open(sys.argv[1])); print('report.json pin_hashing:', json.dumps(r['pin_hashing']), '| seconds:', r['seconds'])" "$E/report-$1/report.json"
    echo "== export ($1): verify_flask --fix-counts --accept-missing-source-files"
    local rc=0
    legacy_env "$OURS_PY" manage.py verify_flask --target "$2" --fix-counts --accept-missing-source-files \
      --report "$E/verify-$1.json" > "$E/verify-$1.log" 2>&1 || rc=$?
    awk '/^check /{p=1} /^rows the target must not hold/{p=0} /checks passed|checks FAILED/{p=1} p' "$E/verify-$1.log" \
      | grep -v '^-*$'
    echo "verify_flask exit status: $rc"
    echo "== export ($1): the real app on the exported database"
    load
    "$OURS_PY" "$SCRIPT" pick "$(ours_url "$2")" "$E/legacy.sqlite3" "$E/manifest.json" "$E/media" "$E/subjects-$1.json"
    "$APP_PY" "$SCRIPT" probe-export "$3" "$WORK/app" "$E/subjects-$1.json"
  }

  run_export sqlite "sqlite:///$E/dd2.sqlite3" "sqlite:///$E/dd2.sqlite3"
  if [ -n "${DD2_PG_URL:-}" ]; then
    pg_db dd2_export
    base=${DD2_PG_URL%/*}
    # ours: postgresql+psycopg (psycopg 3); the app: postgresql+psycopg2 (what it installs)
    run_export postgresql "${base/postgresql:\/\//postgresql+psycopg://}/dd2_export" \
      "${base/postgresql:\/\//postgresql+psycopg2://}/dd2_export"
  fi
fi  # export mode

# Leave nothing on shared servers unless asked to (DD2_KEEP=1 keeps dd2_ours, dd2_apps, dd2_export).
if [ "${DD2_KEEP:-}" != "1" ]; then
  [ -n "${DD2_PG_URL:-}" ] && "$OURS_PY" -c "import sqlalchemy as sa; e=sa.create_engine('${DD2_PG_URL/postgresql:\/\//postgresql+psycopg://}', isolation_level='AUTOCOMMIT');
c=e.connect(); [c.execute(sa.text(f'DROP DATABASE IF EXISTS {db} WITH (FORCE)')) for db in ('dd2_ours', 'dd2_apps', 'dd2_export')]"
  [ -n "${DD2_MARIADB_URL:-}" ] && "$OURS_PY" -c "import sqlalchemy as sa; e=sa.create_engine('${DD2_MARIADB_URL/mysql:\/\//mysql+mysqldb://}', isolation_level='AUTOCOMMIT');
c=e.connect(); [c.execute(sa.text(f'DROP DATABASE IF EXISTS {db}')) for db in ('dd2_ours', 'dd2_apps')]"
fi
exit 0
