"""Issue 12: every failure is one line, a documented exit code and a safe re-run.

One test per row of the issue's table, MariaDB → PostgreSQL unless the row says
otherwise: each asserts the exit code, that stderr is one line without a traceback, and
that a re-run converges to the target a clean run produces. Small data (`demo` scale),
cheap PIN methods (slow ones only where a run must last long enough to be interrupted).
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

import flask_models as fm
from migration_bridge import bookkeeping as bk
from migration_bridge.pinpool import PinPool

from .conftest import PROJECT_ROOT, run_manage, schema_snapshot, seed_legacy
from .test_export import target_snapshot

CHEAP = ("--pin-hash-method", "pbkdf2:sha256:1")
SLOW = ("--pin-hash-method", "pbkdf2:sha256:100000", "--batch-size", "10")  # ~6 s of students
COMMON = ("--allow-live", "--skip-files")


@pytest.fixture(scope="module")
def legacy(make_module_database):
    return seed_legacy(make_module_database, "mariadb", "demo", seed=5)


@pytest.fixture(scope="module")
def clean(legacy, make_module_database, tmp_path_factory):
    """The target a clean run produces (PostgreSQL), and its snapshot."""
    target = make_module_database("postgresql")
    report_dir = tmp_path_factory.mktemp("clean")
    run_manage("export_to_flask", "--target", target.url, "--create-schema", *COMMON, *CHEAP,
               "--report-dir", str(report_dir), env=legacy.env)
    return target, target_snapshot(target.engine())


@pytest.fixture(scope="module")
def clean_schema(clean):
    """The clean target's indexes and foreign keys, as the Flask tables are created."""
    snapshot = schema_snapshot(clean[0].engine(), fm.TABLES_IN_ORDER)
    assert all(snapshot[name][0] and snapshot[name][1] for name in ("comments", "student_media_interactions"))
    assert snapshot["bridge_deferred_schema"] == []
    return snapshot


def one_line(proc, code: int, *expected: str) -> str:
    """The exit code is ``code`` and stderr is exactly one line holding ``expected``."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == code, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "s3cr3t" not in proc.stdout + proc.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def export(legacy, target_url, *args, tmp_path, check=True, env=None):
    return run_manage("export_to_flask", "--target", target_url, *COMMON, "--report-dir",
                      str(tmp_path / f"report-{time.monotonic_ns()}"), *args,
                      env={**legacy.env, **(env or {})}, check=check)


def converges(legacy, target, clean, tmp_path) -> None:
    """A plain re-run (creating the schema if the failure left none) equals a clean run,
    indexes and foreign keys included."""
    proc = export(legacy, target.url, "--create-schema", *CHEAP, tmp_path=tmp_path)
    assert proc.stderr.strip() == "", proc.stderr
    assert target_snapshot(target.engine()) == clean[1]
    assert schema_snapshot(target.engine(), fm.TABLES_IN_ORDER) == schema_snapshot(clean[0].engine(),
                                                                                  fm.TABLES_IN_ORDER)


def start_export(legacy, target_url, *args, tmp_path, env=None) -> subprocess.Popen:
    full_env = {**os.environ, **legacy.env, **(env or {})}
    full_env.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "manage.py"), "export_to_flask", "--target", target_url,
         *COMMON, "--report-dir", str(tmp_path / "interrupted"), *args],
        cwd=PROJECT_ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)


def wait_for_students(target, proc, minimum: int = 10, timeout: float = 120) -> None:
    """Until some students are committed (the run is in its slow phase)."""
    engine = target.engine(poolclass=sa.pool.NullPool)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            with engine.connect() as conn:
                read = conn.execute(sa.select(bk.checkpoints.c.read)
                                    .where(bk.checkpoints.c.entity == "students")).scalar()
        except sa.exc.DBAPIError:
            read = None
        if read and read >= minimum:
            return
        time.sleep(0.1)
    raise AssertionError("the export never reached the students")


def finished(proc, timeout: float = 60) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def group_members(pgid: int) -> list[int]:
    """Live processes of a process group (zombies left out)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            pids.append(int(entry.name))
    return pids


# --- the rows of the table -----------------------------------------------------------------

