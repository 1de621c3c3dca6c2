"""export_to_flask end to end, on data seeded with every dirty case of legacy_schema.md.

Runs the command the way a user does (a subprocess of manage.py) for each pair of
legacy and target dialects the issue names.
"""
from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import uuid

import pytest
import sqlalchemy as sa
from werkzeug.security import check_password_hash

import flask_models as fm
from migration_bridge import bookkeeping as bk
from migration_bridge import dialects
from migration_bridge.errors import BridgeError
from migration_bridge.profiles import get_profile

from .conftest import PROJECT_ROOT, run_manage, schema_snapshot, seed_legacy

PAIRS = [("sqlite", "sqlite"), ("mariadb", "postgresql"), ("mariadb", "mariadb")]
CHEAP_PIN = ("--pin-hash-method", "pbkdf2:sha256:1000")
MODEL_OF = {
    "districts": "district", "users": "customadmin", "observers": "observer", "sessions": "session",
    "students": "student", "media": "media", "comments": "comment",
    "student_media_interactions": "studentmediainteraction",
}


@pytest.fixture(scope="module")
def seeded(make_module_database):
    """One seeded legacy database per dialect, shared by the module's tests (read only)."""
    cache = {}

    def get(kind):
        if kind not in cache:
            cache[kind] = seed_legacy(make_module_database, kind, "small", seed=3)
        return cache[kind]

    return get


def export(legacy, target, *args, check=True, report_dir=None, **kw):
    report_dir = report_dir or str(PROJECT_ROOT / "var" / "test-reports" / target.name)
    proc = run_manage("export_to_flask", "--target", target.url, "--allow-live", *CHEAP_PIN,
                      "--report-dir", report_dir, *args, env=legacy.env, check=check, **kw)
    report_path = os.path.join(report_dir, "report.json")
    report = json.load(open(report_path)) if os.path.exists(report_path) else None
    return proc, report


def legacy_rows(legacy, sql):
    engine = sa.create_engine(legacy.db.url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(sql)).all()
    engine.dispose()
    return rows


def target_snapshot(engine, exclude=("pin_hash",)) -> dict:
    """Every target table as {id: row tuple}, salted columns left out."""
    snap = {}
    with engine.connect() as conn:
        for table in fm.TABLES_IN_ORDER:
            cols = [c for c in table.columns if c.name not in exclude]
            snap[table.name] = {r[0]: tuple(r) for r in conn.execute(sa.select(*cols).order_by(table.c.id))}
    return snap


@pytest.fixture(params=PAIRS, ids=[f"{a}-to-{b}" for a, b in PAIRS])
def migrated(request, seeded, make_database):
    legacy_kind, target_kind = request.param
    legacy = seeded(legacy_kind)
    target = make_database(target_kind)
    proc, report = export(legacy, target, "--create-schema")
    return legacy, target, proc, report


# --- every row is written or rejected, every anomaly handled -----------------------

def test_counts_add_up_per_entity(migrated):
    legacy, target, _, report = migrated
    assert report["status"] == "complete"
    engine = target.engine()
    with engine.connect() as conn:
        for name, stats in report["entities"].items():
            assert stats["read"] == legacy.manifest["counts"][MODEL_OF[name]], name
            assert stats["read"] == stats["written"] + stats["rejected"] + stats["skipped"], name
            table = fm.metadata.tables[name]
            assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() == stats["written"], name
        rejected_by_table = dict(conn.execute(
            sa.select(bk.notes.c.entity, sa.func.count()).where(bk.notes.c.kind == "reject")
            .group_by(bk.notes.c.entity)).all())
    assert {k: v["rejected"] for k, v in report["entities"].items() if v["rejected"]} == rejected_by_table
    lines = [json.loads(line) for line in open(report["rejects_file"])]
    assert len(lines) == report["totals"]["rejected"] + report["totals"]["skipped"]
    assert all(line["reason"] for line in lines)


@pytest.mark.parametrize("migrated", [("mariadb", "postgresql")], indirect=True, ids=["mariadb-to-postgresql"])
def test_the_loaded_tables_have_planner_statistics(migrated):
    """An export ends with ANALYZE: the Flask app's first queries and a sync's sums are
    planned for the rows loaded, not for an empty table (read from PostgreSQL's pg_stats,
    which ANALYZE alone fills; MariaDB's InnoDB keeps its statistics by itself)."""
    _, target, _, _ = migrated
    engine = target.engine()
    with engine.connect() as conn:
        analyzed = set(conn.execute(sa.text("SELECT DISTINCT tablename FROM pg_stats WHERE schemaname = 'public'"))
                       .scalars())
    engine.dispose()
    assert {t.name for t in fm.TABLES_IN_ORDER} | {bk.fingerprints.name} <= analyzed


