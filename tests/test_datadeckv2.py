"""The ``datadeckv2`` profile end to end, on SQLite→SQLite and MariaDB→PostgreSQL: a seeded
dirty legacy database exported into the real Flask app's schema, then checked the way the
app itself checks logins; the id map stable across a staged export, a re-read and a sync;
verify passing on the result and failing on what it must catch."""
from __future__ import annotations

import csv
import json
import shutil

import pytest
import sqlalchemy as sa
from werkzeug.security import check_password_hash

import flask_models.datadeckv2 as dd
from migration_bridge.idmap import id_map
from migration_bridge.profiles.datadeckv2_transforms import UNUSABLE_PASSWORD

from .conftest import SOURCE_TARGET_PAIRS, run_manage
from .test_sync import copy_legacy, env_for, export, shell
from .test_verify import check, failed, verify

PROFILE = ("--target-schema", "datadeckv2")
ACCEPT = ("--accept-missing-source-files", "--fix-counts")
CONVERTIBLE = {"pbkdf2_sha256", "pbkdf2_sha1", "scrypt"}


@pytest.fixture(params=SOURCE_TARGET_PAIRS)
def exported(request, exported_pair):
    """The session's datadeckv2 export of this pair (read only)."""
    return exported_pair(request.param, "datadeckv2")


@pytest.fixture
def copied(exported, make_database, tmp_path):
    """This test's own copies: legacy database and files, target and its files."""
    shutil.copytree(exported.flask_media, tmp_path / "flask_media")
    return copy_legacy(exported.seeded, make_database, tmp_path), make_database.clone(exported.target)


def exported_kind(legacy) -> str:
    return legacy.db.kind


def id_map_rows(target) -> dict[tuple[str, int], int]:
    engine = target.engine()
    with engine.connect() as conn:
        rows = {(e, legacy): t for e, legacy, t in conn.execute(
            sa.select(id_map.c.entity, id_map.c.legacy_id, id_map.c.target_id))}
    engine.dispose()
    return rows


def users_by_legacy(target, entity: str) -> dict[int, dict]:
    """Target users rows (joined with their sub-table) of one entity, by legacy id."""
    engine = target.engine()
    users, m = dd.User.__table__, id_map
    query = sa.select(m.c.legacy_id, users).join(users, users.c.id == m.c.target_id).where(m.c.entity == entity)
    if entity == "students":
        students = dd.Student.__table__
        query = query.add_columns(students.c.pin_hash, students.c.current_pin, students.c.avatar_path).join(
            students, students.c.id == users.c.id)
    with engine.connect() as conn:
        rows = {r["legacy_id"]: dict(r) for r in conn.execute(query).mappings()}
    engine.dispose()
    return rows


# --- logins, as the real app checks them ----------------------------------------------

def test_staff_log_in_with_their_legacy_password_or_are_cleanly_refused(exported):
    manifest = exported.seeded.manifest["passwords"]
    logged_in: set[str] = set()
    for entity, legacy_kind in (("users", "customadmin"), ("observers", "observer")):
        rows = users_by_legacy(exported.target, entity)
        checked = 0
        for known in manifest[legacy_kind]:
            row = rows.get(known["id"])
            if row is None:
                continue  # rejected for a fault of the source (reported)
            stored = row["password_hash"]
            assert stored is not None and len(stored) <= dd.PASSWORD_HASH_MAX
            # the app: check_password_hash(user.password_hash, form.password.data) — never raises
            if stored == UNUSABLE_PASSWORD:  # not convertible, or inactive: listed in must_reset.csv
                assert not check_password_hash(stored, known["plaintext"])
            else:
                assert known["hasher"] in CONVERTIBLE and check_password_hash(stored, known["plaintext"]), \
                    (entity, known["id"], known["hasher"])
                logged_in.add(known["hasher"])
            checked += 1
        assert checked >= 5, entity
    assert logged_in == CONVERTIBLE