def test_target_dropped_mid_export(legacy, clean, make_database, tmp_path):
    target = make_database("postgresql")
    proc = start_export(legacy, target.url, "--create-schema", "--workers", "1", *SLOW, tmp_path=tmp_path)
    wait_for_students(target, proc)
    admin = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE "{target.name}" WITH (FORCE)'))
    result = finished(proc)
    one_line(result, 2, "target database became unreachable", "run the same command again")
    report = json.loads((tmp_path / "interrupted" / "report.json").read_text())
    assert report["status"] == "failed" and "unreachable" in report["error"]
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{target.name}"'))
    admin.dispose()
    converges(legacy, target, clean, tmp_path)


def _lock_comments(target):
    """A second session holding an exclusive lock on the target's comments table."""
    engine = target.engine()
    conn = engine.connect()
    trans = conn.begin()
    conn.execute(sa.text("LOCK TABLE comments IN ACCESS EXCLUSIVE MODE"))
    pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
    return engine, conn, trans, pid


def _empty_schema(target):
    import flask_models as fm

    engine = target.engine()
    fm.create_all(engine)
    engine.dispose()


def test_statement_timeout_in_the_target_url(legacy, clean, make_database, tmp_path):
    target = make_database("postgresql")
    _empty_schema(target)
    engine, conn, trans, _ = _lock_comments(target)  # a statement that waits, so the timeout fires
    try:
        url = target.url + "?options=-c%20statement_timeout%3D500"
        proc = export(legacy, url, *CHEAP, "--lock-timeout", "60", tmp_path=tmp_path, check=False)
    finally:
        trans.rollback()
        conn.close()
        engine.dispose()
    one_line(proc, 2, "cancelled a statement", "statement timeout")
    converges(legacy, target, clean, tmp_path)


def test_held_lock_is_waited_for_visibly_then_given_up(legacy, clean, make_database, tmp_path):
    target = make_database("postgresql")
    _empty_schema(target)
    engine, conn, trans, pid = _lock_comments(target)
    try:
        started = time.monotonic()
        proc = export(legacy, target.url, *CHEAP, "--lock-timeout", "5", tmp_path=tmp_path, check=False)
        took = time.monotonic() - started
    finally:
        trans.rollback()
        conn.close()
        engine.dispose()
    line = one_line(proc, 2, "gave up waiting for a lock", "after 5s (--lock-timeout)")
    assert f"held by pid {pid}" in line
    assert f"for a lock on comments held by pid {pid}" in proc.stdout  # said while waiting
    assert took < 60
    converges(legacy, target, clean, tmp_path)


def test_held_row_lock_in_a_mariadb_target(legacy, clean, make_database, tmp_path):
    target = make_database("mariadb")
    _empty_schema(target)
    engine = target.engine()
    conn = engine.connect()
    trans = conn.begin()  # an uncommitted row where the export inserts districts: a row lock
    conn.execute(sa.text("INSERT INTO districts (id, name, code, is_active, created_at) "
                         "VALUES (1, 'theirs', 'T', 1, NOW())"))
    pid = conn.execute(sa.text("SELECT CONNECTION_ID()")).scalar()
    try:
        proc = export(legacy, target.url, *CHEAP, "--lock-timeout", "5", tmp_path=tmp_path, check=False)
    finally:
        trans.rollback()
        conn.close()
        engine.dispose()
    line = one_line(proc, 2, "gave up waiting for a lock", f"held by pid {pid}", "after 5s (--lock-timeout)")
    assert "districts" in line and f"held by pid {pid}" in proc.stdout
    export(legacy, target.url, *CHEAP, tmp_path=tmp_path)
    ids = {name: set(rows) for name, rows in target_snapshot(target.engine()).items()}
    assert ids == {name: set(rows) for name, rows in clean[1].items()}


