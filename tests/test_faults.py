"""The fault zoo: one source or target fault per test, the export's decision and
verify_flask's verdict, on SQLite → SQLite and MariaDB → PostgreSQL.

Each test plants one fault in a freshly seeded legacy DB (``seed_legacy --scale demo``)
or in a copy of a migrated target, then asserts what ``export_to_flask`` decided (loaded,
rejected with which reason and root) and what ``verify_flask`` says (exit 0, or exit 1
with the offending id in its output).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from .conftest import PROJECT_ROOT, SERVER_URLS, Database, run_manage, seed_legacy

pytestmark = pytest.mark.slow

PIN_METHOD = "pbkdf2:sha256:1000"
PAIRS = ["sqlite-sqlite", "mariadb-postgresql"]
ACCEPT = "--accept-missing-source-files"  # the seed's legacy storage lacks some files on purpose


@dataclass
class Migration:
    """A seeded legacy DB and a target DB, with the commands run between them."""

    seeded: object
    target: Database
    tmp_path: Path
    runs: int = 0

    @property
    def env(self) -> dict:
        return {**self.seeded.env, "FLASK_MEDIA_ROOT": str(self.tmp_path / "flask_media")}

    def export(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        self.runs += 1
        proc = run_manage("export_to_flask", "--target", self.target.url, "--create-schema", "--allow-live",
                          "--pin-hash-method", PIN_METHOD, "--workers", "1",
                          "--report-dir", str(self.report_dir), *args, env=self.env, check=check)
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    @property
    def report_dir(self) -> Path:
        return self.tmp_path / f"export-{self.runs}"

    def report(self) -> dict:
        return json.loads((self.report_dir / "report.json").read_text())

    def rejects(self) -> dict[tuple[str, int], dict]:
        lines = (self.report_dir / "rejects.ndjson").read_text().splitlines()
        return {(r["entity"], r["id"]): r for r in map(json.loads, lines)}

    def verify(self, *args: str, target_url: str | None = None, settings: str | None = None):
        path = self.tmp_path / f"verify-{uuid.uuid4().hex[:6]}.json"
        extra = ("--settings", settings) if settings else ()
        proc = run_manage("verify_flask", "--target", target_url or self.target.url, "--report", str(path),
                          "--seed", "7", ACCEPT, *args, *extra, env=self.env, check=False)
        assert proc.returncode in (0, 1), f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        assert "Traceback" not in proc.stderr
        return proc, json.loads(path.read_text())

    def legacy(self, *statements: str, params: dict | None = None) -> None:
        """Raw SQL on the legacy DB, foreign key checks off (as real dirty data was made)."""
        engine = sa.create_engine(self.seeded.db.url)
        with engine.begin() as conn:
            # checks off: real legacy data predates constraints (e.g. JSON_VALID) or bypassed them
            if self.seeded.db.kind == "mariadb":
                conn.execute(sa.text("SET FOREIGN_KEY_CHECKS=0"))
                conn.execute(sa.text("SET SESSION check_constraint_checks=0"))
                conn.execute(sa.text("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_AUTO_VALUE_ON_ZERO')"))
            else:
                conn.execute(sa.text("PRAGMA ignore_check_constraints=ON"))
            for statement in statements:
                conn.execute(sa.text(statement), params or {})
        engine.dispose()

    def target_ids(self, table: str, url: str | None = None) -> set[int]:
        engine = sa.create_engine(url or self.target.url)
        with engine.connect() as conn:
            ids = set(conn.execute(sa.text(f"SELECT id FROM {table}")).scalars())
        engine.dispose()
        return ids


def failed(report: dict) -> set[str]:
    return {c["name"] for c in report["checks"] if c["status"] == "FAIL"}


def offending(report: dict, check: str) -> dict:
    return next(c for c in report["checks"] if c["name"] == check)["offending"]


def named_ids(report: dict, check: str) -> set:
    return {i for item in offending(report, check).values() for i in item["ids"]}


@pytest.fixture(params=PAIRS)
def migration(request, make_database, tmp_path) -> Migration:
    source_kind, target_kind = request.param.split("-")
    seeded = seed_legacy(make_database, source_kind, "demo", seed=1)
    return Migration(seeded, make_database(target_kind), tmp_path)


def clone_row(migration: Migration, table: str, from_id: int, **values) -> None:
    """Insert a copy of legacy row ``from_id`` of ``table`` with ``values`` changed."""
    engine = sa.create_engine(migration.seeded.db.url)
    with engine.connect() as conn:
        t = sa.Table(table, sa.MetaData(), autoload_with=conn)
        row = dict(conn.execute(sa.select(t).where(t.c.id == from_id)).mappings().one())
    engine.dispose()
    row.update(values)
    columns = ", ".join(row)
    migration.legacy(f"INSERT INTO {table} ({columns}) VALUES ({', '.join(':' + c for c in row)})", params=row)


def first_rejected_session(migration: Migration) -> int:
    """The seed's session with an invalid module: its whole subtree is rejected."""
    return migration.seeded.manifest["anomalies"]["invalid_choice_rows"]["session"][0]


