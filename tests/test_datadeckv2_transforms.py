"""The datadeckv2 profile's row transforms: pure functions, tested without a database."""
import base64
import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import argon2
import bcrypt
import pytest
from werkzeug.security import check_password_hash

from flask_models import datadeckv2 as dd
from migration_bridge import transforms as t
from migration_bridge.profiles import datadeckv2_transforms as d2

UTC = dt.timezone.utc
PLUS2 = dt.timezone(dt.timedelta(hours=2))
T0 = dt.datetime(2024, 9, 1, 10, 0, tzinfo=PLUS2)  # not UTC on purpose: outputs must be
PLAIN = "Tr0ub4dor&3 – ünïcode 🎉"
PIN = "48213"
MEDIA_PASSWORD = "sesame-shared-42"
CTX = t.TransformContext()
TABLE = {table.name: table for table in dd.TABLES_IN_ORDER}
FILE_COLUMNS = {"avatar_path", "video_file", "image_file", "project_images", "admin_avatar"}


# --- Django hashes, built without Django (it needs settings) -----------------------

def django_pbkdf2(plain, digest="sha256", iterations=1000, salt="Qm9n8Hs0aWv4"):
    key = hashlib.pbkdf2_hmac(digest, plain.encode(), salt.encode(), iterations)
    return f"pbkdf2_{digest}${iterations}${salt}${base64.b64encode(key).decode()}"


def django_scrypt(plain, n=1024, r=8, p=1, salt="c2NyeXB0c2FsdA"):
    key = hashlib.scrypt(plain.encode(), salt=salt.encode(), n=n, r=r, p=p, dklen=64)
    return f"scrypt${n}${salt}${r}${p}${base64.b64encode(key).decode()}"


def django_argon2(plain):
    return "argon2" + argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(plain)


def django_bcrypt_sha256(plain):
    digest = hashlib.sha256(plain.encode()).hexdigest().encode()
    return "bcrypt_sha256$" + bcrypt.hashpw(digest, bcrypt.gensalt(4)).decode()


def django_md5(plain, salt="abc"):
    return f"md5${salt}${hashlib.md5((salt + plain).encode()).hexdigest()}"


# --- legacy source rows ----------------------------------------------------------

def teacher(**kw):
    row = dict(id=7, username="mfrizzle", email="frizzle@school.org", password=django_pbkdf2(PLAIN),
               first_name="Valerie", last_name="Frizzle", school="Walkerville Elementary",
               district_id=3, media_password=None, profile_picture=None, is_active=True,
               is_staff=False, is_superuser=False, last_login=T0 + dt.timedelta(days=3),
               date_joined=T0)
    row.update(kw)
    return row


def observer(**kw):
    row = dict(id=7, name="Ada Lovelace", email="ada@district.org", password=django_pbkdf2(PLAIN),
               district_id=3, is_active=True, created_by_id=7, created_at=T0)
    row.update(kw)
    return row


def session(**kw):
    row = dict(id=11, name="Period 2", original_name=None, session_code="ABCD1234", section=2,
               module="4", created_at=T0, is_paused=False, is_archived=False, archived_at=None,
               created_by_id=7, character_set="marvel")
    row.update(kw)
    return row


def student(**kw):
    row = dict(id=7, name="Iron Man", password=PIN, section_id=11, admin_id=7, device_id="dev-1",
               character_description="Genius", avatar_image_path="video_app/images/avatars/a.png")
    row.update(kw)
    return row


def media(**kw):
    row = dict(id=21, session_id=11, title="My graph", description=None, media_type="image",
               video_file="", image_file="images/a.png", uploaded_at=T0, graph_likes=1, eye_likes=0,
               read_likes=2, graph_tag="box", is_graph=True, variable_tag="bed_time",
               submitted_password=PIN, student_id=7, posted_by_admin_id=None,
               project_group=uuid.UUID(int=5).hex, project_images=None, is_project=False)
    row.update(kw)
    return row


def comment(**kw):
    row = dict(id=31, media_id=21, parent_id=None, text="Nice graph", created_at=T0,
               updated_at=T0 + dt.timedelta(hours=1), name="Iron Man", device_id="dev-1",
               is_admin=False, student_id=7, admin_avatar="/media/x.png")
    row.update(kw)
    return row


