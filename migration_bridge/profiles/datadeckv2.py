"""The ``datadeckv2`` profile: the real Flask rewrite, admiralorbiter/DataDeckv2, whose
schema ``flask_models.datadeckv2`` mirrors. Read top to bottom, this is everything the
export does to the rows; ``docs/DATADECKV2.md`` says why each decision was taken.

What differs from ``plan``: teachers, observers and students are all rows of one
``users`` table (observers and students with a sub-table row under the same id), so
their ids go through the id map (teachers keep theirs where free); ``schools`` and
``modules`` do not exist in the legacy app and are derived from it; every session needs
an owner and a module; uploads are keys under the app's ``static/uploads/`` folder.
"""
from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa

import flask_models.datadeckv2 as dd

from .. import transforms as t
from ..mapping import (
    LEGACY_ID_IF_FREE, NEW_ID, AccessRule, ByMeaning, Checks, Context, Counter, Entity, FileColumn, Page, Profile,
)
from . import datadeckv2_transforms as dt
from .plan import ARCHIVED_DUPLICATES, ATTRIBUTIONS, legacy_observer_scope, legacy_teacher_dashboards, pin_roster

# --- rows derived from the legacy DB (no legacy model holds them) -------------------------

TEACHER_FIELDS = ("id", "username", "is_staff", "is_superuser", "district_id", "school", "date_joined")


def derived_schools(source) -> list[dict]:
    """One school per district and distinct free-text ``school`` of its teachers."""
    return dt.derive_schools(dict(zip(TEACHER_FIELDS, row)) for row in source.values("CustomAdmin", TEACHER_FIELDS))


def derived_modules(source) -> list[dict]:
    """One module per legacy module code the sessions use."""
    return dt.derive_modules(source.values("Session", ("module", "created_at")))


def unowned_sessions_owner(source) -> list[dict]:
    """The placeholder teacher owning the sessions that have none (``created_by_id`` is
    NOT NULL in the app); only when there are such sessions."""
    unowned = source.objects("Session").filter(created_by_id__isnull=True).order_by("created_at")
    first = unowned.values_list("created_at", flat=True).first()
    return [dt.unowned_owner(first)] if first is not None else []


# --- what transforms take from other rows (queries on the legacy DB) -----------------------

LOGIN_SOURCES = (("users", "CustomAdmin", ("id", "email", "username", "is_staff", "is_superuser")),
                 ("observers", "Observer", ("id", "email")))


def _logins(source):
    """(entity, id, e-mail, username or None) of every user who may log in: teachers
    (login artefacts left out) in id order, then observers in id order."""
    for entity, model, fields in LOGIN_SOURCES:
        for row in source.values(model, fields):
            row = dict(zip(fields, row))
            if entity == "users" and t.is_login_artifact(row):
                continue
            yield entity, row["id"], row["email"], row.get("username")


def duplicate_emails(source, entity, loaded, rows=None) -> dict:
    """Id -> "duplicate" for the rows of ``entity`` whose e-mail another user keeps: the
    first holder keeps it (teachers by id, then observers by id), compared by ``login_key``
    (``users.email`` is unique, case- and accent-insensitively on MariaDB)."""
    owners: dict[str, tuple[str, int]] = {}
    for kind, i, email, _ in _logins(source):
        if dt.login_key(email):
            owners.setdefault(dt.login_key(email), (kind, i))
    return {i: "duplicate" for kind, i, email, _ in _logins(source)
            if kind == entity.name and dt.login_key(email) and owners[dt.login_key(email)] != (kind, i)}


def duplicate_usernames(source, entity, loaded, rows=None) -> dict:
    """Teacher id -> why its username cannot be kept: another teacher's (lowest id keeps it),
    or another user's e-mail (the app looks a login up as an e-mail first: this teacher
    could never log in by name)."""
    emails = {dt.login_key(email): (kind, i) for kind, i, email, _ in _logins(source) if dt.login_key(email)}
    owners: dict[str, int] = {}
    result = {}
    for kind, i, email, username in _logins(source):
        if kind != "users" or not dt.login_key(username):
            continue
        key = dt.login_key(username)
        if owners.setdefault(key, i) != i:
            result[i] = "duplicate"
        elif emails.get(key, (kind, i)) != (kind, i):
            result[i] = "another_users_email"
    return result


def student_homes(source, entity, loaded, rows) -> dict:
    """Student id -> its teacher's district and school (the app's student login filters by
    them) and its session's ``created_at`` (students have no timestamp of their own)."""
    teachers = {r["admin_id"] for r in rows}
    sessions = {r["section_id"] for r in rows}
    home_of = {i: (district, dt.school_key(district, school)) for i, district, school in
               source.objects("CustomAdmin").filter(id__in=teachers).values_list("id", "district_id", "school")}
    created = dict(source.objects("Session").filter(id__in=sessions).values_list("id", "created_at"))
    return {r["id"]: dt.StudentHome(*home_of.get(r["admin_id"], (None, None)), created[r["section_id"]])
            for r in rows if r["section_id"] in created}


