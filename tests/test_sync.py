"""export_to_flask --sync: a pre-copy, changes in the live legacy app, then only the difference.

The changes go through the legacy ORM (``manage.py shell``), as the live app makes them.
The proof that a sync is right: its target equals a fresh full export of the changed
source (salted PIN hashes checked by meaning), and verify_flask passes.

The scenarios run on each pair of legacy and target dialects (SQLite → SQLite, MariaDB →
PostgreSQL), from the session's one seeded and exported legacy database per pair
(``exported_pair``, shared with test_verify): that export is the pre-copy, and each test
changes its own copies of both databases and their files.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import sqlalchemy as sa
from werkzeug.security import check_password_hash

import flask_models as fm
from migration_bridge import bookkeeping as bk
from migration_bridge.dialects import chunk_start
from migration_bridge.diff import (chunk_digest_sum, chunk_row_digests, chunk_spans, compare_range,
                                   differing_chunks, id_parts, place_moments, single_difference)
from migration_bridge.fingerprint import (DIGEST_BITS, context_digest, fingerprint_key, keyed_digest, pin_digest,
                                          row_digest, secret_part)
from migration_bridge.sync import CHUNK_WIDTH, SyncRows

from .conftest import PROJECT_ROOT, SOURCE_TARGET_PAIRS, Database, DatabaseFactory, SeededLegacy, run_manage
from .test_export import target_snapshot

CHEAP_PIN = ("--pin-hash-method", "pbkdf2:sha256:1000")
SECRET_KEY = "legacy-dev-secret-key-not-for-production"  # legacy_app.settings default

# Rows each test deletes after the pre-copy: one per entity, none referenced by another.
SETUP_VICTIMS = """
from django.contrib.auth.hashers import make_password
from legacy_app.video_app.models import *
teacher = CustomAdmin.objects.get(pk={teacher})
session = Session.objects.get(pk={session})
media = Media.objects.get(pk={media})
student = Student.objects.get(pk={student})
District.objects.create(name="Victim district", code="VICTIM")
CustomAdmin.objects.create(username="victim_teacher", password=make_password("pw", hasher="md5"), is_staff=True)
Observer.objects.create(name="Victim observer", password=make_password("pw", hasher="md5"),
                        district=teacher.district, email="victim@example.org")