def test_students_log_in_by_pin_and_no_pin_is_kept_in_plain_text(exported):
    legacy = sa.create_engine(exported.seeded.db.url)
    with legacy.connect() as conn:
        pins = dict(conn.execute(sa.text("SELECT id, password FROM video_app_student")).all())
    legacy.dispose()
    students = users_by_legacy(exported.target, "students")
    assert len(students) > 1000
    for legacy_id, row in list(students.items())[:60]:
        # the app: check_password_hash(s.pin_hash or s.password_hash, pin)
        assert check_password_hash(row["pin_hash"] or row["password_hash"], pins[legacy_id])
        assert len(row["pin_hash"]) <= dd.PIN_HASH_MAX and row["current_pin"] is None
        assert not check_password_hash(row["password_hash"], pins[legacy_id])  # not through the staff login
        assert row["email"] == f"legacy-student-{legacy_id}@students.invalid"
        assert (row["role"], row["type"]) == (dd.Role.STUDENT, dd.TYPE_STUDENT)


def test_every_user_has_a_unique_login_and_ids_do_not_collide(exported):
    engine = exported.target.engine()
    with engine.connect() as conn:
        users = conn.execute(sa.select(dd.User.__table__)).mappings().all()
        mapped = conn.execute(sa.select(id_map.c.target_id).where(id_map.c.target_table == "users")).scalars().all()
    engine.dispose()
    assert sorted(mapped) == sorted(u["id"] for u in users)  # every users row is one legacy row's
    logins = [u["username"].casefold() for u in users] + [u["email"].casefold() for u in users]
    assert len(set(logins)) == len(logins)  # e-mail and username lookups never meet another user
    roles = {(u["role"], u["type"]) for u in users}
    assert roles <= {(r, t) for r, t in dd.ROLE_TYPES.items()}


# --- decisions, reported ------------------------------------------------------------

def test_every_decision_is_counted_and_must_reset_users_are_listed(exported, tmp_path):
    report_dir = exported.report_dir
    report = json.loads((report_dir / "report.json").read_text())
    decisions = report["decisions"]
    assert decisions["observers"]["synthesized_username"]["count"] == report["entities"]["observers"]["written"]
    assert decisions["sessions"]["unowned_session"]["count"] >= 1
    assert set(decisions["users"]["role"]["by"]) <= {"role=ADMIN", "role=TEACHER"}
    assert report["entities"]["schools"]["written"] >= 1 and report["entities"]["modules"]["written"] == 2
    assert any("media_type 'comment'" in reason for reason in report["skipped"]["media"])
    # students the app's PIN login cannot tell apart: counted by scope, every one in decisions.csv
    shared = decisions["students"]["shared_pin"]
    assert shared["count"] >= 2 and set(shared["by"]) <= {"scope=school", "scope=district", "scope=all"}
    with (report_dir / "decisions.csv").open() as fh:
        listed_shared = [r for r in csv.DictReader(fh) if r["kind"] == "shared_pin"]
    assert len(listed_shared) == shared["count"]
    legacy = sa.create_engine(exported.seeded.db.url)
    with legacy.connect() as conn:
        pins = dict(conn.execute(sa.text("SELECT id, password FROM video_app_student")).all())
    legacy.dispose()
    migrated = users_by_legacy(exported.target, "students")
    for r in listed_shared:
        pin = pins[int(r["legacy_id"])]
        assert sum(1 for i in migrated if pins[i] == pin) >= 2 and pin not in r["detail"]
    with (report_dir / "must_reset.csv").open() as fh:
        listed = list(csv.DictReader(fh))
    assert {"argon2", "bcrypt_sha256"} <= {r["hasher"] for r in listed}
    for r in listed:
        assert r["login"] and (r["why"] == "inactive" or r["hasher"] not in CONVERTIBLE), r
    with (report_dir / "id_map.csv").open() as fh:
        entries = list(csv.DictReader(fh))
    assert len(entries) == len(id_map_rows(exported.target)) == report["id_map"]["entries"]
    text = (report_dir / "report.json").read_text() + (report_dir / "rejects.ndjson").read_text()
    for known in exported.seeded.manifest["passwords"]["customadmin"]:
        assert not known["plaintext"] or known["plaintext"] not in text


# --- the id map ------------------------------------------------------------------------

