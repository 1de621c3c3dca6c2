"""The Flask app's schema: SQLAlchemy 2.x declarative models, no Flask or Django import.

Primary keys are BigInteger and preserved from the legacy database. Datetimes are
stored as UTC on every dialect (``UtcDateTime``).
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Optional

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments an "INTEGER PRIMARY KEY"; BigInteger elsewhere.
BigId = BigInteger().with_variant(Integer, "sqlite")
# MySQL's TEXT holds 64 KB; Django's TextField is LONGTEXT there.
LongText = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


class UtcDateTime(TypeDecorator):
    """Timezone-aware UTC in Python; TIMESTAMPTZ on PostgreSQL, naive UTC elsewhere."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.timezone.utc)
        if dialect.name == "postgresql":
            return value
        return value.replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        int: BigInteger,
        dt.datetime: UtcDateTime,
        str: String(255),
    }


_MYSQL_TABLE = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin", "mysql_engine": "InnoDB"}


class District(Base):
    __tablename__ = "districts"
    __table_args__ = (_MYSQL_TABLE,)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    code: Mapped[str] = mapped_column(String(20), unique=True)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime]


class User(Base):
    """A teacher (or staff) account; legacy ``CustomAdmin``."""

    __tablename__ = "users"
    __table_args__ = (_MYSQL_TABLE,)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    username: Mapped[str] = mapped_column(String(150), unique=True)
    email: Mapped[str] = mapped_column(String(254), default="")
    # werkzeug format, or NULL when the legacy hash could not be expressed for werkzeug
    password_hash: Mapped[Optional[str]] = mapped_column(String(255))
    # argon2 / bcrypt_sha256 Django hashes kept for upgrade on login
    legacy_password_hash: Mapped[Optional[str]] = mapped_column(String(255))
    must_reset_password: Mapped[bool] = mapped_column(Boolean, default=False)
    first_name: Mapped[Optional[str]] = mapped_column(String(100))
    last_name: Mapped[Optional[str]] = mapped_column(String(100))
    school: Mapped[Optional[str]] = mapped_column(String(100))
    district_id: Mapped[Optional[int]] = mapped_column(ForeignKey("districts.id"), index=True)
    # plain text by default (the plan's choice), or a Fernet token when encrypted
    media_password: Mapped[Optional[str]] = mapped_column(String(255))
    profile_picture: Mapped[Optional[str]] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_staff: Mapped[bool] = mapped_column(Boolean, default=False)
    is_superuser: Mapped[bool] = mapped_column(Boolean, default=False)
    last_login: Mapped[Optional[dt.datetime]]
    date_joined: Mapped[dt.datetime]


class Observer(Base):
    __tablename__ = "observers"
    __table_args__ = (_MYSQL_TABLE,)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[Optional[str]] = mapped_column(String(255))
    legacy_password_hash: Mapped[Optional[str]] = mapped_column(String(255))
    must_reset_password: Mapped[bool] = mapped_column(Boolean, default=False)
    district_id: Mapped[int] = mapped_column(ForeignKey("districts.id"), index=True)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[dt.datetime]


class Session(Base):
    """A class session (legacy ``Session``; students' ``section`` points here)."""

    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    original_name: Mapped[Optional[str]] = mapped_column(String(100))
    session_code: Mapped[str] = mapped_column(String(8), unique=True)
    section: Mapped[int] = mapped_column(Integer)
    module: Mapped[str] = mapped_column(String(20), default="4")
    created_at: Mapped[dt.datetime]
    is_paused: Mapped[bool] = mapped_column(Boolean, default=False)
    is_archived: Mapped[bool] = mapped_column(Boolean, default=False)
    archived_at: Mapped[Optional[dt.datetime]]
    created_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))
    character_set: Mapped[str] = mapped_column(String(50), default="marvel")

    __table_args__ = (
        Index("ix_sessions_teacher_section_archived", "created_by_id", "section", "is_archived"),
        # At most one active session per (teacher, section). MySQL has no partial
        # indexes: there the rule stays in application code.
        Index(
            "uq_sessions_active_teacher_section",
            "created_by_id",
            "section",
            unique=True,
            postgresql_where=(is_archived == false()),
            sqlite_where=(is_archived == false()),
        ).ddl_if(dialect=("postgresql", "sqlite")),
        _MYSQL_TABLE,
    )


