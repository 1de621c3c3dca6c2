"""verify_flask end to end: a clean seeded migration passes; each planted corruption
makes its check fail and names the id; --fix-counts repairs counters; --flask-url
fetches pages from a real (tiny) Flask app on loopback.

Every test runs on each pair of legacy and target dialects (SQLite → SQLite, MariaDB →
PostgreSQL), from the session's one seeded and exported legacy database per pair
(``exported_pair``, shared with test_sync): the module repairs the counters of a copy
(the golden target), and each corruption test works on its own copy of that (a file
copy, or ``CREATE DATABASE ... TEMPLATE`` on PostgreSQL).
"""
from __future__ import annotations

import itertools
import json
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from .conftest import SOURCE_TARGET_PAIRS, Database, SeededLegacy, run_manage

pytestmark = pytest.mark.slow

PIN_METHOD = "pbkdf2:sha256:1000"  # fast hashes: the tests check meaning, not cost
SEED = "7"  # sample seed: the samples are reproducible
_counter = itertools.count()


# --- helpers -------------------------------------------------------------------------

def export(seeded, target_url: str, flask_media: Path, report_dir: Path, *args: str) -> dict:
    env = {**seeded.env, "FLASK_MEDIA_ROOT": str(flask_media)}
    run_manage("export_to_flask", "--target", target_url, "--create-schema", "--allow-live",
               "--pin-hash-method", PIN_METHOD, "--workers", "2", "--report-dir", str(report_dir), *args, env=env)
    if not flask_media.is_dir() or not any(flask_media.iterdir()):
        # An export without its file step (before migration_bridge/files.py, or
        # --skip-files): the target storage gets the legacy files as they are.
        shutil.copytree(seeded.media_root, flask_media, dirs_exist_ok=True)
    return env


def verify(target_url: str, env: dict, tmp_path: Path, *args: str):
    report_path = tmp_path / f"verify-{next(_counter)}.json"
    proc = run_manage("verify_flask", "--target", target_url, "--report", str(report_path), "--seed", SEED,
                      *args, env=env, check=False)
    assert proc.returncode in (0, 1), f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr
    report = json.loads(report_path.read_text())
    assert (proc.returncode == 0) == report["passed"]
    return proc, report


def failed(report: dict) -> set[str]:
    return {c["name"] for c in report["checks"] if c["status"] == "FAIL"}


def check(report: dict, name: str) -> dict:
    return next(c for c in report["checks"] if c["name"] == name)


def offending_ids(report: dict, name: str, label: str) -> list:
    return check(report, name)["offending"][label]["ids"]


def expected_missing_files(seeded) -> set[str]:
    anomalies = seeded.manifest["anomalies"]
    return set(anomalies["missing_files"]) | {u[len("/media/"):] for u in anomalies["project_images_missing"]}


ACCEPT = "--accept-missing-source-files"  # the seed's legacy storage lacks some files on purpose
SMALL_SAMPLE = ("--sample", "20")


@dataclass
class Golden:
    pair: str  # "source-target"
    seeded: SeededLegacy
    raw: Database  # the target as export_to_flask left it
    fixed: Database  # the same with counters repaired
    flask_media: Path
    env: dict
    report: dict  # verify_flask's on ``fixed``, with SMALL_SAMPLE


@dataclass
class Target:
    db: Database
    env: dict

    @property
    def url(self) -> str:
        return self.db.url

    def sql(self, statement: str, **params) -> list:
        """One statement in its own transaction, foreign keys NOT enforced, as after a manual
        edit (SQLAlchemy leaves SQLite's off; PostgreSQL's are skipped in replica mode)."""
        engine = self.db.engine()
        try:
            with engine.begin() as conn:
                if self.db.kind == "postgresql":
                    conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
                result = conn.execute(sa.text(statement), params)
                return result.all() if result.returns_rows else []
        finally:
            engine.dispose()


@pytest.fixture(scope="module", params=SOURCE_TARGET_PAIRS)
def golden(request, exported_pair, make_module_database, tmp_path_factory) -> Golden:
    exported = exported_pair(request.param)
    fixed = make_module_database.clone(exported.target)
    env = exported.seeded.env
    proc, report = verify(fixed.url, env, tmp_path_factory.mktemp("golden"), ACCEPT, "--fix-counts", *SMALL_SAMPLE)
    assert report["passed"], proc.stdout  # the clean migration the corruptions start from
    return Golden(request.param, exported.seeded, exported.target, fixed, exported.flask_media, env, report)


def copy_target(golden: Golden, make_database, tmp_path: Path, raw: bool = False, copy_media: bool = False) -> Target:
    """This test's own copy of the golden target (counters repaired unless ``raw``)."""
    db = make_database.clone(golden.raw if raw else golden.fixed)
    env = dict(golden.env)
    if copy_media:
        media = tmp_path / "flask_media"
        shutil.copytree(golden.flask_media, media)
        env["FLASK_MEDIA_ROOT"] = str(media)
    return Target(db, env)


@pytest.fixture
def target(golden, make_database, tmp_path) -> Target:
    return copy_target(golden, make_database, tmp_path)


# --- the checksum engine (pure) ----------------------------------------------------------