def interaction(**kw):
    row = dict(id=41, student_id=7, media_id=21, liked_graph=True, liked_eye=False,
               liked_read=True, comment_count=1, created_at=T0, updated_at=T0 + dt.timedelta(1))
    row.update(kw)
    return row


HOME = t.StudentHome(district_id=3, school_id=d2.school_key(3, "Walkerville Elementary"), created_at=T0)
STUDENT_CTX = t.TransformContext(student_homes={7: HOME})


def run(transform, row, ctx=CTX):
    result = transform(row, ctx)
    assert isinstance(result, t.Transformed), result
    return result


def kinds(result):
    return [n.kind for n in result.notes]


def note(result, kind):
    (found,) = [n.detail for n in result.notes if n.kind == kind]
    return found


# --- every transformed row fits its target tables ---------------------------------

SHAPES = [
    ("district", d2.transform_district,
     dict(id=3, name="North", code="N1", is_active=False, created_at=T0), CTX, ("districts",)),
    ("school", d2.transform_school, d2.derive_schools([teacher()])[0], CTX, ("schools",)),
    ("module", d2.transform_module, d2.derive_modules([("4", T0)])[0], CTX, ("modules",)),
    ("teacher", d2.transform_teacher, teacher(media_password=MEDIA_PASSWORD), CTX, ("users",)),
    ("teacher without district", d2.transform_teacher, teacher(district_id=None), CTX, ("users",)),
    ("unowned owner", d2.transform_teacher, d2.unowned_owner(T0), CTX, ("users",)),
    ("observer", d2.transform_observer, observer(), CTX, ("users", "observers")),
    ("session", d2.transform_session, session(), CTX, ("sessions",)),
    ("unowned session", d2.transform_session, session(created_by_id=None), CTX, ("sessions",)),
    ("archived session", d2.transform_session, session(),
     t.TransformContext(archived_sessions={11: T0 + dt.timedelta(days=9)}), ("sessions",)),
    ("student", d2.transform_student, student(), STUDENT_CTX, ("users", "students")),
    ("media", d2.transform_media, media(), CTX, ("media",)),
    ("comment", d2.transform_comment, comment(), CTX, ("comments",)),
    ("interaction", d2.transform_interaction, interaction(), CTX, ("student_media_interactions",)),
]


@pytest.mark.parametrize("transform,row,ctx,tables", [s[1:] for s in SHAPES], ids=[s[0] for s in SHAPES])
def test_row_has_exactly_the_target_columns_and_validates(transform, row, ctx, tables):
    out = run(transform, row, ctx).row
    columns = {c.name for name in tables for c in TABLE[name].columns}
    assert set(out) == columns - FILE_COLUMNS  # nothing else; files come from the file rule
    for name in tables:
        assert t.validate_row(out, TABLE[name], filled_later=("pin_hash",)) is None


@pytest.mark.parametrize("transform,row,ctx,tables", [s[1:] for s in SHAPES], ids=[s[0] for s in SHAPES])
def test_every_datetime_is_aware_utc_and_the_same_instant(transform, row, ctx, tables):
    out = run(transform, row, ctx).row
    stamps = [v for v in out.values() if isinstance(v, dt.datetime)]
    assert stamps and {"created_at", "updated_at"} <= set(out)
    for value in stamps:
        assert value.tzinfo is UTC
    assert T0 in stamps or T0 + dt.timedelta(days=9) in stamps  # converted, not relabelled


def test_a_naive_datetime_is_read_as_utc():
    naive = dt.datetime(2024, 1, 2, 3, 4)
    out = run(d2.transform_district, dict(id=1, name="N", code=None, is_active=True, created_at=naive)).row
    assert out["created_at"] == naive.replace(tzinfo=UTC) and out["created_at"].tzinfo is UTC