def test_unwritable_report_location_is_refused_before_any_work(legacy, clean, make_database, tmp_path):
    target = make_database("postgresql")
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    proc = run_manage("export_to_flask", "--target", target.url, "--create-schema", *COMMON, *CHEAP,
                      "--report-dir", str(blocker / "reports"), env=legacy.env, check=False)
    one_line(proc, 2, "cannot write the report", "checked before any work")
    assert sa.inspect(target.engine()).get_table_names() == []  # nothing was written
    proc = run_manage("verify_flask", "--target", clean[0].url, "--report", str(blocker / "verify.json"),
                      env=legacy.env, check=False)
    one_line(proc, 2, "cannot write the report", "--report")
    converges(legacy, target, clean, tmp_path)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_run_exits_130_and_reports_what_it_committed(sig, legacy, clean, clean_schema, make_database,
                                                                 tmp_path):
    target = make_database("postgresql")
    proc = start_export(legacy, target.url, "--create-schema", "--workers", "2", *SLOW, tmp_path=tmp_path)
    wait_for_students(target, proc)
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)  # Ctrl-C reaches the whole foreground group, workers included
    else:
        os.kill(proc.pid, sig)
    result = finished(proc)
    one_line(result, 130, f"interrupted ({sig.name})", "run the same command again")
    report = json.loads((tmp_path / "interrupted" / "report.json").read_text())
    assert report["status"] == "failed" and sig.name in report["error"]
    with target.engine().connect() as conn:
        committed = conn.execute(sa.select(bk.checkpoints.c.written)
                                 .where(bk.checkpoints.c.entity == "students")).scalar()
    assert report["entities"]["students"]["written"] == committed > 0
    # the students' indexes and foreign keys, dropped while loading, wait for the next run
    waiting = schema_snapshot(target.engine(), fm.TABLES_IN_ORDER)
    assert waiting["students"] != clean_schema["students"]
    assert ("students", "fk_students_section_id_sessions") in {tuple(r) for r in waiting["bridge_deferred_schema"]}
    time.sleep(1)
    assert group_members(proc.pid) == []  # the PIN workers ended with it
    converges(legacy, target, clean, tmp_path)


def test_kill_9_leaves_no_child_process(legacy, clean, make_database, tmp_path):
    target = make_database("postgresql")
    proc = start_export(legacy, target.url, "--create-schema", "--workers", "2", *SLOW, tmp_path=tmp_path)
    wait_for_students(target, proc)
    deadline = time.monotonic() + 30
    while len(group_members(proc.pid)) < 3 and time.monotonic() < deadline:  # parent + 2 workers
        time.sleep(0.1)
    assert len(group_members(proc.pid)) >= 3
    proc.send_signal(signal.SIGKILL)
    result = finished(proc)
    assert result.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 5
    while group_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert group_members(proc.pid) == []
    converges(legacy, target, clean, tmp_path)


def test_a_killed_pin_pool_leaves_no_thread_behind():
    """An interrupted run kills its PIN workers. The pool's own thread must be gone once it
    is closed: a thread still running makes the interrupted command end with os._exit, and
    then the pool's semaphores are never released (the multiprocessing resource tracker
    adds a warning to the run's one line)."""
    before = set(threading.enumerate())
    pool = PinPool("pbkdf2:sha256:1", 2, interactive=False)
    pool.hash(["12345", "54321", "11111", "22222"], "students", lambda: 4)
    pool.close(kill=True)
    assert [t.name for t in threading.enumerate() if t not in before] == []


def test_leftover_part_file_is_removed_by_the_next_run(make_module_database, make_database, tmp_path):
    # SQLite → SQLite with files into a local folder
    legacy = seed_legacy(make_module_database, "sqlite", "demo", seed=5)
    media = tmp_path / "flask_media"
    env = {"FLASK_MEDIA_ROOT": str(media)}
    clean, target = make_database("sqlite"), make_database("sqlite")
    run_manage("export_to_flask", "--target", clean.url, "--create-schema", "--allow-live", *CHEAP,
               "--report-dir", str(tmp_path / "r0"), env={**legacy.env, "FLASK_MEDIA_ROOT": str(tmp_path / "m0")})
    first = run_manage("export_to_flask", "--target", target.url, "--create-schema", "--allow-live", *CHEAP,
                       "--report-dir", str(tmp_path / "r1"), env={**legacy.env, **env})
    assert first.returncode == 0
    # what a kill between writing the temporary file and the rename leaves behind
    key = next(p for p in media.rglob("*") if p.is_file())
    part = key.parent / f".{key.name}.0123456789ab.bridge-part"
    part.write_bytes(b"half a file")
    proc = run_manage("export_to_flask", "--target", target.url, "--allow-live", *CHEAP,
                      "--report-dir", str(tmp_path / "r2"), env={**legacy.env, **env})
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr
    assert "removed 1 temporary file" in proc.stdout
    assert not part.exists() and not list(media.rglob("*.bridge-part"))
    assert "0 copied" in proc.stdout
    assert target_snapshot(target.engine()) == target_snapshot(clean.engine())