def homes_changed(source, entity, changed) -> set[int]:
    """The students whose teacher or session changed: their home may have."""
    ids: set[int] = set()
    for field, parent in (("admin_id", "users"), ("section_id", "sessions")):
        parents = sorted(changed.get(parent, ()))
        for start in range(0, len(parents), 10_000):
            ids.update(source.ids_where(entity, **{f"{field}__in": parents[start:start + 10_000]}))
    return ids


def shared_pins(source, entity, loaded, rows=None) -> dict:
    """Student id -> where the app's PIN login meets another migrated student with the same
    PIN (legacy PINs are unique per session only). Plain PINs are compared here in memory and
    never leave this function."""
    students = source.objects("Student").order_by("pk").values_list(
        "id", "password", "section_id", "admin_id", "admin__district_id", "admin__school")
    return dt.shared_pin_scopes(
        (i, pin, district, dt.school_key(district, school))
        for i, pin, session, teacher, district, school in students.iterator(chunk_size=20_000)
        if session in loaded["sessions"] and teacher in loaded["users"] and pin)


# --- the entities, parents first ----------------------------------------------------------

UPLOADS = "/static/uploads/"  # where the app serves its static/uploads/ folder

ENTITIES: tuple[Entity, ...] = (
    Entity(
        name="districts",
        source_model="District",
        target=dd.District.__table__,
        source_fields=("id", "name", "code", "is_active", "created_at"),
        transform=dt.transform_district,  # is_active has no column
    ),
    Entity(
        name="schools",
        source_model=None,
        derived=derived_schools,
        target=dd.School.__table__,
        source_fields=("id", "name", "code", "district_id", "created_at", "updated_at"),
        transform=dt.transform_school,
        foreign_keys={"district_id": "districts"},
        target_ids=NEW_ID,
    ),
    Entity(
        name="modules",
        source_model=None,
        derived=derived_modules,
        target=dd.Module.__table__,
        source_fields=("id", "name", "description", "is_active", "sort_order", "created_at", "updated_at"),
        transform=dt.transform_module,
        target_ids=NEW_ID,
    ),
    Entity(
        name="users",
        source_model="CustomAdmin",
        derived=unowned_sessions_owner,
        target=dd.User.__table__,
        source_fields=(
            "id", "username", "email", "password", "first_name", "last_name", "school",
            "district_id", "media_password", "profile_picture", "is_active", "is_staff",
            "is_superuser", "last_login", "date_joined",
        ),
        transform=dt.transform_teacher,  # role from the flags; unusable password unless convertible
        foreign_keys={"district_id": "districts", "school_id": "schools"},
        contexts=(Context("duplicate_emails", duplicate_emails), Context("duplicate_usernames", duplicate_usernames)),
        secret_fields=("password", "media_password"),
        secret_columns=("password_hash",),
        target_ids=LEGACY_ID_IF_FREE,
    ),
    Entity(
        name="observers",
        source_model="Observer",
        target=dd.User.__table__,
        also=(dd.Observer.__table__,),
        source_fields=(
            "id", "name", "email", "password", "district_id", "is_active", "created_by_id",
            "created_at",
        ),
        transform=dt.transform_observer,
        foreign_keys={"district_id": "districts", "created_by_id": "users"},
        contexts=(Context("duplicate_emails", duplicate_emails),),
        secret_fields=("password",),
        secret_columns=("password_hash",),
        target_ids=NEW_ID,
    ),
    Entity(
        name="sessions",
        source_model="Session",
        target=dd.Session.__table__,
        source_fields=(
            "id", "name", "original_name", "session_code", "section", "module", "created_at",
            "is_paused", "is_archived", "archived_at", "created_by_id", "character_set",
        ),
        transform=dt.transform_session,  # no teacher: the placeholder owner; module code -> module
        foreign_keys={"created_by_id": "users", "module_id": "modules"},
        contexts=(ARCHIVED_DUPLICATES,),
        page=Page("/sessions/{id}", "FLASK_SESSION_PATH"),
    ),
    Entity(
        name="students",
        source_model="Student",
        target=dd.User.__table__,
        also=(dd.Student.__table__,),
        source_fields=(
            "id", "name", "password", "section_id", "admin_id", "device_id",
            "character_description", "avatar_image_path",
        ),
        transform=dt.transform_student,  # synthesized login names; PIN hashed, never kept in plain
        foreign_keys={"teacher_id": "users", "section_id": "sessions", "district_id": "districts",
                      "school_id": "schools"},
        contexts=(Context("student_homes", student_homes, per_batch=True, recheck=homes_changed),
                  Context("shared_pins", shared_pins, needs=("sessions", "users"))),
        hashed_pin=("pin_hash", "password"),
        secret_fields=("password",),
        secret_columns=("pin_hash", "password_hash"),
        by_meaning=(ByMeaning("pin_hash", "password", "pin"),),
        files=(FileColumn("avatar_image_path", "avatar_path", "static", "url", names_key=False),),
        target_ids=NEW_ID,
    ),
    Entity(
        name="media",
        source_model="Media",
        target=dd.Media.__table__,
        source_fields=(
            "id", "session_id", "title", "description", "media_type", "video_file",
            "image_file", "uploaded_at", "graph_likes", "eye_likes", "read_likes", "graph_tag",
            "is_graph", "variable_tag", "submitted_password", "student_id",
            "posted_by_admin_id", "project_group", "project_images", "is_project",
        ),
        transform=dt.transform_media,  # comment posts skipped; author inferred; submitted_password dropped
        foreign_keys={
            "session_id": "sessions", "student_id": "students", "posted_by_admin_id": "users",
        },
        contexts=(ATTRIBUTIONS,),
        secret_fields=("submitted_password",),
        files=(
            FileColumn("image_file", "image_file"),
            FileColumn("video_file", "video_file"),
            FileColumn("project_images", "project_images", "url_list", "key"),
        ),
        counters=(
            Counter("graph_likes", "student_media_interactions", {"media_id": "id"}, where="liked_graph"),
            Counter("eye_likes", "student_media_interactions", {"media_id": "id"}, where="liked_eye"),
            Counter("read_likes", "student_media_interactions", {"media_id": "id"}, where="liked_read"),
        ),
        page=Page("/media/{id}", "FLASK_POST_PATH"),
    ),
    Entity(
        name="comments",
        source_model="Comment",
        target=dd.Comment.__table__,
        source_fields=(
            "id", "media_id", "parent_id", "text", "created_at", "updated_at", "name",
            "device_id", "is_admin", "student_id", "admin_avatar",
        ),
        transform=dt.transform_comment,
        foreign_keys={"media_id": "media", "student_id": "students"},
        self_foreign_key="parent_id",
        files=(FileColumn("admin_avatar", "admin_avatar", "static", "url", names_key=False),),
    ),
    Entity(
        name="student_media_interactions",
        source_model="StudentMediaInteraction",
        target=dd.StudentMediaInteraction.__table__,
        source_fields=(
            "id", "student_id", "media_id", "liked_graph", "liked_eye", "liked_read",
            "comment_count", "created_at", "updated_at",
        ),
        transform=dt.transform_interaction,
        foreign_keys={"student_id": "students", "media_id": "media"},
        counters=(Counter("comment_count", "comments", {"media_id": "media_id", "student_id": "student_id"}),),
    ),
)