def test_notes_are_json_and_hold_no_secret():
    pbkdf2, md5 = django_pbkdf2(PLAIN), django_md5(PLAIN)
    results = [
        run(d2.transform_teacher, teacher(media_password=MEDIA_PASSWORD, password=pbkdf2)),
        run(d2.transform_teacher, teacher(password=md5, is_active=False)),
        run(d2.transform_observer, observer(password=pbkdf2, name="y" * 90)),
        run(d2.transform_student, student(name="x" * 80, device_id="d" * 200), STUDENT_CTX),
        run(d2.transform_media, media()),
    ]
    for result in results:
        text = json.dumps([[n.kind, n.detail] for n in result.notes], ensure_ascii=False)
        secrets = [PLAIN, PIN, MEDIA_PASSWORD, pbkdf2, md5, *pbkdf2.split("$")[2:], *md5.split("$")[1:]]
        if "password_hash" in result.row:
            secrets.append(result.row["password_hash"])
        for secret in secrets:
            assert secret not in text
    for result in results[3:]:  # the PIN is neither copied nor attributed into the row
        assert PIN not in json.dumps(result.row, default=str)


def test_transform_context_gains_optional_maps():
    ctx = t.TransformContext()
    assert ctx.duplicate_emails == {} and ctx.student_homes == {}
    with pytest.raises(AttributeError):
        HOME.school_id = 1  # frozen


# --- teachers: skip, role, username, e-mail ---------------------------------------

def test_login_artefacts_are_skipped_like_the_plan_profile():
    artefact = teacher(username="student_55")
    result = d2.transform_teacher(artefact, CTX)
    assert isinstance(result, t.Skip)
    assert result == t.transform_user(artefact, CTX)
    assert isinstance(d2.transform_teacher(teacher(username="student_55", is_staff=True), CTX), t.Transformed)


@pytest.mark.parametrize("is_superuser,is_staff,role", [
    (True, True, "ADMIN"), (True, False, "ADMIN"), (False, True, "TEACHER"), (False, False, "TEACHER"),
])
def test_teacher_role_from_legacy_flags(is_superuser, is_staff, role):
    result = run(d2.transform_teacher, teacher(is_superuser=is_superuser, is_staff=is_staff))
    assert result.row["role"] == role == dd.Role[role].name
    assert note(result, "role") == {"role": role}
    assert result.row["type"] == dd.TYPE_USER == dd.ROLE_TYPES[dd.Role[role]]


@pytest.mark.parametrize("username,why", [
    ("mfrizzle", None),
    ("legacy-teacher-x", None),
    ("my-legacy-teacher-9", None),
    ("u" * dd.USERNAME_MAX, None),
    ("u" * (dd.USERNAME_MAX + 1), "too_long"),
    ("", "empty"),
    (None, "empty"),
    ("   ", "empty"),
    ("legacy-teacher-9", "reserved"),
    ("legacy-student-7", "reserved"),
    ("LEGACY-Observer-3", "reserved"),
    ("legacy-unowned-sessions", "reserved"),
    ("legacy-observer-3@observers.invalid", "reserved"),  # another user's synthesized e-mail
])
def test_teacher_username_kept_or_synthesized(username, why):
    result = run(d2.transform_teacher, teacher(username=username))
    if why is None:
        assert result.row["username"] == username and "synthesized_username" not in kinds(result)
    else:
        assert result.row["username"] == "legacy-teacher-7"
        assert note(result, "synthesized_username") == {"why": why}


EMAIL_CASES = [
    ("frizzle@school.org", {}, "frizzle@school.org", None),
    ("  frizzle@school.org \n", {}, "frizzle@school.org", None),
    ("legacy-teacher-5@example.org", {}, "legacy-teacher-5@example.org", None),
    ("e" * (dd.EMAIL_MAX - 4) + "@x.o", {}, "e" * (dd.EMAIL_MAX - 4) + "@x.o", None),
    ("e" * (dd.EMAIL_MAX - 3) + "@x.o", {}, None, "too_long"),
    ("", {}, None, "empty"),
    (None, {}, None, "empty"),
    ("   ", {}, None, "empty"),
    ("shared@school.org", {7: "duplicate"}, None, "duplicate"),
    ("shared@school.org", {8: "duplicate"}, "shared@school.org", None),
    ("legacy-student-7@students.invalid", {}, None, "reserved"),
    ("Legacy-Teacher-12@TEACHERS.invalid", {}, None, "reserved"),
    ("legacy-unowned-sessions@teachers.invalid", {}, None, "reserved"),
    ("legacy-observer-2", {}, None, "reserved"),  # another user's synthesized username
]


