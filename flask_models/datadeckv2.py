"""The schema of the real Flask rewrite, admiralorbiter/DataDeckv2, mirrored as plain SQLAlchemy 2.x.

This is a description of someone else's database, not our ``plan`` schema
(``flask_models.models``): it lives on its own ``MetaData`` and imports neither Flask nor
Django. The authority is the app's ``models/`` package; the app creates its schema with
Flask-SQLAlchemy's ``db.create_all()`` (no migrations), so a database created here must
be the one that call would have created: same table and column names, types and lengths,
nullability, unique constraints, enum types (stored by *name*), foreign keys, explicit
index names, and no naming convention (Flask-SQLAlchemy's default ``MetaData()``
leaves unique and foreign-key constraints unnamed, so each server names them itself).
``docs/DATADECKV2.md`` lists what this means for a migration and what was checked
against the real app.

The shape in one paragraph: every table has an ``INTEGER`` id (SQLite tables with
``AUTOINCREMENT`` where the app asks for it) and NOT NULL naive ``created_at`` /
``updated_at``. Teachers, admins, staff, observers and students are all rows of
``users`` (joined-table inheritance on the ``type`` column: ``'user'`` for
teachers/admins/staff, ``'observer'``, ``'student'``); ``observers`` and ``students``
hold the extra columns of those kinds under the same id. What a user *is allowed to do*
comes from ``users.role`` (an enum stored by name: ``'TEACHER'``, ``'OBSERVER'`` ...),
not from ``type``; a migrated row needs both set consistently.
"""
from __future__ import annotations

import datetime as dt
import enum
from typing import Any, Optional

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Lengths the app declares, named because a migration has to fit values into them.
USERNAME_MAX = 64
EMAIL_MAX = 120
PASSWORD_HASH_MAX = 256
PIN_HASH_MAX = 128
CURRENT_PIN_MAX = 6
NAME_MAX = 64  # first_name, last_name, character_name
DISTRICT_NAME_MAX = 128
SCHOOL_NAME_MAX = 128
MODULE_NAME_MAX = 128
SESSION_NAME_MAX = 128
SESSION_CODE_MAX = 8
MEDIA_TITLE_MAX = 255
MEDIA_FILE_MAX = 512
AVATAR_PATH_MAX = 256
ADMIN_AVATAR_MAX = 256


class NaiveUtcDateTime(TypeDecorator):
    """The app's ``db.DateTime``: a naive column (``TIMESTAMP WITHOUT TIME ZONE`` on
    PostgreSQL, ``DATETIME`` on MariaDB, text on SQLite) that holds UTC.

    The DDL is exactly ``DateTime()`` (so the app sees the type it created itself); on
    our side values go in as aware datetimes (converted to UTC, then made naive) and come
    back aware in UTC. A naive value is refused, as ``flask_models.UtcDateTime`` does.
    """

    impl = DateTime()
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Role(enum.Enum):
    """``users.role``. SQLAlchemy stores the member *names* (``'TEACHER'``), not the values."""

    STUDENT = "student"
    TEACHER = "teacher"
    OBSERVER = "observer"
    STAFF = "staff"
    ADMIN = "admin"


# The enum types as the app declares them: the database type of ``users.role`` is named
# "role" (SQLAlchemy's default, the lower-cased class name) and holds the five names; the
# media type is named explicitly and holds the two values.
ROLE_ENUM = Enum(Role, name="role")
MEDIA_TYPES = ("image", "video")
MEDIA_TYPE_ENUM = Enum(*MEDIA_TYPES, name="media_type_enum")

# Values of the ``users.type`` discriminator (the app's polymorphic identities).
TYPE_USER = "user"  # teachers, admins, staff
TYPE_OBSERVER = "observer"
TYPE_STUDENT = "student"

# Every table but media, modules, sessions and student_media_interactions asks SQLite
# for AUTOINCREMENT (the app's base class sets it; classes with their own table args
# drop it). On observers/students it is inert: SQLite only applies it to an integer key
# that is not also a foreign key.
SQLITE_AUTOINCREMENT = {"sqlite_autoincrement": True}


class Base(DeclarativeBase):
    metadata = MetaData()  # no naming convention: constraint names as the app gets them
    type_annotation_map = {dt.datetime: NaiveUtcDateTime}