def test_a_staged_export_allocates_the_same_ids(exported, make_database, tmp_path):
    """Deterministic: parents first in one run, the rest in another, same map as one run."""
    staged = make_database(exported.target.kind)
    legacy = exported.seeded
    shutil.copytree(exported.flask_media, tmp_path / "flask_media")
    export(legacy, staged, tmp_path, *PROFILE, "--create-schema", "--skip-files",
           "--only", "districts,schools,modules,users,observers")
    export(legacy, staged, tmp_path, *PROFILE, "--skip-files", "--exclude", "users")
    export(legacy, staged, tmp_path, *PROFILE, "--skip-files", "--restart", "--only", "students")
    assert id_map_rows(staged) == id_map_rows(exported.target)


@pytest.mark.parametrize("change_log", [False, True], ids=["digests", "change-log"])
def test_sync_keeps_every_id_and_maps_only_the_new_rows(copied, tmp_path, change_log):
    legacy, target = copied
    if change_log:  # the log installed by a sync comparing every row; the next one follows it
        export(legacy, target, tmp_path, *PROFILE, "--sync", "--track-changes")
    before = id_map_rows(target)
    observer = min(legacy_id for (entity, legacy_id) in before if entity == "observers")
    student = min(legacy_id for (entity, legacy_id) in before if entity == "students")
    shell(legacy, tmp_path, f"""
from django.contrib.auth.hashers import make_password
from legacy_app.video_app.models import *
Observer.objects.filter(pk={observer}).delete()
Student.objects.filter(pk={student}).update(name="Renamed student", password="24680")
kid = Student.objects.get(pk={student})
Student.objects.create(name="New student", password="13579", section=kid.section, admin=kid.admin)
Observer.objects.create(name="New observer", password=make_password("Obs1!"),
                        district=District.objects.order_by("pk").first(), email="new-observer@example.org")
CustomAdmin.objects.create(username="new_teacher", password=make_password("Welcome1!"), is_staff=True,
                           email="new_teacher@example.org")
""")
    proc, report = export(legacy, target, tmp_path, *PROFILE, "--sync")
    compared = {name: s["compared"] for name, s in report["sync"].items()}
    logged = {"districts", "observers", "sessions", "students", "media", "comments", "student_media_interactions"}
    assert compared == {name: "the rows the change log names" if change_log and name in logged else "every row"
                        for name in compared}  # schools, modules and users hold derived rows
    after = id_map_rows(target)
    kept = {k: v for k, v in before.items() if k != ("observers", observer)}
    assert {k: after[k] for k in kept} == kept  # nobody's id moved
    assert ("observers", observer) not in after
    new = {k: v for k, v in after.items() if k not in before}
    assert {e for e, _ in new} == {"observers", "students", "users"} and len(new) == 3
    assert min(new.values()) > max(v for (e, _), v in before.items() if e in ("users", "observers", "students"))
    renamed = users_by_legacy(target, "students")[student]
    assert check_password_hash(renamed["pin_hash"], "24680")
    proc, report = verify(target.url, env_for(legacy, tmp_path), tmp_path, *ACCEPT)
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_cleanup_keeps_the_id_map(copied, tmp_path):
    legacy, target = copied
    before = id_map_rows(target)
    run_manage("export_to_flask", "--target", target.url, *PROFILE, "--cleanup", "--yes",
               env=env_for(legacy, tmp_path))
    names = set(sa.inspect(target.engine()).get_table_names())
    assert not {n for n in names if n.startswith("bridge_")}
    assert id_map_rows(target) == before


# --- verify ------------------------------------------------------------------------------

def test_verify_passes_by_the_apps_own_rules(copied, tmp_path):
    legacy, target = copied
    proc, report = verify(target.url, env_for(legacy, tmp_path), tmp_path, *ACCEPT)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert check(report, "observer_scope")["figures"]["observers_compared"] > 0
    assert check(report, "content")["figures"]["students"]["meaning_failures"] == 0


def test_verify_finds_a_users_row_no_legacy_row_maps_to(copied, tmp_path):
    legacy, target = copied
    engine = target.engine()
    with engine.begin() as conn:
        stray = conn.execute(sa.select(sa.func.max(dd.User.__table__.c.id))).scalar() + 1
        conn.execute(dd.User.__table__.insert().values(
            id=stray, type="user", username="intruder", email="intruder@example.org", password_hash="!",
            role="ADMIN", created_at=dd.utcnow(), updated_at=dd.utcnow()))
    engine.dispose()
    proc, report = verify(target.url, env_for(legacy, tmp_path), tmp_path, *ACCEPT)
    assert "row_counts" in failed(report)
    assert check(report, "row_counts")["offending"]["users: rows no legacy row maps to"]["ids"] == [stray]