@pytest.mark.parametrize("kind,transform,make", [
    ("teacher", d2.transform_teacher, teacher), ("observer", d2.transform_observer, observer),
])
@pytest.mark.parametrize("email,duplicates,kept,why", EMAIL_CASES)
def test_email_kept_or_synthesized(kind, transform, make, email, duplicates, kept, why):
    result = run(transform, make(email=email), t.TransformContext(duplicate_emails=duplicates))
    if why is None:
        assert result.row["email"] == kept and "synthesized_email" not in kinds(result)
    else:
        assert result.row["email"] == f"legacy-{kind}-7@{kind}s.invalid"
        assert note(result, "synthesized_email") == {"why": why}


def test_synthesized_names_never_collide():
    ids = range(1, 40)
    rows = (
        [run(d2.transform_teacher, teacher(id=i, username="", email="")).row for i in ids]
        + [run(d2.transform_observer, observer(id=i, email=None)).row for i in ids]
        + [run(d2.transform_student, student(id=i), t.TransformContext(student_homes={i: HOME})).row
           for i in ids]
    )
    usernames, emails = [r["username"] for r in rows], [r["email"] for r in rows]
    assert len(set(usernames)) == len(usernames) and len(set(emails)) == len(emails)
    assert not {e.lower() for e in emails} & {u.lower() for u in usernames}
    # A legacy value equal to any synthesized one is itself replaced: no collision possible.
    for value in usernames + emails:
        out = run(d2.transform_teacher, teacher(id=999, username=value, email=value)).row
        assert (out["username"], out["email"]) == ("legacy-teacher-999", "legacy-teacher-999@teachers.invalid")


# --- passwords -----------------------------------------------------------------------

CONVERTIBLE = {
    "pbkdf2_sha256": lambda p: django_pbkdf2(p, "sha256"),
    "pbkdf2_sha1": lambda p: django_pbkdf2(p, "sha1"),
    "scrypt": django_scrypt,
}
NOT_CONVERTIBLE = {
    "argon2": django_argon2,
    "bcrypt_sha256": django_bcrypt_sha256,
    "md5": django_md5,
    "unusable": lambda p: "!k3Jd8sA0qWmZ",
    "empty": lambda p: "",
    "empty (NULL)": lambda p: None,
}
USER_TRANSFORMS = [(d2.transform_teacher, teacher), (d2.transform_observer, observer)]


@pytest.mark.parametrize("transform,make", USER_TRANSFORMS)
@pytest.mark.parametrize("hasher", sorted(CONVERTIBLE))
def test_convertible_hashes_log_in_as_the_app_checks_them(transform, make, hasher):
    result = run(transform, make(password=CONVERTIBLE[hasher](PLAIN)))
    stored = result.row["password_hash"]
    assert check_password_hash(stored, PLAIN)
    assert not check_password_hash(stored, PLAIN + "x")
    assert note(result, "password") == {"hasher": hasher, "outcome": "converted"}


@pytest.mark.parametrize("transform,make", USER_TRANSFORMS)
@pytest.mark.parametrize("name", sorted(NOT_CONVERTIBLE))
def test_other_hashes_become_unusable_and_fail_cleanly(transform, make, name):
    result = run(transform, make(password=NOT_CONVERTIBLE[name](PLAIN)))
    assert result.row["password_hash"] == d2.UNUSABLE_PASSWORD
    assert check_password_hash(result.row["password_hash"], PLAIN) is False  # no exception
    assert note(result, "password") == {"hasher": name.split(" ")[0], "outcome": "must_reset",
                                        "login": result.row["username" if make is teacher else "email"]}


@pytest.mark.parametrize("transform,make", USER_TRANSFORMS)
def test_inactive_users_get_an_unusable_password(transform, make):
    result = run(transform, make(is_active=False, password=django_pbkdf2(PLAIN)))
    assert result.row["password_hash"] == d2.UNUSABLE_PASSWORD
    assert not check_password_hash(result.row["password_hash"], PLAIN)
    assert note(result, "password") == {"hasher": "pbkdf2_sha256", "outcome": "inactive",
                                        "login": result.row["username" if make is teacher else "email"]}


