"""The legacy database's change log (``export_to_flask --track-changes``): a freeze-window
``--sync`` that reads the ids the triggers logged instead of every row's digest.

The proof, as for any sync: the target equals a fresh full export of the changed source,
and what the log cannot be trusted for (a trigger gone, ``--full-scan``) falls back to
comparing every row's digest and says so. Each scenario runs on both pairs of legacy and
target dialects from a copy of the session's pre-copy (``test_sync.precopied``).
"""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from migration_bridge.dialects import CHANGE_LOG, change_log_trigger_names

from .conftest import run_manage
from .test_sync import (LIVE_CHANGES, SETUP_VICTIMS, anchors, assert_same_as_fresh_export, env_for, export,
                        precopied, shell)

__all__ = ["precopied"]  # the fixture, used by name

RAW_SQL_CHANGE = """
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("UPDATE video_app_comment SET text = 'Changed by hand' WHERE id = {comment}")
"""

ROLLED_BACK = """
from django.db import transaction
from legacy_app.video_app.models import Media
try:
    with transaction.atomic():
        Media.objects.filter(pk={media}).update(title="never committed")
        raise RuntimeError
except RuntimeError:
    pass
"""


def log_entries(legacy) -> list[tuple[str, int]]:
    engine = sa.create_engine(legacy.db.url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(f"SELECT table_name, row_id FROM {CHANGE_LOG} ORDER BY id"))]
    finally:
        engine.dispose()


def tracked(legacy, target, tmp_path) -> dict:
    """The pre-copy brought under a change log by one sync comparing every row."""
    proc, report = export(legacy, target, tmp_path, "--sync", "--track-changes")
    assert "change log: installed" in proc.stdout
    assert all(s["compared"] == "every row" for s in report["sync"].values())
    assert log_entries(legacy) == []
    return anchors(target)


def test_a_sync_reads_only_the_logged_rows_and_equals_a_fresh_export(precopied, make_database, tmp_path):
    legacy, target = precopied
    ids = tracked(legacy, target, tmp_path)
    shell(legacy, tmp_path, SETUP_VICTIMS.format(**ids))
    shell(legacy, tmp_path, ROLLED_BACK.format(**ids))
    assert ("video_app_media", ids["media"]) not in log_entries(legacy)  # rolled back: no entry
    _, pre = export(legacy, target, tmp_path, "--sync")
    assert {n: s["inserted"] for n, s in pre["sync"].items()} == {n: 1 for n in pre["sync"]}
    assert log_entries(legacy) == []  # what the sync read is trimmed

    shell(legacy, tmp_path, LIVE_CHANGES.format(**ids))
    shell(legacy, tmp_path, RAW_SQL_CHANGE.format(**ids))  # not through the ORM: logged all the same
    logged = log_entries(legacy)
    assert ("video_app_comment", ids["comment"]) in logged
    proc, report = export(legacy, target, tmp_path, "--sync")
    sync = report["sync"]
    for name, stats in sync.items():
        assert stats["compared"] == "the rows the change log names", (name, stats)
        assert 0 < stats["logged"] <= len(logged), (name, stats)
        assert stats["inserted"] >= 1 and stats["updated"] >= 1 and stats["deleted"] >= 1, (name, stats)
    assert f"change log: {len(logged)} entries" in proc.stdout
    assert log_entries(legacy) == []
    assert_same_as_fresh_export(legacy, target, make_database, tmp_path)
    with target.engine().connect() as conn:
        text = conn.execute(sa.text(f"SELECT text FROM comments WHERE id = {ids['comment']}")).scalar()
    assert text == "Changed by hand"

    verify = run_manage("verify_flask", "--target", target.url, "--fix-counts", "--accept-missing-source-files",
                        env=env_for(legacy, tmp_path), check=False)
    assert verify.returncode == 0, verify.stdout[-3000:] + verify.stderr[-2000:]
    _, again = export(legacy, target, tmp_path, "--sync")
    assert all(s["logged"] == 0 and s["inserted"] == s["updated"] == s["deleted"] == 0
               for s in again["sync"].values()), again["sync"]


