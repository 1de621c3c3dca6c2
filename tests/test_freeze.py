"""Read-only freeze: the guard's SQL rule, the client scenarios per legacy
dialect (tests/freeze_scenarios.py), and two processes sharing the flag."""
import json
import os
import subprocess
import sys
import time

import pytest

from .conftest import PROJECT_ROOT, run_manage
from migration_bridge.freeze import FreezeState, LegacyFrozenError, refusal, written_table


@pytest.mark.parametrize("quote", ['"', "`"])  # SQLite / MySQL quoting
@pytest.mark.parametrize("sql, expected", [
    ("INSERT INTO {q}video_app_comment{q} ({q}text{q}) VALUES (%s)", ("INSERT", "video_app_comment")),
    ("INSERT OR IGNORE INTO {q}video_app_media{q} VALUES (%s)", ("INSERT", "video_app_media")),
    ("INSERT IGNORE INTO {q}video_app_media{q} VALUES (%s)", ("INSERT", "video_app_media")),
    ("REPLACE INTO {q}video_app_media{q} VALUES (%s)", ("REPLACE", "video_app_media")),
    ("  update {q}video_app_media{q} SET {q}eye_likes{q} = %s", ("UPDATE", "video_app_media")),
    ("DELETE FROM {q}video_app_session{q} WHERE id IN (%s)", ("DELETE", "video_app_session")),
    ("DELETE {q}video_app_comment{q} FROM {q}video_app_comment{q} INNER JOIN x", ("DELETE", "video_app_comment")),
    ("TRUNCATE TABLE {q}video_app_student{q}", ("TRUNCATE", "video_app_student")),
    ("ALTER TABLE {q}video_app_media{q} ADD COLUMN x int", ("ALTER", "video_app_media")),
    ("DROP TABLE IF EXISTS {q}video_app_media{q}", ("DROP", "video_app_media")),
    ("CREATE UNIQUE INDEX {q}i{q} ON {q}video_app_media{q} ({q}title{q})", ("CREATE", "video_app_media")),
    ("UPDATE {q}legacy{q}.{q}video_app_district{q} SET {q}name{q} = %s", ("UPDATE", "video_app_district")),
    ("SELECT * FROM {q}video_app_media{q} FOR UPDATE", None),
    ("SAVEPOINT {q}s1{q}", None),
])
def test_written_table(sql, expected, quote):
    assert written_table(sql.format(q=quote)) == expected


@pytest.mark.parametrize("quote", ['"', "`"])
@pytest.mark.parametrize("sql, blocked", [
    ("INSERT INTO {q}video_app_comment{q} VALUES (%s)", True),
    ("INSERT INTO {q}video_app_customadmin_groups{q} VALUES (%s, %s)", True),  # auto-created M2M
    ("INSERT INTO {q}django_session{q} VALUES (%s)", False),
    ("UPDATE {q}django_session{q} SET {q}session_data{q} = %s WHERE x", False),
    ("INSERT INTO {q}django_admin_log{q} VALUES (%s)", False),
    ("UPDATE {q}migration_bridge_legacyfreeze{q} SET {q}frozen{q} = %s WHERE x", False),
    # Auth bookkeeping: exactly one of last_login / password, nothing else.
    ("UPDATE {q}video_app_customadmin{q} SET {q}last_login{q} = %s WHERE {q}id{q} = %s", False),
    ("UPDATE {q}video_app_customadmin{q} SET {q}password{q} = %s WHERE {q}id{q} = %s", False),
    ("UPDATE {q}video_app_customadmin{q} SET {q}last_login{q} = %s, {q}email{q} = %s WHERE x", True),
    ("UPDATE {q}video_app_customadmin{q} SET {q}email{q} = %s WHERE x", True),
    ("UPDATE {q}video_app_customadmin{q} SET {q}last_login{q} = %s", True),  # every row
    ("UPDATE {q}video_app_student{q} SET {q}password{q} = %s WHERE x", True),  # not the user table
    ("SELECT 1", False),
])
def test_guard_rule(sql, blocked, quote):
    assert (refusal(sql.format(q=quote)) is not None) == blocked