@pytest.mark.parametrize("migrated", [("mariadb", "postgresql")], indirect=True, ids=["mariadb-to-postgresql"])
def test_the_row_digests_leave_room_for_a_syncs_updates(migrated):
    _, target, _, _ = migrated
    engine = target.engine()
    with engine.connect() as conn:
        options = conn.execute(sa.text("SELECT reloptions FROM pg_class WHERE relname = :name"),
                               {"name": bk.fingerprints.name}).scalar()
    engine.dispose()
    assert options == ["fillfactor=90"]


@pytest.mark.parametrize("migrated", [("mariadb", "postgresql")], indirect=True, ids=["mariadb-to-postgresql"])
def test_the_loaded_tables_keep_their_definition_and_leave_room_in_their_pages(migrated):
    """The Flask tables' fill factor is the default again once the export is done, and the
    pages it wrote have room: five rows of a table's first page (full, with more pages after
    it) updated in a non-indexed column stay in their page (HOT updates, counted by PostgreSQL
    for the transaction; rolled back)."""
    _, target, _, _ = migrated
    table = "student_media_interactions"
    engine = target.engine()
    with engine.connect() as conn:
        options = dict(conn.execute(sa.text("SELECT relname, reloptions FROM pg_class WHERE relname IN :names")
                                    .bindparams(sa.bindparam("names", expanding=True)),
                                    {"names": [t.name for t in fm.TABLES_IN_ORDER]}).all())
        pages = conn.execute(sa.text(f"SELECT count(DISTINCT (ctid::text::point)[0]) FROM {table}")).scalar()
        first_page = conn.execute(sa.text(f"SELECT id FROM {table} WHERE ctid < '(1,0)'::tid")).scalars().all()
        updated = first_page[:5]  # a tenth of a page holds more
        conn.execute(sa.text(f"UPDATE {table} SET updated_at = updated_at + interval '1 second' "
                             "WHERE id IN :ids").bindparams(sa.bindparam("ids", expanding=True)), {"ids": updated})
        hot = conn.execute(sa.text(f"SELECT pg_stat_get_xact_tuples_hot_updated('{table}'::regclass)")).scalar()
        conn.rollback()
    engine.dispose()
    assert options == {t.name: None for t in fm.TABLES_IN_ORDER}
    assert pages > 1 and len(first_page) > 50
    assert hot == len(updated)


def test_the_loaded_tables_have_the_indexes_and_foreign_keys_they_were_created_with(migrated, make_database):
    """On PostgreSQL the export drops them while it loads and builds them after: the target
    ends with the same catalog as the Flask tables freshly created, nothing left to build."""
    _, target, _, _ = migrated
    fresh = make_database(target.kind)
    get_profile("plan").create_schema(fresh.engine())
    exported = schema_snapshot(target.engine(), fm.TABLES_IN_ORDER)
    assert exported.pop("bridge_deferred_schema") == []
    assert exported == schema_snapshot(fresh.engine(), fm.TABLES_IN_ORDER)


@pytest.fixture
def parent_child(make_database):
    """PostgreSQL: a parent and a child table, with a foreign key, a plain index, a partial
    one and a unique one on the child."""
    db = make_database("postgresql")
    engine = db.engine()
    with engine.begin() as conn:
        for statement in (
                "CREATE TABLE parent (id integer PRIMARY KEY)",
                "CREATE TABLE child (id integer PRIMARY KEY, parent_id integer REFERENCES parent (id) "
                "ON DELETE CASCADE, code text UNIQUE, note text)",
                "CREATE INDEX ix_child_parent ON child (parent_id)",
                "CREATE INDEX ix_child_note ON child (note) WHERE note LIKE 'a%:%'",
                "INSERT INTO parent VALUES (1), (2)"):
            conn.execute(sa.text(statement))
    yield engine
    engine.dispose()


def built_after(engine, tables=("parent", "child")):
    return dialects.built_after_loading(engine, [sa.Table(t, sa.MetaData()) for t in tables], bk.deferred_schema)


