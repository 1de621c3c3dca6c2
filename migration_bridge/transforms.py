"""Row transforms: pure functions, source row (dict of Django attnames) in, target row out.

No database access here: whatever a transform needs from other rows arrives in the
``TransformContext`` (built by the pipeline), so every function is unit-testable.
"""
from __future__ import annotations

import datetime as dt
import functools
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import sqlalchemy as sa

from .passwords import convert_django_hash


@dataclass(frozen=True)
class Root:
    """The source row whose own data caused a reject, and why."""

    entity: str
    id: int
    reason: str

    def label(self) -> str:
        return f"{self.entity}#{self.id}: {self.reason}"

    def as_dict(self) -> dict:
        return {"entity": self.entity, "id": self.id, "reason": self.reason}


@dataclass(frozen=True)
class Reject:
    reason: str
    root: Root | None = None  # set when a rejected parent caused it: the parent's root


@dataclass(frozen=True)
class Skip:
    """Not migrated on purpose (counted as skipped, not as rejected)."""

    reason: str


@dataclass(frozen=True)
class Note:
    """Something the report lists about one row (never a secret)."""

    kind: str
    detail: Mapping[str, Any]


@dataclass
class Transformed:
    row: dict
    notes: list[Note] = field(default_factory=list)


@dataclass(frozen=True)
class Attribution:
    """Who posted a media row whose ``student`` is NULL, inferred from ``submitted_password``."""

    kind: str  # student | teacher | ambiguous | unmatched
    student_id: int | None = None
    teacher_id: int | None = None
    candidates: int = 0


@dataclass(frozen=True)
class StudentHome:
    """Where a student belongs in a target whose users rows carry district and school
    (datadeckv2); students have no timestamp of their own, so their session's is used."""

    district_id: int | None
    school_id: int | None
    created_at: dt.datetime


@dataclass
class TransformContext:
    static_base_url: str = "/static/"
    encrypt_media_password: Callable[[str], str] | None = None
    # session id -> archived_at, for older duplicate active sessions
    archived_sessions: Mapping[int, dt.datetime] = field(default_factory=dict)
    # media id -> Attribution (filled per batch by the pipeline)
    attributions: Mapping[int, Attribution] = field(default_factory=dict)
    # source id -> why this row may not keep its e-mail (datadeckv2: unique e-mails)
    duplicate_emails: Mapping[int, str] = field(default_factory=dict)
    # source id -> why this row may not keep its username (another user's, compared as the
    # target's collation compares)
    duplicate_usernames: Mapping[int, str] = field(default_factory=dict)
    # student id -> its StudentHome (datadeckv2)
    student_homes: Mapping[int, StudentHome] = field(default_factory=dict)
    # student id -> where the Flask app's PIN login meets another student with its PIN (datadeckv2)
    shared_pins: Mapping[int, str] = field(default_factory=dict)


# --- users and observers -------------------------------------------------------

LOGIN_ARTIFACT_USERNAME = re.compile(r"^student_\d+$")


def is_login_artifact(row: Mapping[str, Any]) -> bool:
    """A ``student_<id>`` account created by the PIN login: not a teacher."""
    return bool(
        LOGIN_ARTIFACT_USERNAME.match(row["username"] or "")
        and not row["is_staff"]
        and not row["is_superuser"]
    )


def password_columns(encoded: str | None) -> tuple[dict, Note]:
    outcome = convert_django_hash(encoded)
    columns = {
        "password_hash": outcome.password_hash,
        "legacy_password_hash": outcome.legacy_password_hash,
        "must_reset_password": outcome.must_reset_password,
    }
    return columns, Note("password", {"hasher": outcome.hasher, "outcome": outcome.outcome})


def transform_user(row: Mapping[str, Any], ctx: TransformContext) -> Transformed | Skip:
    if is_login_artifact(row):
        return Skip("student login artefact account (student_<id>), not a teacher")
    out = {k: row[k] for k in (
        "id", "username", "email", "first_name", "last_name", "school", "district_id", "is_active", "is_staff", "is_superuser", "last_login", "date_joined",
    )}
    media_password = row["media_password"]
    if media_password and ctx.encrypt_media_password is not None:
        media_password = ctx.encrypt_media_password(media_password)
    out["media_password"] = media_password
    columns, note = password_columns(row["password"])
    out.update(columns)
    return Transformed(out, [note])


def transform_observer(row: Mapping[str, Any], ctx: TransformContext) -> Transformed:
    out = {k: row[k] for k in (
        "id", "name", "email", "district_id", "is_active", "created_by_id", "created_at",
    )}
    columns, note = password_columns(row["password"])
    out.update(columns)
    return Transformed(out, [note])


# --- sessions ------------------------------------------------------------------

