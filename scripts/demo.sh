#!/usr/bin/env bash
# The whole cutover flow on the embedded default: SQLite legacy DB + files under var/media
# → SQLite Flask DB + files under var/flask_media. Installs what it needs first.
# It rebuilds var/legacy.sqlite3, var/flask.sqlite3, var/media and var/flask_media.
source "$(dirname "$0")/bootstrap.sh" runtime
unset LEGACY_DATABASE_URL LEGACY_MEDIA_ROOT FLASK_DATABASE_URL FLASK_MEDIA_ROOT FLASK_S3_BUCKET

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

rm -rf var/legacy.sqlite3 var/flask.sqlite3* var/media var/flask_media var/reports/demo
step "1. legacy app: migrate and seed demo data (with files and every dirty case of real data)"
"$PY" manage.py migrate -v0
"$PY" manage.py seed_legacy --scale demo --seed 1

step "2. freeze the legacy app (read-only for the cutover window)"
"$PY" manage.py flask_freeze on --message "Demo cutover in progress"

step "3. export_to_flask: rows (SQLite → var/flask.sqlite3), then files (→ var/flask_media)"
"$PY" manage.py export_to_flask --create-schema --report-dir var/reports/demo

step "4. what the report says"
"$PY" - <<'PY'
import json
r = json.load(open("var/reports/demo/report.json"))
print("status:", r["status"], "| rows written:", r["totals"]["written"], "| rejected:", r["totals"]["rejected"],
      "| skipped:", r["totals"]["skipped"], "| source frozen for the whole run:", r["source_frozen"]["whole_run"])
print("passwords:", json.dumps(r["passwords"]))
print("attributions:", {k: len(v) for k, v in r["attributions"].items()},
      "| archived duplicate sessions:", len(r["archived_duplicate_sessions"]))
print("rejects by reason:", json.dumps(r["rejects"]))
PY

step "5. verify_flask (counters repaired; the demo data has files missing in the legacy storage too)"
"$PY" manage.py verify_flask --fix-counts --accept-missing-source-files --report var/reports/demo/verify.json

step "6. unfreeze (the demo leaves the legacy app live again)"
"$PY" manage.py flask_freeze off
echo "reports: var/reports/demo/{report.json,rejects.ndjson,verify.json}  target: var/flask.sqlite3, var/flask_media/"