def test_indexes_and_foreign_keys_are_dropped_while_loading_and_built_after(parent_child):
    engine = parent_child
    bk.create_bookkeeping(engine)
    before = schema_snapshot(engine, [sa.Table("child", sa.MetaData())])
    with built_after(engine):
        during = schema_snapshot(engine, [sa.Table("child", sa.MetaData())])
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO child VALUES (1, 1, 'x', 'a:b'), (2, 2, 'y', NULL)"))
    assert schema_snapshot(engine, [sa.Table("child", sa.MetaData())]) == before
    indexes, keys = during["child"]
    assert [name for name, _, unique in indexes] == ["child_code_key"] and keys == []
    assert [tuple(r) for r in during["bridge_deferred_schema"]] == [
        ("child", "child_parent_id_fkey"), ("child", "ix_child_note"), ("child", "ix_child_parent")]
    with engine.connect() as conn:  # built as they were: cascade, partial index
        assert "ON DELETE CASCADE" in conn.execute(sa.text(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'child_parent_id_fkey'")).scalar()
        assert "WHERE (note ~~ 'a%:%'::text)" in conn.execute(sa.text(
            "SELECT pg_get_indexdef('ix_child_note'::regclass)")).scalar()


def test_rows_copied_in_binary_are_the_rows_copied_as_text(make_database, monkeypatch):
    """PostgreSQL: rows go in a binary COPY when every column and value allows it (types
    from the catalog, not from the model), as text otherwise; the table holds the same."""
    import datetime as dt

    import psycopg

    engine = make_database("postgresql").engine()
    utc, chicago = dt.timezone.utc, dt.timezone(dt.timedelta(hours=-6))
    ddl = ("CREATE TYPE mood AS ENUM ('happy', 'sad'); CREATE TABLE {} (id bigint PRIMARY KEY, n integer, "
           "s smallint, ok boolean, name varchar(20), body text, at timestamptz, naive timestamp, "
           "m mood, j json)")
    model = sa.Table("loaded", sa.MetaData(), sa.Column("id", sa.BigInteger, primary_key=True),
                     *(sa.Column(c, t) for c, t in [("n", sa.Integer), ("s", sa.Integer), ("ok", sa.Boolean),
                                                     ("name", sa.String(20)), ("body", sa.Text),
                                                     ("at", sa.DateTime(timezone=True)), ("naive", sa.DateTime),
                                                     ("m", sa.String(5)), ("j", sa.JSON)]))
    rows = [{"id": 1, "n": -2**31, "s": 7, "ok": True, "name": "Zoë 👩‍🏫", "body": "a\tb\nc\\d", "m": "sad",
             "at": dt.datetime(2024, 5, 1, 12, 3, 4, 500, tzinfo=utc), "naive": dt.datetime(1999, 12, 31, 23, 59, 59),
             "j": {"k": [1, "é", None]}},
            {"id": 2**40, "n": None, "ok": False, "at": dt.datetime(2024, 5, 1, 12, tzinfo=chicago),
             "naive": dt.datetime(2038, 1, 19, 3, 14, 7, 999999, tzinfo=utc)},
            {"id": 3}]
    odd = [{"id": 4, "name": 12345, "naive": dt.datetime(2024, 5, 1, 12, tzinfo=chicago)},  # as text, as before
           {"id": 5, "at": dt.datetime(2024, 5, 1, 12)}]
    sent = []
    binary_types = dialects._binary_copy_types
    monkeypatch.setattr(dialects, "_binary_copy_types", lambda *a: sent.append(binary_types(*a)) or sent[-1])
    read = "SELECT id, n, s, ok, name, body, at, naive, m::text, j::text FROM {} ORDER BY id"
    with engine.begin() as conn:
        conn.execute(sa.text("SET TIME ZONE 'UTC'"))
        for name in ("loaded", "as_text"):
            conn.execute(sa.text(ddl.format(name).replace("CREATE TYPE mood AS ENUM ('happy', 'sad'); ", "")
                                 if name == "as_text" else ddl.format(name)))
        dialects.insert_new(conn, model, rows)
        dialects.upsert(conn, model, [{**rows[0], "body": "changed"}, *odd])
        assert sent[0] == ["int8", "int4", "int2", "bool", "text", "text", "timestamptz", "timestamp", "text", "text"]
        assert sent[1:] == [None], "a batch holding a value binary COPY does not take goes as text"
        monkeypatch.setattr(dialects, "_binary_copy_types", lambda *a: None)
        dialects.insert_new(conn, model.to_metadata(sa.MetaData(), name="as_text"),
                            [{**rows[0], "body": "changed"}, *rows[1:], *odd])
        loaded, as_text = (conn.execute(sa.text(read.format(t))).all() for t in ("loaded", "as_text"))
    engine.dispose()
    assert loaded == as_text and [r[0] for r in loaded] == [1, 3, 4, 5, 2**40]
    assert loaded[-1][6:8] == (dt.datetime(2024, 5, 1, 18, tzinfo=utc), dt.datetime(2038, 1, 19, 3, 14, 7, 999999))
    assert loaded[0][4:6] == ("Zoë 👩‍🏫", "changed") and loaded[0][9] == '{"k": [1, "\\u00e9", null]}'
    assert loaded[2][4] == "12345" and loaded[2][7] == dt.datetime(2024, 5, 1, 12)  # the text form's answers
    # psycopg's binary dumpers would wrap an integer out of range: PostgreSQL refuses it as text
    monkeypatch.setattr(dialects, "_binary_copy_types", binary_types)
    for column, value in (("n", 2**31), ("s", 40_000), ("s", -2**15 - 1), ("id", 2**63)):
        with engine.begin() as conn, pytest.raises(psycopg.errors.NumericValueOutOfRange):
            dialects.insert_new(conn, model, [{"id": 6, column: value}])
    engine.dispose()


def test_a_stopped_load_leaves_them_to_the_next_run(parent_child):
    """A run that fails while loading leaves them dropped, their definitions recorded; the
    next run builds those of the tables it does not load before it starts (one built
    meanwhile by hand is left as it is)."""
    engine = parent_child
    bk.create_bookkeeping(engine)
    before = schema_snapshot(engine, [sa.Table("child", sa.MetaData())])
    with pytest.raises(KeyboardInterrupt):
        with built_after(engine):
            raise KeyboardInterrupt
    left = schema_snapshot(engine, [sa.Table("child", sa.MetaData())])
    assert len(left["bridge_deferred_schema"]) == 3 and left["child"][1] == []
    with engine.begin() as conn:  # someone builds one of them meanwhile
        conn.execute(sa.text("CREATE INDEX ix_child_parent ON child (parent_id)"))
    with built_after(engine, tables=("parent",)):
        assert schema_snapshot(engine, [sa.Table("child", sa.MetaData())]) == before
    assert dialects.build_deferred_schema(engine, bk.deferred_schema) == 0


def test_a_foreign_key_the_loaded_rows_break_is_not_built_and_the_run_says_which(parent_child):
    engine = parent_child
    bk.create_bookkeeping(engine)
    with pytest.raises(BridgeError, match=r"child: foreign key child_parent_id_fkey cannot be built again, "
                                          r"rows break it .*kept in bridge_deferred_schema"):
        with built_after(engine):
            with engine.begin() as conn:
                conn.execute(sa.text("INSERT INTO child VALUES (1, 7, 'x', NULL)"))
    left = schema_snapshot(engine, [sa.Table("child", sa.MetaData())])
    assert [tuple(r) for r in left["bridge_deferred_schema"]] == [("child", "child_parent_id_fkey")]
    assert {name for name, _, _ in left["child"][0]} == {"child_code_key", "ix_child_note", "ix_child_parent"}


def test_a_role_that_does_not_own_the_tables_fills_their_pages_as_before(make_database, caplog):
    """The Flask app's tables may belong to the app's own role: the export loads them all the
    same, and says in one line each why their pages have no room and why their indexes and
    foreign keys stay while loading."""
    db = make_database("postgresql")
    role = f"mbtest_{uuid.uuid4().hex[:12]}"
    owner = db.engine()
    with owner.begin() as conn:
        conn.execute(sa.text("CREATE TABLE loaded (id integer PRIMARY KEY, n integer)"))
        conn.execute(sa.text("CREATE INDEX ix_loaded_n ON loaded (n)"))
        conn.execute(sa.text(f"CREATE ROLE {role} LOGIN"))
        conn.execute(sa.text(f"GRANT ALL ON loaded TO {role}"))
    bk.deferred_schema.create(owner)  # the export's own tables are its role's
    with owner.begin() as conn:
        conn.execute(sa.text(f"GRANT ALL ON {bk.deferred_schema.name} TO {role}"))
    engine = sa.create_engine(db.url.replace("postgres@", f"{role}@"))
    logger = logging.getLogger("migration_bridge")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="migration_bridge"):
            with dialects.room_while_loading(engine, [sa.Table("loaded", sa.MetaData())]), \
                    dialects.built_after_loading(engine, [sa.Table("loaded", sa.MetaData())], bk.deferred_schema):
                with engine.begin() as conn:
                    conn.execute(sa.text("INSERT INTO loaded VALUES (1, 1)"))
    finally:
        logger.removeHandler(caplog.handler)
        engine.dispose()
        with owner.begin() as conn:
            loaded = conn.execute(sa.text("SELECT count(*) FROM loaded")).scalar()
            options = conn.execute(sa.text("SELECT reloptions FROM pg_class WHERE relname = 'loaded'")).scalar()
            indexes = [ix["name"] for ix in sa.inspect(conn).get_indexes("loaded")]
            conn.execute(sa.text(f"DROP TABLE loaded, {bk.deferred_schema.name}"))
            conn.execute(sa.text(f"DROP ROLE {role}"))
        owner.dispose()
    assert loaded == 1 and options is None and indexes == ["ix_loaded_n"]
    assert "filled as before (must be owner of table loaded)" in caplog.text
    assert "keep their indexes and foreign keys while loading (must be owner of index ix_loaded_n)" in caplog.text


def test_orphans_rejected_with_reason_and_artefacts_skipped(migrated):
    legacy, _, _, report = migrated
    rejects = {(r["entity"], r["id"]): r for r in map(json.loads, open(report["rejects_file"]))}
    table_of = {v: k for k, v in MODEL_OF.items()}
    for key, ids in legacy.manifest["anomalies"]["orphan_fk"].items():
        model, column = key.split(".")
        for source_id in ids:
            reject = rejects[(table_of[model], source_id)]
            assert reject["outcome"] == "rejected" and f"{column}: " in reject["reason"], reject
    for user_id in legacy.manifest["anomalies"]["login_artifact_users"]:
        assert rejects[("users", user_id)]["outcome"] == "skipped"
        assert "login artefact" in rejects[("users", user_id)]["reason"]
    for model, ids in legacy.manifest["anomalies"]["over_length_rows"].items():
        for source_id in ids:
            assert "characters, column holds" in rejects[(table_of[model], source_id)]["reason"]
    for model, ids in legacy.manifest["anomalies"]["invalid_choice_rows"].items():
        for source_id in ids:
            assert "invalid value" in rejects[(table_of[model], source_id)]["reason"]


def test_duplicate_active_sessions_archived_not_dropped(migrated):
    legacy, target, _, report = migrated
    engine = target.engine()
    archived_ids = {a["session_id"] for a in report["archived_duplicate_sessions"]}
    with engine.connect() as conn:
        for group in legacy.manifest["anomalies"]["duplicate_active_sessions"]:
            rows = conn.execute(sa.select(fm.Session).where(fm.Session.id.in_(group["session_ids"]))).all()
            active = [r for r in rows if not r.is_archived]
            assert len(active) <= 1, group
            for r in rows:
                if r.is_archived:
                    assert r.id in archived_ids and r.archived_at is not None and r.original_name
        # the rule the partial unique index enforces holds everywhere
        dupes = conn.execute(
            sa.select(fm.Session.created_by_id, fm.Session.section)
            .where(fm.Session.is_archived.is_(False), fm.Session.created_by_id.is_not(None))
            .group_by(fm.Session.created_by_id, fm.Session.section).having(sa.func.count() > 1)).all()
    assert dupes == []


def test_attribution_inferred_from_submitted_password(migrated):
    legacy, target, _, report = migrated
    anomalies = legacy.manifest["anomalies"]
    engine = target.engine()
    with engine.connect() as conn:
        media = {r.id: r for r in conn.execute(sa.select(fm.Media.id, fm.Media.student_id, fm.Media.posted_by_admin_id))}
    listed = {kind: {a["media_id"] for a in items} for kind, items in report["attributions"].items()}
    for media_id, student_id in anomalies["attribution_unique"]:
        if media_id in media:
            assert media[media_id].student_id == student_id
            assert media_id in listed["student"]
    for media_id, teacher_id in anomalies["attribution_teacher"]:
        if media_id in media:
            assert media[media_id].posted_by_admin_id == teacher_id
            assert media_id in listed["teacher"]
    for media_id in anomalies["attribution_ambiguous"]:
        assert media[media_id].student_id is None and media_id in listed["ambiguous"]
    for media_id in anomalies["attribution_unmatched"]:
        if media_id in media:
            assert media[media_id].student_id is None and media_id in listed["unmatched"]
    assert "submitted_password" not in fm.Media.__table__.columns


def test_replies_before_parents_text_and_urls_survive(migrated):
    legacy, target, _, _ = migrated
    engine = target.engine()
    anomalies = legacy.manifest["anomalies"]
    source = {r[0]: r for r in legacy_rows(legacy, "SELECT id, parent_id, text FROM video_app_comment")}
    with engine.connect() as conn:
        comments = {r.id: r for r in conn.execute(sa.select(fm.Comment.id, fm.Comment.parent_id, fm.Comment.text))}
        students = {r.id: r.avatar_image_path for r in conn.execute(sa.select(fm.Student.id, fm.Student.avatar_image_path))}
        projects = conn.execute(sa.select(fm.Media.project_images).where(fm.Media.project_images.is_not(None))).scalars().all()
    loaded_replies = [i for i in anomalies["replies_before_parent"] if i in comments]
    assert loaded_replies  # the others went with a rejected media row (cascade), not their parent
    for reply_id in loaded_replies:
        assert comments[reply_id].parent_id == source[reply_id][1] > reply_id
    for comment_id in anomalies["four_byte_utf8"]["comment"]:
        if comment_id in comments:
            assert comments[comment_id].text == source[comment_id][2]
            assert re.search(r"[\U00010000-\U0010FFFF]", comments[comment_id].text)
    assert all(p is None or p == "" or p.startswith("/static/") for p in students.values())
    assert any(students.values())
    urls = [u for images in projects if isinstance(images, list) for u in images]
    assert urls and all(u.startswith("/media/images/") for u in urls)


def test_kept_passwords_verify_and_weak_ones_must_reset(migrated):
    legacy, target, _, report = migrated
    engine = target.engine()
    tables = {"customadmin": fm.User.__table__, "observer": fm.Observer.__table__}
    skipped = set(legacy.manifest["anomalies"]["login_artifact_users"])
    checked = 0
    with engine.connect() as conn:
        for model, entries in legacy.manifest["passwords"].items():
            rows = {r.id: r._mapping for r in conn.execute(sa.select(tables[model]))}
            for entry in entries:
                row = rows.get(entry["id"])
                if row is None:
                    assert entry["id"] in skipped or model == "observer"
                    continue
                if entry["hasher"] in ("md5", "unusable"):
                    assert row["must_reset_password"] and not row["password_hash"] and not row["legacy_password_hash"]
                else:
                    check = fm.verify_password(dict(row), entry["plaintext"])
                    assert check.ok, (model, entry["id"], entry["hasher"])
                    assert check.needs_rehash == (entry["hasher"] in ("argon2", "bcrypt_sha256"))
                    assert not fm.verify_password(dict(row), entry["plaintext"] + "x").ok
                    checked += 1
                if row["password_hash"]:
                    check_password_hash(row["password_hash"], "probe")  # never unparsable
    assert checked >= 10
    counted = sum(n for by_outcome in report["passwords"]["users"].values() for n in by_outcome.values())
    assert counted == report["entities"]["users"]["written"]


def test_no_plain_pin_anywhere(migrated):
    legacy, target, proc, report = migrated
    pins = {r[0] for r in legacy_rows(legacy, "SELECT password FROM video_app_student")}
    media_secrets = {r[0] for r in legacy_rows(legacy, "SELECT submitted_password FROM video_app_media") if r[0]}
    teacher_media_passwords = {r[0] for r in legacy_rows(legacy, "SELECT media_password FROM video_app_customadmin")}
    secrets = pins | (media_secrets - teacher_media_passwords)  # media_password is copied as is (the plan)
    engine = target.engine()
    with engine.connect() as conn:
        for table in [*fm.TABLES_IN_ORDER, bk.notes, bk.runs, bk.checkpoints, bk.pin_hashes]:
            for row in conn.execute(sa.select(table)):
                for value in row:
                    assert not (isinstance(value, str) and value in secrets), table.name
                    if isinstance(value, (dict, list)):
                        assert not (_json_strings(value) & secrets), table.name
    with engine.connect() as conn:
        student = conn.execute(sa.select(fm.Student.id, fm.Student.pin_hash).limit(1)).first()
    pin_of = dict(legacy_rows(legacy, "SELECT id, password FROM video_app_student"))
    assert check_password_hash(student.pin_hash, pin_of[student.id])
    for path in (report["rejects_file"], os.path.join(os.path.dirname(report["rejects_file"]), "report.json")):
        assert not (_json_strings(json.load(open(path)) if path.endswith(".json")
                                  else [json.loads(line) for line in open(path)]) & secrets), path
    zero_padded = {p for p in pins if p.startswith("0")}  # cannot be mistaken for a count
    output = proc.stdout + proc.stderr
    for name in (legacy.db.name, target.name):  # random names, in URLs and report paths: may hold any digits
        output = output.replace(name, "<database>")
    assert not {p for p in zero_padded if p in output}


def _json_strings(value) -> set:
    if isinstance(value, dict):
        return set().union(*(_json_strings(v) for v in value.values()), set(map(str, value)))
    if isinstance(value, list):
        return set().union(set(), *(_json_strings(v) for v in value))
    return {value} if isinstance(value, str) else set()


# --- idempotent, resumable, convergent -------------------------------------------------

def test_second_run_writes_nothing_new(seeded, make_database):
    legacy, target = seeded("sqlite"), make_database("sqlite")
    export(legacy, target, "--create-schema")
    before = target_snapshot(target.engine(), exclude=())
    _, report = export(legacy, target)
    assert report["status"] == "complete"
    assert target_snapshot(target.engine(), exclude=()) == before  # even the salted PIN hashes


def kill_mid_run(legacy, target, tmp_path, *args) -> None:
    """Start an export with a slow PIN method and small batches; SIGKILL it once some
    students are committed."""
    env = {**os.environ, **legacy.env}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    proc = subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "manage.py"), "export_to_flask", "--target", target.url,
         "--allow-live", "--batch-size", "50", "--pin-hash-method", "pbkdf2:sha256:20000",
         "--report-dir", str(tmp_path / f"killed-{time.monotonic_ns()}"), *args],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    engine = target.engine()
    started_at = fm_now()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.2)
        try:
            with engine.connect() as conn:
                row = conn.execute(sa.select(bk.checkpoints.c.read, bk.checkpoints.c.updated_at)
                                   .where(bk.checkpoints.c.entity == "students")).first()
        except sa.exc.DBAPIError:
            continue
        if row and row.read >= 200 and row.updated_at > started_at:  # this run's checkpoint
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize("legacy_kind,target_kind", [("sqlite", "sqlite"), ("mariadb", "postgresql")])
def test_killed_run_then_rerun_equals_clean_run(seeded, make_database, legacy_kind, target_kind, tmp_path):
    legacy = seeded(legacy_kind)
    clean, killed = make_database(target_kind), make_database(target_kind)
    export(legacy, clean, "--create-schema")
    kill_mid_run(legacy, killed, tmp_path, "--create-schema")
    engine = killed.engine()
    with engine.connect() as conn:
        partial = conn.execute(sa.select(sa.func.count()).select_from(fm.Student.__table__)).scalar()
    assert 0 < partial < len(target_snapshot(clean.engine())["students"])

    _, report = export(legacy, killed)
    assert report["status"] == "complete"
    assert target_snapshot(engine) == target_snapshot(clean.engine())
    clean_report = json.load(open(PROJECT_ROOT / "var" / "test-reports" / clean.name / "report.json"))
    assert report["entities"] == {k: {**v, "seconds": report["entities"][k]["seconds"],
                                      "rows_per_s": report["entities"][k]["rows_per_s"]}
                                  for k, v in clean_report["entities"].items()}
    pin_of = dict(legacy_rows(legacy, "SELECT id, password FROM video_app_student"))
    with engine.connect() as conn:
        for student_id, pin_hash in conn.execute(sa.select(fm.Student.id, fm.Student.pin_hash)):
            assert check_password_hash(pin_hash, pin_of[student_id])
    if target_kind == "postgresql":
        with engine.begin() as conn:  # sequences were moved past the loaded ids
            new_id = conn.execute(sa.insert(fm.District).values(
                name="Brand new", code="NEW-1", is_active=True, created_at=fm_now())).inserted_primary_key[0]
        assert new_id > max(target_snapshot(clean.engine())["districts"])