def find_superseded_sessions(
    active: list[tuple[int, int, int, dt.datetime]],
) -> dict[int, dt.datetime]:
    """Given active sessions as (id, teacher_id, section, created_at), return the older
    ones of every (teacher, section) group with more than one, mapped to the
    created_at of the newest (their archived_at)."""
    groups: dict[tuple[int, int], list[tuple[dt.datetime, int]]] = {}
    for session_id, teacher_id, section, created_at in active:
        groups.setdefault((teacher_id, section), []).append((created_at, session_id))
    superseded: dict[int, dt.datetime] = {}
    for members in groups.values():
        if len(members) > 1:
            members.sort()
            newest_created_at = members[-1][0]
            for _, session_id in members[:-1]:
                superseded[session_id] = newest_created_at
    return superseded


def transform_session(row: Mapping[str, Any], ctx: TransformContext) -> Transformed:
    out = dict(row)
    notes = []
    archived_at = ctx.archived_sessions.get(row["id"])
    if archived_at is not None:
        out["is_archived"] = True
        out["archived_at"] = archived_at
        out["original_name"] = row["original_name"] or row["name"]
        notes.append(Note("archived_duplicate", {
            "teacher_id": row["created_by_id"], "section": row["section"],
            "archived_at": archived_at.isoformat(),
        }))
    return Transformed(out, notes)


# --- students ------------------------------------------------------------------

def static_url(path: str | None, static_base_url: str) -> str | None:
    """A static path (``video_app/images/...``) as a URL under the static base."""
    if not path:
        return path
    if "://" in path or path.startswith(static_base_url):
        return path
    return static_base_url.rstrip("/") + "/" + path.lstrip("/")


def transform_student(row: Mapping[str, Any], ctx: TransformContext) -> Transformed:
    out = {k: row[k] for k in (
        "id", "name", "section_id", "admin_id", "device_id", "character_description",
    )}
    out["avatar_image_path"] = static_url(row["avatar_image_path"], ctx.static_base_url)
    # pin_hash is filled by the pipeline's process pool from the source "password" (the PIN).
    return Transformed(out)


# --- media ---------------------------------------------------------------------

def infer_author(
    matching_student_ids: list[int], teacher_id: int | None, matches_teacher_password: bool,
) -> Attribution:
    """Attribute a post from its ``submitted_password`` matches (computed by the caller)."""
    n = len(matching_student_ids)
    if n == 1 and not matches_teacher_password:
        return Attribution("student", student_id=matching_student_ids[0], candidates=1)
    if n == 0 and matches_teacher_password and teacher_id is not None:
        return Attribution("teacher", teacher_id=teacher_id, candidates=1)
    if n + int(matches_teacher_password) > 1:
        return Attribution("ambiguous", candidates=n + int(matches_teacher_password))
    return Attribution("unmatched")


def transform_media(row: Mapping[str, Any], ctx: TransformContext) -> Transformed | Reject:
    entries = row["project_images"]
    if entries is not None and not isinstance(entries, list):
        # Django hands back the raw text of invalid JSON, and a valid non-list as itself:
        # either would land in the target as something the Flask app cannot iterate.
        what = "invalid JSON" if isinstance(entries, str) else f"a JSON {type(entries).__name__}"
        return Reject(f"project_images: {what}, not a list of URLs")
    out = {k: row[k] for k in (
        "id", "session_id", "title", "description", "media_type",
        "uploaded_at", "graph_likes", "eye_likes", "read_likes", "graph_tag", "is_graph",
        "variable_tag", "student_id", "posted_by_admin_id", "is_project",
    )}  # the file columns come from the mapping's file rule (filerefs)
    group = row["project_group"]
    out["project_group"] = str(uuid.UUID(str(group))) if group not in (None, "") else None
    notes = []
    attribution = ctx.attributions.get(row["id"])
    if attribution is not None:
        if attribution.kind == "student":
            out["student_id"] = attribution.student_id
        elif attribution.kind == "teacher" and out["posted_by_admin_id"] is None:
            out["posted_by_admin_id"] = attribution.teacher_id
        notes.append(Note("attribution", {
            "kind": attribution.kind, "student_id": attribution.student_id,
            "teacher_id": attribution.teacher_id, "candidates": attribution.candidates,
        }))
    return Transformed(out, notes)


def copy_row(row: Mapping[str, Any], ctx: TransformContext) -> Transformed:
    return Transformed(dict(row))


# --- foreign keys --------------------------------------------------------------