Session.objects.create(name="Victim session", session_code="FFFF0001", section=97, created_by=teacher, is_archived=True)
Student.objects.create(name="Victim student", password="77777", section=session, admin=teacher)
Media.objects.create(session=session, title="Victim media", media_type="comment")
Comment.objects.create(media=media, text="Victim comment", name="V")
StudentMediaInteraction.objects.create(student=Student.objects.get(name="Victim student"), media=media)
"""

# The live app's changes between the pre-copy and the freeze.
LIVE_CHANGES = """
from django.contrib.auth.hashers import make_password
from django.db.models import F
from legacy_app.video_app.models import *
teacher = CustomAdmin.objects.get(pk={teacher})
session = Session.objects.get(pk={session})
media = Media.objects.get(pk={media})
student = Student.objects.get(pk={student})
# deletes, one per entity
StudentMediaInteraction.objects.filter(student__name="Victim student").delete()
Comment.objects.filter(text="Victim comment").delete()
Media.objects.filter(title="Victim media").delete()
Student.objects.filter(name="Victim student").delete()
Session.objects.filter(session_code="FFFF0001").delete()
Observer.objects.filter(email="victim@example.org").delete()
CustomAdmin.objects.filter(username="victim_teacher").delete()
District.objects.filter(code="VICTIM").delete()
# updates, one per entity (and a PIN change)
District.objects.filter(pk=teacher.district_id).update(name="Renamed district ✨")
CustomAdmin.objects.filter(pk=teacher.pk).update(first_name="Renamed")
Observer.objects.filter(pk={observer}).update(name="Renamed observer")
Session.objects.filter(pk=session.pk).update(name="Period 9 (renamed)")
Student.objects.filter(pk=student.pk).update(name="Renamed student", password="24680")
Media.objects.filter(pk=media.pk).update(title="Retitled 📊")
Comment.objects.filter(pk={comment}).update(text="Edited comment")
StudentMediaInteraction.objects.filter(pk={interaction}).update(comment_count=F("comment_count") + 7)
# inserts, one per entity: a whole new class with a post, a reply and a reaction
d = District.objects.create(name="New district", code="NEWD")
t = CustomAdmin.objects.create(username="new_teacher", password=make_password("Welcome1!"), is_staff=True, district=d)
Observer.objects.create(name="New observer", password=make_password("Obs1!"), district=d, email="new-observer@example.org")
s = Session.objects.create(name="New period", session_code="FFFF0002", section=98, created_by=t)
kid = Student.objects.create(name="New student", password="13579", section=s, admin=t)
m = Media.objects.create(session=s, title="New post", media_type="image", image_file="images/new_post.png", student=kid)
parent = Comment.objects.create(media=m, text="New comment", name="New student", student=kid)
Comment.objects.create(media=m, text="New reply", name="New student", student=kid, parent=parent)
StudentMediaInteraction.objects.create(student=kid, media=m, liked_graph=True)
"""


# --- what a sync compares, without a database ------------------------------------------

def test_only_differing_chunks_are_read_and_adjacent_ones_in_one_range():
    source = {0: [3, 30], 1024: [2, 20], 2048: [1, 10], 5120: [1, 5]}
    target = {0: [3, 30], 1024: [2, 21], 2048: [2, 11], 4096: [1, 1]}
    assert differing_chunks(source, target) == [1024, 2048, 4096, 5120]
    assert chunk_spans([1024, 2048, 5120], 1024, 8192) == [(1024, 6144, [1024, 2048, 5120])]
    assert chunk_spans([0, 32, 64, 128, 160], 32, 64) == [(0, 64, None), (64, 96, None), (128, 192, None)]
    assert chunk_spans([0, 96], 32, 1024) == [(0, 128, [0, 96])]
    diff = compare_range(1024, 3072, {1025: 7, 1030: 8, 2050: 9}, {1025: 7, 1030: 1, 2051: 9})
    assert (diff.missing, diff.extra, diff.changed) == ([2050], [2051], [1030])


def _random_chunk(rnd, start: int, width: int = 16) -> dict[int, int]:
    return {start + p: rnd.randrange(2**49) for p in range(width) if rnd.random() < 0.9}


@pytest.mark.parametrize("start", [0, 4096, -32])
def test_one_differing_row_is_named_by_the_targets_weighted_sums(start):
    rnd = random.Random(start)
    for _ in range(2000):
        target = _random_chunk(rnd, start)
        source = dict(target)
        i = start + rnd.randrange(16)
        if i in source and rnd.random() < 0.5:
            kind = "extra" if rnd.random() < 0.5 else "changed"
            if kind == "extra":
                del source[i]
            else:
                source[i] = rnd.randrange(2**49)
        else:
            kind = "missing" if i not in target else "changed"
            source[i] = rnd.randrange(2**49)
        if source == target:
            continue
        diff = single_difference(start, 16, source, place_moments(start, target))
        assert diff is not None and getattr(diff, kind) == [i]
        assert diff == compare_range(start, start + 16, source, target)
    # a chunk the target lacks or the source lost entirely, one row each
    assert single_difference(start, 16, {start + 3: 5}, (0, 0, 0, 0)).missing == [start + 3]
    assert single_difference(start, 16, {}, place_moments(start, {start + 15: 9})).extra == [start + 15]


def test_two_or_more_differing_rows_are_never_taken_for_one():
    rnd = random.Random(7)
    for trial in range(20000):
        target = _random_chunk(rnd, 0)
        source = dict(target)
        for i in rnd.sample(range(16), 2 + trial % 5):
            if i in source and rnd.random() < 0.3:
                del source[i]
            else:
                # small, large, equal and opposite changes: the cases a cancelling sum would fool
                source[i] = rnd.choice([rnd.randrange(2**49), source.get(i, 0) + 1, max(source.get(i, 0) - 1, 0)])
        if compare_range(0, 16, source, target):
            assert single_difference(0, 16, source, place_moments(0, target)) is None
    # the same change moved by one place, and two changes whose sums cancel
    assert single_difference(0, 16, {1: 5, 2: 7}, place_moments(0, {1: 7, 2: 5})) is None
    assert single_difference(0, 16, {1: 6, 2: 6}, place_moments(0, {1: 5, 2: 7})) is None
    # a row of digest 0 is invisible to the sums, on either side
    assert single_difference(0, 16, {3: 12345}, place_moments(0, {9: 0})) is None
    assert single_difference(0, 16, {2: 0}, place_moments(0, {9: 77, 4: 0})) is None
    assert compare_range(0, 16, {3: 12345}, {9: 0}).missing == [3]


def test_the_targets_weighted_sums_are_the_place_moments_of_its_recorded_digests(target_db):
    """What single_difference reads of the target, computed by each target dialect: exact
    for the largest digests (a recorded digest is under 2**49) and for negative ids."""
    engine = target_db.engine()
    bk.fingerprints.create(engine)
    rnd = random.Random(3)
    rows = {i: rnd.choice([2**49 - 1, rnd.randrange(2**49)]) for i in range(-40, 200) if rnd.random() < 0.8}
    with engine.begin() as conn:
        conn.execute(bk.fingerprints.insert(), [{"entity": "e", "source_id": i, "row_digest": d}
                                                for i, d in rows.items()])
    run, entity = types.SimpleNamespace(engine=engine), types.SimpleNamespace(name="e")
    starts = sorted({chunk_start(i, CHUNK_WIDTH) for i in rows})
    expected = {s: list(place_moments(s, {i: d for i, d in rows.items() if s <= i < s + CHUNK_WIDTH}))
                for s in starts}
    assert SyncRows(100).stored_sums(run, entity, None, None) == expected
    assert SyncRows(100).stored_sums(run, entity, -16, 64) == {s: expected[s] for s in starts if -16 <= s < 64}
    engine.dispose()


def test_a_chunks_gathered_digests_read_back_by_id_and_summed():
    text = "0" + "00000000000a" + "03" + "0" + "ffffffffffff" + "0F" + "0" + "000000000001" + "00"  # any order, either case
    assert chunk_row_digests(32, 3, text) == {35: 10, 47: 2**48 - 1, 32: 1}
    assert chunk_digest_sum(text) == 10 + 2**48 - 1 + 1
    assert chunk_row_digests(0, 0, "") == {} and chunk_digest_sum("") == 0
    with pytest.raises(ValueError, match="not 45"):  # a text the server cut short is never half read
        chunk_row_digests(32, 3, text[:30])
    # a full chunk of the largest digests: the sum's carry stays in the text's leading zeros
    full = "".join(f"0{2**48 - 1:012x}0{place:x}" for place in range(16))
    assert chunk_row_digests(0, 16, full) == {place: 2**48 - 1 for place in range(16)}
    assert chunk_digest_sum(full) == 16 * (2**48 - 1)
    rng = random.Random(7)
    for rows in range(1, 17):
        digests = {place: rng.getrandbits(48) for place in rng.sample(range(16), rows)}
        text = "".join(f"0{d:012X}0{place:X}" for place, d in digests.items())
        assert chunk_row_digests(64, rows, text) == {64 + place: d for place, d in digests.items()}
        assert chunk_digest_sum(text) == sum(digests.values())


def test_a_large_table_is_cut_into_whole_chunks_covering_every_id():
    parts = id_parts((1, 1_000_000), 1_000_000, 250_000, 16)
    assert len(parts) == 4 and parts[0][0] is None and parts[-1][1] is None
    assert all(hi == next_lo for (_, hi), (next_lo, _) in zip(parts, parts[1:]))  # no gap, no overlap
    assert all(lo % 16 == 0 for lo, _ in parts[1:])  # a chunk lies in one part
    assert id_parts((-100, 50), 600, 250, 16) == [(None, -64), (-64, 0), (0, None)]
    assert id_parts((1, 10**9), 1000, 250_000, 16) == [(None, None)]  # few rows: one part
    assert id_parts(None, 0, 250_000, 16) == [(None, None)]  # no rows: still one part (deletes)
    assert id_parts((5, 5), 10**6, 250_000, 16) == [(None, 0), (0, None)]


def test_chunks_are_floor_aligned_for_negative_ids_too():
    assert [chunk_start(i, 1024) for i in (-1025, -1024, -1, 0, 1023, 1024)] == [-2048, -1024, -1024, 0, 0, 1024]


def test_secret_and_context_digests():
    key, other = fingerprint_key("", "a"), fingerprint_key("", "b")
    assert secret_part(key, 7, (None,)) == secret_part(key, 7, ("",)) == 0  # the database part tells those apart
    assert secret_part(key, 7, ("12345",)) != secret_part(other, 7, ("12345",))
    assert 0 < secret_part(key, 7, ("12345",)) < 2**DIGEST_BITS
    # two rows swapping their PINs change the sum of their parts; one PIN shows as two parts
    assert (secret_part(key, 7, ("12345",)) + secret_part(key, 8, ("54321",))
            != secret_part(key, 7, ("54321",)) + secret_part(key, 8, ("12345",)))
    assert secret_part(key, 7, ("12345",)) != secret_part(key, 8, ("12345",))
    assert context_digest(key, (None, None)) is None
    assert context_digest(key, (None, "2024-01-01")) != context_digest(key, ("2024-01-01", None))
    assert row_digest(key, 7, 5, ("",), ()) == 5
    assert row_digest(key, 7, 5, ("12345",), ()) == 5 + secret_part(key, 7, ("12345",))
    assert row_digest(key, 1, None, (), (1, "school")) == keyed_digest(key, (1, "school"))  # a derived row
    pin = functools.partial(pin_digest, key, "students")
    assert pin(7, "scrypt", "12345") == pin(7, "scrypt", "12345")
    assert len({pin(7, "scrypt", "12345"), pin(8, "scrypt", "12345"),  # one PIN, two students: no equal digests
                pin(7, "pbkdf2:sha256", "12345"), pin(7, "scrypt", "12346"),
                pin_digest(other, "students", 7, "scrypt", "12345")}) == 5
    assert "12345" not in pin(7, "scrypt", "12345")


def copy_legacy(seeded: SeededLegacy, make_database: DatabaseFactory, tmp_path: Path) -> SeededLegacy:
    """A private copy of a seeded legacy database and its media, to change."""
    media = tmp_path / "media"
    shutil.copytree(seeded.media_root, media)
    return SeededLegacy(make_database.clone(seeded.db), media, seeded.manifest)


@pytest.fixture(params=SOURCE_TARGET_PAIRS)
def precopied(request, exported_pair, make_database, tmp_path) -> tuple[SeededLegacy, Database]:
    """This test's own copies of the pre-copy: the legacy database and its files, the target
    and its files (copies keep the files' mtimes, as the export's file manifest expects)."""
    precopy = exported_pair(request.param)
    shutil.copytree(precopy.flask_media, tmp_path / "flask_media")  # where env_for points
    return copy_legacy(precopy.seeded, make_database, tmp_path), make_database.clone(precopy.target)


def env_for(legacy, tmp_path) -> dict:
    return {**legacy.env, "FLASK_MEDIA_ROOT": str(tmp_path / "flask_media")}


def export(legacy, target, tmp_path, *args, check=True):
    report_dir = tmp_path / f"report-{time.monotonic_ns()}"
    proc = run_manage("export_to_flask", "--target", target.url, "--allow-live", *CHEAP_PIN,
                      "--report-dir", str(report_dir), *args, env=env_for(legacy, tmp_path), check=check)
    report_path = report_dir / "report.json"
    return proc, (json.loads(report_path.read_text()) if report_path.exists() else None)


def shell(legacy, tmp_path, code: str) -> None:
    run_manage("shell", "-c", code, env=env_for(legacy, tmp_path))


def anchors(target) -> dict:
    """Ids of migrated rows to change: a teacher with a district, one of their sessions,
    a media of that session with a comment and a reaction, a student, an observer."""
    engine = target.engine()
    with engine.connect() as conn:
        row = conn.execute(sa.text(
            "SELECT u.id, s.id, m.id, st.id, c.id, i.id FROM users u "
            "JOIN sessions s ON s.created_by_id = u.id JOIN media m ON m.session_id = s.id "
            "JOIN students st ON st.section_id = s.id JOIN comments c ON c.media_id = m.id "
            "JOIN student_media_interactions i ON i.media_id = m.id "
            "WHERE u.district_id IS NOT NULL ORDER BY u.id, s.id, m.id, st.id, c.id, i.id LIMIT 1")).one()
        observer = conn.execute(sa.text("SELECT MIN(id) FROM observers")).scalar()
    engine.dispose()
    return {**dict(zip(("teacher", "session", "media", "student", "comment", "interaction"), row)),
            "observer": observer}


def assert_same_as_fresh_export(legacy, synced, make_database, tmp_path):
    fresh = make_database(synced.kind)
    export(legacy, fresh, tmp_path, "--create-schema", "--skip-files")
    assert target_snapshot(synced.engine()) == target_snapshot(fresh.engine())
    legacy_engine = sa.create_engine(legacy.db.url)
    with legacy_engine.connect() as conn:  # closed: MariaDB would not drop the copy under an open transaction
        pins = dict(conn.execute(sa.text("SELECT id, password FROM video_app_student")).all())
    legacy_engine.dispose()
    with synced.engine().connect() as conn:
        for student_id, pin_hash in conn.execute(sa.select(fm.Student.id, fm.Student.pin_hash)):
            assert check_password_hash(pin_hash, pins[student_id]), student_id


def test_sync_carries_inserts_updates_deletes_of_every_entity(precopied, make_database, tmp_path):
    legacy, target = precopied
    ids = anchors(target)
    shell(legacy, tmp_path, SETUP_VICTIMS.format(**ids))
    _, pre = export(legacy, target, tmp_path, "--sync")  # the victims arrive like any change
    assert {n: s["inserted"] for n, s in pre["sync"].items()} == {n: 1 for n in pre["sync"]}

    shell(legacy, tmp_path, LIVE_CHANGES.format(**ids))
    proc, report = export(legacy, target, tmp_path, "--sync")
    sync = report["sync"]
    for name, stats in sync.items():
        assert stats["inserted"] >= 1 and stats["updated"] >= 1 and stats["deleted"] >= 1, (name, stats)
        assert stats["unchanged"] > 0 or name in ("districts",), (name, stats)
    assert sync["comments"]["inserted"] == 2  # a new comment and its reply
    assert "inserted" in proc.stdout and "unchanged" in proc.stdout

    assert_same_as_fresh_export(legacy, target, make_database, tmp_path)
    with target.engine().connect() as conn:
        new_student_hash = conn.execute(sa.select(fm.Student.pin_hash).where(fm.Student.id == ids["student"])).scalar()
    assert check_password_hash(new_student_hash, "24680")
    assert (tmp_path / "flask_media" / "images").exists()

    verify = run_manage("verify_flask", "--target", target.url, "--fix-counts", "--accept-missing-source-files",
                        env=env_for(legacy, tmp_path), check=False)
    assert verify.returncode == 0, verify.stdout[-3000:] + verify.stderr[-2000:]

    _, again = export(legacy, target, tmp_path, "--sync")
    assert all(s["inserted"] == s["updated"] == s["deleted"] == 0 for s in again["sync"].values()), again["sync"]


def test_a_sync_cut_into_id_ranges_finds_the_same_changes(precopied, make_database, tmp_path):
    """A table larger than SYNC_PART_ROWS is searched in id ranges side by side: every
    insert, update and delete is found whichever range (the first and last unbounded) it
    falls in, and a reply whose parent lies in another range still finds it."""
    legacy, target = precopied
    legacy.env_override = {**legacy.env, "MIGRATION_BRIDGE_OVERRIDES": json.dumps({"SYNC_PART_ROWS": 40})}
    with target.engine().connect() as conn:  # the tables of more than 40 rows
        large = {e: n for e, n in conn.execute(sa.select(bk.fingerprints.c.entity, sa.func.count())
                                               .group_by(bk.fingerprints.c.entity)) if n > 40}
    ids = anchors(target)
    shell(legacy, tmp_path, SETUP_VICTIMS.format(**ids))
    export(legacy, target, tmp_path, "--sync")
    shell(legacy, tmp_path, LIVE_CHANGES.format(**ids))
    _, report = export(legacy, target, tmp_path, "--sync")
    sync = report["sync"]
    assert {name: s["ranges"] > 1 for name, s in sync.items()} == {name: name in large for name in sync}
    assert all(s["inserted"] >= 1 and s["updated"] >= 1 and s["deleted"] >= 1 for s in sync.values()), sync
    assert_same_as_fresh_export(legacy, target, make_database, tmp_path)


def test_a_pin_change_alone_is_detected(precopied, tmp_path):
    legacy, target = precopied
    student = anchors(target)["student"]
    shell(legacy, tmp_path, f"from legacy_app.video_app.models import Student; "
                            f"Student.objects.filter(pk={student}).update(password='11235')")
    _, report = export(legacy, target, tmp_path, "--sync", "--skip-files")
    assert report["sync"]["students"]["updated"] == 1
    assert sum(s["inserted"] + s["updated"] + s["deleted"] for s in report["sync"].values()) == 1
    with target.engine().connect() as conn:
        pin_hash = conn.execute(sa.select(fm.Student.pin_hash).where(fm.Student.id == student)).scalar()
    assert check_password_hash(pin_hash, "11235")


def test_two_students_of_one_chunk_swapping_pins_are_both_updated(precopied, tmp_path):
    """A row's keyed secret part covers its id: with parts of the PINs alone, a swap left
    the chunk's sum as it was and the sync missed both."""
    legacy, target = precopied
    with target.engine().connect() as conn:
        migrated = set(conn.execute(sa.select(fm.Student.id)).scalars())
    with sa.create_engine(legacy.db.url).connect() as conn:
        pins = {i: pin for i, pin in conn.execute(sa.text("SELECT id, password FROM video_app_student")).all()
                if i in migrated and pin}
    a, b = next((i, j) for i in sorted(pins) for j in sorted(pins) if i < j and pins[i] != pins[j]
                and chunk_start(i, CHUNK_WIDTH) == chunk_start(j, CHUNK_WIDTH))
    shell(legacy, tmp_path, "from legacy_app.video_app.models import Student; "
                            f"Student.objects.filter(pk={a}).update(password={pins[b]!r}); "
                            f"Student.objects.filter(pk={b}).update(password={pins[a]!r})")
    _, report = export(legacy, target, tmp_path, "--sync", "--skip-files")
    assert report["sync"]["students"]["updated"] == 2
    assert sum(s["inserted"] + s["updated"] + s["deleted"] for s in report["sync"].values()) == 2
    with target.engine().connect() as conn:
        hashes = dict(conn.execute(sa.select(fm.Student.id, fm.Student.pin_hash).where(fm.Student.id.in_([a, b]))).all())
    assert check_password_hash(hashes[a], pins[b]) and check_password_hash(hashes[b], pins[a])