def test_freeze_with_the_legacy_db_down(legacy, tmp_path):
    down = {"LEGACY_DATABASE_URL": "mysql://root:s3cr3t@127.0.0.1:1/legacy"}
    for action in ("status", "on"):
        proc = run_manage("flask_freeze", action, env={**legacy.env, **down}, check=False)
        line = one_line(proc, 2, "legacy database unreachable")
        assert "migrate" not in line
    proc = run_manage("flask_freeze", "on", env={"LEGACY_DATABASE_URL": f"sqlite:///{tmp_path}/bare.sqlite3"},
                      check=False)
    one_line(proc, 2, "migrate migration_bridge")  # the table is missing: that hint is right here
    proc = run_manage("flask_freeze", "status", env=legacy.env)  # the database is back
    assert proc.stdout.strip() == "live: the legacy app accepts writes"


def test_unreachable_flask_url_says_why(legacy, clean, tmp_path):
    before = target_snapshot(clean[0].engine())
    proc = run_manage("verify_flask", "--target", clean[0].url, "--flask-url", "http://127.0.0.1:1",
                      "--report", str(tmp_path / "verify.json"), env=legacy.env, check=False)
    one_line(proc, 2, "--flask-url http://127.0.0.1:1 unreachable", "Connection refused")
    assert not (tmp_path / "verify.json").exists()
    proc = run_manage("verify_flask", "--target", clean[0].url, "--report", str(tmp_path / "verify.json"),
                      env=legacy.env, check=False)
    assert proc.returncode in (0, 1) and proc.stderr.strip() == "", proc.stderr
    assert target_snapshot(clean[0].engine()) == before


def test_progress_without_a_terminal_every_few_seconds(legacy, clean, make_database, tmp_path):
    target = make_database("postgresql")
    full_env = {**os.environ, **legacy.env}
    full_env.pop("DJANGO_SETTINGS_MODULE", None)
    proc = subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "manage.py"), "export_to_flask", "--target", target.url,
         "--create-schema", *COMMON, "--workers", "1", "--pin-hash-method", "pbkdf2:sha256:1000000",
         "--report-dir", str(tmp_path / "r")],
        cwd=PROJECT_ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    arrivals: list[tuple[float, str]] = []
    errors: list[str] = []
    reader = threading.Thread(target=lambda: errors.extend(proc.stderr))
    reader.start()
    for line in proc.stdout:
        arrivals.append((time.monotonic(), line.rstrip()))
    proc.wait()
    reader.join()
    assert proc.returncode == 0 and not "".join(errors).strip(), errors
    gaps = [b[0] - a[0] for a, b in zip(arrivals, arrivals[1:])]
    assert max(gaps) <= 10, [(round(g, 1), line) for g, (_, line) in zip(gaps, arrivals[1:])]
    # periodic lines (not only at the ends of batches): the PIN hashing of one batch lasts > 10 s
    pin_lines = [line for _, line in arrivals if line.startswith("students: PIN hashing:")]
    # (the first line may come before any hash is done on a loaded machine: then it has no ETA yet)
    assert len(pin_lines) >= 2 and any("hashes/s" in line and "left" in line for line in pin_lines), pin_lines
    assert target_snapshot(target.engine()) == clean[1]
    # a re-run with nothing to do says so instead of reprinting the first run's timings
    again = export(legacy, target.url, *CHEAP, tmp_path=tmp_path)
    assert "nothing to do: all 8 entities were already complete" in again.stdout
    assert "rows/s" not in again.stdout


def test_resumed_run_says_where_it_resumes(legacy, clean, make_database, tmp_path):
    target = make_database("postgresql")
    proc = start_export(legacy, target.url, "--create-schema", "--workers", "1", *SLOW, tmp_path=tmp_path)
    wait_for_students(target, proc)
    proc.send_signal(signal.SIGKILL)
    finished(proc)
    again = export(legacy, target.url, *CHEAP, tmp_path=tmp_path)
    assert "resuming: complete: districts, users, observers, sessions; students from id" in again.stdout
    assert target_snapshot(target.engine()) == clean[1]