# --- rejects: retried, with their root cause ---------------------------------------------

def test_only_children_on_a_fresh_target_is_refused(migration):
    proc = migration.export("--only", "students", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "students points at sessions, users" in proc.stderr and "export sessions, users first" in proc.stderr
    # nothing was marked complete: the full export loads every student it can
    migration.export()
    assert not failed(migration.verify("--fix-counts")[1])


def test_fixed_parent_brings_its_subtree_on_rerun(migration):
    session = first_rejected_session(migration)
    migration.export()
    report, rejects = migration.report(), migration.rejects()
    assert rejects[("sessions", session)]["root"]["id"] == session
    cascade = [key for key, r in rejects.items() if r["root"] == {"entity": "sessions", "id": session,
                                                                  "reason": rejects[("sessions", session)]["reason"]}]
    assert any(entity == "students" for entity, _ in cascade) and any(entity == "media" for entity, _ in cascade)
    top = next(c for c in report["root_causes"] if c["root"]["entity"] == "sessions" and c["root"]["id"] == session)
    assert top["rows"]["sessions"] == 1 and top["rows"]["students"] >= 1 and top["total"] == len(cascade)
    students = {i for entity, i in cascade if entity == "students"}

    proc, verdict = migration.verify("--fix-counts")
    assert verdict["passed"], proc.stdout
    assert f"sessions#{session} (module: invalid value" in proc.stdout
    assert f"1 sessions → {top['rows']['students']} students" in proc.stdout

    # fixed in the legacy app: verify now expects the subtree, and says the export rejected it
    migration.legacy(f"UPDATE video_app_session SET module = '2' WHERE id = {session}")
    proc, verdict = migration.verify()
    assert "row_counts" in failed(verdict)
    assert session in named_ids(verdict, "row_counts") and str(session) in proc.stdout
    assert "module: invalid value" in json.dumps(offending(verdict, "row_counts"))

    migration.export()  # a plain re-run: every entity is complete, the rejects are decided again
    assert session in migration.target_ids("sessions")
    assert students <= migration.target_ids("students")
    assert not any(r["root"]["id"] == session and r["root"]["entity"] == "sessions" for r in migration.rejects().values())
    proc, verdict = migration.verify("--fix-counts")
    assert verdict["passed"], proc.stdout


def test_fixed_parent_brings_its_subtree_on_sync(migration):
    session = first_rejected_session(migration)
    migration.export()
    rejected_students = {i for (entity, i), r in migration.rejects().items()
                         if entity == "students" and r["root"]["entity"] == "sessions" and r["root"]["id"] == session}
    assert rejected_students
    root = ("sessions", session)
    # rejects under other roots, which stay rejected: deciding them again would count them
    elsewhere = {entity: sum(1 for (e, _), r in migration.rejects().items() if e == entity
                             and r["outcome"] == "rejected" and (r["root"]["entity"], r["root"]["id"]) != root)
                 for entity in ("students", "media", "comments", "student_media_interactions")}
    assert all(elsewhere.values()), elsewhere
    migration.legacy(f"UPDATE video_app_session SET module = '4' WHERE id = {session}")
    migration.export("--sync")
    assert session in migration.target_ids("sessions")
    assert rejected_students <= migration.target_ids("students")
    # ...and are not decided again: their parents are as they were
    decided_again = migration.report()["sync"]
    assert all(decided_again[entity]["rejected"] < elsewhere[entity] for entity in elsewhere), decided_again
    proc, verdict = migration.verify("--fix-counts")
    assert verdict["passed"], proc.stdout


def test_a_sync_after_a_limited_run_decides_every_reject_again(migration):
    """--only brought the fixed session in, not its students: the next sync cannot tell
    from this sync's changes alone (the session is unchanged since), so it decides every
    reject again."""
    session = first_rejected_session(migration)
    migration.export()
    rejected_students = {i for (entity, i), r in migration.rejects().items()
                         if entity == "students" and r["root"]["entity"] == "sessions" and r["root"]["id"] == session}
    migration.legacy(f"UPDATE video_app_session SET module = '4' WHERE id = {session}")
    migration.export("--sync", "--only", "sessions")
    assert session in migration.target_ids("sessions")
    assert not rejected_students & migration.target_ids("students")
    migration.export("--sync")
    assert rejected_students <= migration.target_ids("students")
    proc, verdict = migration.verify("--fix-counts")
    assert verdict["passed"], proc.stdout


def test_rows_the_export_dropped_fail_verify(migration):
    """The export's bookkeeping says "rejected", the source says otherwise: verify fails."""
    migration.export()
    engine = sa.create_engine(migration.target.url)
    with engine.begin() as conn:
        student = conn.execute(sa.text("SELECT MAX(id) FROM students")).scalar()
        conn.execute(sa.text("DELETE FROM student_media_interactions WHERE student_id = :s"), {"s": student})
        conn.execute(sa.text("UPDATE comments SET student_id = NULL WHERE student_id = :s"), {"s": student})
        conn.execute(sa.text("UPDATE media SET student_id = NULL WHERE student_id = :s"), {"s": student})
        conn.execute(sa.text("DELETE FROM students WHERE id = :s"), {"s": student})
        conn.execute(sa.text("INSERT INTO bridge_notes (entity, source_id, kind, detail) VALUES "
                             "('students', :s, 'reject', :d)"),
                     {"s": student, "d": json.dumps({"reason": "section_id: sessions id 1 not in target"})})
    engine.dispose()
    proc, verdict = migration.verify("--fix-counts")
    assert proc.returncode == 1
    assert student in offending(verdict, "row_counts")["students: missing in target"]["ids"]
    assert "reject: section_id: sessions id 1 not in target" in json.dumps(offending(verdict, "row_counts"))


# --- values the pipeline could not represent ------------------------------------------------

def test_ids_zero_and_negative_are_read_and_loaded(migration):
    clone_row(migration, "video_app_district", 1, id=-5, name="Negative district", code="NEG-5")
    clone_row(migration, "video_app_observer", 1, id=0, email="zero@example.invalid", district_id=-5)
    migration.export()
    assert -5 in migration.target_ids("districts") and 0 in migration.target_ids("observers")
    proc, verdict = migration.verify("--fix-counts")
    assert verdict["passed"], proc.stdout
    # and verify sees them: drop the negative one from the target, it is named
    engine = sa.create_engine(migration.target.url)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM observers WHERE id = 0"))
    engine.dispose()
    proc, verdict = migration.verify()
    assert 0 in offending(verdict, "row_counts")["observers: missing in target"]["ids"]


def test_nul_byte_in_text_is_rejected_with_its_reason(migration):
    comment = 5
    migration.legacy("UPDATE video_app_comment SET text = :t WHERE id = :i",
                     params={"t": "before\x00after", "i": comment})
    proc = migration.export()
    assert proc.returncode == 0
    reject = migration.rejects()[("comments", comment)]
    assert reject["reason"].startswith("text: contains a NUL character")
    assert comment not in migration.target_ids("comments")
    proc, verdict = migration.verify("--fix-counts")
    assert verdict["passed"], proc.stdout
    migration.export()  # a re-run decides it again, and converges
    assert migration.rejects()[("comments", comment)]["reason"] == reject["reason"]


@pytest.mark.parametrize("stored, reason", [
    ("{not json", "project_images: invalid JSON, not a list of URLs"),
    ('{"a": 1}', "project_images: a JSON dict, not a list of URLs"),
])
def test_project_images_that_are_not_a_list_are_rejected(migration, stored, reason):
    media = migration.seeded.manifest["anomalies"]["project_media"][0]
    migration.legacy("UPDATE video_app_media SET project_images = :p WHERE id = :i", params={"p": stored, "i": media})
    migration.export()
    assert migration.rejects()[("media", media)]["reason"] == reason
    assert media not in migration.target_ids("media")
    proc, verdict = migration.verify("--fix-counts")
    assert verdict["passed"], proc.stdout


# --- the source connection ---------------------------------------------------------------

@pytest.fixture
def mariadb_migration(make_database, tmp_path) -> Migration:
    seeded = seed_legacy(make_database, "mariadb", "demo", seed=1)
    return Migration(seeded, make_database("postgresql"), tmp_path)


PRODLIKE = "tests.prodlike_settings"


def four_byte_comment(migration: Migration) -> int:
    return migration.seeded.manifest["anomalies"]["four_byte_utf8"]["comment"][0]


def test_settings_without_utf8mb4_still_read_4_byte_characters(mariadb_migration):
    m = mariadb_migration
    m.export("--settings", PRODLIKE)
    comment = four_byte_comment(m)
    engine = sa.create_engine(m.target.url)
    with engine.connect() as conn:
        text = conn.execute(sa.text("SELECT text FROM comments WHERE id = :i"), {"i": comment}).scalar()
    engine.dispose()
    assert any(ord(ch) > 0xFFFF for ch in text) and "?" not in text.split()[-1]
    proc, verdict = m.verify("--fix-counts", settings=PRODLIKE)
    assert verdict["passed"], proc.stdout
    source = next(c for c in verdict["checks"] if c["name"] == "source_connection")
    assert "results=utf8mb4" in source["summary"] and source["figures"]["sql_mode"] is not None


LOSSY_RUN = """
import os, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.prodlike_settings"
sys.path.insert(0, {root!r})
import django
django.setup()
import migration_bridge.dialects as dialects
dialects.force_source_utf8 = lambda connection: None  # a connection the tool cannot control
from django.core.management import execute_from_command_line
execute_from_command_line(["manage.py", *sys.argv[1:]])
"""


def test_a_lossy_source_connection_fails_verify_and_is_refused_by_export(mariadb_migration):
    m = mariadb_migration
    m.export()
    script = LOSSY_RUN.format(root=str(PROJECT_ROOT))
    env = {**__import__("os").environ, **m.env}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    report = m.tmp_path / "lossy.json"
    proc = subprocess.run([sys.executable, "-c", script, "verify_flask", "--target", m.target.url, "--report",
                           str(report), ACCEPT, "--fix-counts"], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    verdict = json.loads(report.read_text())
    assert {"source_connection", "content"} <= failed(verdict)
    comment = four_byte_comment(m)
    misread = offending(verdict, "content")
    label = "comments: text read differs from the bytes the legacy DB holds (lossy connection)"
    assert comment in misread[label]["ids"] and str(comment) in proc.stdout

    proc = subprocess.run([sys.executable, "-c", script, "export_to_flask", "--target", m.target.url,
                           "--allow-live"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "does not read full UTF-8" in proc.stderr and "Traceback" not in proc.stderr


# --- the target edited after the load -------------------------------------------------------

# per table: a row to edit (lowest id present), a column to change, how to change it
EDITS = {
    "districts": ("name", "'Zistrict'"),
    "users": ("first_name", "'Zed'"),
    "observers": ("name", "'Zed'"),
    "sessions": ("name", "'Zession'"),
    "students": ("name", "'Zed'"),
    "media": ("title", "'Zitle'"),
    "comments": ("text", "'Zext'"),
    "student_media_interactions": ("liked_eye", "NOT liked_eye"),
}
UNIQUE = {"districts": ("name", "code"), "users": ("username",), "observers": ("email",), "sessions": ("session_code",)}


@dataclass
class Golden:
    migration: Migration
    url: str


@pytest.fixture(scope="module", params=PAIRS)
def golden(request, make_module_database, tmp_path_factory) -> Golden:
    source_kind, target_kind = request.param.split("-")
    seeded = seed_legacy(make_module_database, source_kind, "demo", seed=1)
    m = Migration(seeded, make_module_database(target_kind), tmp_path_factory.mktemp("golden"))
    m.export()
    proc, verdict = m.verify("--fix-counts")
    assert verdict["passed"], proc.stdout
    return Golden(m, m.target.url)


def target_copy(golden: Golden, tmp_path: Path) -> tuple[str, sa.Engine]:
    target = golden.migration.target
    if target.kind == "sqlite":
        path = tmp_path / "copy.sqlite3"
        shutil.copy(target.url[len("sqlite:///"):], path)
        url = f"sqlite:///{path}"
        return url, sa.create_engine(url)
    name = f"mbtest_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(SERVER_URLS["postgresql"], isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{target.name}"'))
    admin.dispose()
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    return url, sa.create_engine(url)


@pytest.fixture
def edited_target(golden, tmp_path):
    url, engine = target_copy(golden, tmp_path)
    yield url, engine
    engine.dispose()
    if not url.startswith("sqlite"):
        admin = sa.create_engine(SERVER_URLS["postgresql"], isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
        admin.dispose()


def _no_fk_checks(conn) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SET session_replication_role = replica"))  # as a manual edit would


@pytest.mark.parametrize("edit", ["changed", "deleted", "extra"])
@pytest.mark.parametrize("table", list(EDITS))
def test_target_edited_after_the_load_fails_verify(golden, edited_target, table, edit):
    url, engine = edited_target
    column, new_value = EDITS[table]
    with engine.begin() as conn:
        _no_fk_checks(conn)
        row_id = conn.execute(sa.text(f"SELECT MIN(id) FROM {table}")).scalar()
        if edit == "changed":
            conn.execute(sa.text(f"UPDATE {table} SET {column} = {new_value} WHERE id = :i"), {"i": row_id})
            expected_check, label = "content", f"{table}: rows differ"
        elif edit == "deleted":
            conn.execute(sa.text(f"DELETE FROM {table} WHERE id = :i"), {"i": row_id})
            expected_check, label = "row_counts", f"{table}: missing in target"
        else:
            t = sa.Table(table, sa.MetaData(), autoload_with=conn)
            row = dict(conn.execute(sa.select(t).where(t.c.id == row_id)).mappings().one())
            row["id"] = row_id = conn.execute(sa.text(f"SELECT MAX(id) FROM {table}")).scalar() + 1000
            for unique in UNIQUE.get(table, ()):
                row[unique] = f"x{row_id}"
            if table == "sessions":  # one active session per teacher and section
                row["is_archived"] = True
            if table == "student_media_interactions":  # unique (student, media): a pair not taken
                row["media_id"] = conn.execute(sa.text(
                    "SELECT MIN(id) FROM media WHERE id NOT IN "
                    "(SELECT media_id FROM student_media_interactions WHERE student_id = :s)"),
                    {"s": row["student_id"]}).scalar()
            conn.execute(t.insert().values(**row))
            expected_check, label = "row_counts", f"{table}: in target, must not be"
    proc, verdict = golden.migration.verify(target_url=url)
    assert proc.returncode == 1, proc.stdout
    assert expected_check in failed(verdict)
    assert row_id in offending(verdict, expected_check)[label]["ids"], proc.stdout
    assert str(row_id) in proc.stdout
