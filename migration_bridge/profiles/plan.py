"""The ``plan`` profile: the Flask schema of the rewrite's plan (``flask_models``), with
ids preserved. Read top to bottom, this is everything the export does to the rows.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterator

import flask_models as fm

from .. import transforms as t
from ..mapping import AccessRule, ByMeaning, Checks, Context, Counter, Entity, FileColumn, Page, Profile


# --- what transforms take from other rows (queries on the legacy DB) -----------------

def archived_duplicates(source, entity, loaded, rows=None) -> dict:
    """Session id -> archived_at, for the older of two active sessions of one teacher
    and section whose teacher is migrated."""
    active = source.objects(entity.source_model).filter(is_archived=False, created_by_id__isnull=False)
    teachers = loaded["users"]
    return t.find_superseded_sessions(
        s for s in active.order_by("pk").values_list("id", "created_by_id", "section", "created_at")
        if s[1] in teachers)


def media_attributions(source, entity, loaded, rows) -> dict:
    """Media id -> who ``submitted_password`` points at, for the rows with no student.
    Plain PINs are compared here in memory and never leave this function."""
    candidates = [r for r in rows if r["student_id"] is None and r["submitted_password"]]
    if not candidates:
        return {}
    session_ids = {r["session_id"] for r in candidates}
    secrets = {r["submitted_password"] for r in candidates}
    by_pin: dict[tuple[int, str], list[int]] = defaultdict(list)
    for sid, section_id, pin in (source.objects("Student").filter(section_id__in=session_ids, password__in=secrets)
                                 .order_by("pk").values_list("id", "section_id", "password")):
        if sid in loaded["students"]:
            by_pin[(section_id, pin)].append(sid)
    teacher_of = dict(source.objects("Session").filter(id__in=session_ids).values_list("id", "created_by_id"))
    teacher_ids = {i for i in teacher_of.values() if i is not None and i in loaded["users"]}
    media_password_of = dict(source.objects("CustomAdmin").filter(id__in=teacher_ids)
                             .values_list("id", "media_password"))
    result = {}
    for r in candidates:
        teacher_id = teacher_of.get(r["session_id"])
        teacher_password = media_password_of.get(teacher_id)
        result[r["id"]] = t.infer_author(
            by_pin.get((r["session_id"], r["submitted_password"]), []),
            teacher_id if teacher_id in teacher_ids else None,
            bool(teacher_password) and teacher_password == r["submitted_password"],
        )
    return result


def attribution_candidates(source, entity, changed) -> list[int]:
    """The media a submitted PIN may attribute (no student, a password given): a PIN, a
    session or a teacher changed anywhere can change whom it points at."""
    return source.ids_where(entity, student_id__isnull=True, submitted_password__isnull=False)


# The two contexts as entities declare them (rules of the legacy data: the datadeckv2
# profile declares them too).
ARCHIVED_DUPLICATES = Context("archived_sessions", archived_duplicates, needs=("users",), refusal=(
    "duplicate an active session of the same teacher and section; "
    "--on-duplicate-session archive would archive them"))
ATTRIBUTIONS = Context("attributions", media_attributions, needs=("students", "users"), per_batch=True,
                       recheck=attribution_candidates)


# --- the entities, parents first ---------------------------------------------------------

ENTITIES: tuple[Entity, ...] = (
    Entity(
        name="districts",
        source_model="District",
        target=fm.District.__table__,
        source_fields=("id", "name", "code", "is_active", "created_at"),
    ),
    Entity(
        name="users",
        source_model="CustomAdmin",
        target=fm.User.__table__,
        source_fields=(
            "id", "username", "email", "password", "first_name", "last_name", "school",
            "district_id", "media_password", "profile_picture", "is_active", "is_staff",
            "is_superuser", "last_login", "date_joined",
        ),
        transform=t.transform_user,  # password re-encoded; student_<id> artefacts skipped
        foreign_keys={"district_id": "districts"},
        secret_fields=("password", "media_password"),
        secret_columns=("password_hash", "legacy_password_hash", "media_password"),
        by_meaning=(ByMeaning("media_password", "media_password", "decrypts"),),
        files=(FileColumn("profile_picture", "profile_picture", "url", "url", names_key=False),),
    ),
    Entity(
        name="observers",
        source_model="Observer",
        target=fm.Observer.__table__,
        source_fields=(
            "id", "name", "email", "password", "district_id", "is_active", "created_by_id",
            "created_at",
        ),
        transform=t.transform_observer,
        foreign_keys={"district_id": "districts", "created_by_id": "users"},
        secret_fields=("password",),
        secret_columns=("password_hash", "legacy_password_hash"),
    ),
    Entity(
        name="sessions",
        source_model="Session",
        target=fm.Session.__table__,
        source_fields=(
            "id", "name", "original_name", "session_code", "section", "module", "created_at",
            "is_paused", "is_archived", "archived_at", "created_by_id", "character_set",
        ),
        transform=t.transform_session,  # older duplicate active sessions archived
        foreign_keys={"created_by_id": "users"},
        choices={"module": frozenset({"2", "4"})},
        contexts=(ARCHIVED_DUPLICATES,),
        page=Page("/sessions/{id}", "FLASK_SESSION_PATH"),
    ),
    Entity(
        name="students",
        source_model="Student",
        target=fm.Student.__table__,
        source_fields=(
            "id", "name", "password", "section_id", "admin_id", "device_id",
            "character_description", "avatar_image_path",
        ),
        transform=t.transform_student,  # avatar path -> static URL
        foreign_keys={"section_id": "sessions", "admin_id": "users"},
        hashed_pin=("pin_hash", "password"),
        secret_fields=("password",),
        secret_columns=("pin_hash",),
        by_meaning=(ByMeaning("pin_hash", "password", "pin"),),
    ),
    Entity(
        name="media",
        source_model="Media",
        target=fm.Media.__table__,
        source_fields=(
            "id", "session_id", "title", "description", "media_type", "video_file",
            "image_file", "uploaded_at", "graph_likes", "eye_likes", "read_likes", "graph_tag",
            "is_graph", "variable_tag", "submitted_password", "student_id",
            "posted_by_admin_id", "project_group", "project_images", "is_project",
        ),
        transform=t.transform_media,  # author inferred; submitted_password dropped
        foreign_keys={
            "session_id": "sessions", "student_id": "students", "posted_by_admin_id": "users",
        },
        choices={"media_type": frozenset({"video", "image", "comment"})},
        contexts=(ATTRIBUTIONS,),
        secret_fields=("submitted_password",),
        files=(
            FileColumn("image_file", "image_file"),
            FileColumn("video_file", "video_file"),
            FileColumn("project_images", "project_images", "url_list", "url"),
        ),
        counters=(
            Counter("graph_likes", "student_media_interactions", {"media_id": "id"}, where="liked_graph"),
            Counter("eye_likes", "student_media_interactions", {"media_id": "id"}, where="liked_eye"),
            Counter("read_likes", "student_media_interactions", {"media_id": "id"}, where="liked_read"),
        ),
        page=Page("/post/{id}", "FLASK_POST_PATH"),
    ),
    Entity(
        name="comments",
        source_model="Comment",
        target=fm.Comment.__table__,
        source_fields=(
            "id", "media_id", "parent_id", "text", "created_at", "updated_at", "name",
            "device_id", "is_admin", "student_id", "admin_avatar",
        ),
        foreign_keys={"media_id": "media", "student_id": "students"},
        self_foreign_key="parent_id",
    ),
    Entity(
        name="student_media_interactions",
        source_model="StudentMediaInteraction",
        target=fm.StudentMediaInteraction.__table__,
        source_fields=(
            "id", "student_id", "media_id", "liked_graph", "liked_eye", "liked_read",
            "comment_count", "created_at", "updated_at",
        ),
        foreign_keys={"student_id": "students", "media_id": "media"},
        counters=(Counter("comment_count", "comments", {"media_id": "media_id", "student_id": "student_id"}),),
    ),
)


# --- who sees what, on both sides (verify's access checks) ------------------------------

def legacy_observer_scope(source) -> dict:
    """The legacy rule: an observer sees the sessions whose teacher is in its district."""
    by_district: dict[int, set[int]] = defaultdict(set)
    for sid, district in source.values("Session", ("id", "created_by__district_id")):
        if district is not None:
            by_district[district].add(sid)
    return {oid: {"sessions": by_district.get(district, set())}
            for oid, district in source.values("Observer", ("id", "district_id"))}


def legacy_teacher_dashboards(source) -> dict:
    """A teacher's dashboard: the sessions they created, the students they administer."""
    dashboards: dict[int, dict[str, set]] = defaultdict(lambda: {"sessions": set(), "students": set()})
    for sid, teacher in source.values("Session", ("id", "created_by_id")):
        if teacher is not None:
            dashboards[teacher]["sessions"].add(sid)
    for sid, teacher in source.values("Student", ("id", "admin_id")):
        if teacher is not None:
            dashboards[teacher]["students"].add(sid)
    return dashboards


def target_teacher_dashboard(conn, teacher_id: int) -> dict:
    dash = fm.teacher_dashboard(conn, teacher_id)
    return {"sessions": dash.session_ids, "students": dash.student_ids}


def pin_roster(source) -> Iterator[tuple]:
    """(teacher username, session code, session name, student id, student name, PIN)."""
    yield from source.objects("Student").order_by("admin__username", "section__session_code", "pk").values_list(
        "admin__username", "section__session_code", "section__name", "id", "name", "password",
    ).iterator(chunk_size=2000)


PROFILE = Profile(
    name="plan",
    description="the rewrite's planned schema (flask_models): one table per legacy model, ids kept",
    metadata=fm.metadata,
    entities=ENTITIES,
    checks=Checks(
        observer_scope=AccessRule("observers", ("sessions",), legacy_observer_scope,
                                  lambda conn, oid: {"sessions": fm.observer_visible_session_ids(conn, oid)}),
        teacher_dashboards=AccessRule("users", ("sessions", "students"), legacy_teacher_dashboards,
                                      target_teacher_dashboard),
    ),
    pin_roster=pin_roster,
    roster_entity="students",
)

__all__ = ["PROFILE", "ENTITIES"]