def test_a_converted_hash_too_long_for_the_column_must_reset():
    result = run(d2.transform_teacher, teacher(password=django_pbkdf2(PLAIN, salt="s" * 200)))
    assert result.row["password_hash"] == d2.UNUSABLE_PASSWORD
    assert note(result, "password")["outcome"] == "must_reset"


# --- teachers: school, timestamps, dropped columns ---------------------------------

def test_teacher_school_and_district():
    out = run(d2.transform_teacher, teacher(school="  walkerville   ELEMENTARY ")).row
    assert out["school_id"] == d2.school_key(3, "Walkerville Elementary") and out["district_id"] == 3
    result = run(d2.transform_teacher, teacher(district_id=None))
    assert result.row["school_id"] is None and result.row["district_id"] is None
    assert note(result, "no_school") == {}
    assert "no_school" not in kinds(run(d2.transform_teacher, teacher()))


@pytest.mark.parametrize("last_login,updated_at", [
    (None, T0), (T0 + dt.timedelta(days=3), T0 + dt.timedelta(days=3)), (T0 - dt.timedelta(days=3), T0),
])
def test_teacher_timestamps(last_login, updated_at):
    out = run(d2.transform_teacher, teacher(last_login=last_login)).row
    assert out["created_at"] == T0 and out["updated_at"] == updated_at


@pytest.mark.parametrize("media_password,dropped", [(MEDIA_PASSWORD, True), ("", False), (None, False)])
def test_media_password_is_dropped_and_noted(media_password, dropped):
    result = run(d2.transform_teacher, teacher(media_password=media_password, profile_picture="p.png"))
    assert ("media_password_dropped" in kinds(result)) is dropped
    assert MEDIA_PASSWORD not in json.dumps(result.row, default=str)


# --- shortening ------------------------------------------------------------------------

LONG = [
    (d2.transform_teacher, teacher, CTX, "first_name", dd.NAME_MAX),
    (d2.transform_teacher, teacher, CTX, "last_name", dd.NAME_MAX),
    (d2.transform_student, student, STUDENT_CTX, "character_name", dd.NAME_MAX),
    (d2.transform_student, student, STUDENT_CTX, "device_id", 128),
    (d2.transform_comment, comment, CTX, "device_id", 128),
]


@pytest.mark.parametrize("transform,make,ctx,column,length", LONG)
def test_names_and_device_ids_are_shortened_to_the_column(transform, make, ctx, column, length):
    source = "name" if column == "character_name" else column
    at_limit = run(transform, make(**{source: "é" * length}), ctx)
    assert at_limit.row[column] == "é" * length and "shortened" not in kinds(at_limit)
    over = run(transform, make(**{source: "é" * (length + 37)}), ctx)
    assert over.row[column] == "é" * length
    assert note(over, "shortened") == {"columns": column, "lengths": str(length + 37)}


def test_observer_names_are_shortened_after_the_split():
    result = run(d2.transform_observer, observer(name="a" * 70 + " " + "b" * 66))
    assert (result.row["first_name"], result.row["last_name"]) == ("a" * 64, "b" * 64)
    assert [n.detail for n in result.notes if n.kind == "shortened"] == [
        {"columns": "first_name,last_name", "lengths": "70,66"}]


def test_other_over_long_values_are_left_for_validate_row():
    out = run(d2.transform_session, session(name="n" * 200)).row
    assert out["name"] == "n" * 200
    assert t.validate_row(out, TABLE["sessions"]) == t.Reject("name: 200 characters, column holds 128")


# --- observers ---------------------------------------------------------------------------

@pytest.mark.parametrize("name,first,last", [
    ("Ada Lovelace", "Ada", "Lovelace"),
    ("Ada King Lovelace", "Ada King", "Lovelace"),
    ("  Ada   Lovelace ", "Ada", "Lovelace"),
    ("Cher", "Cher", None),
    ("", None, None),
])
def test_observer_name_split_on_the_last_space(name, first, last):
    out = run(d2.transform_observer, observer(name=name)).row
    assert (out["first_name"], out["last_name"]) == (first, last)


