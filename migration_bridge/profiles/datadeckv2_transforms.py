"""Row transforms of the ``datadeckv2`` profile: legacy rows in, DataDeckv2 rows out.

Pure functions (no database, no Django), like ``migration_bridge.transforms``. Every row
stays in SOURCE id space: ``id`` and every foreign key hold legacy ids, which the engine
translates afterwards. An observer or student is one flat dict holding the columns of
``users`` and of its own table. docs/DATADECKV2.md §3 gives the reasons behind each rule.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import re
import unicodedata
from collections import Counter, defaultdict
from typing import Any, Iterable, Mapping

from flask_models import datadeckv2 as dd

from .. import transforms as t
from ..passwords import CONVERTED, convert_django_hash
from ..transforms import Note, Reject, Skip, StudentHome, TransformContext, Transformed

__all__ = [
    "MODULE_CODES", "StudentHome", "UNOWNED_OWNER_ID", "UNUSABLE_PASSWORD",
    "derive_modules", "derive_schools", "normalize_school", "school_key", "unowned_owner",
    "transform_comment", "transform_district", "transform_interaction", "transform_media",
    "transform_module", "transform_observer", "transform_school", "transform_session",
    "transform_student", "transform_teacher",
]

UTC = dt.timezone.utc

# No "$": werkzeug's check_password_hash returns False on it instead of raising.
UNUSABLE_PASSWORD = "!must-reset"

# The synthetic teacher who owns legacy sessions without one (sessions.created_by_id is
# NOT NULL). Above every real legacy id: it sorts last among the teachers, so the id map
# gives it a new id after they kept theirs.
UNOWNED_OWNER_ID = 2**62
UNOWNED_USERNAME = "legacy-unowned-sessions"
UNOWNED_EMAIL = "legacy-unowned-sessions@teachers.invalid"

MODULE_CODES = ("2", "4")
DEVICE_ID_MAX = dd.Student.__table__.c.device_id.type.length  # students and comments: 128
UNKNOWN_SCHOOL = "Unknown school"
LOGIN_ARTIFACT_REASON = "student login artefact account (student_<id>), not a teacher"

# What the migration synthesizes (below). Matched in any case: MariaDB's unique indexes
# ignore case, so "LEGACY-TEACHER-5" would collide with "legacy-teacher-5" there.
_SYNTHESIZED = re.compile(
    r"legacy-(teacher|observer|student)-\d+(@(teacher|observer|student)s\.invalid)?", re.IGNORECASE)

STUDENT_HOME_MISSING = "section_id: sessions id {} not found (missing in the source)"


def synthesized_username(kind: str, source_id: int) -> str:
    return f"legacy-{kind}-{source_id}"


def synthesized_email(kind: str, source_id: int) -> str:
    # .invalid is reserved (RFC 2606): never a real mailbox, never a real user's address.
    return f"legacy-{kind}-{source_id}@{kind}s.invalid"


def _is_reserved(value: str) -> bool:
    """A username or e-mail someone else gets from the migration. Both shapes are refused
    in both columns: the staff login looks a name up as e-mail first, then as username."""
    return bool(_SYNTHESIZED.fullmatch(value)) or value.lower() in (UNOWNED_USERNAME, UNOWNED_EMAIL)


def _is_owner(row: Mapping[str, Any]) -> bool:
    return row["id"] == UNOWNED_OWNER_ID


# --- small helpers ---------------------------------------------------------------

def utc(value: dt.datetime | None) -> dt.datetime | None:
    """Aware, in UTC. A naive value is read as UTC: the legacy app's TIME_ZONE is UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _shorten(out: dict, notes: list[Note], limits: Mapping[str, int]) -> None:
    """Names and device ids are cut to the column (and noted, in one note per row: a
    row holds one note of a kind); nothing else is."""
    cut = {}
    for column, length in limits.items():
        value = out.get(column)
        if isinstance(value, str) and len(value) > length:
            out[column] = value[:length]
            cut[column] = len(value)
    if cut:
        notes.append(Note("shortened", {"columns": ",".join(cut), "lengths": ",".join(map(str, cut.values()))}))


def _role(row: Mapping[str, Any]) -> str:
    """Superusers administer the app. ``is_staff`` is not a role in the legacy app: every
    teacher has it (the legacy teachers work in the Django admin), so it maps to TEACHER —
    STAFF would hide a teacher from the app's teacher pages and its observers' scope."""
    return dd.Role.ADMIN.name if row["is_superuser"] else dd.Role.TEACHER.name


