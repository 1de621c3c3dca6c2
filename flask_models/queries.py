"""Queries the Flask app and the migration's verifier share."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from .models import Observer, Session, Student, User


def observer_visible_session_ids(conn, observer_id: int) -> set[int]:
    """Sessions whose teacher belongs to the observer's district (none for a NULL teacher)."""
    district = select(Observer.district_id).where(Observer.id == observer_id).scalar_subquery()
    stmt = (
        select(Session.id)
        .join(User, User.id == Session.created_by_id)
        .where(User.district_id == district)
    )
    return set(conn.execute(stmt).scalars())


@dataclass(frozen=True)
class TeacherDashboard:
    session_ids: set[int]
    student_ids: set[int]


def teacher_dashboard(conn, teacher_id: int) -> TeacherDashboard:
    """The teacher's sessions (created_by) and students (admin)."""
    sessions = conn.execute(select(Session.id).where(Session.created_by_id == teacher_id))
    students = conn.execute(select(Student.id).where(Student.admin_id == teacher_id))
    return TeacherDashboard(set(sessions.scalars()), set(students.scalars()))