def test_verify_finds_swapped_ids_in_the_map(copied, tmp_path):
    """The map is only the join key: two students' entries swapped make both rows differ."""
    legacy, target = copied
    engine = target.engine()
    with engine.begin() as conn:
        (a, ta), (b, tb) = conn.execute(sa.select(id_map.c.legacy_id, id_map.c.target_id).where(
            id_map.c.entity == "students").order_by(id_map.c.legacy_id).limit(2)).all()
        for legacy_id, target_id in ((a, -1), (b, ta), (a, tb)):
            conn.execute(id_map.update().where(id_map.c.entity == "students", id_map.c.legacy_id == legacy_id)
                         .values(target_id=target_id))
    engine.dispose()
    proc, report = verify(target.url, env_for(legacy, tmp_path), tmp_path, *ACCEPT)
    assert "content" in failed(report)
    assert {a, b} <= set(check(report, "content")["offending"]["students: rows differ"]["ids"])


def test_sync_survives_parents_that_go_and_logins_that_move(copied, tmp_path):
    """Derived parents (a module, a school) that lose their last reference go after the rows
    pointing at them moved; an e-mail moving from an observer to a teacher, and a username
    differing from another only in case and accents, never collide or merge two users."""
    legacy, target = copied
    shell(legacy, tmp_path, """
from legacy_app.video_app.models import *
Session.objects.filter(module="4").update(module="2")
teacher = CustomAdmin.objects.filter(is_superuser=False).exclude(district=None).order_by("pk").first()
CustomAdmin.objects.filter(district=teacher.district).update(school="A brand new school")
observer = Observer.objects.order_by("pk").first()
CustomAdmin.objects.filter(pk=teacher.pk).update(email=observer.email.upper())
other = CustomAdmin.objects.filter(is_superuser=False).exclude(pk=teacher.pk).order_by("pk").first()
from django.db import IntegrityError, transaction
try:  # a MariaDB legacy database refuses it itself (case-insensitive collation)
    with transaction.atomic():
        CustomAdmin.objects.filter(pk=other.pk).update(username=teacher.username.upper())
except IntegrityError:
    pass
""")
    proc, report = export(legacy, target, tmp_path, *PROFILE, "--sync")
    assert report["sync"]["modules"]["deleted"] == 1 and report["sync"]["schools"]["deleted"] >= 1
    proc, report = verify(target.url, env_for(legacy, tmp_path), tmp_path, *ACCEPT)
    assert proc.returncode == 0, proc.stdout[-3000:]
    engine = target.engine()
    with engine.connect() as conn:
        modules = conn.execute(sa.select(dd.Module.__table__.c.name)).scalars().all()
    engine.dispose()
    assert modules == ["Module 2"]
    teachers = users_by_legacy(target, "users")
    observers = users_by_legacy(target, "observers")
    emails = [u["email"].casefold() for u in (*teachers.values(), *observers.values())]
    assert len(set(emails)) == len(emails)
    usernames = [u["username"].casefold() for u in teachers.values()]
    assert len(set(usernames)) == len(usernames)
    if exported_kind(legacy) == "sqlite":  # the case-only duplicate exists: synthesized, not merged
        assert sum(1 for u in teachers.values() if u["username"].startswith("legacy-teacher-")) >= 1


def test_the_pin_roster_names_students_by_their_id_in_the_app(copied, tmp_path):
    legacy, target = copied
    roster = tmp_path / "roster.csv"
    export(legacy, target, tmp_path, *PROFILE, "--pin-roster", str(roster))
    with roster.open() as fh:
        rows = list(csv.DictReader(fh))
    students = {row["id"]: row for row in users_by_legacy(target, "students").values()}
    assert len(rows) == len(students)
    for row in rows[:50]:
        student = students[int(row["student_id"])]  # the app's id
        assert check_password_hash(student["pin_hash"], row["pin"])
