"""The migration, as one table: every legacy model, in dependency order, with its
target table, the source fields read, the transform, and the foreign keys checked.

Read top to bottom, this is everything the export does to the rows.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import sqlalchemy as sa

import flask_models as fm

from . import transforms as t


@dataclass(frozen=True)
class Entity:
    name: str  # the target table, also the entity's name on the command line
    source_model: str  # model name in the legacy app (label from settings)
    target: sa.Table
    source_fields: tuple[str, ...]  # Django attnames read with values_list, "id" first
    transform: Callable = t.copy_row
    # target FK column -> target table whose loaded ids it must point at
    foreign_keys: Mapping[str, str] = field(default_factory=dict)
    # a FK to the same table: rows whose parent comes later in id order wait for it
    self_foreign_key: str | None = None
    choices: Mapping[str, frozenset] = field(default_factory=dict)
    # target column filled by the PIN-hashing pool from this source field
    hashed_pin: tuple[str, str] | None = None
    # source fields holding secrets: never copied into rejects or notes
    secret_fields: tuple[str, ...] = ()

    @property
    def secret_free_fields(self) -> tuple[str, ...]:
        return tuple(f for f in self.source_fields if f not in self.secret_fields)


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
        secret_fields=("submitted_password",),
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
    ),
)

ENTITY_NAMES = tuple(e.name for e in ENTITIES)


def get_entity(name: str) -> Entity:
    for entity in ENTITIES:
        if entity.name == name:
            return entity
    raise KeyError(name)