def test_a_sync_writes_an_unchanged_pins_hash_again_and_hashes_a_changed_one(precopied, tmp_path):
    """The production method costs about 0.1 s a PIN: a student whose other fields changed
    keeps the hash the export wrote, a new PIN (or another method) is hashed anew."""
    legacy, target = precopied
    with target.engine().connect() as conn:
        (kept, kept_hash), (repinned, _) = conn.execute(
            sa.select(fm.Student.id, fm.Student.pin_hash).order_by(fm.Student.id).limit(2)).all()
    change = ("from legacy_app.video_app.models import Student\n"
              "Student.objects.filter(pk={kept}).update(character_description='{text}')\n"
              "Student.objects.filter(pk={repinned}).update(password='{pin}')")
    shell(legacy, tmp_path, change.format(kept=kept, repinned=repinned, text="changed", pin="31415"))
    _, report = export(legacy, target, tmp_path, "--sync", "--skip-files")
    assert report["sync"]["students"]["updated"] == 2
    assert (report["pin_hashing"]["hashed"], report["pin_hashing"]["reused"]) == (1, 1)

    def hashes():
        with target.engine().connect() as conn:
            return dict(conn.execute(sa.select(fm.Student.id, fm.Student.pin_hash)
                                     .where(fm.Student.id.in_([kept, repinned]))).all())

    after = hashes()
    assert after[kept] == kept_hash  # the same string: not hashed again
    assert check_password_hash(after[repinned], "31415") and not check_password_hash(after[repinned], "00000")
    with target.engine().connect() as conn:  # what the next sync compares, for both
        assert conn.execute(sa.select(sa.func.count()).select_from(bk.pin_hashes).where(
            bk.pin_hashes.c.entity == "students", bk.pin_hashes.c.source_id.in_([kept, repinned]),
            bk.pin_hashes.c.pin_hash.in_([after[kept], after[repinned]]))).scalar() == 2

    shell(legacy, tmp_path, change.format(kept=kept, repinned=repinned, text="again", pin="27182"))
    _, report = export(legacy, target, tmp_path, "--sync", "--skip-files", "--pin-hash-method", "pbkdf2:sha256:1001")
    assert (report["pin_hashing"]["hashed"], report["pin_hashing"]["reused"]) == (2, 0)  # another method
    again = hashes()
    assert again[kept].startswith("pbkdf2:sha256:1001$") and again[kept] != kept_hash
    assert check_password_hash(again[kept], pins_of(legacy)[kept]) and check_password_hash(again[repinned], "27182")