def test_a_missing_trigger_sends_the_sync_back_to_every_rows_digest(precopied, make_database, tmp_path):
    """A change made while a trigger was gone is not in the log: the sync must not trust it."""
    legacy, target = precopied
    ids = tracked(legacy, target, tmp_path)
    trigger = change_log_trigger_names("video_app_session")["UPDATE"]
    shell(legacy, tmp_path, "from django.db import connection\n"
                            f"connection.cursor().execute('DROP TRIGGER {trigger}')")
    shell(legacy, tmp_path, "from legacy_app.video_app.models import Session\n"
                            f"Session.objects.filter(pk={ids['session']}).update(name='Unlogged rename')")
    proc, report = export(legacy, target, tmp_path, "--sync")
    assert f"change log: not usable (trigger {trigger} is missing)" in proc.stdout
    assert report["sync"]["sessions"]["compared"] == "every row"
    assert report["sync"]["sessions"]["updated"] == 1
    assert_same_as_fresh_export(legacy, target, make_database, tmp_path)

    # installed again by a sync that compares every row; the log is trusted from there on
    tracked(legacy, target, tmp_path)
    _, report = export(legacy, target, tmp_path, "--sync")
    assert report["sync"]["sessions"]["compared"] == "the rows the change log names"


def test_full_scan_compares_every_row_and_leaves_the_log_as_it_is(precopied, tmp_path):
    legacy, target = precopied
    ids = tracked(legacy, target, tmp_path)
    shell(legacy, tmp_path, RAW_SQL_CHANGE.format(**ids))
    logged = log_entries(legacy)
    proc, report = export(legacy, target, tmp_path, "--sync", "--full-scan")
    assert "change log: not read (--full-scan)" in proc.stdout
    assert report["sync"]["comments"] == {**report["sync"]["comments"], "compared": "every row", "updated": 1}
    assert log_entries(legacy) == logged
    _, report = export(legacy, target, tmp_path, "--sync")
    assert report["sync"]["comments"]["logged"] == 1 and report["sync"]["comments"]["updated"] == 0


def test_the_log_is_installed_only_where_every_row_is_read_after_it(precopied, tmp_path):
    legacy, target = precopied
    for args in (["--track-changes"], ["--sync", "--track-changes", "--only", "students"]):
        proc, _ = export(legacy, target, tmp_path, *args, check=False)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "rows read before the change log existed may have changed unseen" in proc.stderr
        assert "Traceback" not in proc.stderr
    proc, _ = export(legacy, target, tmp_path, "--full-scan", check=False)
    assert proc.returncode == 2 and "--full-scan goes with --sync" in proc.stderr


TRUSTED_ONCE_COMPLETE = """
import types
from migration_bridge import bookkeeping as bk, changelog
from migration_bridge.dialects import create_target_engine
from migration_bridge.profiles import get_profile
from migration_bridge.source import LegacySource
source, entities = LegacySource("video_app"), list(get_profile().entities)
engine = create_target_engine({url!r})
options = types.SimpleNamespace(track_changes=True, sync=True, dry_run=False, files_only=False, full_scan=False,
                                target_url={url!r})
tracking = changelog.start(source, entities, entities, engine, options, reads_every_row=False)
with engine.connect() as conn:
    assert bk.recorded_settings(conn).get("change_log") is None, "recorded before the sync compared every row"
changelog.finish(source, engine, entities, tracking)
with engine.connect() as conn:
    assert bk.recorded_settings(conn).get("change_log") == tracking.record
"""


def test_a_log_installed_by_a_sync_is_trusted_only_once_that_sync_completed(precopied, tmp_path):
    """A sync that installs the log and stops before the end leaves it untrusted: a row it
    found changed but did not write has no entry."""
    legacy, target = precopied
    shell(legacy, tmp_path, TRUSTED_ONCE_COMPLETE.format(url=target.url))


def test_a_copy_of_the_target_does_not_follow_the_log(precopied, make_database, tmp_path):
    """A copy syncing against the same legacy database must neither trust nor trim the log
    of the target it was copied from."""
    legacy, target = precopied
    ids = tracked(legacy, target, tmp_path)
    copy = make_database.clone(target)
    shell(legacy, tmp_path, RAW_SQL_CHANGE.format(**ids))
    proc, report = export(legacy, copy, tmp_path, "--sync")
    assert "change log: not usable (the change log follows another target" in proc.stdout
    assert report["sync"]["comments"]["compared"] == "every row" and report["sync"]["comments"]["updated"] == 1
    assert log_entries(legacy) == [("video_app_comment", ids["comment"])]
    _, report = export(legacy, target, tmp_path, "--sync")
    assert report["sync"]["comments"] == {**report["sync"]["comments"], "logged": 1, "updated": 1}


