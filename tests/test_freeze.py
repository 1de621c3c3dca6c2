"""Read-only freeze: the guard's SQL rule, the client scenarios per legacy
dialect (tests/freeze_scenarios.py), and two processes sharing the flag."""
import json
import os
import subprocess
import sys
import time

import pytest

from .conftest import PROJECT_ROOT, run_manage
from migration_bridge.freeze import FreezeState, LegacyFrozenError, refusal


# The guard's rule, without a database: refusal(sql) is what it refuses while frozen.
@pytest.mark.parametrize("quote", ['"', "`"])  # SQLite-PostgreSQL / MySQL quoting
@pytest.mark.parametrize("sql, blocked", [
    # Plain writes of legacy tables, however spelled.
    ("INSERT INTO {q}video_app_comment{q} ({q}text{q}) VALUES (%s)", True),
    ("INSERT OR IGNORE INTO {q}video_app_media{q} VALUES (%s)", True),
    ("INSERT IGNORE INTO {q}video_app_media{q} VALUES (%s)", True),
    ("INSERT OR REPLACE INTO {q}video_app_media{q} VALUES (%s)", True),
    ("REPLACE INTO {q}video_app_media{q} VALUES (%s)", True),
    ("  update {q}video_app_media{q} SET {q}eye_likes{q} = %s", True),
    ("UPDATE LOW_PRIORITY IGNORE {q}video_app_media{q} SET {q}eye_likes{q} = 1", True),
    ("DELETE FROM {q}video_app_session{q} WHERE id IN (%s)", True),
    ("DELETE {q}video_app_comment{q} FROM {q}video_app_comment{q} INNER JOIN x", True),
    ("UPDATE {q}legacy{q}.{q}video_app_district{q} SET {q}name{q} = %s", True),
    ("INSERT INTO {q}video_app_customadmin_groups{q} VALUES (%s, %s)", True),  # auto-created M2M
    # The bypasses of issue 11.
    ("/* x */ UPDATE {q}video_app_media{q} SET {q}title{q} = %s", True),
    ("-- x\nUPDATE {q}video_app_media{q} SET {q}title{q} = %s", True),
    ("# x\nDELETE FROM {q}video_app_media{q}", True),
    ("INSERT {q}video_app_district{q} ({q}name{q}) VALUES (%s)", True),
    ("REPLACE {q}video_app_district{q} ({q}name{q}) VALUES (%s)", True),
    ("UPDATE {q}django_content_type{q}, {q}video_app_district{q} SET {q}name{q} = %s", True),
    ("UPDATE {q}django_content_type{q} c JOIN {q}video_app_district{q} d ON 1 = 1 SET d.name = %s", True),
    ("UPDATE ({q}django_content_type{q} JOIN {q}video_app_district{q} ON 1 = 1) SET name = %s", True),
    ("DELETE t FROM {q}django_content_type{q} c JOIN {q}video_app_comment{q} t ON 1 = 1", True),
    ("DELETE FROM t USING {q}django_content_type{q} c JOIN {q}video_app_comment{q} t", True),
    ("UPDATE {q}video_app_customadmin{q} SET {q}password{q} = %s WHERE {q}id{q} > %s", True),
    ("UPDATE {q}video_app_customadmin{q} SET {q}password{q} = %s"
     " WHERE {q}video_app_customadmin{q}.{q}id{q} = %s", True),  # the hash upgrade: refused too
    ("UPDATE {q}video_app_customadmin{q} SET {q}last_login{q} = %s", True),  # every row
    ("UPDATE {q}video_app_customadmin{q} SET {q}last_login{q} = %s WHERE {q}id{q} > %s", True),
    ("UPDATE {q}video_app_customadmin{q} SET {q}last_login{q} = %s, {q}email{q} = %s"
     " WHERE {q}video_app_customadmin{q}.{q}id{q} = %s", True),
    ("/* x */ UPDATE {q}video_app_customadmin{q} SET {q}last_login{q} = %s"
     " WHERE {q}video_app_customadmin{q}.{q}id{q} = %s", True),  # not what login() sends
    ("SELECT 1; UPDATE {q}video_app_media{q} SET {q}title{q} = %s", True),  # two statements
    ("WITH d AS (DELETE FROM {q}video_app_media{q} RETURNING *) SELECT * FROM d", True),
    ("EXPLAIN ANALYZE DELETE FROM {q}video_app_media{q}", True),
    ("MERGE INTO {q}video_app_media{q} m USING x ON 1 = 1 WHEN MATCHED THEN UPDATE SET title = %s", True),
    pytest.param("INSERT INTO {q}video_app_comment{q} ({q}text{q}) VALUES " + ", ".join(["(%s)"] * 3000), True,
                 id="bulk-insert-legacy"),
    pytest.param("INSERT INTO {q}django_session{q} ({q}session_key{q}) VALUES " + ", ".join(["(%s)"] * 3000),
                 False, id="bulk-insert-session"),
    # DDL, routines, triggers, dynamic SQL: refused whatever the table.
    ("CREATE TRIGGER t AFTER INSERT ON {q}django_session{q} FOR EACH ROW DELETE FROM x", True),
    ("CREATE PROCEDURE p() DELETE FROM {q}video_app_comment{q}", True),
    ("CREATE FUNCTION f() RETURNS int RETURN 1", True),
    ("CALL p()", True),
    ("DO $$ BEGIN DELETE FROM x; END $$", True),
    ("PREPARE s FROM 'DELETE FROM video_app_comment'", True),
    ("EXECUTE s", True),
    ("TRUNCATE TABLE {q}video_app_student{q}", True),
    ("ALTER TABLE {q}video_app_media{q} ADD COLUMN x int", True),
    ("DROP TABLE IF EXISTS {q}django_session{q}", True),
    ("CREATE TABLE {q}scratch{q} (id int)", True),
    ("CREATE UNIQUE INDEX {q}i{q} ON {q}video_app_media{q} ({q}title{q})", True),
    ("SELECT * INTO {q}copy{q} FROM {q}video_app_media{q}", True),
    ("COPY {q}video_app_media{q} FROM STDIN", True),
    ("LOAD DATA INFILE '/tmp/x' INTO TABLE {q}video_app_media{q}", True),
    ("PRAGMA writable_schema = 1", True),
    # Allowed while frozen.
    ("INSERT INTO {q}django_session{q} VALUES (%s)", False),
    ("UPDATE {q}django_session{q} SET {q}session_data{q} = %s WHERE x", False),
    ("DELETE FROM {q}django_session{q} WHERE {q}expire_date{q} < %s", False),
    ("INSERT INTO {q}django_admin_log{q} VALUES (%s)", False),
    ("UPDATE {q}migration_bridge_legacyfreeze{q} SET {q}frozen{q} = %s WHERE x", False),
    ("UPDATE {q}video_app_customadmin{q} SET {q}last_login{q} = %s"
     " WHERE {q}video_app_customadmin{q}.{q}id{q} = %s", False),  # login()
    ("SELECT * FROM {q}video_app_media{q} FOR UPDATE", False),
    ("SELECT REPLACE({q}title{q}, 'a', 'b') FROM {q}video_app_media{q}", False),
    ("/* x */ SELECT 1", False),
    ("SELECT a INTO @x FROM {q}video_app_media{q}", False),
    ("SAVEPOINT {q}s1{q}", False),
    ("RELEASE SAVEPOINT {q}s1{q}", False),
    ("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED", False),
    ("PRAGMA foreign_keys = OFF", False),
    ("SHOW FULL TABLES", False),
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


# --- the bypasses of issue 11 on a real frozen database -----------------------
#
# One process freezes with `flask_freeze on`; another (PROBE) sends each statement
# through Django's connection while frozen and says what happened and whether any
# legacy row changed. Each statement is the way a write slipped past the old guard
# (or a write it already refused); on SQLite the MySQL-only spellings cannot run, so
# there they only show that the guard refuses them before the database sees them.

PROBE = r"""
import json, sys, django
django.setup()
from django.db import connection
from migration_bridge.freeze import LegacyFrozenError, is_frozen

cases = json.loads(sys.argv[1])

def snapshot():
    with connection.cursor() as cursor:
        out = []
        for sql in ("SELECT id, name, code, is_active FROM video_app_district ORDER BY id",
                    "SELECT id, text FROM video_app_comment ORDER BY id",
                    "SELECT id, password, email FROM video_app_customadmin ORDER BY id"):
            cursor.execute(sql)
            out.append([list(map(str, row)) for row in cursor.fetchall()])
        return out

results = {}
assert is_frozen(use_cache=False)
for name, (sql, params) in cases.items():
    before = snapshot()
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params or None)
        outcome = "executed"
    except LegacyFrozenError:
        outcome = "refused"
    except Exception as exc:  # the database itself rejected it (e.g. MySQL syntax on SQLite)
        outcome = "database error: " + type(exc).__name__
    results[name] = {"outcome": outcome, "changed": snapshot() != before}
print(json.dumps(results))
"""

# name -> {dialect: (sql, params)}; "*" for both.
BYPASSES = {
    "leading_block_comment": {"*": ("/* x */ UPDATE video_app_district SET name = 'hacked 1'", [])},
    "leading_line_comment": {"*": ("-- x\nUPDATE video_app_district SET name = 'hacked 2'", [])},
    "insert_without_into": {"*": ("INSERT video_app_district (name, code, created_at, is_active)"
                                  " VALUES ('i', 'i', '2020-01-01', 1)", [])},
    "replace_without_into": {"*": ("REPLACE video_app_district (id, name, code, created_at, is_active)"
                                   " VALUES (77, 'r', 'r', '2020-01-01', 1)", [])},
    "multi_table_update": {
        "mariadb": ("UPDATE django_content_type c, video_app_district d SET d.is_active = 0", []),
        "sqlite": ("UPDATE video_app_district SET is_active = 0 FROM django_content_type", [])},
    "multi_table_delete": {
        "mariadb": ("DELETE t FROM django_content_type c JOIN video_app_comment t ON 1 = 1", []),
        "sqlite": ("DELETE FROM video_app_comment WHERE id IN (SELECT c.id FROM django_content_type d"
                   " JOIN video_app_comment c ON 1 = 1)", [])},
    "password_of_every_user": {"*": ("UPDATE video_app_customadmin SET password = %s WHERE id > %s",
                                     ["x", 0])},
    "create_trigger": {
        "mariadb": ("CREATE TRIGGER mb_wipe AFTER INSERT ON django_session FOR EACH ROW"
                    " DELETE FROM video_app_comment", []),
        "sqlite": ("CREATE TRIGGER mb_wipe AFTER INSERT ON django_session BEGIN"
                   " DELETE FROM video_app_comment; END", [])},
    "create_procedure": {"*": ("CREATE PROCEDURE mb_wipe2() DELETE FROM video_app_comment", [])},
    "call_procedure": {"*": ("CALL mb_wipe_live()", [])},  # created before the freeze
    # Already refused by the old guard.
    "plain_insert": {"*": ("INSERT INTO video_app_district (name, code, created_at, is_active)"
                           " VALUES ('p', 'p', '2020-01-01', 1)", [])},
    "plain_update": {"*": ("UPDATE video_app_district SET name = 'u'", [])},
    "plain_delete": {"*": ("DELETE FROM video_app_comment", [])},
    "user_email": {"*": ("UPDATE video_app_customadmin SET email = 'e@x.org' WHERE id = %s", [1])},
    "truncate": {"mariadb": ("TRUNCATE TABLE video_app_comment", []),
                 "sqlite": ("DELETE FROM video_app_comment", [])},
}
ALLOWED = {  # writes that stay allowed while frozen, and must go through
    "session_insert": {"*": ("INSERT INTO django_session (session_key, session_data, expire_date)"
                             " VALUES ('k', 'd', '2030-01-01')", [])},
    "login_last_login": {
        "mariadb": ("UPDATE `video_app_customadmin` SET `last_login` = %s"
                    " WHERE `video_app_customadmin`.`id` = %s", ["2025-01-01 00:00:00", 1]),
        "sqlite": ('UPDATE "video_app_customadmin" SET "last_login" = %s'
                   ' WHERE "video_app_customadmin"."id" = %s', ["2025-01-01 00:00:00", 1])},
}

SEED = r"""
import django
django.setup()
from django.apps import apps
from django.contrib.auth import get_user_model
from django.db import connection
District = apps.get_model("video_app", "District")
district = District.objects.create(name="North", code="N")
get_user_model().objects.create_user("teacher", password="pw", district=district)
teacher = get_user_model().objects.get()
session = apps.get_model("video_app", "Session").objects.create(
    name="P2", session_code="ABCD1234", section=2, created_by=teacher)
media = apps.get_model("video_app", "Media").objects.create(session=session, title="t", media_type="image")
apps.get_model("video_app", "Comment").objects.create(media=media, name="n", text="kept")
if connection.vendor == "mysql":
    with connection.cursor() as cursor:
        cursor.execute("CREATE PROCEDURE mb_wipe_live() DELETE FROM video_app_comment")
"""


def _cases(table: dict, dialect: str) -> dict:
    return {name: forms.get(dialect, forms.get("*")) for name, forms in table.items()}


@pytest.fixture(scope="module", params=["sqlite", "mariadb"])
def probed(request, make_module_database):
    """The PROBE's results for BYPASSES and ALLOWED on one frozen legacy database."""
    db = make_module_database(request.param)
    env = {"LEGACY_DATABASE_URL": db.django_url}
    run_manage("migrate", "-v0", env=env)
    full_env = {**os.environ, **env, "DJANGO_SETTINGS_MODULE": "legacy_app.settings"}
    subprocess.run([sys.executable, "-c", SEED], cwd=PROJECT_ROOT, env=full_env, check=True, timeout=120)
    run_manage("flask_freeze", "on", "--message", "probe", env=env)
    cases = {**_cases(BYPASSES, request.param), **_cases(ALLOWED, request.param)}
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(cases)], cwd=PROJECT_ROOT, env=full_env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return request.param, json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", sorted(BYPASSES))
def test_frozen_database_refuses(probed, case):
    dialect, results = probed
    assert results[case] == {"outcome": "refused", "changed": False}, f"{dialect}: {case}"


@pytest.mark.parametrize("case", sorted(ALLOWED))
def test_frozen_database_allows(probed, case):
    dialect, results = probed
    assert results[case]["outcome"] == "executed", f"{dialect}: {case}"


# A process that has just read the flag (cached for 60 s here) writes right after
# `flask_freeze on` returned in another process: refused, the cache does not count.
CACHED_WRITER = r"""
import sys, django
django.setup()
from django.apps import apps
from migration_bridge.freeze import LegacyFrozenError, is_frozen
District = apps.get_model("video_app", "District")
assert not is_frozen()  # primes this process's cache: live, for 60 s
print("primed", flush=True)
sys.stdin.readline()  # the test freezes in another process meanwhile
assert not is_frozen(), "the cache should still say live"
try:
    District.objects.create(name="late", code="late")
    print("written")
except LegacyFrozenError:
    print("refused")
"""


@pytest.mark.parametrize("dialect", ["sqlite", "mariadb"])
def test_a_cached_live_flag_does_not_let_a_write_through(dialect, make_database):
    db = make_database(dialect)
    env = {"LEGACY_DATABASE_URL": db.django_url, "MIGRATION_BRIDGE_OVERRIDES": '{"FREEZE_CACHE_SECONDS": 60}'}
    run_manage("migrate", "-v0", env=env)
    writer = subprocess.Popen([sys.executable, "-c", CACHED_WRITER],
                              cwd=PROJECT_ROOT, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE,
                              env={**os.environ, **env, "DJANGO_SETTINGS_MODULE": "legacy_app.settings"})
    try:
        assert writer.stdout.readline().strip() == "primed", writer.stderr.read()
        run_manage("flask_freeze", "on", env=env)
        out, err = writer.communicate("go\n", timeout=60)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    assert writer.returncode == 0, err
    assert out.strip() == "refused"


# A transaction that wrote to the legacy app before the freeze: `flask_freeze on` waits
# for it to end, so once the command has returned no write is still on its way.
OPEN_TRANSACTION = r"""
import sys, time, django
django.setup()
from django.apps import apps
from django.db import transaction
District = apps.get_model("video_app", "District")
with transaction.atomic():
    District.objects.create(name="in flight", code="f")
    print("written", flush=True)
    time.sleep(float(sys.argv[1]))
    print(f"committing {time.time()}", flush=True)
"""


@pytest.mark.parametrize("dialect", ["sqlite", "mariadb", "postgresql"])
def test_freeze_on_waits_for_transactions_that_wrote(dialect, make_database):
    db = make_database(dialect)
    env = {"LEGACY_DATABASE_URL": db.django_url}
    run_manage("migrate", "-v0", env=env)
    hold = 2.0
    writer = subprocess.Popen([sys.executable, "-c", OPEN_TRANSACTION, str(hold)], cwd=PROJECT_ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env={**os.environ, **env, "DJANGO_SETTINGS_MODULE": "legacy_app.settings"})
    try:
        assert writer.stdout.readline().strip() == "written", writer.stderr.read()
        run_manage("flask_freeze", "on", env=env)
        returned = time.time()
        out, err = writer.communicate(timeout=60)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    assert writer.returncode == 0, err
    committed = float(out.split()[-1])
    assert returned >= committed, "flask_freeze on returned while a write transaction was still open"


def test_the_freeze_installs_and_works_on_a_sqlite_database_with_orphan_rows(make_database):
    # Django's SQLite schema editor checks every foreign key of the database when a
    # migration ends; the bridge's migration must not depend on old orphans elsewhere.
    import sqlite3

    db = make_database("sqlite")
    env = {"LEGACY_DATABASE_URL": db.django_url}
    for app in ("video_app", "sessions", "admin"):  # the legacy project as it was
        run_manage("migrate", app, "-v0", env=env)
    path = db.url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute("INSERT INTO video_app_district (id, name, code, created_at, is_active)"
                     " VALUES (1, 'North', 'N', '2020-01-01', 1)")
        conn.execute("INSERT INTO video_app_comment (media_id, text, created_at, updated_at, name, is_admin)"
                     " VALUES (999, 'orphan', '2020-01-01', '2020-01-01', 'n', 0)")
        conn.execute("INSERT INTO video_app_observer (name, password, district_id, email, created_at, is_active)"
                     " VALUES ('o', 'x', 77, 'o@example.org', '2020-01-01', 1)")
        orphans = conn.execute("PRAGMA foreign_key_check").fetchall()
    assert len(orphans) == 2

    assert "CREATE TABLE" in run_manage("sqlmigrate", "migration_bridge", "0001", env=env).stdout
    run_manage("migrate", "migration_bridge", "-v0", env=env)
    run_manage("flask_freeze", "on", "--message", "dirty", env=env)
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps({"update": ("UPDATE video_app_district SET name = 'x'", [])})],
        cwd=PROJECT_ROOT, env={**os.environ, **env, "DJANGO_SETTINGS_MODULE": "legacy_app.settings"},
        capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert json.loads(probe.stdout.strip().splitlines()[-1])["update"] == {"outcome": "refused", "changed": False}
    run_manage("flask_freeze", "off", env=env)
    run_manage("migrate", "migration_bridge", "zero", "-v0", env=env)  # and comes off again
    with sqlite3.connect(path) as conn:
        assert len(conn.execute("PRAGMA foreign_key_check").fetchall()) == 2  # orphans untouched