def login_key(text: str | None) -> str:
    """A username or e-mail as a case- and accent-insensitive collation compares it (MariaDB's
    utf8mb4_unicode_ci: 'José' = 'jose'), trimmed: two logins with one key cannot both be stored."""
    decomposed = unicodedata.normalize("NFKD", (text or "").strip())
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _teacher_username(row: Mapping[str, Any], ctx: TransformContext, notes: list[Note]) -> str:
    username = row["username"] or ""
    if _is_owner(row):
        return username
    why = ("empty" if not username.strip()
           else "too_long" if len(username) > dd.USERNAME_MAX
           else "reserved" if _is_reserved(username)
           else ctx.duplicate_usernames.get(row["id"]))
    if why is None:
        return username
    notes.append(Note("synthesized_username", {"why": why}))
    return synthesized_username("teacher", row["id"])


def _email(kind: str, row: Mapping[str, Any], ctx: TransformContext, notes: list[Note]) -> str:
    email = (row["email"] or "").strip()
    if kind == "teacher" and _is_owner(row):
        return email
    why = ("empty" if not email
           else "too_long" if len(email) > dd.EMAIL_MAX
           else ctx.duplicate_emails.get(row["id"]))
    if why is None and _is_reserved(email):
        why = "reserved"
    if why is None:
        return email
    notes.append(Note("synthesized_email", {"why": why}))
    return synthesized_email(kind, row["id"])


def _password_hash(encoded: str | None, is_active: bool, notes: list[Note], login: str) -> str:
    """A werkzeug hash the app can check, or UNUSABLE_PASSWORD: this schema has no column
    to keep an argon2/bcrypt hash for upgrade (stored as is, the app's login would raise),
    and no is_active on users (an inactive user would be let in)."""
    outcome = convert_django_hash(encoded)
    if not is_active:
        value, result = UNUSABLE_PASSWORD, "inactive"
    elif outcome.outcome == CONVERTED and len(outcome.password_hash) <= dd.PASSWORD_HASH_MAX:
        value, result = outcome.password_hash, "converted"
    else:
        value, result = UNUSABLE_PASSWORD, "must_reset"
    detail = {"hasher": outcome.hasher, "outcome": result}
    if result != "converted":  # the must-reset list names who to reach
        detail["login"] = login
    notes.append(Note("password", detail))
    return value


def split_name(name: str | None) -> tuple[str | None, str | None]:
    """(first_name, last_name) split on the last space; one word is a first name."""
    first, _, last = (name or "").strip().rpartition(" ")
    if not first:  # one word (rpartition puts it last) or nothing
        return (last or None), None
    return first.strip(), last


# --- schools and modules (derived: the legacy app has neither table) -------------

def normalize_school(text: str | None) -> str:
    """What makes two free-text school names the same school."""
    return " ".join((text or "").split()).casefold()


def school_key(district_id: int | None, school_text: str | None) -> int | None:
    """The source id of a derived school: stable across runs and processes (no hash())."""
    if district_id is None:
        return None
    data = f"{district_id}\x1f{normalize_school(school_text)}".encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=7).digest(), "big") + 1  # 1 .. 2**56


def _school_name(members: list[Mapping[str, Any]]) -> str:
    """The spelling most teachers of the group use; ties go to the lowest teacher id."""
    members = sorted(members, key=lambda m: m["id"])
    spellings = [(m["school"] or "").strip() for m in members]
    counts = Counter(spellings)
    # max() keeps the first of equals, and spellings are in teacher-id order.
    return max(spellings, key=lambda s: counts[s])


def derive_schools(teachers: Iterable[Mapping[str, Any]]) -> list[dict]:
    """One schools row per district and normalised free-text school of its teachers."""
    groups: dict[tuple[int, str], list[Mapping[str, Any]]] = defaultdict(list)
    for row in teachers:
        if not t.is_login_artifact(row) and row["district_id"] is not None:
            groups[(row["district_id"], normalize_school(row["school"]))].append(row)
    schools = []
    for (district_id, normalized), members in groups.items():
        first_joined = min(utc(m["date_joined"]) for m in members)
        name = _school_name(members) if normalized else UNKNOWN_SCHOOL
        schools.append({
            "id": school_key(district_id, normalized), "name": name[:dd.SCHOOL_NAME_MAX],
            "code": None, "district_id": district_id,
            "created_at": first_joined, "updated_at": first_joined,
        })
    return sorted(schools, key=lambda s: s["id"])


def derive_modules(sessions: Iterable[tuple[str, dt.datetime]]) -> list[dict]:
    """One modules row per legacy module code in use: every session needs a module_id."""
    first_used: dict[str, dt.datetime] = {}
    for code, created_at in sessions:
        if code in MODULE_CODES:
            created_at = utc(created_at)
            first_used[code] = min(first_used.get(code, created_at), created_at)
    return [{
        "id": int(code), "name": f"Module {code}",
        "description": f"Migrated from the legacy app's module code '{code}'",
        "is_active": True, "sort_order": int(code),
        "created_at": first_used[code], "updated_at": first_used[code],
    } for code in sorted(first_used, key=int)]