def test_resume_after_a_killed_restart_upserts_over_the_old_rows(seeded, make_database, tmp_path):
    # A --restart clears the checkpoints but not the rows: the resumed run meets rows
    # past its checkpoint and must upsert them instead of failing on the fast insert.
    legacy = seeded("sqlite")
    target = make_database("sqlite")
    export(legacy, target, "--create-schema")
    before = target_snapshot(target.engine())
    kill_mid_run(legacy, target, tmp_path, "--restart")
    proc, report = export(legacy, target)
    assert report["status"] == "complete"
    assert "upserting from here on" in proc.stderr
    assert target_snapshot(target.engine()) == before


def fm_now():
    import datetime as dt

    return dt.datetime.now(dt.timezone.utc)


def test_dry_run_writes_nothing_and_reports_everything(seeded, make_database, tmp_path):
    legacy, target = seeded("sqlite"), make_database("sqlite")
    engine = target.engine()
    fm.create_all(engine)
    proc, report = export(legacy, target, "--dry-run", report_dir=str(tmp_path / "dry"))
    assert "dry run" in proc.stdout
    assert report["dry_run"] and report["totals"]["read"] == sum(legacy.manifest["counts"].values())
    assert report["totals"]["written"] > 0
    snapshot = target_snapshot(engine, exclude=())
    assert all(not rows for rows in snapshot.values())
    assert not sa.inspect(engine).has_table("bridge_checkpoints")