def test_dry_run_hashes_cheaply_and_estimates_the_real_cost(legacy, make_database, tmp_path):
    target = make_database("sqlite")
    proc = run_manage("export_to_flask", "--target", target.url, "--dry-run", *COMMON,
                      "--report-dir", str(tmp_path / "dry"), env=legacy.env)
    assert "dry run: PINs are hashed with pbkdf2:sha256:1 (cheap) instead of scrypt" in proc.stdout
    assert "would take about" in proc.stdout
    report = json.loads((tmp_path / "dry" / "report.json").read_text())
    assert report["pin_hashing"]["method"] == "pbkdf2:sha256:1"
    assert report["pin_hashing"]["dry_run_estimate"]["method"] == "scrypt"


def test_mistyped_target_is_shown(legacy):
    proc = run_manage("export_to_flask", "--target", "nu_flask", "--allow-live", env=legacy.env, check=False)
    one_line(proc, 2, "invalid database URL 'nu_flask'")


# --- the error path itself (no database) ------------------------------------------------

def test_describe_maps_every_kind_of_failure_to_its_code():
    import errno

    from migration_bridge.errors import BridgeError, Interrupted, describe, redact

    assert describe(KeyboardInterrupt())[0] == 130
    assert describe(Interrupted("SIGTERM")) == (130, describe(Interrupted("SIGTERM"))[1])
    assert "SIGTERM" in describe(Interrupted("SIGTERM"))[1]
    assert describe(BridgeError("bad flag")) == (2, "bad flag")
    assert describe(OSError(errno.ENOSPC, "No space left on device", "/srv/x"))[0] == 2
    code, line = describe(RuntimeError("boom\nsecond line"))
    assert code == 3 and "--traceback" in line and "second line" not in line
    assert redact("postgresql://flask:s3cr3t@db/x password=hunter2") == "postgresql://flask:***@db/x password=***"


def test_unexpected_error_is_exit_3_one_line_and_traceback_on_request():
    import io
    from types import SimpleNamespace

    from migration_bridge.cli import run_command

    for traceback in (False, True):
        command = SimpleNamespace(stdout=io.StringIO(), stderr=io.StringIO())
        with pytest.raises(SystemExit) as exit_:
            run_command(command, lambda: 1 / 0, traceback=traceback)
        assert exit_.value.code == 3
        text = command.stderr.getvalue()
        assert text.splitlines()[-1].startswith("error: unexpected error: ZeroDivisionError")
        assert ("Traceback" in text) == traceback and (len(text.splitlines()) == 1) != traceback


def test_a_command_collects_young_objects_less_often_and_gives_the_setting_back():
    import gc
    import io
    from types import SimpleNamespace

    from migration_bridge.cli import YOUNG_COLLECTION_EVERY, run_command

    before = gc.get_threshold()
    command = SimpleNamespace(stdout=io.StringIO(), stderr=io.StringIO())
    assert run_command(command, gc.get_threshold) == (YOUNG_COLLECTION_EVERY, *before[1:])
    with pytest.raises(SystemExit):
        run_command(command, lambda: 1 / 0)
    assert gc.get_threshold() == before


def test_ctrl_c_ends_verify_and_its_workers(legacy, clean, tmp_path):
    full_env = {**os.environ, **legacy.env}
    full_env.pop("DJANGO_SETTINGS_MODULE", None)
    # a chunk of one id: the content check's workers and their target readers live long
    proc = subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "manage.py"), "verify_flask", "--target", clean[0].url,
         "--workers", "2", "--chunk-size", "1", "--report", str(tmp_path / "verify.json")],
        cwd=PROJECT_ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    engine = clean[0].engine(poolclass=sa.pool.NullPool)
    with engine.connect() as locker:
        deadline, locked_since = time.monotonic() + 120, None
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            if len(group_members(proc.pid)) < 5:  # verify, 2 workers, 2 target readers
                locked_since = None
            elif locked_since is None:
                # the content check is under way: the last table's readers wait here
                locker.execute(sa.text("LOCK TABLE student_media_interactions IN ACCESS EXCLUSIVE MODE"))
                locked_since = time.monotonic()
            elif time.monotonic() - locked_since > 1:
                break
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        result = finished(proc)
        locker.rollback()
    one_line(result, 130, "interrupted (SIGINT)")
    deadline = time.monotonic() + 10
    while group_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert group_members(proc.pid) == []