class _Stamped:
    """The columns of the app's abstract base model."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(NaiveUtcDateTime, nullable=False, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(
        NaiveUtcDateTime, nullable=False, default=utcnow, onupdate=utcnow
    )


class District(_Stamped, Base):
    __tablename__ = "districts"
    __table_args__ = SQLITE_AUTOINCREMENT

    name: Mapped[str] = mapped_column(String(DISTRICT_NAME_MAX), nullable=False, unique=True)
    code: Mapped[Optional[str]] = mapped_column(String(32), unique=True)


class School(_Stamped, Base):
    """Does not exist in the legacy app (it has only free-text ``school`` on users)."""

    __tablename__ = "schools"
    __table_args__ = SQLITE_AUTOINCREMENT

    name: Mapped[str] = mapped_column(String(SCHOOL_NAME_MAX), nullable=False)  # not unique
    code: Mapped[Optional[str]] = mapped_column(String(32), unique=True)
    district_id: Mapped[int] = mapped_column(Integer, ForeignKey("districts.id"), nullable=False)


class Module(_Stamped, Base):
    """Curriculum module; every session needs one (the legacy has a '2'/'4' code)."""

    __tablename__ = "modules"
    __table_args__ = (Index("ix_modules_active_sort", "is_active", "sort_order"),)

    name: Mapped[str] = mapped_column(String(MODULE_NAME_MAX), nullable=False, unique=True)
    description: Mapped[Optional[str]] = mapped_column(Text)
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    sort_order: Mapped[Optional[int]] = mapped_column(Integer, default=0)  # nullable in the app


class User(_Stamped, Base):
    """Every account. ``type`` says which sub-table row (if any) belongs to it."""

    __tablename__ = "users"
    __table_args__ = SQLITE_AUTOINCREMENT

    type: Mapped[Optional[str]] = mapped_column(String(50))
    username: Mapped[str] = mapped_column(String(USERNAME_MAX), nullable=False, unique=True)
    email: Mapped[str] = mapped_column(String(EMAIL_MAX), nullable=False, unique=True)
    password_hash: Mapped[str] = mapped_column(String(PASSWORD_HASH_MAX), nullable=False)
    first_name: Mapped[Optional[str]] = mapped_column(String(NAME_MAX))
    last_name: Mapped[Optional[str]] = mapped_column(String(NAME_MAX))
    role: Mapped[Role] = mapped_column(ROLE_ENUM, nullable=False, default=Role.STUDENT)
    school_id: Mapped[Optional[int]] = mapped_column(Integer, ForeignKey("schools.id"))
    district_id: Mapped[Optional[int]] = mapped_column(Integer, ForeignKey("districts.id"))

    __mapper_args__ = {"polymorphic_on": "type", "polymorphic_identity": TYPE_USER}


class Observer(User):
    __tablename__ = "observers"
    __table_args__ = SQLITE_AUTOINCREMENT

    id: Mapped[int] = mapped_column(Integer, ForeignKey("users.id"), primary_key=True)
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_by_id: Mapped[Optional[int]] = mapped_column(Integer, ForeignKey("users.id"))

    # Two foreign keys point at users.id: say which one is the inheritance join.
    __mapper_args__ = {"polymorphic_identity": TYPE_OBSERVER, "inherit_condition": id == User.id}


class Session(_Stamped, Base):
    __tablename__ = "sessions"
    __table_args__ = (
        Index("ix_sessions_created_by_section_archived", "created_by_id", "section", "is_archived"),
    )

    name: Mapped[str] = mapped_column(String(SESSION_NAME_MAX), nullable=False)
    original_name: Mapped[Optional[str]] = mapped_column(String(SESSION_NAME_MAX))
    session_code: Mapped[str] = mapped_column(String(SESSION_CODE_MAX), nullable=False, unique=True)
    section: Mapped[int] = mapped_column(Integer, nullable=False)
    module_id: Mapped[int] = mapped_column(Integer, ForeignKey("modules.id"), nullable=False)
    is_paused: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    is_archived: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    archived_at: Mapped[Optional[dt.datetime]] = mapped_column(NaiveUtcDateTime)
    character_set: Mapped[Optional[str]] = mapped_column(String(64))
    created_by_id: Mapped[int] = mapped_column(Integer, ForeignKey("users.id"), nullable=False)


class Student(User):
    __tablename__ = "students"
    __table_args__ = SQLITE_AUTOINCREMENT

    id: Mapped[int] = mapped_column(Integer, ForeignKey("users.id"), primary_key=True)
    character_name: Mapped[str] = mapped_column(String(NAME_MAX), nullable=False)
    character_description: Mapped[Optional[str]] = mapped_column(Text)
    avatar_path: Mapped[Optional[str]] = mapped_column(String(AVATAR_PATH_MAX))  # raw <img src>
    teacher_id: Mapped[int] = mapped_column(Integer, ForeignKey("users.id"), nullable=False)
    section_id: Mapped[Optional[int]] = mapped_column(Integer, ForeignKey("sessions.id"))
    device_id: Mapped[Optional[str]] = mapped_column(String(128))
    pin_hash: Mapped[Optional[str]] = mapped_column(String(PIN_HASH_MAX))
    current_pin: Mapped[Optional[str]] = mapped_column(String(CURRENT_PIN_MAX))  # plain text in the app

    __mapper_args__ = {"polymorphic_identity": TYPE_STUDENT, "inherit_condition": id == User.id}


class Media(_Stamped, Base):
    __tablename__ = "media"
    __table_args__ = (
        Index("ix_media_session_uploaded", "session_id", "uploaded_at"),
        Index("ix_media_media_type", "media_type"),
        Index("ix_media_graph_tag", "graph_tag"),
        Index("ix_media_variable_tag", "variable_tag"),
    )

    session_id: Mapped[int] = mapped_column(Integer, ForeignKey("sessions.id"), nullable=False)
    title: Mapped[str] = mapped_column(String(MEDIA_TITLE_MAX), nullable=False)
    description: Mapped[Optional[str]] = mapped_column(Text)
    media_type: Mapped[str] = mapped_column(MEDIA_TYPE_ENUM, nullable=False)
    # Keys relative to the app's static/uploads/ folder (served at /static/uploads/<key>).
    video_file: Mapped[Optional[str]] = mapped_column(String(MEDIA_FILE_MAX))
    image_file: Mapped[Optional[str]] = mapped_column(String(MEDIA_FILE_MAX))
    uploaded_at: Mapped[dt.datetime] = mapped_column(
        NaiveUtcDateTime, nullable=False, server_default=func.now()
    )
    graph_likes: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    eye_likes: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    read_likes: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    graph_tag: Mapped[Optional[str]] = mapped_column(String(64))
    is_graph: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    variable_tag: Mapped[Optional[str]] = mapped_column(String(64))
    student_id: Mapped[Optional[int]] = mapped_column(Integer, ForeignKey("students.id"))
    posted_by_admin_id: Mapped[Optional[int]] = mapped_column(Integer, ForeignKey("users.id"))
    project_group: Mapped[Optional[str]] = mapped_column(String(36))
    # A JSON list of keys relative to static/uploads/ (read only by the /post/<id> page).
    project_images: Mapped[Optional[Any]] = mapped_column(JSON)
    is_project: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)


class Comment(_Stamped, Base):
    __tablename__ = "comments"
    __table_args__ = SQLITE_AUTOINCREMENT

    media_id: Mapped[int] = mapped_column(Integer, ForeignKey("media.id"), nullable=False)
    parent_id: Mapped[Optional[int]] = mapped_column(Integer, ForeignKey("comments.id"))
    text: Mapped[str] = mapped_column(Text, nullable=False)
    name: Mapped[Optional[str]] = mapped_column(String(128))
    device_id: Mapped[Optional[str]] = mapped_column(String(128))
    is_admin: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    student_id: Mapped[Optional[int]] = mapped_column(Integer, ForeignKey("students.id"))
    admin_avatar: Mapped[Optional[str]] = mapped_column(String(ADMIN_AVATAR_MAX))  # raw <img src>


class StudentMediaInteraction(_Stamped, Base):
    __tablename__ = "student_media_interactions"
    __table_args__ = (UniqueConstraint("student_id", "media_id", name="uq_student_media"),)

    student_id: Mapped[int] = mapped_column(Integer, ForeignKey("students.id"), nullable=False)
    media_id: Mapped[int] = mapped_column(Integer, ForeignKey("media.id"), nullable=False)
    liked_graph: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    liked_eye: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    liked_read: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    comment_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


metadata = Base.metadata

# Parents before children (the order to load in; reversed, the order to empty in).
TABLES_IN_ORDER = [
    District.__table__,
    School.__table__,
    Module.__table__,
    User.__table__,
    Observer.__table__,
    Session.__table__,
    Student.__table__,
    Media.__table__,
    Comment.__table__,
    StudentMediaInteraction.__table__,
]

# The (type, role) pairs the app's code expects together on a users row.
ROLE_TYPES = {
    Role.TEACHER: TYPE_USER,
    Role.ADMIN: TYPE_USER,
    Role.STAFF: TYPE_USER,
    Role.OBSERVER: TYPE_OBSERVER,
    Role.STUDENT: TYPE_STUDENT,
}


def create_all(engine) -> None:
    """Create the tables (and, on PostgreSQL, the two enum types) that are missing."""
    metadata.create_all(engine)


def drop_all(engine) -> None:
    metadata.drop_all(engine)