def test_observer_columns():
    result = run(d2.transform_observer, observer(is_active=True, created_by_id=9, district_id=4))
    out = result.row
    assert (out["type"], out["role"], out["username"]) == ("observer", "OBSERVER", "legacy-observer-7")
    assert dd.ROLE_TYPES[dd.Role.OBSERVER] == out["type"]
    assert note(result, "synthesized_username") == {"why": "none_in_legacy"}
    assert (out["school_id"], out["district_id"], out["is_active"], out["created_by_id"]) == (None, 4, True, 9)
    assert out["created_at"] == out["updated_at"] == T0


# --- schools ----------------------------------------------------------------------------

@pytest.mark.parametrize("text,normalized", [
    ("Walkerville Elementary", "walkerville elementary"),
    ("  Walkerville \t  ELEMENTARY\n", "walkerville elementary"),
    ("Straße", "strasse"),
    ("", ""), ("   ", ""), (None, ""),
])
def test_normalize_school(text, normalized):
    assert d2.normalize_school(text) == normalized


def test_school_key_is_deterministic_positive_and_normalised():
    key = d2.school_key(3, "Walkerville Elementary")
    assert 0 < key < 2**62 and key != d2.UNOWNED_OWNER_ID
    assert key == d2.school_key(3, " walkerville  ELEMENTARY ")
    assert key != d2.school_key(4, "Walkerville Elementary")
    assert key != d2.school_key(3, "Walkerville Middle")
    assert d2.school_key(3, None) == d2.school_key(3, "") == d2.school_key(3, "  ")
    assert d2.school_key(None, "Walkerville Elementary") is None


def test_school_key_is_the_same_in_another_process():
    code = ("from migration_bridge.profiles.datadeckv2_transforms import school_key\n"
            "print(school_key(3, 'Walkerville Elementary'))")
    env = dict(os.environ, PYTHONHASHSEED="random")  # hash() would differ
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env,
                         cwd=Path(__file__).resolve().parent.parent).stdout
    assert int(out) == d2.school_key(3, "Walkerville Elementary")


def _teachers(*specs):
    return [teacher(id=i, school=school, district_id=district, date_joined=joined, **extra)
            for i, school, district, joined, extra in specs]


def test_derive_schools_groups_by_district_and_normalised_text():
    day = dt.timedelta(days=1)
    schools = d2.derive_schools(_teachers(
        (5, "Lincoln High ", 1, T0 + 2 * day, {}),
        (6, "lincoln  high", 1, T0, {}),
        (7, "Lincoln High", 1, T0 + day, {}),
        (8, "Lincoln High", 2, T0 + 5 * day, {}),  # same text, other district: another school
        (9, "", 1, T0 + day, {}),
        (10, None, 1, T0, {}),
        (11, "Ghost", None, T0, {}),  # no district
        (12, "Artefact", 1, T0, {"username": "student_12"}),  # login artefact
    ))
    by_key = {(s["district_id"], s["name"]): s for s in schools}
    assert set(by_key) == {(1, "Lincoln High"), (2, "Lincoln High"), (1, "Unknown school")}
    assert [s["id"] for s in schools] == sorted(s["id"] for s in schools)
    lincoln = by_key[(1, "Lincoln High")]
    assert lincoln["id"] == d2.school_key(1, "LINCOLN HIGH") and lincoln["code"] is None
    assert lincoln["created_at"] == lincoln["updated_at"] == T0 and lincoln["created_at"].tzinfo is UTC
    assert by_key[(1, "Unknown school")]["id"] == d2.school_key(1, None)
    # every teacher's school_id names a derived school
    for row in _teachers((5, "Lincoln High ", 1, T0, {}), (9, "", 1, T0, {})):
        assert run(d2.transform_teacher, row).row["school_id"] in {s["id"] for s in schools}


@pytest.mark.parametrize("spellings,name", [
    ([(5, "Lincoln High"), (6, "LINCOLN HIGH"), (7, "LINCOLN HIGH")], "LINCOLN HIGH"),  # most frequent
    ([(6, "LINCOLN HIGH"), (5, "Lincoln High")], "Lincoln High"),  # tie: lowest teacher id
    ([(9, "lincoln high"), (3, " LINCOLN HIGH  "), (4, "lincoln high"), (2, "LINCOLN HIGH")], "LINCOLN HIGH"),
])
def test_derive_schools_names_the_group_by_its_usual_spelling(spellings, name):
    (school,) = d2.derive_schools(_teachers(*[(i, s, 1, T0, {}) for i, s in spellings]))
    assert school["name"] == name