def pins_of(legacy) -> dict:
    engine = sa.create_engine(legacy.db.url)
    with engine.connect() as conn:
        pins = dict(conn.execute(sa.text("SELECT id, password FROM video_app_student")).all())
    engine.dispose()
    return pins


NEW_POST = """
from legacy_app.video_app.models import Media
Media.objects.create(session_id={session}, student_id={student}, title="{name}", media_type="image",
                     image_file="images/{name}.png")
"""


def test_a_sync_copies_the_files_of_the_rows_it_wrote_and_catches_up_after_skipping_them(precopied, tmp_path):
    legacy, target = precopied
    copied = tmp_path / "flask_media" / "images"
    ids = anchors(target)

    def post(name: str) -> None:
        (legacy.media_root / "images" / f"{name}.png").write_bytes(name.encode() * 100)
        shell(legacy, tmp_path, NEW_POST.format(name=name, session=ids["session"], student=ids["student"]))

    post("synced_without_files")
    _, skipped = export(legacy, target, tmp_path, "--sync", "--skip-files")
    assert skipped["sync"]["media"]["inserted"] == 1, skipped["sync"]["media"]
    assert not (copied / "synced_without_files.png").exists()

    post("synced_after")  # the run before skipped files: this sync looks at every row's
    _, caught_up = export(legacy, target, tmp_path, "--sync")
    assert caught_up["files"]["scope"] == "every row"
    assert (copied / "synced_without_files.png").read_bytes() == b"synced_without_files" * 100
    assert (copied / "synced_after.png").exists()

    post("synced_alone")  # the run before copied everything: only the new row's file is looked at
    _, alone = export(legacy, target, tmp_path, "--sync")
    assert alone["files"]["scope"] == "rows this sync wrote"
    assert (alone["files"]["references"], alone["files"]["copied"]) == (1, 1)
    assert (copied / "synced_alone.png").read_bytes() == b"synced_alone" * 100