def test_pin_roster_is_opt_in_and_owner_only(seeded, make_database, tmp_path):
    legacy, target = seeded("sqlite"), make_database("sqlite")
    roster = tmp_path / "roster.csv"
    roster.write_text("old")
    os.chmod(roster, 0o644)
    _, report = export(legacy, target, "--create-schema", "--pin-roster", str(roster))
    assert oct(os.stat(roster).st_mode & 0o777) == "0o600"
    lines = roster.read_text().splitlines()
    assert lines[0] == "teacher,session_code,session_name,student_id,student_name,pin"
    assert len(lines) == report["entities"]["students"]["written"] + 1  # migrated students only


def test_duplicate_session_policy_fail_stops_before_writing(seeded, make_database):
    legacy, target = seeded("sqlite"), make_database("sqlite")
    proc, _ = export(legacy, target, "--create-schema", "--on-duplicate-session", "fail", check=False)
    assert proc.returncode == 2 and "duplicate an active session" in proc.stderr
    assert not sa.inspect(target.engine()).has_table("districts")


# --- bad input: one line, exit 2, nothing half-written ----------------------------------

def _bad_input_cases(tmp_path):
    empty = f"sqlite:///{tmp_path}/empty.sqlite3"
    return {
        "unreachable target": (["--target", "postgresql://postgres:s3cr3t@127.0.0.1:1/nowhere"], {}, "unreachable"),
        "wrong URL": (["--target", "not a url"], {}, "invalid database URL"),
        "missing schema": (["--target", empty], {}, "--create-schema"),
        "reset without yes": (["--target", empty, "--reset"], {}, "--yes"),
        "unknown entity": (["--target", empty, "--only", "gizmos"], {}, "unknown entity"),
        "bad pin method": (["--target", empty, "--pin-hash-method", "rot13"], {}, "pin-hash-method"),
        "no row workers": (["--target", empty, "--row-workers", "0"], {}, "--row-workers must be >= 1"),
        "row workers in a sync": (["--target", empty, "--sync", "--row-workers", "2"], {}, "or --row-workers"),
        "unreachable source": (["--target", empty], {"LEGACY_DATABASE_URL": "mysql://root:s3cr3t@127.0.0.1:1/x"},
                               "legacy database unreachable"),
        "wrong legacy label": (["--target", empty], {"MIGRATION_BRIDGE_OVERRIDES": '{"LEGACY_APP": "videos"}'},
                               "no installed Django app with label"),
        "bad settings": (["--target", empty], {"MIGRATION_BRIDGE_OVERRIDES": '{"BATCH_SIZE": "many"}'},
                         "bad settings"),
    }