def test_derived_school_names_are_shortened():
    (school,) = d2.derive_schools(_teachers((1, "s" * 300, 1, T0, {})))
    assert school["name"] == "s" * dd.SCHOOL_NAME_MAX


# --- modules ---------------------------------------------------------------------------

def test_derive_modules_from_the_codes_in_use():
    day = dt.timedelta(days=1)
    modules = d2.derive_modules([("4", T0 + day), ("2", T0 + 3 * day), ("4", T0), ("4", T0 + 2 * day),
                                 ("9", T0 - day), ("", T0), (None, T0)])
    assert modules == [
        {"id": 2, "name": "Module 2", "description": "Migrated from the legacy app's module code '2'",
         "is_active": True, "sort_order": 2, "created_at": T0 + 3 * day, "updated_at": T0 + 3 * day},
        {"id": 4, "name": "Module 4", "description": "Migrated from the legacy app's module code '4'",
         "is_active": True, "sort_order": 4, "created_at": T0, "updated_at": T0},
    ]
    assert all(m["created_at"].tzinfo is UTC for m in modules)
    assert d2.derive_modules([("4", T0)])[0]["id"] == 4 and d2.derive_modules([]) == []


# --- sessions --------------------------------------------------------------------------

@pytest.mark.parametrize("module,module_id", [("2", 2), ("4", 4)])
def test_session_module_id(module, module_id):
    assert run(d2.transform_session, session(module=module)).row["module_id"] == module_id


@pytest.mark.parametrize("module", ["3", "", None, "44", 4])
def test_session_with_an_unknown_module_is_rejected(module):
    assert d2.transform_session(session(module=module), CTX) == t.Reject(
        f"module: invalid value {module!r} (allowed: ['2', '4'])")


def test_session_without_teacher_goes_to_the_unowned_owner():
    result = run(d2.transform_session, session(created_by_id=None))
    assert result.row["created_by_id"] == d2.UNOWNED_OWNER_ID
    assert note(result, "unowned_session") == {}
    assert "unowned_session" not in kinds(run(d2.transform_session, session()))


def test_older_duplicate_session_is_archived_like_the_plan_profile():
    archived_at = T0 + dt.timedelta(days=9)
    ctx = t.TransformContext(archived_sessions={11: archived_at})
    result = run(d2.transform_session, session(), ctx)
    out = result.row
    assert (out["is_archived"], out["archived_at"], out["original_name"]) == (True, archived_at, "Period 2")
    assert out["updated_at"] == archived_at and out["created_at"] == T0
    assert result.notes == t.transform_session(session(), ctx).notes
    assert kinds(result) == ["archived_duplicate"]
    plain = run(d2.transform_session, session()).row
    assert (plain["is_archived"], plain["archived_at"], plain["updated_at"]) == (False, None, T0)


def test_unowned_owner_is_a_teacher_nobody_can_log_in_as():
    result = run(d2.transform_teacher, d2.unowned_owner(T0))
    out = result.row
    assert out["id"] == d2.UNOWNED_OWNER_ID
    assert (out["username"], out["email"]) == ("legacy-unowned-sessions", "legacy-unowned-sessions@teachers.invalid")
    assert (out["role"], out["type"], out["created_at"]) == ("TEACHER", "user", T0)
    assert out["password_hash"] == d2.UNUSABLE_PASSWORD
    assert note(result, "password") == {"hasher": "unusable", "outcome": "inactive",
                                        "login": "legacy-unowned-sessions"}
    assert not {"synthesized_username", "synthesized_email"} & set(kinds(result))


# --- students ----------------------------------------------------------------------------

def test_student_columns_and_home():
    result = run(d2.transform_student, student(), STUDENT_CTX)
    out = result.row
    assert (out["type"], out["role"]) == ("student", "STUDENT") and dd.ROLE_TYPES[dd.Role.STUDENT] == "student"
    assert (out["username"], out["email"]) == ("legacy-student-7", "legacy-student-7@students.invalid")
    assert out["password_hash"] == d2.UNUSABLE_PASSWORD and not check_password_hash(out["password_hash"], PIN)
    assert (out["first_name"], out["last_name"]) == (None, None)
    assert (out["district_id"], out["school_id"]) == (HOME.district_id, HOME.school_id)
    assert out["created_at"] == out["updated_at"] == T0
    assert (out["character_name"], out["character_description"]) == ("Iron Man", "Genius")
    assert (out["teacher_id"], out["section_id"], out["device_id"]) == (7, 11, "dev-1")
    assert out["pin_hash"] is None and out["current_pin"] is None
    assert PIN not in out.values() and result.notes == []


