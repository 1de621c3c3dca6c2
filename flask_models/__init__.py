"""The Flask app's schema (plain SQLAlchemy 2.x; imports neither Flask nor Django)."""
from .models import (
    TABLES_IN_ORDER,
    Base,
    Comment,
    District,
    Media,
    Observer,
    Session,
    Student,
    StudentMediaInteraction,
    User,
    UtcDateTime,
    create_all,
    drop_all,
    metadata,
)
from .passwords import PasswordCheck, verify_password
from .queries import TeacherDashboard, observer_visible_session_ids, teacher_dashboard

__all__ = [
    "TABLES_IN_ORDER",
    "Base",
    "Comment",
    "District",
    "Media",
    "Observer",
    "PasswordCheck",
    "Session",
    "Student",
    "StudentMediaInteraction",
    "TeacherDashboard",
    "User",
    "UtcDateTime",
    "create_all",
    "drop_all",
    "metadata",
    "observer_visible_session_ids",
    "teacher_dashboard",
    "verify_password",
]