def test_killed_sync_then_rerun_converges(precopied, make_database, tmp_path):
    legacy, target = precopied
    # Many regenerated PINs, hashed slowly in small batches, so the kill lands mid-way.
    shell(legacy, tmp_path, "from legacy_app.video_app.models import Student\n"
                            "for s in Student.objects.order_by('pk')[:400]:\n"
                            "    Student.objects.filter(pk=s.pk).update(password=str(99999 - s.pk).zfill(5))")
    slow = "pbkdf2:sha256:60000"
    env = {**os.environ, **env_for(legacy, tmp_path)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    proc = subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "manage.py"), "export_to_flask", "--sync", "--skip-files",
         "--target", target.url, "--allow-live", "--batch-size", "20", "--pin-hash-method", slow,
         "--report-dir", str(tmp_path / "killed")],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    engine = target.engine()
    deadline = time.monotonic() + 120
    rehashed = 0
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        with engine.connect() as conn:
            rehashed = conn.execute(sa.select(sa.func.count()).select_from(fm.Student.__table__)
                                    .where(fm.Student.pin_hash.like(f"{slow}$%"))).scalar()
        if rehashed >= 40:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 0 < rehashed < 400
    _, report = export(legacy, target, tmp_path, "--sync", "--skip-files")
    assert report["status"] == "complete"
    assert 0 < report["sync"]["students"]["updated"] <= 400 - rehashed
    assert_same_as_fresh_export(legacy, target, make_database, tmp_path)