class Student(Base):
    __tablename__ = "students"
    __table_args__ = (_MYSQL_TABLE,)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    pin_hash: Mapped[str] = mapped_column(String(255))  # werkzeug hash of the 5-digit PIN
    section_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    admin_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    device_id: Mapped[Optional[str]] = mapped_column(String(255))
    character_description: Mapped[Optional[str]] = mapped_column(LongText)
    avatar_image_path: Mapped[Optional[str]] = mapped_column(String(255))  # a URL under the static base


class Media(Base):
    __tablename__ = "media"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(100))
    description: Mapped[Optional[str]] = mapped_column(LongText)
    media_type: Mapped[str] = mapped_column(String(10))
    video_file: Mapped[Optional[str]] = mapped_column(String(255))  # storage key, relative
    image_file: Mapped[Optional[str]] = mapped_column(String(255))  # storage key, relative
    uploaded_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    graph_likes: Mapped[int] = mapped_column(Integer, default=0)
    eye_likes: Mapped[int] = mapped_column(Integer, default=0)
    read_likes: Mapped[int] = mapped_column(Integer, default=0)
    graph_tag: Mapped[Optional[str]] = mapped_column(String(50))
    is_graph: Mapped[bool] = mapped_column(Boolean, default=False)
    variable_tag: Mapped[Optional[str]] = mapped_column(String(50))
    student_id: Mapped[Optional[int]] = mapped_column(
        ForeignKey("students.id", ondelete="SET NULL"), index=True
    )
    posted_by_admin_id: Mapped[Optional[int]] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    project_group: Mapped[Optional[str]] = mapped_column(String(36))  # uuid, dashed
    project_images: Mapped[Optional[list[Any]]] = mapped_column(JSON)  # absolute URLs
    is_project: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (
        Index("ix_media_session_uploaded", "session_id", uploaded_at.desc()),
        Index("ix_media_media_type", "media_type"),
        Index("ix_media_graph_tag", "graph_tag"),
        Index("ix_media_variable_tag", "variable_tag"),
        _MYSQL_TABLE,
    )


class Comment(Base):
    __tablename__ = "comments"
    __table_args__ = (_MYSQL_TABLE,)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    media_id: Mapped[int] = mapped_column(ForeignKey("media.id", ondelete="CASCADE"), index=True)
    parent_id: Mapped[Optional[int]] = mapped_column(
        ForeignKey("comments.id", ondelete="CASCADE"), index=True
    )
    text: Mapped[str] = mapped_column(LongText)
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    name: Mapped[str] = mapped_column(String(100))
    device_id: Mapped[Optional[str]] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    student_id: Mapped[Optional[int]] = mapped_column(
        ForeignKey("students.id", ondelete="SET NULL"), index=True
    )
    admin_avatar: Mapped[Optional[str]] = mapped_column(String(255))


class StudentMediaInteraction(Base):
    __tablename__ = "student_media_interactions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("students.id", ondelete="CASCADE"))
    media_id: Mapped[int] = mapped_column(ForeignKey("media.id", ondelete="CASCADE"), index=True)
    liked_graph: Mapped[bool] = mapped_column(Boolean, default=False)
    liked_eye: Mapped[bool] = mapped_column(Boolean, default=False)
    liked_read: Mapped[bool] = mapped_column(Boolean, default=False)
    comment_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]

    __table_args__ = (
        UniqueConstraint("student_id", "media_id", name="uq_interactions_student_media"),
        _MYSQL_TABLE,
    )


metadata = Base.metadata

# Dependency order: every table after the tables it references.
TABLES_IN_ORDER = [
    District.__table__,
    User.__table__,
    Observer.__table__,
    Session.__table__,
    Student.__table__,
    Media.__table__,
    Comment.__table__,
    StudentMediaInteraction.__table__,
]


def create_all(engine) -> None:
    metadata.create_all(engine)


def drop_all(engine) -> None:
    metadata.drop_all(engine)