def check_parents(
    row: Mapping[str, Any], foreign_keys: Mapping[str, str],
    present: Mapping[str, Any], gone: Mapping[str, Mapping[int, Root]],
) -> Reject | None:
    """Every FK of ``row`` must point at a row ``present`` in its parent table.

    A parent that was itself rejected or skipped (``gone``, with its root cause) takes
    the row along and hands it that root; a parent found nowhere is the row's own
    fault (an orphan in the source), so the row is the root."""
    orphans, cascades = [], []
    for column, parent in foreign_keys.items():
        value = row.get(column)
        if value is None or value in present[parent]:
            continue
        root = gone.get(parent, {}).get(value)
        if root is None:
            orphans.append(f"{column}: {parent} id {value} not found (missing in the source)")
        else:
            cascades.append((f"{column}: {parent} id {value} was rejected", root))
    if orphans:
        return Reject("; ".join(orphans + [reason for reason, _ in cascades]))
    if cascades:
        return Reject("; ".join(reason for reason, _ in cascades), root=cascades[0][1])
    return None


def root_of(entity: str, source_id: int, result: "Reject | Skip") -> Root:
    """The root a rejected or skipped row hands to the rows that depend on it."""
    if isinstance(result, Reject) and result.root is not None:
        return result.root
    prefix = "skipped: " if isinstance(result, Skip) else ""
    return Root(entity, source_id, prefix + result.reason)


# --- validation against the target table ----------------------------------------

@functools.lru_cache(maxsize=None)
def _column_rules(table: sa.Table) -> tuple[tuple[str, bool, int | None], ...]:
    """(name, required, max length) per column, computed once per table: this runs per row."""
    return tuple(
        (c.name, not c.nullable and not c.primary_key, getattr(c.type, "length", None))
        for c in table.columns
    )


HOLDS_NUL = "contains a NUL character, which PostgreSQL text cannot store"


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list):
        return any(_holds_nul(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    return False


def validate_row(
    row: Mapping[str, Any], table: sa.Table, choices: Mapping[str, frozenset] | None = None,
    filled_later: tuple[str, ...] = (),
) -> Reject | None:
    """Never truncate: a value the target column cannot hold rejects the row.

    A NUL character is refused on every target dialect: PostgreSQL (the production
    target) cannot store it in text, and one rule everywhere keeps outcomes comparable."""
    for name, required, length in _column_rules(table):
        value = row.get(name)
        if value is None:
            if required and name not in filled_later:
                return Reject(f"{name}: NULL in a NOT NULL column")
            continue
        kind = type(value)
        if kind is int or kind is bool or kind is dt.datetime:  # most values: neither too long nor holding NUL
            pass
        elif kind is str or isinstance(value, str):
            if length is not None and len(value) > length:
                return Reject(f"{name}: {len(value)} characters, column holds {length}")
            if "\x00" in value:
                return Reject(f"{name}: {HOLDS_NUL}")
        elif _holds_nul(value):
            return Reject(f"{name}: {HOLDS_NUL}")
        if choices and name in choices and value not in choices[name]:
            return Reject(f"{name}: invalid value {value!r} (allowed: {sorted(choices[name])})")
    return None


def row_validator(tables: tuple[sa.Table, ...], choices: Mapping[str, frozenset] | None = None,
                  filled_later: tuple[str, ...] = ()) -> Callable[[Mapping[str, Any]], Reject | None]:
    """``validate_row`` over ``tables`` in order, the first problem, as one function written
    for their columns: a row whose every value passes on the common path (None, an int,
    bool or datetime, a list or a str without NUL, a str within the length, an allowed
    choice) costs no call per column; any other row is handed to ``validate_row`` itself,
    which words the problem (and passes the other values it takes, e.g. a dict without NUL)."""
    choices = choices or {}
    scope: dict[str, Any] = {"_DATETIME": dt.datetime, "_holds_nul": _holds_nul}

    def general(row):
        return next((p for table in tables if (p := validate_row(row, table, choices, filled_later))), None)

    lines = ["def validate(row):", "    get = row.get"]
    for t, table in enumerate(tables):
        for k, (name, required, length) in enumerate(_column_rules(table)):
            refused = ""  # appended to a test that sends the row to ``general``
            if name in choices:
                scope[f"allowed_{t}_{k}"] = choices[name]
                refused = f" or v not in allowed_{t}_{k}"
            too_long = f"len(v) > {int(length)} or " if length is not None else ""
            lines += [
                f"    v = get({name!r})",
                "    if v is None:",
                "        return general(row)" if required and name not in filled_later else "        pass",
                "    elif type(v) is int or type(v) is bool or type(v) is _DATETIME:",
                f"        if False{refused}: return general(row)",
                "    elif type(v) is list:",  # a JSON list of URLs (project images)
                f"        if _holds_nul(v){refused}: return general(row)",
                f"    elif type(v) is not str or {too_long}'\\x00' in v{refused}:",
                "        return general(row)",
            ]
    lines.append("    return None")
    scope["general"] = general
    exec("\n".join(lines), scope)  # noqa: S102 - the code above, from column names as literals
    return scope["validate"]