def test_error_names_the_freeze():
    import datetime as dt

    state = FreezeState(True, "Moving", "ops", dt.datetime(2025, 3, 1, 12, tzinfo=dt.timezone.utc))
    error = LegacyFrozenError(state, "INSERT", "video_app_comment")
    assert str(error) == ("legacy app is frozen for the migration (read-only since 2025-03-01 12:00:00 UTC,"
                          " by ops): Moving [refused INSERT on video_app_comment]")


def test_client_scenarios(legacy_dialect, make_database):
    """tests/freeze_scenarios.py, with pytest-django on this dialect's fresh database."""
    db = make_database(legacy_dialect)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(PROJECT_ROOT / "tests" / "freeze_scenarios.py"),
         "-q", "-p", "no:cacheprovider", "--create-db"],
        cwd=PROJECT_ROOT, env={**os.environ, "LEGACY_DATABASE_URL": db.django_url},
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout


# A second process: primes its cache while live, then waits for each change.
WATCHER = """
import json, time, django
django.setup()
from django.apps import apps
from migration_bridge.freeze import LegacyFrozenError, cache_seconds, is_frozen

def wait(want):
    deadline = time.time() + 30
    while is_frozen() != want:
        if time.time() > deadline:
            raise SystemExit(f"never saw frozen={want}")
        time.sleep(0.02)
    return time.time()

District = apps.get_model("video_app", "District")
assert not is_frozen()
print("ready", flush=True)
seen = wait(True)
try:
    District.objects.create(name="during", code="d")
    refused = ""
except LegacyFrozenError as exc:
    refused = str(exc)
print("seen", flush=True)
unseen = wait(False)
District.objects.create(name="after", code="a")
print(json.dumps({"seen": seen, "unseen": unseen, "refused": refused, "cache": cache_seconds()}), flush=True)
"""


@pytest.mark.slow
def test_two_processes_share_the_flag(legacy_dialect, make_database):
    db = make_database(legacy_dialect)
    env = {"LEGACY_DATABASE_URL": db.django_url}
    run_manage("migrate", "-v0", env=env)
    watcher = subprocess.Popen(
        [sys.executable, "-c", WATCHER], cwd=PROJECT_ROOT, text=True,
        env={**os.environ, **env, "DJANGO_SETTINGS_MODULE": "legacy_app.settings"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        assert watcher.stdout.readline().strip() == "ready", watcher.stderr.read()
        run_manage("flask_freeze", "on", "--message", "cutover", env=env)
        frozen_at = time.time()
        assert watcher.stdout.readline().strip() == "seen", watcher.stderr.read()
        run_manage("flask_freeze", "off", env=env)
        live_at = time.time()
        out, err = watcher.communicate(timeout=60)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    assert watcher.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    slack = 0.5  # polling and scheduling
    assert result["seen"] - frozen_at <= result["cache"] + slack
    assert result["unseen"] - live_at <= result["cache"] + slack
    assert "frozen for the migration" in result["refused"] and "cutover" in result["refused"]
    status = run_manage("flask_freeze", "status", env=env).stdout
    assert status.startswith("live")


def test_migrate_gets_through_the_guard_on_a_fresh_postgresql_database(make_database):
    # The guard reads the freeze table before `migrate` has created it; on PostgreSQL a
    # failed read must not abort migrate's own transaction.
    db = make_database("postgresql")
    run_manage("migrate", "-v0", env={"LEGACY_DATABASE_URL": db.django_url})
    proc = run_manage("flask_freeze", "status", env={"LEGACY_DATABASE_URL": db.django_url})
    assert "live" in proc.stdout.lower()


def test_a_wrong_legacy_label_is_a_system_check_error_not_a_crash(tmp_path):
    env = {"LEGACY_DATABASE_URL": f"sqlite:///{tmp_path}/legacy.sqlite3",
           "MIGRATION_BRIDGE_OVERRIDES": '{"LEGACY_APP": "videos"}'}
    check = run_manage("check", env=env, check=False)
    assert check.returncode != 0 and "migration_bridge.E001" in check.stderr + check.stdout
