"""``manage.py seed_legacy``: counts, planted anomalies, files, passwords, determinism."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from .conftest import LEGACY_DIALECTS, Database, DatabaseFactory, run_manage

pytestmark = pytest.mark.slow

T = {
    "district": "video_app_district", "customadmin": "video_app_customadmin",
    "observer": "video_app_observer", "session": "video_app_session",
    "student": "video_app_student", "media": "video_app_media", "comment": "video_app_comment",
    "studentmediainteraction": "video_app_studentmediainteraction",
}
# every foreign key column of the legacy tables -> referenced table
FKS = {
    "customadmin.district_id": "district", "observer.district_id": "district",
    "observer.created_by_id": "customadmin", "session.created_by_id": "customadmin",
    "student.section_id": "session", "student.admin_id": "customadmin",
    "media.session_id": "session", "media.student_id": "student",
    "media.posted_by_admin_id": "customadmin", "comment.media_id": "media",
    "comment.parent_id": "comment", "comment.student_id": "student",
    "studentmediainteraction.student_id": "student", "studentmediainteraction.media_id": "media",
}
REQUIRED_ANOMALIES = [
    "orphan_students", "orphan_media", "orphan_comments", "orphan_interactions",
    "orphan_observers", "orphan_fk", "duplicate_active_sessions", "sessions_null_created_by",
    "teachers_without_district", "superusers", "login_artifact_users", "attribution_unique",
    "attribution_teacher", "attribution_ambiguous", "attribution_unmatched", "attribution_null",
    "duplicate_pins_in_session", "drifted_counter_media", "drifted_comment_count_interactions",
    "replies_before_parent", "missing_files", "media_with_missing_files", "media_null_files",
    "project_media", "project_images_missing", "shared_file_media", "four_byte_utf8",
    "max_length_rows", "over_length_rows", "invalid_choice_rows", "empty_string_rows",
    "repeated_pins_across_sessions",
]


@dataclass
class Seeded:
    db: Database
    manifest: dict
    media_root: Path
    stdout: str

    def rows(self, sql: str, **params) -> list:
        engine = self.db.engine()
        try:
            with engine.connect() as conn:
                return [tuple(r) for r in conn.execute(sa.text(sql), params)]
        finally:
            engine.dispose()

    def ids(self, sql: str) -> list[int]:
        return sorted(r[0] for r in self.rows(sql))

    @property
    def anomalies(self) -> dict:
        return self.manifest["anomalies"]


def seed(db: Database, workdir: Path, *extra: str, scale: str = "small", seed_value: int = 7,
         migrate: bool = True, check: bool = True):
    media_root = workdir / f"media_{db.name}"
    manifest = workdir / f"manifest_{db.name}_{seed_value}.json"
    env = {"LEGACY_DATABASE_URL": db.django_url, "LEGACY_MEDIA_ROOT": str(media_root)}
    if migrate:
        run_manage("migrate", "-v0", env=env)
    proc = run_manage("seed_legacy", "--scale", scale, "--seed", str(seed_value),
                      "--manifest", str(manifest), *extra, env=env, check=check)
    if proc.returncode != 0:
        return proc, None
    return proc, Seeded(db, json.loads(manifest.read_text(encoding="utf-8")), media_root, proc.stdout)


@pytest.fixture(scope="module", params=LEGACY_DIALECTS)
def seeded(request, tmp_path_factory) -> Seeded:
    """One migrated database per legacy dialect, seeded at scale small with seed 7."""
    workdir = tmp_path_factory.mktemp(f"seed_{request.param}")
    factory = DatabaseFactory(workdir)
    try:
        db = factory(request.param)
        _, result = seed(db, workdir)
        yield result
    finally:
        factory.drop_all()


def _models():
    from django.apps import apps

    return {m._meta.model_name: m for m in apps.get_app_config("video_app").get_models()}


def _table_rows(s: Seeded, key: str) -> tuple[list[str], list[tuple]]:
    engine = s.db.engine()
    try:
        with engine.connect() as conn:
            result = conn.execute(sa.text(f"SELECT * FROM {T[key]} ORDER BY id"))
            return list(result.keys()), [tuple(r) for r in result]
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- counts, lists

def test_counts_match_manifest(seeded: Seeded):
    m = seeded.manifest
    assert m["scale"] == "small" and m["seed"] == 7
    assert m["vendor"] == ("sqlite" if seeded.db.kind == "sqlite" else "mysql")
    assert set(m["counts"]) == set(T)
    for key, table in T.items():
        assert seeded.rows(f"SELECT COUNT(*) FROM {table}")[0][0] == m["counts"][key], key
        # explicit, contiguous primary keys 1..N
        assert seeded.rows(f"SELECT MIN(id), MAX(id) FROM {table}")[0] == (1, m["counts"][key]), key
    assert 8_000 <= sum(m["counts"].values()) <= 15_000
    assert "elapsed" not in json.dumps(m)
    for key in T:
        assert f"{key} " in seeded.stdout
    assert " s (" in seeded.stdout.splitlines()[-1]


def test_every_anomaly_list_is_present_and_non_empty(seeded: Seeded):
    a = seeded.anomalies
    for name in REQUIRED_ANOMALIES:
        assert name in a, name
        value = a[name]
        if name == "over_length_rows" and seeded.db.kind == "mariadb":
            assert value == {}
            continue
        assert value, name
        if isinstance(value, dict):
            assert all(value.values()), name
    for name in ("four_byte_utf8", "max_length_rows", "empty_string_rows"):
        assert {"student", "media", "comment", "session"} <= set(a[name]), name
    assert set(a["invalid_choice_rows"]) == {"media", "session"}


def test_orphans_are_exact(seeded: Seeded):
    a = seeded.anomalies
    found = {}
    for column, target in FKS.items():
        table, col = column.split(".")
        ids = seeded.ids(f"SELECT c.id FROM {T[table]} c LEFT JOIN {T[target]} p ON p.id = c.{col} "
                         f"WHERE c.{col} IS NOT NULL AND p.id IS NULL")
        found[column] = ids
        assert ids == a["orphan_fk"].get(column, []), column
    assert found["student.section_id"] and found["student.admin_id"]
    assert found["media.session_id"] and found["media.student_id"]
    assert found["comment.media_id"] and found["comment.parent_id"] and found["comment.student_id"]
    assert found["studentmediainteraction.student_id"] and found["studentmediainteraction.media_id"]

    def union(*cols):
        return sorted(set().union(*(found[c] for c in cols)))

    assert a["orphan_students"] == union("student.section_id", "student.admin_id")
    assert a["orphan_media"] == union("media.session_id", "media.student_id")
    assert a["orphan_comments"] == union("comment.media_id", "comment.parent_id", "comment.student_id")
    assert a["orphan_interactions"] == union("studentmediainteraction.student_id",
                                             "studentmediainteraction.media_id")
    assert a["orphan_observers"] == found["observer.district_id"]
    # an orphan student's session really is gone
    gone = seeded.ids(f"SELECT section_id FROM {T['student']} WHERE id IN "
                      f"({','.join(map(str, found['student.section_id']))})")
    assert not set(gone) & set(seeded.ids(f"SELECT id FROM {T['session']}"))
    # orphans are leaves: nothing references them
    orphan_media = ",".join(map(str, a["orphan_media"]))
    assert not seeded.rows(f"SELECT id FROM {T['comment']} WHERE media_id IN ({orphan_media})"
                           f" AND id NOT IN ({','.join(map(str, a['orphan_comments']))})")


def test_sessions_and_teachers(seeded: Seeded):
    a = seeded.anomalies
    groups = seeded.rows(f"SELECT created_by_id, section FROM {T['session']} WHERE is_archived = 0 "
                         f"AND created_by_id IS NOT NULL GROUP BY created_by_id, section HAVING COUNT(*) > 1")
    assert sorted(groups) == sorted((d["teacher_id"], d["section"]) for d in a["duplicate_active_sessions"])
    for d in a["duplicate_active_sessions"]:
        rows = seeded.rows(f"SELECT created_by_id, section, is_archived FROM {T['session']} WHERE id IN "
                           f"({','.join(map(str, d['session_ids']))})")
        assert len(rows) == len(d["session_ids"]) >= 2
        assert {(r[0], r[1], bool(r[2])) for r in rows} == {(d["teacher_id"], d["section"], False)}
    assert a["sessions_null_created_by"] == seeded.ids(
        f"SELECT id FROM {T['session']} WHERE created_by_id IS NULL")
    assert a["teachers_without_district"] == seeded.ids(
        f"SELECT id FROM {T['customadmin']} WHERE is_staff = 1 AND district_id IS NULL")
    assert a["superusers"] == seeded.ids(f"SELECT id FROM {T['customadmin']} WHERE is_superuser = 1")
    assert len(a["superusers"]) >= 2
    codes = [r[0] for r in seeded.rows(f"SELECT session_code FROM {T['session']}")]
    assert all(len(c) == 8 and c == c.upper() and int(c, 16) >= 0 for c in codes)
    assert min(r[0] for r in seeded.rows(f"SELECT section FROM {T['session']}")) >= 0
    archived = seeded.rows(f"SELECT name, original_name, archived_at FROM {T['session']} WHERE is_archived = 1")
    assert archived and all(n.startswith(f"{o} (Archived 20") and at is not None for n, o, at in archived)


def test_counters_and_comment_counts_drift_exactly_where_planted(seeded: Seeded):
    a = seeded.anomalies
    drifted = seeded.ids(f"""
        SELECT m.id FROM {T['media']} m LEFT JOIN (
            SELECT media_id, SUM(liked_graph) g, SUM(liked_eye) e, SUM(liked_read) r
            FROM {T['studentmediainteraction']} GROUP BY media_id) t ON t.media_id = m.id
        WHERE m.graph_likes <> COALESCE(t.g, 0) OR m.eye_likes <> COALESCE(t.e, 0)
           OR m.read_likes <> COALESCE(t.r, 0)""")
    assert drifted == a["drifted_counter_media"]
    drifted_counts = seeded.ids(f"""
        SELECT i.id FROM {T['studentmediainteraction']} i LEFT JOIN (
            SELECT student_id, media_id, COUNT(*) n FROM {T['comment']}
            WHERE student_id IS NOT NULL GROUP BY student_id, media_id) c
          ON c.student_id = i.student_id AND c.media_id = i.media_id
        WHERE i.comment_count <> COALESCE(c.n, 0)""")
    assert drifted_counts == a["drifted_comment_count_interactions"]
    assert seeded.rows(f"SELECT COUNT(*) FROM {T['comment']} WHERE parent_id IS NOT NULL")[0][0] > 50
    assert seeded.rows(f"SELECT COUNT(*) FROM {T['comment']} WHERE is_admin = 1 "
                       f"AND admin_avatar IS NOT NULL AND student_id IS NULL")[0][0] > 0
    assert a["replies_before_parent"] == seeded.ids(
        f"SELECT c.id FROM {T['comment']} c JOIN {T['comment']} p ON p.id = c.parent_id WHERE c.id < p.id")


def test_attribution_lists_follow_the_rule(seeded: Seeded):
    a = seeded.anomalies
    orphans = set(a["orphan_students"])
    pins: dict[tuple[int, str], list[int]] = {}
    for sid, session_id, pin in seeded.rows(f"SELECT id, section_id, password FROM {T['student']}"):
        assert len(pin) == 5 and pin.isdigit()
        if sid not in orphans:
            pins.setdefault((session_id, pin), []).append(sid)
    got = {"unique": [], "teacher": [], "ambiguous": [], "unmatched": [], "null": []}
    for mid, session_id, submitted, teacher_id, media_pw in seeded.rows(f"""
            SELECT m.id, m.session_id, m.submitted_password, s.created_by_id, t.media_password
            FROM {T['media']} m JOIN {T['session']} s ON s.id = m.session_id
            LEFT JOIN {T['customadmin']} t ON t.id = s.created_by_id WHERE m.student_id IS NULL"""):
        owners = pins.get((session_id, submitted), [])
        if submitted is None:
            got["null"].append(mid)
        elif media_pw is not None and submitted == media_pw:
            got["teacher"].append([mid, teacher_id])
        elif len(owners) == 1:
            got["unique"].append([mid, owners[0]])
        elif owners:
            got["ambiguous"].append(mid)
        else:
            got["unmatched"].append(mid)
    for kind, value in got.items():
        assert sorted(value) == a[f"attribution_{kind}"], kind
    # media with a student carry that student's PIN
    mismatched = seeded.rows(f"SELECT m.id FROM {T['media']} m JOIN {T['student']} st ON st.id = m.student_id "
                             f"WHERE m.submitted_password <> st.password OR m.submitted_password IS NULL")
    assert mismatched == []
    # PINs unique within a session except the planted collisions; repeated across sessions
    collisions = sorted(sorted(v) for v in pins.values() if len(v) > 1)
    assert collisions == sorted(sorted(d["student_ids"]) for d in a["duplicate_pins_in_session"])
    sessions_of_pin: dict[str, set] = {}
    for (session_id, pin) in pins:
        sessions_of_pin.setdefault(pin, set()).add(session_id)
    repeated = seeded.rows(f"SELECT password FROM {T['student']} WHERE id IN "
                           f"({','.join(map(str, a['repeated_pins_across_sessions']))})")
    assert all(len(sessions_of_pin[p]) >= 2 for (p,) in repeated)


def test_files_missing_and_present(seeded: Seeded):
    from PIL import Image

    a, root = seeded.anomalies, seeded.media_root
    missing = set(a["missing_files"])
    for name in missing:
        assert not (root / name).exists(), name
    written = seeded.manifest["files"]["written"]
    assert len(written) >= 100
    for name in written:
        path = root / name
        assert path.is_file(), name
        if name.startswith("images/"):
            with Image.open(path) as img:
                img.verify()
                assert img.format in ("PNG", "JPEG")
        else:
            assert name.endswith(".mp4") and path.read_bytes()[4:8] == b"ftyp"
    refs = seeded.rows(f"SELECT id, image_file, video_file, media_type FROM {T['media']}")
    with_missing = []
    for mid, image, video, mtype in refs:
        for name in (image, video):
            if name:
                if name in missing:
                    with_missing.append(mid)
                else:
                    assert (root / name).is_file(), (mid, name)
        if mtype == "image":
            assert image and image.startswith("images/")
        if mtype == "video":
            assert video and video.startswith("videos/") and video.endswith(".mp4")
    assert sorted(with_missing) == a["media_with_missing_files"]
    shared = seeded.manifest["files"]["shared"]
    assert a["shared_file_media"] == seeded.ids(f"SELECT id FROM {T['media']} WHERE image_file = '{shared}'")
    assert len(a["shared_file_media"]) >= 3
    assert a["media_null_files"] == seeded.ids(
        f"SELECT id FROM {T['media']} WHERE image_file IS NULL OR video_file IS NULL")
    project = seeded.rows(f"SELECT id, project_images, project_group FROM {T['media']} WHERE is_project = 1")
    assert sorted(r[0] for r in project) == a["project_media"]
    urls_missing = set(a["project_images_missing"])
    seen_missing = set()
    for mid, images, group in project:
        assert group
        for url in json.loads(images):
            assert url.startswith(f"/media/images/project_{mid}_") and url.endswith(".png")
            exists = (root / url[len("/media/"):]).is_file()
            assert exists == (url not in urls_missing), url
            if not exists:
                seen_missing.add(url)
    assert seen_missing == urls_missing


def test_text_anomalies_are_exact(seeded: Seeded):
    from django.db import models as djm

    a = seeded.anomalies
    four, maxlen, overlen, empty, invalid = {}, {}, {}, {}, {}
    for key, model in _models().items():
        fields = {f.column: f for f in model._meta.concrete_fields}
        cols, rows = _table_rows(seeded, key)
        for row in rows:
            rid = row[cols.index("id")]
            for col, value in zip(cols, row):
                f = fields[col]
                if not isinstance(value, str):
                    continue
                if any(ord(ch) > 0xFFFF for ch in value):
                    four.setdefault(key, set()).add(rid)
                if isinstance(f, djm.CharField) and col != "password":
                    if f.max_length >= 50 and len(value) == f.max_length:
                        maxlen.setdefault(key, set()).add(rid)
                    if len(value) > f.max_length:
                        overlen.setdefault(key, set()).add(rid)
                if (isinstance(f, (djm.CharField, djm.TextField)) and f.null and value == ""):
                    empty.setdefault(key, set()).add(rid)
                if f.choices and value not in {c for c, _ in f.choices}:
                    invalid.setdefault(key, set()).add(rid)

    def lists(d):
        return {k: sorted(v) for k, v in d.items()}

    assert lists(four) == a["four_byte_utf8"]
    assert lists(maxlen) == a["max_length_rows"]
    assert lists(overlen) == a["over_length_rows"]
    assert lists(empty) == a["empty_string_rows"]
    assert lists(invalid) == a["invalid_choice_rows"]
    if seeded.db.kind == "sqlite":
        assert {"student", "media"} <= set(a["over_length_rows"])
    # empty strings sit beside NULLs in the same columns
    assert seeded.rows(f"SELECT COUNT(*) FROM {T['media']} WHERE description IS NULL")[0][0] > 0
    assert seeded.rows(f"SELECT COUNT(*) FROM {T['student']} WHERE device_id IS NULL")[0][0] > 0
    avatars = [r[0] for r in seeded.rows(f"SELECT avatar_image_path FROM {T['student']}")]
    assert any(p and p.startswith("video_app/images/characters/") for p in avatars)
    assert any(p and p.startswith("video_app/images/avatars/avatar") for p in avatars)
    assert None in avatars and "" in avatars


def test_login_artifacts_and_passwords_verify(seeded: Seeded):
    from django.contrib.auth.hashers import check_password, identify_hasher

    a, m = seeded.anomalies, seeded.manifest
    pins = dict(seeded.rows(f"SELECT id, password FROM {T['student']}"))
    users = {r[0]: r[1:] for r in seeded.rows(
        f"SELECT id, username, password, is_staff, is_superuser FROM {T['customadmin']}")}
    assert a["login_artifact_users"] == sorted(uid for uid, u in users.items() if not u[2])
    verified: dict[tuple[str, str], bool] = {}

    def verify(plaintext, encoded):
        if (plaintext, encoded) not in verified:
            verified[(plaintext, encoded)] = check_password(plaintext, encoded)
        return verified[(plaintext, encoded)]

    for uid in a["login_artifact_users"]:
        username, encoded, is_staff, is_superuser = users[uid]
        assert not is_staff and not is_superuser
        assert username.startswith("student_")
        student_id = int(username[len("student_"):])
        assert student_id in pins and student_id not in a["orphan_students"]
        assert verify(pins[student_id], encoded)
    # nothing references a login artefact account
    artefacts = ",".join(map(str, a["login_artifact_users"]))
    for column in ("student.admin_id", "session.created_by_id", "observer.created_by_id",
                   "media.posted_by_admin_id"):
        table, col = column.split(".")
        assert seeded.rows(f"SELECT id FROM {T[table]} WHERE {col} IN ({artefacts})") == [], column
    # every customadmin and observer row is listed with a verifiable password
    assert sorted(p["id"] for p in m["passwords"]["customadmin"]) == sorted(users)
    observers = dict(seeded.rows(f"SELECT id, password FROM {T['observer']}"))
    assert sorted(p["id"] for p in m["passwords"]["observer"]) == sorted(observers)
    stored = {("customadmin", uid): u[1] for uid, u in users.items()}
    stored.update({("observer", oid): pw for oid, pw in observers.items()})
    seen = {"customadmin": set(), "observer": set()}
    for kind in ("customadmin", "observer"):
        for entry in m["passwords"][kind]:
            encoded = stored[(kind, entry["id"])]
            seen[kind].add(entry["hasher"])
            if entry["hasher"] == "unusable":
                assert encoded.startswith("!") and entry["plaintext"] is None
                assert not check_password("", encoded)
            else:
                assert identify_hasher(encoded).algorithm == entry["hasher"]
                assert verify(entry["plaintext"], encoded), entry
    all_hashers = {"pbkdf2_sha256", "pbkdf2_sha1", "argon2", "bcrypt_sha256", "scrypt", "md5", "unusable"}
    assert seen["customadmin"] == all_hashers
    assert seen["observer"] == all_hashers - {"scrypt"}  # Char(100) cannot hold a scrypt hash
    teachers = {uid for uid, u in users.items() if u[2]}
    assert set(map(int, m["media_passwords"])) == teachers
    stored_media_pw = dict(seeded.rows(f"SELECT id, media_password FROM {T['customadmin']} WHERE is_staff = 1"))
    assert {int(k): v for k, v in m["media_passwords"].items()} == stored_media_pw


# --------------------------------------------------------------------------- determinism, refusal

def _checksum(db: Database) -> dict[str, str]:
    engine = db.engine()
    sums = {}
    try:
        with engine.connect() as conn:
            for key, table in T.items():
                h = hashlib.sha256()
                for row in conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY id")):
                    h.update(repr(tuple(row)).encode())
                sums[key] = h.hexdigest()
    finally:
        engine.dispose()
    return sums


def _files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def demo_seeds(tmp_path_factory):
    """``get(kind, seed, copy)``: a fresh database seeded at scale demo, memoised per module."""
    workdir = tmp_path_factory.mktemp("seed_demo")
    factory = DatabaseFactory(workdir)
    cache: dict[tuple, Seeded] = {}

    def get(kind: str, seed_value: int, copy: int = 0) -> Seeded:
        key = (kind, seed_value, copy)
        if key not in cache:
            _, cache[key] = seed(factory(kind), workdir, scale="demo", seed_value=seed_value)
        return cache[key]

    try:
        yield get
    finally:
        factory.drop_all()


def test_same_seed_gives_identical_data(legacy_dialect, demo_seeds):
    first, second = demo_seeds(legacy_dialect, 7, 0), demo_seeds(legacy_dialect, 7, 1)
    assert first.db.name != second.db.name
    assert first.manifest == second.manifest
    assert _checksum(first.db) == _checksum(second.db)
    assert _files(first.media_root) == _files(second.media_root)
    assert 200 <= sum(first.manifest["counts"].values()) <= 1000


def test_other_seed_differs(demo_seeds):
    first, other = demo_seeds("sqlite", 7), demo_seeds("sqlite", 8)
    assert other.manifest != first.manifest
    assert _checksum(other.db)["student"] != _checksum(first.db)["student"]


def test_same_seed_same_rows_on_both_vendors(demo_seeds):
    manifests = []
    for kind in LEGACY_DIALECTS:
        m = dict(demo_seeds(kind, 7).manifest)
        m["anomalies"] = {k: v for k, v in m["anomalies"].items()
                          if k not in ("over_length_rows", "max_length_rows")}
        m.pop("vendor")
        manifests.append(m)
    assert manifests[0] == manifests[1]


def test_refuses_non_empty_database_without_flush(legacy_dialect, make_database, tmp_path):
    db = make_database(legacy_dialect)
    _, first = seed(db, tmp_path, scale="demo", seed_value=1)
    before = _checksum(db)
    proc, _ = seed(db, tmp_path, scale="demo", seed_value=2, migrate=False, check=False)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "not empty" in lines[0] and "--flush" in lines[0], proc.stderr
    assert _checksum(db) == before
    _, again = seed(db, tmp_path, "--flush", scale="demo", seed_value=2, migrate=False)
    assert again.manifest["seed"] == 2
    for key, table in T.items():
        assert again.rows(f"SELECT COUNT(*) FROM {table}")[0][0] == again.manifest["counts"][key]


def test_refuses_unmigrated_database(make_database, tmp_path):
    proc, _ = seed(make_database("sqlite"), tmp_path, scale="demo", migrate=False, check=False)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "migrate" in lines[0], proc.stderr