def unowned_owner(first_created_at: dt.datetime) -> dict:
    """The legacy-shaped CustomAdmin row of the synthetic owner of teacherless sessions:
    inactive, with an unusable password, so nobody can log in as it."""
    return {
        "id": UNOWNED_OWNER_ID, "username": UNOWNED_USERNAME, "email": UNOWNED_EMAIL,
        "password": "!", "first_name": "Sessions", "last_name": "without a teacher",
        "school": None, "district_id": None, "is_active": False, "is_staff": False,
        "is_superuser": False, "last_login": None, "date_joined": first_created_at,
        "media_password": None, "profile_picture": None,
    }


# --- transforms ------------------------------------------------------------------

def transform_district(row: Mapping[str, Any], ctx: TransformContext | None = None) -> Transformed:
    created_at = utc(row["created_at"])  # is_active has no column
    return Transformed({"id": row["id"], "name": row["name"], "code": row["code"],
                        "created_at": created_at, "updated_at": created_at})


def transform_school(row: Mapping[str, Any], ctx: TransformContext | None = None) -> Transformed:
    return Transformed(dict(row))


def transform_module(row: Mapping[str, Any], ctx: TransformContext | None = None) -> Transformed:
    return Transformed(dict(row))  # derived rows are already target rows


def transform_teacher(row: Mapping[str, Any], ctx: TransformContext) -> Transformed | Skip:
    if t.is_login_artifact(row):
        return Skip(LOGIN_ARTIFACT_REASON)
    role = _role(row)
    notes = [Note("role", {"role": role})]
    created_at = utc(row["date_joined"])
    last_login = utc(row["last_login"])
    username = _teacher_username(row, ctx, notes)
    out = {
        "id": row["id"], "type": dd.TYPE_USER,
        "username": username,
        "email": _email("teacher", row, ctx, notes),
        "password_hash": _password_hash(row["password"], row["is_active"], notes, username),
        "first_name": row["first_name"], "last_name": row["last_name"], "role": role,
        "school_id": school_key(row["district_id"], row["school"]),
        "district_id": row["district_id"],
        "created_at": created_at,
        "updated_at": max(created_at, last_login) if last_login else created_at,
    }
    if out["school_id"] is None:
        notes.append(Note("no_school", {}))
    if row["media_password"]:  # no column in this schema; its value never leaves here
        notes.append(Note("media_password_dropped", {}))
    _shorten(out, notes, {"first_name": dd.NAME_MAX, "last_name": dd.NAME_MAX})
    return Transformed(out, notes)


def transform_observer(row: Mapping[str, Any], ctx: TransformContext) -> Transformed:
    notes = [Note("synthesized_username", {"why": "none_in_legacy"})]
    first_name, last_name = split_name(row["name"])
    created_at = utc(row["created_at"])
    email = _email("observer", row, ctx, notes)
    out = {
        "id": row["id"], "type": dd.TYPE_OBSERVER,
        "username": synthesized_username("observer", row["id"]),
        "email": email,
        "password_hash": _password_hash(row["password"], row["is_active"], notes, email),
        "first_name": first_name, "last_name": last_name, "role": dd.Role.OBSERVER.name,
        "school_id": None, "district_id": row["district_id"],
        "created_at": created_at, "updated_at": created_at,
        # observers
        "is_active": row["is_active"], "created_by_id": row["created_by_id"],
    }
    _shorten(out, notes, {"first_name": dd.NAME_MAX, "last_name": dd.NAME_MAX})
    return Transformed(out, notes)


SESSION_COLUMNS = (
    "id", "name", "original_name", "session_code", "section", "is_paused", "is_archived",
    "character_set", "created_by_id",
)


def transform_session(row: Mapping[str, Any], ctx: TransformContext) -> Transformed | Reject:
    module = row["module"]
    if module not in MODULE_CODES:
        return Reject(f"module: invalid value {module!r} (allowed: {sorted(MODULE_CODES)})")
    planned = t.transform_session(row, ctx)  # archives older duplicate active sessions
    notes = list(planned.notes)
    out = {k: planned.row[k] for k in SESSION_COLUMNS}
    out["module_id"] = int(module)
    out["created_at"] = utc(planned.row["created_at"])
    out["archived_at"] = utc(planned.row["archived_at"])
    out["updated_at"] = max(filter(None, (out["created_at"], out["archived_at"])))
    if out["created_by_id"] is None:  # NOT NULL here: the synthetic owner takes it
        out["created_by_id"] = UNOWNED_OWNER_ID
        notes.append(Note("unowned_session", {}))
    return Transformed(out, notes)