def test_fingerprints_reveal_no_pin_without_the_key(exported_pair):
    """The stored digest is the database's digest of the row without its PIN, plus a keyed
    part of the PIN: knowing the first (any row's other values are in the target) and
    trying all 100,000 PINs finds it with the key, and nothing without. On SQLite only:
    what is shown (the key's part) does not depend on the dialect."""
    exported = exported_pair("sqlite-sqlite")  # read only
    legacy, target = exported.seeded, exported.target
    student_id = anchors(target)["student"]
    with sa.create_engine(legacy.db.url).connect() as conn:
        pin = conn.execute(sa.text("SELECT password FROM video_app_student WHERE id = :i"), {"i": student_id}).scalar()
    with target.engine().connect() as conn:
        stored = conn.execute(sa.select(bk.fingerprints.c.row_digest).where(
            bk.fingerprints.c.entity == "students", bk.fingerprints.c.source_id == student_id)).scalar_one()
        columns = [c.name for c in bk.fingerprints.columns]
    database_part = stored - secret_part(fingerprint_key("", SECRET_KEY), student_id, (pin,))  # what an attacker could know

    def matches(key: bytes) -> list[str]:
        return [candidate for n in range(100_000)
                if database_part + secret_part(key, student_id, (candidate := f"{n:05d}",)) == stored]

    assert matches(fingerprint_key("", SECRET_KEY)) == [pin]  # the attack works with the key...
    assert matches(fingerprint_key("", "some other secret")) == []  # ...and finds nothing without it
    assert matches(hashlib.sha512(b"").digest()) == []
    assert 0 <= database_part < 2**DIGEST_BITS  # the database's part is a digest of the rest alone
    assert columns == ["entity", "source_id", "row_digest", "context_digest"]  # no other copy of the row