TRIM_WHILE_WRITTEN = """
from legacy_app.video_app.models import Comment, Media
from migration_bridge import changelog
from migration_bridge.profiles import get_profile
from migration_bridge.source import LegacySource
source = LegacySource("video_app")
tables = changelog.logged_tables(source, list(get_profile().entities))
Media.objects.filter(pk={media}).update(title="before the read")
Comment.objects.filter(pk={comment}).update(text="before the read")
log = changelog.read(source, tables)
assert log.entries == 2 and log.ids == {{"video_app_media": {{{media}}}, "video_app_comment": {{{comment}}}}}, log
Comment.objects.filter(pk={comment}).update(text="after the read")
changelog.trim(source, log)
"""


def test_trimming_deletes_the_entries_read_and_keeps_one_written_meanwhile(precopied, tmp_path):
    legacy, target = precopied
    ids = tracked(legacy, target, tmp_path)
    shell(legacy, tmp_path, TRIM_WHILE_WRITTEN.format(**ids))
    assert log_entries(legacy) == [("video_app_comment", ids["comment"])]


def test_cleanup_drops_the_change_log_from_the_legacy_database(precopied, tmp_path):
    legacy, target = precopied
    tracked(legacy, target, tmp_path)
    proc = run_manage("export_to_flask", "--target", target.url, "--cleanup", "--yes", env=env_for(legacy, tmp_path))
    assert "dropped the change log and its 24 triggers" in proc.stdout  # 8 tables, 3 events each
    engine = sa.create_engine(legacy.db.url)
    try:
        names = set(sa.inspect(engine).get_table_names())
        with engine.connect() as conn:
            triggers = conn.execute(sa.text(
                "SELECT name FROM sqlite_master WHERE type = 'trigger'" if legacy.db.kind == "sqlite" else
                "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE()")).all()
    finally:
        engine.dispose()
    assert not {n for n in names if n.startswith("bridge_")} and triggers == []


@pytest.mark.parametrize("precopied", ["mariadb-postgresql"], indirect=True)
def test_a_foreign_key_that_writes_without_triggers_keeps_the_log_out(precopied, tmp_path):
    """InnoDB fires no trigger for the rows a cascading key changes: no log is installed
    while one exists, and a log installed before one appears is no longer trusted."""
    legacy, target = precopied
    add_key = ("ALTER TABLE video_app_comment ADD COLUMN bridge_test_ref BIGINT NULL, ADD CONSTRAINT bridge_test_key "
               "FOREIGN KEY (bridge_test_ref) REFERENCES video_app_media (id) ON DELETE SET NULL")
    engine = sa.create_engine(legacy.db.url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(add_key))
        proc, _ = export(legacy, target, tmp_path, "--sync", "--track-changes", check=False)
        assert proc.returncode == 2, proc.stderr
        assert "the foreign key video_app_comment.bridge_test_key changes rows without firing triggers" in proc.stderr
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE video_app_comment DROP FOREIGN KEY bridge_test_key"))
        tracked(legacy, target, tmp_path)
        with engine.begin() as conn:
            conn.execute(sa.text(add_key.replace("ADD COLUMN bridge_test_ref BIGINT NULL, ", "")))
    finally:
        engine.dispose()
    proc, report = export(legacy, target, tmp_path, "--sync")
    assert "change log: not usable (foreign key video_app_comment.bridge_test_key writes rows" in proc.stdout
    assert all(s["compared"] == "every row" for s in report["sync"].values())


class _Source:
    """rows_by_id_ahead over a dict of rows, recording what was read."""

    def __init__(self, rows: dict[int, dict]):
        self.rows, self.read = rows, []

    def rows_by_id_ahead(self, entity, ids, batch_size):
        for start in range(0, len(ids), batch_size):
            batch = ids[start:start + batch_size]
            self.read.extend(batch)
            yield batch, [self.rows[i] for i in batch if i in self.rows]


@pytest.mark.parametrize("held", [set(), {1, 2, 3, 5, 8, 13}, set(range(1, 21))])
def test_the_rows_a_logged_comparison_kept_are_written_without_reading_them_again(held):
    from migration_bridge.sync import SyncRows

    entity = type("E", (), {"name": "comments"})()
    source = _Source({i: {"id": i, "read": True} for i in range(1, 21) if i != 7})  # 7: deleted since
    sync = SyncRows(part_rows=10)
    sync.held = {"comments": {i: {"id": i, "read": False} for i in held}}
    ids = list(range(1, 21))
    batches = list(sync.read_changed(entity, ids, 4, source))
    assert [batch for batch, _ in batches] == [ids[k:k + 4] for k in range(0, 20, 4)]
    rows = [row for _, rows in batches for row in rows]
    assert [row["id"] for row in rows] == [i for i in ids if i != 7 or i in held]
    assert all(row["read"] == (row["id"] not in held) for row in rows)
    assert source.read == [i for i in ids if i not in held] and sync.held == {}