def test_canonical_datetimes_and_json():
    import datetime as dt

    from migration_bridge.diff import canonical, canonical_row, row_hash

    aware = dt.datetime(2025, 1, 6, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    naive_utc = dt.datetime(2025, 1, 6, 8, 0)
    assert canonical(aware) == canonical(naive_utc) == "2025-01-06T08:00:00.000000+00:00"
    assert canonical(True) is True and canonical(1) == 1  # a bool never equals an int
    a = canonical_row({"id": 1, "j": {"b": 1, "a": [2]}}, ["id", "j"])
    b = canonical_row({"id": 1, "j": {"a": [2], "b": 1}}, ["id", "j"])
    assert row_hash(a) == row_hash(b)


def test_ranges_cover_every_id_and_descent_finds_the_ids():
    from migration_bridge.diff import chunks_at, compare_range

    batches = [{1: b"a", 2: b"b"}, {}, {5: b"c", 9: b"d"}, {12: b"e"}]
    ranges = list(chunks_at(batches, [5, 7, 10]))
    assert [(lo, hi, rows) for lo, hi, rows in ranges] == [
        (None, 5, {1: b"a", 2: b"b"}), (5, 7, {5: b"c"}), (7, 10, {9: b"d"}), (10, None, {12: b"e"})]
    # every range is yielded, empty ones too: the target may hold rows there
    assert list(chunks_at([{20: 1}], [5, 10])) == [(None, 5, {}), (5, 10, {}), (10, None, {20: 1})]
    assert list(chunks_at([], [])) == [(None, None, {})]
    assert list(chunks_at([{1: 1}, {2: 2}], [])) == [(None, None, {1: 1, 2: 2})]
    # batches that begin where a chunk does (a keyset scan cut like the chunks), or past several
    assert list(chunks_at([{1: 1, 2: 2}, {3: 3, 4: 4}, {5: 5}], [3, 5])) == [
        (None, 3, {1: 1, 2: 2}), (3, 5, {3: 3, 4: 4}), (5, None, {5: 5})]
    assert list(chunks_at([{1: 1}, {9: 9, 10: 10}], [3, 5, 10])) == [
        (None, 3, {1: 1}), (3, 5, {}), (5, 10, {9: 9}), (10, None, {10: 10})]

    source = {i: bytes([i % 251]) for i in range(1000)}
    target = dict(source)
    target[417] = b"changed"
    del target[3]
    target[5000] = b"extra"
    diff = compare_range(None, None, source, target)
    assert (diff.missing, diff.extra, diff.changed) == ([3], [5000], [417])
    assert not compare_range(0, 10, {1: b"x"}, {1: b"x"})


def test_a_uniform_sample_merged_from_the_workers_samples():
    import random

    from migration_bridge.verify.content import merge_samples

    rng = random.Random(1)
    # a population of 900 ids and one of 100, each given by a sample of 10 of its ids
    parts = [(list(range(10)), 900), (list(range(1000, 1010)), 100)]
    picks = [merge_samples(parts, 10, rng) for _ in range(2000)]
    assert all(len(p) == len(set(p)) == 10 for p in picks)
    share = sum(i >= 1000 for p in picks for i in p) / (10 * 2000)
    assert 0.08 < share < 0.12  # drawn in proportion to the populations, not to the samples
    assert sorted(merge_samples([([1, 2], 2), ([7], 1)], 10, rng)) == [1, 2, 7]  # fewer rows than asked
    assert merge_samples([([], 0), ([], 0)], 5, rng) == []


def test_audit_bounds_cut_the_ids_into_ranges_of_at_least_a_chunk():
    from migration_bridge.verify.content import audit_bounds
    from migration_bridge.verify.state import IdList

    ids = IdList(range(1, 1001))
    assert audit_bounds(ids, 1, 100) == [(None, None)]
    assert audit_bounds(ids, 4, 100) == [(None, 250), (250, 500), (500, 750), (750, None)]
    assert audit_bounds(ids, 4, 400) == [(None, 500), (500, None)]  # a range holds a chunk or more
    assert audit_bounds(IdList(), 4, 100) == [(None, None)]


def test_the_legacy_ids_arrive_entity_by_entity_from_their_helper():
    import multiprocessing

    from migration_bridge.errors import BridgeError
    from migration_bridge.forked import Helper
    from migration_bridge.verify.state import ArrivingIds, IdList

    engine = sa.create_engine("sqlite://")
    taken = multiprocessing.get_context("fork").Event()

    def read(send):
        send.send(("ids", ("districts", IdList([1, 2]))))
        # the next entity is read only once the first one's ids were taken
        if not taken.wait(30):
            raise BridgeError("the first ids were not taken before the rest were read")
        send.send(("ids", ("users", IdList([3]))))
        send.send(("done", None))

    ids = ArrivingIds(Helper(read, (), "the reader", engine))
    try:
        assert list(ids["districts"]) == [1, 2]
        taken.set()
        assert list(ids["users"]) == [3] and list(ids["districts"]) == [1, 2]
        with pytest.raises(KeyError):
            ids["media"]
    finally:
        ids.stop()

    def fail(send):
        raise BridgeError("legacy database unreachable: gone")

    failing = ArrivingIds(Helper(fail, (), "the reader", engine))
    try:
        with pytest.raises(BridgeError, match="legacy database unreachable: gone"):
            failing["districts"]
    finally:
        failing.stop()


def test_a_helper_leaves_its_parents_objects_out_of_its_collections():
    import gc

    from migration_bridge.forked import Helper

    helper = Helper(lambda send: send.send(("done", gc.get_freeze_count())), (), "the helper",
                    sa.create_engine("sqlite://"))
    try:
        assert helper.receive()[1] > 10_000  # everything Django, SQLAlchemy and pytest made before the fork
    finally:
        helper.stop()


def test_the_reservoir_samples_uniformly_whatever_the_batches():
    import random

    from migration_bridge.verify.content import Reservoir

    rng = random.Random(7)
    taken = [0] * 100
    for _ in range(4000):
        reservoir, ids = Reservoir(10, rng), list(range(100))
        while ids:
            k = rng.randrange(0, 30)
            reservoir.offer(ids[:k])
            ids = ids[k:]
        assert reservoir.seen == 100 and len(set(reservoir.items)) == 10
        for i in reservoir.items:
            taken[i] += 1
    assert all(300 <= n <= 500 for n in taken), taken  # 400 expected for each id: 10 of 100, 4000 times
    assert sum(taken[:10]) < 4500 and sum(taken[90:]) > 3500  # neither the first nor the last ids favoured

    few = Reservoir(10, rng)
    few.offer([1, 2])
    few.offer([3])
    assert (few.items, few.seen) == ([1, 2, 3], 3)
    none = Reservoir(0, rng)
    none.offer([1, 2])
    assert (none.items, none.seen) == ([], 2)


def test_target_sessions_on_postgresql_never_jit_compile(make_database):
    """A chunk-digest query is costed above PostgreSQL's jit_above_cost, and compiling it
    took longer than running it (200 of 450 ms): the bridge's sessions turn JIT off,
    next to the lock timeout they are given."""
    from migration_bridge import dialects

    engine = dialects.create_target_engine(make_database("postgresql").url, lock_timeout=7)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SHOW jit")).scalar_one() == "off"
            assert conn.execute(sa.text("SHOW lock_timeout")).scalar_one() == "7s"
    finally:
        engine.dispose()


def test_text_form_keeps_values_apart():
    """Any two sequences of values (rows one after the other) that differ have text forms
    that differ, whatever the kinds of their columns, None, empty texts, texts holding the
    separators and values of a type the column cannot hold among them."""
    import datetime as dt
    import enum
    import itertools

    from migration_bridge.diff import TEXT_FORMS, text_form, text_form_md5, text_former

    class Kind(enum.Enum):
        a = 1
        b = 2

    utc = dt.timezone.utc
    values = {
        "int": [None, 0, -1, 12, 1, True, 1.0, "1,2", ""],
        "text": [None, "", "N", ",", ":", "1:", "a,b", "3:abc", "é😀", "t,"],
        "bool": [None, True, False, 1, "t"],
        "datetime": [None, dt.datetime(2025, 1, 6, 8, 0, tzinfo=utc),
                     dt.datetime(2025, 1, 6, 8, 0, 0, 1, tzinfo=utc), dt.datetime(1970, 1, 1), dt.date(2025, 1, 6)],
        "enum": [None, Kind.a, Kind.b, "", "a:"],
    }
    for kinds in [*itertools.product(values, repeat=2), *((k, k, k) for k in values)]:
        forms = [TEXT_FORMS[k] for k in kinds]
        rows = list(itertools.product(*(values[k] for k in kinds)))
        texts = {text_form(row, forms) for row in rows}
        assert len(texts) == len(rows), kinds
        # the function written for a table's columns gives the same forms
        columns = [f"c{k}" for k in range(len(kinds))]
        text_of = text_former(columns, kinds)
        assert all(text_of(dict(zip(columns, row))) == text_form(row, forms) for row in rows), kinds
        # two rows one after the other: a chunk's form
        few = list(itertools.product(*(values[k][:4] for k in kinds)))
        assert len({text_form(a + b, forms + forms) for a, b in itertools.product(few, repeat=2)}) == len(few) ** 2

    text, integer, when = TEXT_FORMS["text"], TEXT_FORMS["int"], TEXT_FORMS["datetime"]
    assert text_form_md5(["12"], [integer]) == text_form_md5([12], [integer])  # the target writes out an int's text
    aware = dt.datetime(2025, 1, 6, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert text_form_md5([aware], [when]) == text_form_md5([dt.datetime(2025, 1, 6, 8, 0)], [when])
    assert text_form_md5([aware], [when]) != text_form_md5([aware + dt.timedelta(microseconds=1)], [when])
    assert text_form_md5([None], [text]) != text_form_md5([""], [text])


def test_the_target_computes_the_text_form_python_computes(target_db):
    """The content check's row hash on PostgreSQL: md5 of each row's text form, computed by
    the database from what it holds and in Python from the values written; equal for
    every kind of value, and only there."""
    import copy
    import datetime as dt
    import enum

    from flask_models.models import UtcDateTime
    from migration_bridge import dialects
    from migration_bridge.diff import TEXT_FORMS, text_form_md5
    from migration_bridge.verify.content import RowHashing

    class Kind(enum.Enum):
        plain = 1
        other = 2

    metadata = sa.MetaData()
    table = sa.Table("text_forms", metadata, sa.Column("id", sa.BigInteger, primary_key=True),
                     sa.Column("n", sa.Integer), sa.Column("s", sa.String(50)), sa.Column("t", sa.Text),
                     sa.Column("b", sa.Boolean), sa.Column("at", UtcDateTime), sa.Column("naive", sa.DateTime),
                     sa.Column("kind", sa.Enum(Kind, name="text_form_kind")))
    utc, plus2 = dt.timezone.utc, dt.timezone(dt.timedelta(hours=2))
    rows = [
        {"id": 1, "n": 0, "s": "", "t": "N", "b": False, "at": dt.datetime(2025, 3, 1, 12, 0, tzinfo=utc),
         "naive": dt.datetime(2025, 3, 1, 12, 0), "kind": Kind.plain},
        {"id": 2, "n": -2_147_483_648, "s": "V1:x|N", "t": "é😀\n'\"\t", "b": True,
         "at": dt.datetime(999, 12, 31, 23, 59, 59, 999_999, tzinfo=plus2), "naive": dt.datetime(1970, 1, 1),
         "kind": Kind.other},
        {"id": 3, "n": None, "s": None, "t": None, "b": None, "at": None, "naive": None, "kind": None},
        {"id": 9_007_199_254_740_993, "n": 7, "s": " trailing ", "t": "", "b": False,
         "at": dt.datetime(2024, 2, 29, 0, 0, 0, 1, tzinfo=utc), "naive": dt.datetime(2024, 2, 29, 0, 0, 0, 1),
         "kind": Kind.plain},
    ]
    engine = target_db.engine()
    try:
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(table.insert(), rows)
        kinds = [(c, dialects.text_kind(c.type)) for c in table.columns]
        assert [k for _, k in kinds] == ["int", "int", "text", "text", "bool", "datetime", "datetime", "enum"]
        md5 = dialects.text_form_md5(engine.dialect, kinds)
        if target_db.kind != "postgresql":
            assert md5 is None  # hashed in Python there
            return
        forms = [TEXT_FORMS[k] for _, k in kinds]
        in_python = {r["id"]: text_form_md5([r[c.name] for c, _ in kinds], forms) for r in rows}
        # both forms of the datetimes: EXTRACT's numeric (PostgreSQL 14+) and its float (before)
        for version in ((15, 0), (13, 0)):
            dialect = copy.copy(engine.dialect)
            dialect.server_version_info = version
            with engine.connect() as conn:
                in_db = dict(conn.execute(sa.select(table.c.id, dialects.text_form_md5(dialect, kinds))).all())
            assert in_db == in_python, version
        changed = {**rows[1], "t": rows[1]["t"] + " "}
        assert text_form_md5([changed[c.name] for c, _ in kinds], forms) != in_db[2]

        # a whole chunk digested by the target: its rows' text forms in id order
        hashing = RowHashing(table, [c.name for c in table.columns], engine.dialect)
        assert hashing.by_chunk
        chunks = [(-2 ** 63, 2), (3, 3), (4, 8), (9, 2 ** 63 - 1)]
        with engine.connect() as conn:
            in_db = conn.execute(dialects.chunk_text_md5s(table.c.id, hashing.form),
                                 {"los": [lo for lo, _ in chunks], "his": [hi for _, hi in chunks]}).all()
        by_id = {r["id"]: r for r in rows}
        in_python = [hashing.source_chunk({i: by_id[i] for i in sorted(by_id) if lo <= i <= hi})[0]
                     for lo, hi in chunks]
        assert [lo for lo, _ in in_db] == [lo for lo, _ in chunks]
        assert [md5 for _, md5 in in_db] == in_python
        assert in_python[2] is None and None not in (in_python[0], in_python[1], in_python[3])
        assert hashing.source_chunk({2: by_id[2], 1: by_id[1]})[0] != in_python[0]  # the order counts
    finally:
        metadata.drop_all(engine)
        engine.dispose()


# --- a clean migration ----------------------------------------------------------------

def test_clean_migration_passes(golden, make_database, tmp_path):
    seeded, target = golden.seeded, copy_target(golden, make_database, tmp_path, raw=True)
    url, env = target.url, target.env
    manifest = seeded.manifest["anomalies"]

    # A fresh migration: the seed's drifted counters fail check 4, --fix-counts repairs them.
    # Files the legacy storage itself lacks are listed and count as missing: check 7 fails.
    proc, report = verify(url, env, tmp_path, "--fix-counts")
    assert proc.returncode == 1
    assert failed(report) == {"files"}, proc.stdout
    counters = check(report, "counters")
    assert counters["status"] == "PASS" and "fixed" in counters["summary"]
    assert counters["figures"]["fixed"]["media"] >= 1 and counters["figures"]["fixed"]["student_media_interactions"] >= 1
    assert set(offending_ids(report, "counters", "fixed: media counters")) & set(manifest["drifted_counter_media"])
    files = check(report, "files")
    missing = files["offending"]["missing in the legacy storage too"]
    assert missing["count"] >= 1 and set(missing["ids"]) <= expected_missing_files(seeded)
    assert "missing in target storage" not in files["offending"]
    assert files["figures"]["hit_ratio"] < 0.999 and files["figures"]["hit_ratio_of_copyable"] == 1.0

    # Re-verify: counters stay fixed; with the legacy's own missing files accepted, all pass.
    proc, report = verify(url, env, tmp_path, ACCEPT)
    assert proc.returncode == 0, proc.stdout
    assert "all 9 checks passed" in proc.stdout
    rows = check(report, "row_counts")["figures"]
    # rows the source's own faults keep out, decided from the source alone
    assert rows["students"]["rejected_or_skipped_by_source_rules"] > 0
    assert rows["users"]["rejected_or_skipped_by_source_rules"] > 0
    content = check(report, "content")["figures"]
    assert content["students"]["sampled"] > 0 and content["students"]["meaning_failures"] == 0
    assert content["media"]["excluded_from_checksum"] == ["eye_likes", "graph_likes", "read_likes"]
    assert sum(f["rows_compared"] for f in content.values()) == sum(r["target"] for r in rows.values())


def test_media_id_keys_pass(golden, make_database, tmp_path):
    """Files renamed by the export (--key-scheme media-id): the content check expects the
    keys and URLs the rows were written with, the files check finds the renamed objects."""
    url = make_database(golden.raw.kind).url
    env = export(golden.seeded, url, tmp_path / "flask_media", tmp_path / "export-report",
                 "--key-scheme", "media-id")
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        keys = conn.execute(sa.text("SELECT image_file FROM media WHERE image_file != '' LIMIT 50")).scalars().all()
    engine.dispose()
    if not any("_" in k.split("/")[-1] and k.split("/")[-1].split("_")[0].isdigit() for k in keys):
        pytest.skip("this export has no media-id key scheme (file copy feature not present)")
    proc, report = verify(url, env, tmp_path, ACCEPT, "--fix-counts")
    assert proc.returncode == 0, proc.stdout
    assert check(report, "files")["figures"]["expected_sizes_from"] == "legacy storage"


# --- one corruption at a time ---------------------------------------------------------

def test_deleted_row_fails_row_counts(target, tmp_path):
    (observer_id,) = target.sql("SELECT max(id) FROM observers")[0]
    target.sql("DELETE FROM observers WHERE id = :id", id=observer_id)
    proc, report = verify(target.url, target.env, tmp_path, ACCEPT)
    assert proc.returncode == 1
    assert failed(report) == {"row_counts"}
    assert offending_ids(report, "row_counts", "observers: missing in target") == [observer_id]
    assert str(observer_id) in proc.stdout


def test_extra_row_fails_row_counts_not_content(target, tmp_path):
    """A row the source never had, in the last chunk: row_counts names it (and counters the
    totals it adds to); the content check, whose chunk now differs, finds every row it
    expects equal."""
    (comment_id,) = target.sql("SELECT max(id) FROM comments")[0]
    extra = comment_id + 1000
    columns = [c for (c,) in target.sql(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'comments' AND column_name != 'id'")] \
        if target.db.kind != "sqlite" else [r[1] for r in target.sql("PRAGMA table_info(comments)") if r[1] != "id"]
    names = ", ".join(columns)
    target.sql(f"INSERT INTO comments (id, {names}) SELECT :extra, {names} FROM comments WHERE id = :id",
               extra=extra, id=comment_id)
    proc, report = verify(target.url, target.env, tmp_path, ACCEPT)
    assert failed(report) == {"row_counts", "counters"}, proc.stdout
    assert offending_ids(report, "row_counts", "comments: in target, must not be") == [extra]
    content = check(report, "content")["figures"]["comments"]
    assert content["rows_differing"] == 0 and content["rows_compared"] == check(
        report, "row_counts")["figures"]["comments"]["target"] - 1


def test_row_count_tolerance(target, tmp_path):
    """One media row lost fails by default; --tolerance 0.001 (a rehearsal on a live source)
    lets one of ~2200 through, listed."""
    (media_id,) = target.sql(
        "SELECT min(m.id) FROM media m WHERE NOT EXISTS (SELECT 1 FROM comments c WHERE c.media_id = m.id) "
        "AND NOT EXISTS (SELECT 1 FROM student_media_interactions i WHERE i.media_id = m.id)")[0]
    target.sql("DELETE FROM media WHERE id = :id", id=media_id)
    proc, report = verify(target.url, target.env, tmp_path, ACCEPT)
    assert failed(report) == {"row_counts"}
    assert offending_ids(report, "row_counts", "media: missing in target") == [media_id]
    proc, report = verify(target.url, target.env, tmp_path, ACCEPT, "--tolerance", "0.001")
    assert proc.returncode == 0, proc.stdout
    assert offending_ids(report, "row_counts", "media: missing in target") == [media_id]


def test_altered_field_outside_the_sample_fails_content(golden, target, tmp_path):
    # a row the sample leaves out: it depends on the seed and the ids, not on the values
    sampled = check(golden.report, "content")["figures"]["media"]["sample_ids"]
    (media_id,) = target.sql(
        f"SELECT min(id) FROM media WHERE id >= 1500 AND id NOT IN ({', '.join(map(str, sampled))})")[0]
    target.sql("UPDATE media SET title = title || '!' WHERE id = :id", id=media_id)
    proc, report = verify(target.url, target.env, tmp_path, ACCEPT, *SMALL_SAMPLE)
    assert proc.returncode == 1
    assert failed(report) == {"content"}
    content = check(report, "content")
    assert media_id not in content["figures"]["media"]["sample_ids"]  # found by the checksums
    item = content["offending"]["media: rows differ"]
    assert item["ids"] == [media_id] and item["columns"] == {str(media_id): ["title"]}
    assert content["figures"]["media"]["chunks_differing"] == 1


def test_changed_json_values_fail_content(target, tmp_path):
    """JSON columns are compared row by row even where the target digests whole chunks:
    a value given, one taken away, one changed."""
    values = target.sql("SELECT id, project_images FROM media ORDER BY id")
    given = next(i for i, v in values if v in (None, "null"))  # SQLite's JSON type writes None as null
    held = [i for i, v in values if v not in (None, "null")]
    assert len(held) >= 2  # the seed gives some media project images
    target.sql("UPDATE media SET project_images = '[\"https://example.org/x.png\"]' WHERE id = :id", id=given)
    target.sql("UPDATE media SET project_images = NULL WHERE id = :id", id=held[0])
    target.sql("UPDATE media SET project_images = '[]' WHERE id = :id", id=held[-1])
    changed = [given, held[0], held[-1]]
    proc, report = verify(target.url, target.env, tmp_path, ACCEPT, *SMALL_SAMPLE, "--chunk-size", "50")
    assert failed(report) == {"content"}, proc.stdout
    item = check(report, "content")["offending"]["media: rows differ"]
    assert item["ids"] == sorted(changed)
    assert set(map(tuple, item["columns"].values())) == {("project_images",)}


def test_workers_find_what_one_process_finds(golden, target, make_database, tmp_path):
    """The content check cut into id ranges over 3 processes, replies crossing the cuts,
    against one process: the same rows expected, left out and found different."""
    (reply_id,) = target.sql("SELECT max(id) FROM comments WHERE parent_id IS NOT NULL")[0]
    target.sql("UPDATE comments SET text = text || '!' WHERE id = :id", id=reply_id)
    (interaction_id,) = target.sql("SELECT min(id) FROM student_media_interactions")[0]
    target.sql("DELETE FROM student_media_interactions WHERE id = :id", id=interaction_id)
    # in the legacy database, another reply's parent is now missing: one process rules it
    # out on the spot; a worker sees a parent below its range, and lets it wait
    legacy = make_database.clone(golden.seeded.db)
    engine = legacy.engine()
    try:
        with engine.begin() as conn:
            if legacy.kind == "mariadb":
                conn.execute(sa.text("SET foreign_key_checks = 0"))
            orphan = conn.execute(sa.text("SELECT max(id) FROM video_app_comment WHERE parent_id IS NOT NULL "
                                          "AND id < :id"), {"id": reply_id}).scalar_one()
            conn.execute(sa.text("UPDATE video_app_comment SET parent_id = -5 WHERE id = :id"), {"id": orphan})
    finally:
        engine.dispose()
    env = {**target.env, "LEGACY_DATABASE_URL": legacy.django_url}
    _, alone = verify(target.url, env, tmp_path, ACCEPT, "--workers", "1", "--chunk-size", "50")
    _, cut = verify(target.url, env, tmp_path, ACCEPT, "--workers", "3", "--chunk-size", "50")
    assert any(c["root"]["id"] == orphan and "not found" in c["root"]["reason"] for c in cut["root_causes"])

    figures = check(cut, "content")["figures"]
    assert {f["processes"] for f in check(alone, "content")["figures"].values()} == {1}
    assert figures["comments"]["processes"] == 3
    assert figures["comments"]["replies_decided_again"] > 0  # replies did cross the cuts
    assert failed(alone) == failed(cut) >= {"content", "row_counts"}
    assert {**check(alone, "counters"), "seconds": 0} == {**check(cut, "counters"), "seconds": 0}
    for name in ("row_counts", "foreign_keys", "observer_scope", "teacher_dashboards"):
        assert {**check(alone, name), "seconds": 0} == {**check(cut, name), "seconds": 0}, name
    assert alone["root_causes"] == cut["root_causes"]
    content = {k: check(alone, "content")["offending"][k] for k in ("comments: rows differ",)}
    assert content["comments: rows differ"]["ids"] == [reply_id]
    assert check(cut, "content")["offending"] == check(alone, "content")["offending"]
    for name, one in check(alone, "content")["figures"].items():
        for key in ("rows_compared", "rows_differing", "rows_misread", "excluded_from_checksum"):
            assert figures[name][key] == one[key], (name, key)


def test_wrong_counter_fails_counters_and_fix_counts_repairs(target, tmp_path):
    (media_id,) = target.sql("SELECT min(id) FROM media")[0]
    target.sql("UPDATE media SET eye_likes = eye_likes + 3 WHERE id = :id", id=media_id)
    (interaction_id,) = target.sql("SELECT max(id) FROM student_media_interactions")[0]
    target.sql("UPDATE student_media_interactions SET comment_count = comment_count + 1 WHERE id = :id",
               id=interaction_id)
    proc, report = verify(target.url, target.env, tmp_path, ACCEPT)
    assert proc.returncode == 1
    assert failed(report) == {"counters"}
    counters = check(report, "counters")
    assert counters["offending"]["media: counters differ from the recomputed totals"]["ids"] == [media_id]
    assert counters["offending"]["media: counters differ from the recomputed totals"]["columns"] == {str(media_id): ["eye_likes"]}
    assert offending_ids(report, "counters", "student_media_interactions: counters differ from the recomputed totals") == [
        interaction_id]

    proc, report = verify(target.url, target.env, tmp_path, ACCEPT, "--fix-counts")
    assert proc.returncode == 0, proc.stdout
    assert check(report, "counters")["figures"]["fixed"] == {"media": 1, "student_media_interactions": 1}
    assert "fixed 1 media rows, 1 student_media_interactions rows" in proc.stdout
    proc, report = verify(target.url, target.env, tmp_path, ACCEPT)
    assert proc.returncode == 0, proc.stdout


def test_observer_moved_to_another_district_fails_observer_scope(target, tmp_path):
    # an observer, and a district whose teachers' sessions differ from its own district's
    rows = target.sql(
        "SELECT o.id, o.district_id, d.id FROM observers o JOIN districts d ON d.id != o.district_id "
        "WHERE EXISTS (SELECT 1 FROM sessions s JOIN users u ON u.id = s.created_by_id "
        "              WHERE u.district_id = d.id) ORDER BY o.id, d.id")
    observer_id, _old, new_district = rows[0]
    target.sql("UPDATE observers SET district_id = :d WHERE id = :id", d=new_district, id=observer_id)
    proc, report = verify(target.url, target.env, tmp_path, ACCEPT)
    assert proc.returncode == 1
    # the content check sees the changed field too: every altered column is a content difference
    assert failed(report) == {"observer_scope", "content"}
    scope = check(report, "observer_scope")
    assert scope["offending"]["observers"]["ids"] == [observer_id]
    assert scope["offending"]["observers"]["differences"][str(observer_id)]["sessions_unexpected"]
    assert check(report, "content")["offending"]["observers: rows differ"]["columns"] == {
        str(observer_id): ["district_id"]}


def test_session_moved_to_another_teacher_fails_teacher_dashboards(target, tmp_path):
    # another teacher of the same district, so observers' scope is unchanged
    candidates = target.sql(
        "SELECT s.id, s.created_by_id, u2.id FROM sessions s JOIN users u ON u.id = s.created_by_id "
        "JOIN users u2 ON u2.district_id = u.district_id AND u2.id != u.id "
        "ORDER BY s.is_archived DESC, s.id, u2.id")
    for session_id, old_teacher, new_teacher in candidates:
        try:  # the partial unique index (one active session per teacher and section) may refuse
            target.sql("UPDATE sessions SET created_by_id = :t WHERE id = :id", t=new_teacher, id=session_id)
            break
        except sa.exc.IntegrityError:
            continue
    else:
        pytest.fail("no session could be moved")
    proc, report = verify(target.url, target.env, tmp_path, ACCEPT)
    assert proc.returncode == 1
    assert failed(report) == {"teacher_dashboards", "content"}
    teachers = check(report, "teacher_dashboards")["offending"]["users"]
    assert teachers["ids"] == sorted([old_teacher, new_teacher])
    assert teachers["differences"][str(new_teacher)]["sessions_unexpected"] == [session_id]
    assert teachers["differences"][str(old_teacher)]["sessions_missing"] == [session_id]
    assert check(report, "content")["offending"]["sessions: rows differ"]["ids"] == [session_id]


def test_deleted_storage_object_fails_files(golden, make_database, tmp_path):
    target = copy_target(golden, make_database, tmp_path, copy_media=True)
    media_id, key = target.sql(
        "SELECT id, image_file FROM media WHERE image_file != '' AND image_file NOT LIKE '%missing%' "
        "AND image_file IN (SELECT image_file FROM media GROUP BY image_file HAVING count(*) = 1) "
        "ORDER BY id LIMIT 1")[0]
    (Path(target.env["FLASK_MEDIA_ROOT"]) / key).unlink()
    proc, report = verify(target.url, target.env, tmp_path, ACCEPT)
    assert proc.returncode == 1
    assert failed(report) == {"files"}
    item = check(report, "files")["offending"]["missing in target storage"]
    assert item["ids"] == [key] and item["referenced_by"] == [f"media {media_id}"]
    assert key in proc.stdout


def test_dangling_parent_fails_foreign_keys(target, tmp_path):
    # a parent comment not written by a student (its deletion leaves comment counts alone)
    parent_id = target.sql(
        "SELECT min(p.id) FROM comments p WHERE p.student_id IS NULL "
        "AND EXISTS (SELECT 1 FROM comments r WHERE r.parent_id = p.id)")[0][0]
    replies = [r for (r,) in target.sql("SELECT id FROM comments WHERE parent_id = :id ORDER BY id", id=parent_id)]
    target.sql("DELETE FROM comments WHERE id = :id", id=parent_id)
    proc, report = verify(target.url, target.env, tmp_path, ACCEPT)
    assert proc.returncode == 1
    assert failed(report) == {"foreign_keys", "row_counts"}
    item = check(report, "foreign_keys")["offending"]["comments.parent_id -> comments"]
    assert item["ids"] == replies and item["kind"] == "replies without their parent"
    assert offending_ids(report, "row_counts", "comments: missing in target") == [parent_id]


def test_a_dropped_index_or_foreign_key_fails_schema(target, tmp_path):
    """The Flask tables' indexes and foreign keys are read from the target's catalog (an
    export drops them while loading and builds them after): one gone fails ``schema``."""
    target.sql("DROP INDEX ix_comments_media_id")
    if target.db.kind != "sqlite":  # SQLite cannot drop a foreign key
        target.sql("ALTER TABLE comments DROP CONSTRAINT fk_comments_media_id_media")
    proc, report = verify(target.url, target.env, tmp_path, ACCEPT)
    assert proc.returncode == 1
    assert failed(report) == {"schema"}
    assert check(report, "schema")["offending"] == {"comments: missing": {
        "count": 1 if target.db.kind == "sqlite" else 2,
        "ids": ["index (media_id)"] if target.db.kind == "sqlite" else
        ["foreign key (media_id) -> media", "index (media_id)"]}}
    assert "comments: missing: " in proc.stdout and "index (media_id)" in proc.stdout


# --- the Flask pages ------------------------------------------------------------------

def make_flask_app(target_url: str, broken_sessions: set[int], media_root: str, login: dict):
    """The plan's pages and its media folder at /media/; with ``login["required"]`` every
    page redirects to /login unless the request carries the session cookie."""
    from flask import Flask, abort, redirect, request, send_from_directory

    import flask_models as fm

    engine = sa.create_engine(target_url)
    app = Flask("verify_test_app")

    @app.before_request
    def require_login():
        if login.get("required") and request.cookies.get("session") != "admin-cookie":
            return redirect("/login?next=" + request.path)

    @app.get("/media/<path:key>")
    def media_file(key):
        if key in login.get("truncated", ()):
            return b"x"
        return send_from_directory(media_root, key)

    @app.get("/sessions/<int:session_id>")
    def session_page(session_id):
        if session_id in broken_sessions:
            abort(500)
        with engine.connect() as conn:
            row = conn.execute(sa.select(fm.Session).where(fm.Session.id == session_id)).first()
        if row is None:
            abort(404)
        return f"<h1>{row.name}</h1>"

    @app.get("/post/<int:media_id>")
    def post_page(media_id):
        with engine.connect() as conn:
            row = conn.execute(sa.select(fm.Media).where(fm.Media.id == media_id)).first()
        if row is None:
            abort(404)
        return f"<h1>{row.title}</h1>"

    return app, engine


@pytest.fixture
def flask_server(golden, make_database, tmp_path):
    target = copy_target(golden, make_database, tmp_path, copy_media=True)  # a test may damage a file
    from werkzeug.serving import make_server

    broken: set[int] = set()
    login: dict = {}
    app, engine = make_flask_app(target.url, broken, target.env["FLASK_MEDIA_ROOT"], login)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield target, f"http://127.0.0.1:{server.server_port}", broken, login
    server.shutdown()
    thread.join(timeout=10)
    engine.dispose()


def test_flask_pages(flask_server, tmp_path):
    target, url, broken, login = flask_server
    proc, report = verify(target.url, target.env, tmp_path, ACCEPT, "--flask-url", url, "--sample", "10")
    assert proc.returncode == 0, proc.stdout
    pages = check(report, "flask_pages")
    assert pages["status"] == "PASS"
    assert pages["figures"]["requested"] == {"sessions": 10, "media": 10, "files": 10}
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as unknown:
        urllib.request.urlopen(f"{url}/post/999999999", timeout=10)
    assert unknown.value.code == 404

    (session_id,) = target.sql("SELECT max(id) FROM sessions")[0]
    broken.add(session_id)
    # a sample larger than the 27 sessions fetches every session page
    proc, report = verify(target.url, target.env, tmp_path, ACCEPT, "--flask-url", url, "--sample", "40")
    assert proc.returncode == 1
    assert failed(report) == {"flask_pages"}
    item = check(report, "flask_pages")["offending"]["sessions pages not 200"]
    assert item["ids"] == [session_id] and item["status"] == {str(session_id): 500}


def test_flask_pages_behind_a_login_and_files_served(flask_server, tmp_path):
    """A redirect to the login page is no page; with the admin's cookie the pages answer.
    Files are fetched at their URL and must have their size."""
    target, url, broken, login = flask_server
    login["required"] = True
    proc, report = verify(target.url, target.env, tmp_path, ACCEPT, "--flask-url", url, "--sample", "5")
    pages = check(report, "flask_pages")
    assert proc.returncode == 1 and pages["status"] == "FAIL" and "--flask-cookie" in pages["summary"]
    assert set(pages["offending"]["sessions pages not 200"]["status"].values()) == {"302 -> /login"}
    proc, report = verify(target.url, {**target.env, "MIGRATION_BRIDGE_FLASK_COOKIE": "session=admin-cookie"},
                          tmp_path, ACCEPT, "--flask-url", url, "--sample", "5")
    assert proc.returncode == 0, proc.stdout
    assert "admin-cookie" not in json.dumps(report) and "admin-cookie" not in proc.stdout + proc.stderr
    # the app serves a file of the storage with other bytes than the storage holds
    media = Path(target.env["FLASK_MEDIA_ROOT"])
    victim = str(sorted(p for p in media.rglob("*.png"))[0].relative_to(media))
    login["truncated"] = {victim}
    proc, report = verify(target.url, target.env, tmp_path, ACCEPT, "--flask-url", url, "--sample", "400",
                          "--flask-cookie", "session=admin-cookie")
    assert failed(report) == {"flask_pages"}
    item = check(report, "flask_pages")["offending"]["files not 200"]
    assert len(item["ids"]) == 1 and victim in item["ids"][0]
    assert list(item["status"].values())[0].startswith("200 with 1 bytes")


# --- bad input --------------------------------------------------------------------------

def test_bad_input_exits_2_with_one_line(golden, make_database):
    env = golden.env
    cases = [(("--target", make_database(golden.fixed.kind).url), "has no Flask schema")]
    if golden.pair == SOURCE_TARGET_PAIRS[0]:  # the rest does not depend on the dialects
        cases += [
            (("--target", golden.fixed.url, "--sample", "-1"), "--sample must be >= 0"),
            (("--target", golden.fixed.url, "--flask-url", "ftp://x"), "--flask-url must be an http(s) URL"),
            (("--target", "postgresql://postgres:s3cr3t@127.0.0.1:1/nothing"), "unreachable"),
        ]
    for args, message in cases:
        proc = run_manage("verify_flask", *args, env=env, check=False)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert message in proc.stderr
        assert "Traceback" not in proc.stderr and "s3cr3t" not in proc.stdout + proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