@pytest.mark.parametrize("case", list(_bad_input_cases(".")))
def test_bad_input_one_line_exit_2(case, seeded, tmp_path):
    legacy = seeded("sqlite")
    args, env, expected = _bad_input_cases(tmp_path)[case]
    proc = run_manage("export_to_flask", "--allow-live", *args, env={**legacy.env, **env}, check=False)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and expected in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and "s3cr3t" not in proc.stdout + proc.stderr


def test_refuses_target_holding_foreign_rows(seeded, make_database):
    legacy, target = seeded("sqlite"), make_database("sqlite")
    engine = target.engine()
    fm.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.insert(fm.District).values(id=1, name="Theirs", code="T", is_active=True, created_at=fm_now()))
    proc, _ = export(legacy, target, check=False)
    assert proc.returncode == 2 and "did not write" in proc.stderr
    export(legacy, target, "--reset", "--yes")
    with engine.connect() as conn:
        assert conn.execute(sa.select(fm.District.name).where(fm.District.id == 1)).scalar() != "Theirs"


def test_live_source_refused_without_allow_live(seeded, make_database):
    legacy, target = seeded("sqlite"), make_database("sqlite")
    proc = run_manage("export_to_flask", "--target", target.url, "--create-schema", env=legacy.env, check=False)
    assert proc.returncode == 2 and "flask_freeze on" in proc.stderr and "Traceback" not in proc.stderr