# What the legacy database digests, asked through the ORM as a sync asks (rolled back after).
DATABASE_DIGESTS = """
import json
from django.db import transaction
from legacy_app.video_app.models import Student
from migration_bridge.diff import chunk_digest_sum, chunk_row_digests
from migration_bridge.fingerprint import ROW_DIGEST
from migration_bridge.profiles import get_profile
from migration_bridge.source import LegacySource
from migration_bridge.sync import CHUNK_WIDTH
source = LegacySource("video_app")
source.row_digests = True
entity = get_profile("plan").entity("students")
def digest(pk):
    (row,) = source.rows_by_id(entity, [pk])
    return row[ROW_DIGEST]
read_by_export = {row["id"]: row[ROW_DIGEST] for rows in source.entity_rows(entity, -2**62, 500) for row in rows}
chunks = list(source.chunk_digests(entity, CHUNK_WIDTH))
gathered = {}
for start, rows, text in chunks:
    gathered.update(chunk_row_digests(start, rows, text))
out = {"read_by_export": sorted(read_by_export.items()), "gathered": sorted(gathered.items()),
       "sums_agree": all(chunk_digest_sum(text) == sum(chunk_row_digests(start, rows, text).values())
                         for start, rows, text in chunks),
       "starts": sorted({start for start, _, _ in chunks}) == sorted({i - i % CHUNK_WIDTH for i in gathered})}
pk = Student.objects.order_by("pk").values_list("pk", flat=True)[0]
with transaction.atomic():
    seen = [digest(pk)]
    for field, value in (("device_id", None), ("device_id", ""), ("device_id", "x"), ("device_id", "x|"),
                         ("character_description", "|"), ("password", "99999"), ("password", "")):
        Student.objects.filter(pk=pk).update(**{field: value})
        seen.append(digest(pk))
    transaction.set_rollback(True)
out["seen"] = seen
print(json.dumps(out))
"""