def test_student_without_a_home_is_rejected():
    assert d2.transform_student(student(section_id=404), CTX) == t.Reject(
        "section_id: sessions id 404 not found (missing in the source)")


# --- media, comments, interactions, districts -------------------------------------------

@pytest.mark.parametrize("media_type", ["comment", "audio"])
def test_media_other_than_image_or_video_is_skipped(media_type):
    assert d2.transform_media(media(media_type=media_type), CTX) == t.Skip(
        f"media_type {media_type!r}: the Flask app stores only image and video posts")


@pytest.mark.parametrize("media_type", ["image", "video"])
def test_media_columns(media_type):
    ctx = t.TransformContext(attributions={21: t.Attribution("student", student_id=8, candidates=1)})
    result = run(d2.transform_media, media(media_type=media_type, student_id=None), ctx)
    out = result.row
    assert out["media_type"] == media_type and out["student_id"] == 8  # the plan's attribution
    assert out["project_group"] == str(uuid.UUID(int=5))
    assert out["uploaded_at"] == out["created_at"] == out["updated_at"] == T0
    assert not {"submitted_password", "image_file", "video_file", "project_images"} & set(out)
    assert kinds(result) == ["attribution"]


def test_media_with_bad_project_images_is_rejected_like_the_plan_profile():
    assert d2.transform_media(media(project_images="{not json"), CTX) == t.Reject(
        "project_images: invalid JSON, not a list of URLs")


def test_comment_and_interaction_columns():
    out = run(d2.transform_comment, comment(parent_id=30, is_admin=True)).row
    assert (out["media_id"], out["parent_id"], out["text"], out["name"]) == (21, 30, "Nice graph", "Iron Man")
    assert (out["is_admin"], out["student_id"], out["updated_at"]) == (True, 7, T0 + dt.timedelta(hours=1))
    assert "admin_avatar" not in out
    inter = run(d2.transform_interaction, interaction()).row
    assert inter == {**interaction(), "created_at": T0, "updated_at": T0 + dt.timedelta(1)}


def test_district_drops_is_active():
    out = run(d2.transform_district, dict(id=3, name="North", code=None, is_active=False, created_at=T0)).row
    assert out == {"id": 3, "name": "North", "code": None, "created_at": T0, "updated_at": T0}


def test_derived_rows_pass_through_as_copies():
    school = d2.derive_schools([teacher()])[0]
    out = run(d2.transform_school, school).row
    assert out == school and out is not school


# --- students the app's PIN login cannot tell apart ----------------------------------------

def test_shared_pins_are_scoped_by_what_the_login_form_can_narrow():
    scopes = d2.shared_pin_scopes([
        (1, "11111", 3, 30), (2, "11111", 3, 30),  # same school: even district + school cannot part them
        (3, "22222", 3, 30), (4, "22222", 3, 31),  # same district, other schools: picking the school parts them
        (5, "33333", 3, 30), (6, "33333", 4, 40),  # other districts: picking the district parts them
        (7, "44444", None, None), (8, "44444", 4, 40),  # no district: only findable with nothing picked
        (9, "55555", 3, 30),  # alone
    ])
    assert scopes == {1: "school", 2: "school", 3: "district", 4: "district", 5: "all", 6: "all",
                      7: "all", 8: "all"}


def test_a_student_sharing_a_pin_is_noted_without_the_pin():
    ctx = t.TransformContext(student_homes={7: HOME}, shared_pins={7: "school"})
    result = run(d2.transform_student, student(), ctx)
    assert note(result, "shared_pin") == {"scope": "school"}
    assert PIN not in json.dumps([n.detail for n in result.notes])
    assert "shared_pin" not in kinds(run(d2.transform_student, student(), STUDENT_CTX))