@contextlib.contextmanager
def locked_once_dropped(engine, proc, table: str):
    """Once the run has dropped ``table``'s indexes for loading (it then spends seconds on
    the students' PINs), a session locks the table: the row workers' first write waits
    there, and both are caught at work. Yields the locking session's server pid."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        with engine.connect() as conn:
            if conn.execute(sa.select(sa.func.count()).select_from(bk.deferred_schema)
                            .where(bk.deferred_schema.c.table_name == table)).scalar():
                break
        time.sleep(0.05)
    with engine.connect() as locker:
        locker.execute(sa.text(f"LOCK TABLE {table} IN EXCLUSIVE MODE"))
        assert proc.poll() is None
        yield locker.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        locker.rollback()


def _schema_only(legacy, target, tmp_path):
    run_manage("export_to_flask", "--target", target.url, "--create-schema", *COMMON, *CHEAP, "--only", "districts",
               "--report-dir", str(tmp_path / "schema"), env=legacy.env)


def test_a_row_worker_waiting_for_a_lock_is_said_then_given_up(legacy, clean, make_database, tmp_path):
    """The waiting session is a forked row worker's, not the coordinator's: said all the same."""
    target = make_database("postgresql")
    _schema_only(legacy, target, tmp_path)
    engine = target.engine(poolclass=sa.pool.NullPool)
    proc = start_export(legacy, target.url, "--row-workers", "2", "--lock-timeout", "5", *SLOW, tmp_path=tmp_path)
    with locked_once_dropped(engine, proc, "student_media_interactions") as pid:
        result = finished(proc)
    one_line(result, 2, "gave up waiting for a lock", "after 5s (--lock-timeout)")
    said = result.stdout.index(f"for a lock on student_media_interactions held by pid {pid}")
    assert said < result.stdout.index("student_media_interactions: 0 rows in")  # while the workers waited
    converges(legacy, target, clean, tmp_path)


def test_ctrl_c_ends_the_row_workers_with_their_coordinator(legacy, clean, make_database, tmp_path):
    target = make_database("postgresql")
    _schema_only(legacy, target, tmp_path)
    engine = target.engine(poolclass=sa.pool.NullPool)
    proc = start_export(legacy, target.url, "--row-workers", "2", *SLOW, tmp_path=tmp_path)
    with locked_once_dropped(engine, proc, "student_media_interactions"):
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            with engine.connect() as conn:
                cut = conn.execute(sa.select(sa.func.count()).select_from(bk.ranges)
                                   .where(bk.ranges.c.entity == "student_media_interactions")).scalar()
            if cut and len(group_members(proc.pid)) >= 3:  # the coordinator and its 2 row workers
                break
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)
        result = finished(proc)
    one_line(result, 130, "interrupted (SIGINT)", "run the same command again")
    assert json.loads((tmp_path / "interrupted" / "report.json").read_text())["status"] == "failed"
    time.sleep(1)
    assert group_members(proc.pid) == []
    converges(legacy, target, clean, tmp_path)


# A Ctrl-C that reaches a helper while it is being forked: the parent's handler must not
# run in the child (it would raise inside the child's at-fork hooks, where a lock can stay
# held, and the helper hang). The at-fork hook here sends it, so that it lands in that window.
FORK_RACE = """
import multiprocessing, os, signal, sys
from migration_bridge.errors import quiet_child_signals, signals_held_for_fork

def handler(signum, frame):
    os.write(2, b"parent handler ran in the child\\n")
    raise KeyboardInterrupt

def child():
    quiet_child_signals()

signal.signal(signal.SIGINT, handler)
# Ctrl-C lands in the child between the fork and its own handling, every time: waiting
# for the parent's kill to fall in that window missed it on a loaded CI machine.
os.register_at_fork(after_in_child=lambda: os.kill(os.getpid(), signal.SIGINT))
fork = multiprocessing.get_context("fork")
for _ in range(10):
    process = fork.Process(target=child, daemon=True)
    if sys.argv[1] == "held":
        with signals_held_for_fork():
            process.start()
    else:
        process.start()
    process.join(5)
"""


def test_a_signal_at_fork_time_never_runs_the_parents_handler_in_the_child():
    def runs_in_child(mode: str) -> int:
        proc = subprocess.run([sys.executable, "-c", FORK_RACE, mode], cwd=PROJECT_ROOT, capture_output=True,
                              text=True, timeout=60)
        return proc.stderr.count("parent handler ran in the child")

    assert runs_in_child("plain") == 10  # the race is caught here...
    assert runs_in_child("held") == 0  # ...and helpers are started with the signals held
