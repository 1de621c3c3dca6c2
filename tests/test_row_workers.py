"""``export_to_flask --row-workers N``: entities cut into id ranges, one process each.

Whatever the number of workers, the target must end as one process leaves it: rows,
rejects with their reasons and roots, digests; a killed or failed run resumes its
ranges and converges to the same target.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from migration_bridge import bookkeeping as bk
from migration_bridge import ranges
from migration_bridge.load import EntityStats
from migration_bridge.profiles import get_profile

from .conftest import PROJECT_ROOT, require_server
from .test_export import CHEAP_PIN, export, seeded, target_snapshot  # noqa: F401 - seeded is a fixture

PAIRS = [("sqlite", "sqlite"), ("mariadb", "postgresql"), ("mariadb", "mariadb")]
SMALL_BATCHES = ("--batch-size", "50")  # many batches per range, replies far from their parents


def bookkeeping_snapshot(engine) -> dict:
    """What the bookkeeping says of every row: notes, digests, waiting replies."""
    with engine.connect() as conn:
        return {table.name: sorted(tuple(r) for r in conn.execute(sa.select(table)))
                for table in (bk.notes, bk.fingerprints, bk.deferred, bk.ranges)}


def counts(report) -> dict:
    return {name: {k: e[k] for k in ("read", "written", "rejected", "skipped")}
            for name, e in report["entities"].items()}


def cuts(stdout: str, entity: str) -> list[int]:
    """The range bounds the run logged for ``entity``."""
    line = next(line for line in stdout.splitlines() if f"{entity}: " in line and "row workers over ids" in line)
    return [int(n) for n in re.findall(r"(-?\d+)\]", line)]


@pytest.fixture(params=PAIRS, ids=[f"{a}-to-{b}" for a, b in PAIRS])
def one_process(request, seeded, make_database):
    """A legacy database and its export by one process, the reference."""
    legacy_kind, target_kind = request.param
    legacy, target = seeded(legacy_kind), make_database(target_kind)
    _, report = export(legacy, target, "--create-schema", "--row-workers", "1", *SMALL_BATCHES)
    return legacy, target, report


@pytest.mark.parametrize("cores, rows_left, target, asked, expected", [
    (2, 250_000, "postgresql", None, 2),  # one per core, each with 100,000 rows or more
    (2, 199_999, "postgresql", None, 1),  # too few rows to give each core its share
    (16, 10_000_000, "mariadb", None, ranges.AUTO_MAX_WORKERS),  # capped
    (1, 10_000_000, "postgresql", None, 1),
    (2, 10_000_000, "sqlite", None, 1),  # one writer at a time
    (2, 100, "postgresql", 3, 3),  # --row-workers decides
    (8, 10_000_000, "postgresql", 1, 1),
])
def test_row_workers_by_default_one_per_core_for_a_large_entity(monkeypatch, cores, rows_left, target, asked,
                                                                 expected):
    monkeypatch.setattr(ranges.os, "cpu_count", lambda: cores)
    comments = get_profile("plan").entity("comments")
    run = SimpleNamespace(options=SimpleNamespace(row_workers=asked),
                          engine=SimpleNamespace(dialect=SimpleNamespace(name=target)))
    assert ranges.workers_for(run, comments, EntityStats("comments", read=500), rows_left + 500) == expected
    if asked is None:  # PINs hashed by the pool of every core: one process, however large
        assert ranges.workers_for(run, get_profile("plan").entity("students"), EntityStats("students"),
                                  rows_left) == 1


def test_three_row_workers_write_what_one_process_writes(one_process, make_database, tmp_path):
    legacy, reference, reference_report = one_process
    target = make_database(reference.kind)
    proc, report = export(legacy, target, "--create-schema", "--row-workers", "3", *SMALL_BATCHES,
                          report_dir=str(tmp_path / "report"))
    assert report["status"] == "complete"
    assert target_snapshot(target.engine()) == target_snapshot(reference.engine())
    assert bookkeeping_snapshot(target.engine()) == bookkeeping_snapshot(reference.engine())
    assert counts(report) == counts(reference_report)
    if reference.kind == "sqlite":
        assert "comments: one process (SQLite takes one writer at a time)" in proc.stdout
        return
    assert "students: one process (its PINs are hashed" in proc.stdout
    # the comparison proves something: replies whose parent lies in an earlier range
    bounds = cuts(proc.stdout, "comments")
    assert len(bounds) == 2
    engine = sa.create_engine(legacy.db.url)
    with engine.connect() as conn:
        crossing = conn.execute(sa.text(
            "SELECT COUNT(*) FROM video_app_comment c WHERE c.parent_id IS NOT NULL AND "
            "((c.id > :a AND c.parent_id <= :a) OR (c.id > :b AND c.parent_id <= :b))"),
            {"a": bounds[0], "b": bounds[1]}).scalar()
    engine.dispose()
    assert crossing > 0


def wait_for(engine, query, deadline_s: float = 120):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            with engine.connect() as conn:
                if conn.execute(query).scalar():
                    return
        except sa.exc.DBAPIError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {query}")


def test_a_killed_coordinator_stops_its_workers_and_one_process_finishes_the_ranges(seeded, make_database,
                                                                                    tmp_path):
    require_server("mariadb")
    require_server("postgresql")
    legacy = seeded("mariadb")
    reference, target = make_database("postgresql"), make_database("postgresql")
    export(legacy, reference, "--create-schema", *SMALL_BATCHES)
    env = {**os.environ, **legacy.env}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    proc = subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "manage.py"), "export_to_flask", "--target", target.url, "--allow-live",
         *CHEAP_PIN, "--create-schema", "--row-workers", "2", "--batch-size", "20",
         "--report-dir", str(tmp_path / "killed")],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    engine = target.engine()
    wait_for(engine, sa.select(sa.func.sum(bk.ranges.c.read)).where(bk.ranges.c.entity == "comments")
             .having(sa.func.sum(bk.ranges.c.read) >= 200))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # its workers notice, after their batch in flight
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the row workers outlived their killed coordinator")
    with engine.connect() as conn:
        left = conn.execute(sa.select(bk.ranges.c.read, bk.ranges.c.done).where(bk.ranges.c.entity == "comments")).all()
    assert len(left) == 2 and not all(done for _, done in left)

    proc, report = export(legacy, target)  # one process: the recorded ranges are finished, not cut again
    assert report["status"] == "complete"
    assert re.search(r"comments: [12] row workers over ids", proc.stdout), proc.stdout
    assert target_snapshot(engine) == target_snapshot(reference.engine())
    assert bookkeeping_snapshot(engine) == bookkeeping_snapshot(reference.engine())


def test_a_failing_worker_stops_the_run_with_its_own_line_and_a_rerun_converges(seeded, make_database, tmp_path):
    require_server("mariadb")
    require_server("postgresql")
    legacy = seeded("mariadb")
    reference, target = make_database("postgresql"), make_database("postgresql")
    export(legacy, reference, "--create-schema", *SMALL_BATCHES)
    export(legacy, target, "--create-schema", "--only", "districts")  # the schema, to lock a table of it
    engine = target.engine()
    with engine.connect() as locker:
        locker.execute(sa.text("LOCK TABLE comments IN EXCLUSIVE MODE"))  # reads pass, writes wait
        proc, report = export(legacy, target, "--row-workers", "2", "--lock-timeout", "2", *SMALL_BATCHES,
                              check=False, report_dir=str(tmp_path / "failed"))
        locker.rollback()
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert len(lines) == 1 and re.match(r"error: comments, ids \(\S+, \S+\]: gave up waiting for a lock", lines[0]), lines
    assert report["status"] == "failed"

    proc, report = export(legacy, target, "--row-workers", "2")
    assert report["status"] == "complete"
    assert target_snapshot(engine) == target_snapshot(reference.engine())
    assert bookkeeping_snapshot(engine) == bookkeeping_snapshot(reference.engine())


def test_the_ranges_counts_add_up_as_integers(target_db):
    # PostgreSQL sums bigints as numeric: a Decimal once broke the progress line
    from migration_bridge.load import EntityStats
    from migration_bridge.profiles import get_profile

    engine = target_db.engine()
    bk.create_bookkeeping(engine)
    with engine.begin() as conn:
        conn.execute(bk.ranges.insert(), [
            ranges.RangeStats("comments", 5, 4, 1, 0, last_id=9, lo=0, hi=9).as_checkpoint(),
            ranges.RangeStats("comments", 3, 2, 0, 1, last_id=20, lo=9).as_checkpoint()])
    read = ranges.ranges_read(engine, get_profile("plan").entity("comments"))
    with engine.connect() as conn:
        stats = ranges.with_range_counts(conn, {})["comments"]
    assert (read, type(read)) == (8, int)
    assert stats == EntityStats("comments", 8, 6, 1, 1)
    assert {type(v) for v in (stats.read, stats.written, stats.rejected, stats.skipped)} == {int}