# Django keeps a connection's last 9,000 queries when DEBUG is on (legacy projects run
# commands that way): the export's reads must not hold theirs.
QUERY_LOG = """
import json
from django.conf import settings
from django.db import connection
from migration_bridge.profiles import get_profile
from migration_bridge.source import LegacySource
source = LegacySource("video_app")
entity = get_profile("plan").entity("comments")
ids = [row["id"] for rows in source.entity_rows(entity, -2**62, 20) for row in rows]
read = source.rows_by_id(entity, ids[:50])
print(json.dumps({"debug": settings.DEBUG, "ids": len(ids), "read": len(read), "logged": len(connection.queries)}))
"""


# A sync reads its changed rows by id, the next batch in a thread while this one is
# processed: the same rows, batch by batch, and no thread or connection left behind.
READ_AHEAD = """
import json, threading
from django.db import connection
from migration_bridge.fingerprint import ROW_DIGEST
from migration_bridge.profiles import get_profile
from migration_bridge.source import LegacySource
source = LegacySource("video_app")
source.row_digests = True
entity = get_profile("plan").entity("comments")
ids = [row["id"] for rows in source.entity_rows(entity, -2**62, 50) for row in rows][::3] + [10**12]
expected = [(ids[s:s + 7], source.rows_by_id(entity, ids[s:s + 7])) for s in range(0, len(ids), 7)]
batches = list(source.rows_by_id_ahead(entity, ids, 7))
plain = list(source.rows_by_id_ahead(entity, ids, 7, digests=False))
early = source.rows_by_id_ahead(entity, ids, 7)
next(early)
early.close()
sessions = None
if connection.vendor == "mysql":
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = DATABASE()")
        sessions = cursor.fetchone()[0]
print(json.dumps({"same": batches == expected, "batches": len(batches), "rows": sum(len(r) for _, r in batches),
                  "digested": all(ROW_DIGEST in r for _, rows in batches for r in rows),
                  "plain": [[r["id"] for r in rows] for _, rows in plain] == [[r["id"] for r in rows] for _, rows in batches]
                  and not any(ROW_DIGEST in r for _, rows in plain for r in rows),
                  "threads": [t.name for t in threading.enumerate() if t.name.startswith("bridge-read-ahead")],
                  "sessions": sessions}))
"""


def test_rows_read_ahead_by_id_are_the_rows_read_by_id(seeded, legacy_dialect):
    legacy = seeded(legacy_dialect)
    out = json.loads(run_manage("shell", "-c", READ_AHEAD, env=legacy.env).stdout.strip().splitlines()[-1])
    assert out["same"] and out["batches"] > 3 and out["rows"] > 20
    assert out["digested"] and out["plain"]
    assert out["threads"] == []
    assert out["sessions"] in (None, 1)  # the reader closed its own connection


def test_the_reads_leave_no_query_log_with_debug_on(seeded):
    legacy = seeded("sqlite")
    out = json.loads(run_manage("shell", "-c", QUERY_LOG, env={**legacy.env, "DJANGO_DEBUG": "1"})
                     .stdout.strip().splitlines()[-1])
    assert out["debug"] and out["ids"] > 200 and out["read"] == 50
    assert out["logged"] <= 1