# --- who sees what in the app (verify's access checks), by its own queries ----------------

def legacy_dashboards(source) -> dict:
    """The legacy dashboards, with the sessions nobody owned on the placeholder owner's."""
    dashboards = legacy_teacher_dashboards(source)
    unowned = set(source.objects("Session").filter(created_by_id__isnull=True).values_list("id", flat=True))
    if unowned:
        dashboards[dt.UNOWNED_OWNER_ID] = {"sessions": unowned, "students": set()}
    return dashboards


def observer_sessions(conn, observer_id: int) -> dict:
    """The app's observer scope: sessions created by users with role TEACHER in the
    observer's district (routes/main.py, services/nav_sessions.py)."""
    users, sessions = dd.User.__table__, dd.Session.__table__
    district = conn.execute(sa.select(users.c.district_id).where(users.c.id == observer_id)).scalar()
    if district is None:
        return {"sessions": set()}
    teachers = sa.select(users.c.id).where(users.c.role == dd.Role.TEACHER.name, users.c.district_id == district)
    return {"sessions": set(conn.execute(sa.select(sessions.c.id).where(sessions.c.created_by_id.in_(teachers)))
                            .scalars())}


def teacher_dashboard(conn, teacher_id: int) -> dict:
    """The app's teacher pages: sessions they created, students whose teacher they are."""
    sessions, students = dd.Session.__table__, dd.Student.__table__
    by = defaultdict(set)
    by["sessions"] = set(conn.execute(sa.select(sessions.c.id).where(sessions.c.created_by_id == teacher_id)).scalars())
    by["students"] = set(conn.execute(sa.select(students.c.id).where(students.c.teacher_id == teacher_id)).scalars())
    return by


PROFILE = Profile(
    name="datadeckv2",
    description="the real Flask rewrite (admiralorbiter/DataDeckv2): one users table, derived schools and "
                "modules, ids through the id map",
    metadata=dd.metadata,
    entities=ENTITIES,
    checks=Checks(
        observer_scope=AccessRule("observers", ("sessions",), legacy_observer_scope, observer_sessions),
        teacher_dashboards=AccessRule("users", ("sessions", "students"), legacy_dashboards, teacher_dashboard),
    ),
    pin_roster=pin_roster,
    roster_entity="students",
    media_base_url=UPLOADS,
    # students.pin_hash holds 128 characters: werkzeug's scrypt (162) does not fit; pbkdf2 over
    # sha256 does, and 200,000 iterations cost about what the app's own scrypt PINs cost
    pin_hash_method="pbkdf2:sha256:200000",
)

__all__ = ["PROFILE", "ENTITIES"]