@pytest.mark.parametrize("pair", SOURCE_TARGET_PAIRS)
def test_the_database_digest_sums_and_tells_values_apart(exported_pair, pair):
    """The digests the legacy database gathers per chunk are, row for row, those the
    export reads with the rows (and records); a row's digest tells NULL, empty and a value
    apart and does not mix fields up; a PIN's value is not in it (only whether one is set)."""
    seeded = exported_pair(pair).seeded
    out = json.loads(run_manage("shell", "-c", DATABASE_DIGESTS, env=seeded.env).stdout.strip().splitlines()[-1])
    assert out["gathered"] == out["read_by_export"] and len(out["gathered"]) > 100
    assert out["sums_agree"] and out["starts"]
    original, null, empty, x, x_bar, moved_bar, other_pin, no_pin = out["seen"]
    assert len({original, null, empty, x, x_bar, moved_bar, no_pin}) == 7
    assert other_pin == moved_bar  # a changed PIN changes nothing the database digests...
    assert no_pin != other_pin  # ...but an emptied one does


@pytest.mark.parametrize("precopied", ["mariadb-postgresql"], indirect=True)
def test_a_sync_first_builds_what_a_stopped_export_left_dropped(precopied, tmp_path):
    """An index an export dropped while loading and did not build again (it stopped): a
    run that loads no table builds it before anything else, and until then --cleanup
    refuses to drop its definition."""
    legacy, target = precopied
    engine = target.engine()
    with engine.begin() as conn:
        definition = conn.execute(sa.text("SELECT pg_get_indexdef('ix_comments_media_id'::regclass)")).scalar()
        conn.execute(sa.text("DROP INDEX ix_comments_media_id"))
        conn.execute(bk.deferred_schema.insert().values(table_name="comments", name="ix_comments_media_id",
                                                        kind="index", definition=definition))
    proc = run_manage("export_to_flask", "--target", target.url, "--cleanup", "--yes", env=env_for(legacy, tmp_path),
                      check=False)
    assert proc.returncode == 2 and "has not built again" in proc.stderr
    proc, report = export(legacy, target, tmp_path, "--sync")
    assert report["status"] == "complete" and "indexes and foreign keys: 1 built after loading" in proc.stdout
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT pg_get_indexdef('ix_comments_media_id'::regclass)")).scalar() == definition
        assert conn.execute(sa.select(sa.func.count()).select_from(bk.deferred_schema)).scalar() == 0
    engine.dispose()
    run_manage("export_to_flask", "--target", target.url, "--cleanup", "--yes", env=env_for(legacy, tmp_path))


@pytest.mark.parametrize("precopied", ["sqlite-sqlite"], indirect=True)
def test_a_target_without_fingerprints_of_this_version_is_refused(precopied, tmp_path):
    """A sync trusts only fingerprints this version wrote: with none, or an older kind, it
    asks for --restart once and changes nothing."""
    legacy, target = precopied
    engine = target.engine()
    with engine.begin() as conn:
        conn.execute(bk.fingerprints.delete())
    proc, _ = export(legacy, target, tmp_path, "--sync", check=False)
    assert proc.returncode == 2 and "holds no row fingerprints of this version" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(bk.fingerprints)).scalar() == 0
    engine.dispose()


def test_cleanup_drops_the_bookkeeping(precopied, tmp_path):
    legacy, target = precopied
    proc = run_manage("export_to_flask", "--target", target.url, "--cleanup", "--yes", env=env_for(legacy, tmp_path))
    assert "dropped" in proc.stdout
    names = set(sa.inspect(target.engine()).get_table_names())
    assert not {n for n in names if n.startswith("bridge_")}
    assert {t.name for t in fm.TABLES_IN_ORDER} <= names
    proc, _ = export(legacy, target, tmp_path, "--sync", check=False)
    assert proc.returncode == 2 and "complete export" in proc.stderr