def transform_student(row: Mapping[str, Any], ctx: TransformContext) -> Transformed | Reject:
    home: StudentHome | None = ctx.student_homes.get(row["id"])
    if home is None:
        return Reject(STUDENT_HOME_MISSING.format(row["section_id"]))
    created_at = utc(home.created_at)
    notes: list[Note] = []
    out = {
        "id": row["id"], "type": dd.TYPE_STUDENT,
        "username": synthesized_username("student", row["id"]),
        "email": synthesized_email("student", row["id"]),
        # Students log in by PIN hash only; a usable password_hash would let the staff
        # login accept the PIN as well.
        "password_hash": UNUSABLE_PASSWORD,
        "first_name": None, "last_name": None, "role": dd.Role.STUDENT.name,
        "school_id": home.school_id, "district_id": home.district_id,
        "created_at": created_at, "updated_at": created_at,
        # students; the PIN ("password") is never copied: the engine's PIN pool hashes it
        "character_name": row["name"], "character_description": row["character_description"],
        "teacher_id": row["admin_id"], "section_id": row["section_id"],
        "device_id": row["device_id"], "pin_hash": None, "current_pin": None,
    }
    _shorten(out, notes, {"character_name": dd.NAME_MAX, "device_id": DEVICE_ID_MAX})
    scope = ctx.shared_pins.get(row["id"])
    if scope:  # the app's PIN login cannot tell this student from another: a new PIN before cutover
        notes.append(Note("shared_pin", {"scope": scope}))
    return Transformed(out, notes)


def shared_pin_scopes(students: Iterable[tuple[int, str, int | None, int | None]]) -> dict[int, str]:
    """Student id -> the narrowest choice of the app's student login form that still shows
    another student with the same PIN: ``school`` (district and school picked), ``district``
    (district picked), ``all`` (nothing picked; for a student without a district, the only
    way). Input: (id, PIN, district id, school id). The app checks candidates one after the
    other and logs in the first match: one of two such students can never log in there."""
    by_pin: dict[str, list[tuple[int, int | None, int | None]]] = defaultdict(list)
    for i, pin, district, school in students:
        by_pin[pin].append((i, district, school))
    scopes = {}
    for holders in by_pin.values():
        if len(holders) < 2:
            continue
        places = Counter((d, s) for _, d, s in holders)
        districts = Counter(d for _, d, _ in holders)
        for i, district, school in holders:
            if district is not None and places[(district, school)] > 1:
                scopes[i] = "school"
            elif district is not None and districts[district] > 1:
                scopes[i] = "district"
            else:
                scopes[i] = "all"
    return scopes


MEDIA_COLUMNS = (
    "id", "session_id", "title", "description", "media_type", "graph_likes", "eye_likes",
    "read_likes", "graph_tag", "is_graph", "variable_tag", "student_id", "posted_by_admin_id",
    "project_group", "is_project",
)  # the file columns come from the engine's file rule


def transform_media(row: Mapping[str, Any], ctx: TransformContext) -> Transformed | Reject | Skip:
    if row["media_type"] not in dd.MEDIA_TYPES:
        return Skip(f"media_type {row['media_type']!r}: the Flask app stores only image and video posts")
    planned = t.transform_media(row, ctx)  # project_group, author attribution
    if isinstance(planned, Reject):
        return planned
    out = {k: planned.row[k] for k in MEDIA_COLUMNS}
    # Always written: the column's server default is local time on PostgreSQL/MariaDB.
    out["uploaded_at"] = out["created_at"] = out["updated_at"] = utc(planned.row["uploaded_at"])
    return Transformed(out, list(planned.notes))


def transform_comment(row: Mapping[str, Any], ctx: TransformContext | None = None) -> Transformed:
    out = {k: row[k] for k in (
        "id", "media_id", "parent_id", "text", "name", "device_id", "is_admin", "student_id",
    )}  # admin_avatar comes from the engine's file rule
    out["created_at"], out["updated_at"] = utc(row["created_at"]), utc(row["updated_at"])
    notes: list[Note] = []
    _shorten(out, notes, {"device_id": DEVICE_ID_MAX})
    return Transformed(out, notes)


def transform_interaction(row: Mapping[str, Any], ctx: TransformContext | None = None) -> Transformed:
    out = {k: row[k] for k in (
        "id", "student_id", "media_id", "liked_graph", "liked_eye", "liked_read", "comment_count",
    )}
    out["created_at"], out["updated_at"] = utc(row["created_at"]), utc(row["updated_at"])
    return Transformed(out)
