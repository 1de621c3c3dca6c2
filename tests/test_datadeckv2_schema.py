"""The mirrored DataDeckv2 schema (flask_models/datadeckv2.py) on SQLite, PostgreSQL and MariaDB.

The expectations below are written from the real app's ``models/`` (admiralorbiter/DataDeckv2
at afca930); scripts/datadeckv2_outside_check.sh compares the schema against the one the
real app's own ``db.create_all()`` creates and runs the real app on it (docs/DATADECKV2.md).
"""
from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.schema import CreateTable
from werkzeug.security import check_password_hash, generate_password_hash

from flask_models import datadeckv2 as d
from flask_models import models as plan

from .conftest import PROJECT_ROOT

# (table, column) -> (type name, length, nullable, unique) as the app declares them.
DECLARED = {
    ("users", "type"): ("VARCHAR", 50, True, False),
    ("users", "username"): ("VARCHAR", 64, False, True),
    ("users", "email"): ("VARCHAR", 120, False, True),
    ("users", "password_hash"): ("VARCHAR", 256, False, False),
    ("users", "first_name"): ("VARCHAR", 64, True, False),
    ("users", "role"): ("VARCHAR", 8, False, False),  # Enum: the longest *name* is 8
    ("districts", "name"): ("VARCHAR", 128, False, True),
    ("districts", "code"): ("VARCHAR", 32, True, True),
    ("schools", "name"): ("VARCHAR", 128, False, False),
    ("schools", "district_id"): ("INTEGER", None, False, False),
    ("modules", "name"): ("VARCHAR", 128, False, True),
    ("modules", "sort_order"): ("INTEGER", None, True, False),
    ("sessions", "session_code"): ("VARCHAR", 8, False, True),
    ("sessions", "module_id"): ("INTEGER", None, False, False),
    ("sessions", "created_by_id"): ("INTEGER", None, False, False),
    ("sessions", "section"): ("INTEGER", None, False, False),
    ("students", "character_name"): ("VARCHAR", 64, False, False),
    ("students", "avatar_path"): ("VARCHAR", 256, True, False),
    ("students", "teacher_id"): ("INTEGER", None, False, False),
    ("students", "pin_hash"): ("VARCHAR", 128, True, False),
    ("students", "current_pin"): ("VARCHAR", 6, True, False),
    ("media", "media_type"): ("VARCHAR", 5, False, False),
    ("media", "title"): ("VARCHAR", 255, False, False),
    ("media", "image_file"): ("VARCHAR", 512, True, False),
    ("media", "project_group"): ("VARCHAR", 36, True, False),
    ("media", "uploaded_at"): ("DATETIME", None, False, False),
    ("comments", "admin_avatar"): ("VARCHAR", 256, True, False),
    ("comments", "text"): ("TEXT", None, False, False),
}

FOREIGN_KEYS = {
    ("users", "school_id"): "schools.id",
    ("users", "district_id"): "districts.id",
    ("schools", "district_id"): "districts.id",
    ("observers", "id"): "users.id",
    ("observers", "created_by_id"): "users.id",
    ("students", "id"): "users.id",
    ("students", "teacher_id"): "users.id",
    ("students", "section_id"): "sessions.id",
    ("sessions", "created_by_id"): "users.id",
    ("sessions", "module_id"): "modules.id",
    ("media", "session_id"): "sessions.id",
    ("media", "student_id"): "students.id",
    ("media", "posted_by_admin_id"): "users.id",
    ("comments", "media_id"): "media.id",
    ("comments", "parent_id"): "comments.id",
    ("comments", "student_id"): "students.id",
    ("student_media_interactions", "student_id"): "students.id",
    ("student_media_interactions", "media_id"): "media.id",
}

NAMES = [t.name for t in d.TABLES_IN_ORDER]


def test_own_metadata_no_flask_and_no_naming_convention():
    assert d.metadata is not plan.metadata
    assert set(d.metadata.tables) == set(NAMES)
    # Flask-SQLAlchemy's MetaData() has SQLAlchemy's default convention only: unique and
    # foreign-key constraints stay unnamed, as in the databases the app creates.
    assert d.metadata.naming_convention == sa.MetaData().naming_convention
    code = "import sys, flask_models.datadeckv2; sys.exit(1 if {'flask', 'django'} & set(sys.modules) else 0)"
    assert subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT).returncode == 0


def test_declared_columns_match_the_app():
    for (table, column), (type_name, length, nullable, unique) in DECLARED.items():
        col = d.metadata.tables[table].c[column]
        compiled = col.type.compile(dialect=sqlite.dialect())
        assert compiled.split("(")[0] == type_name, (table, column, compiled)
        assert getattr(col.type, "length", None) == length, (table, column)
        assert col.nullable is nullable, (table, column)
        assert bool(col.unique) is unique, (table, column)
    for table in d.TABLES_IN_ORDER:
        for stamp in ("created_at", "updated_at"):
            if stamp in table.c:
                assert not table.c[stamp].nullable
        assert "created_at" in table.c or table.name in ("observers", "students")


def test_foreign_keys_and_order():
    found = {(fk.parent.table.name, fk.parent.name): fk.target_fullname
             for t in d.TABLES_IN_ORDER for fk in t.foreign_keys}
    assert found == FOREIGN_KEYS
    seen = set()
    for table in d.TABLES_IN_ORDER:
        assert {fk.column.table.name for fk in table.foreign_keys} - {table.name} <= seen, table.name
        seen.add(table.name)


def test_enums_are_stored_by_name():
    role = d.User.__table__.c.role.type
    assert role.name == "role" and role.enums == ["STUDENT", "TEACHER", "OBSERVER", "STAFF", "ADMIN"]
    media_type = d.Media.__table__.c.media_type.type
    assert media_type.name == "media_type_enum" and media_type.enums == ["image", "video"]
    pg_role = str(sa.schema.CreateTable(d.User.__table__).compile(dialect=postgresql.dialect()))
    assert "role role NOT NULL" in pg_role
    my_role = str(CreateTable(d.User.__table__).compile(dialect=mysql.dialect()))
    assert "ENUM('STUDENT','TEACHER','OBSERVER','STAFF','ADMIN')" in my_role


def test_inheritance_and_type_role_pairs():
    assert d.User.__mapper__.polymorphic_on.name == "type"
    identities = {m.class_: m.polymorphic_identity for m in d.User.__mapper__.self_and_descendants}
    assert identities == {d.User: "user", d.Observer: "observer", d.Student: "student"}
    assert str(d.Student.__mapper__.inherit_condition) == "students.id = users.id"
    assert str(d.Observer.__mapper__.inherit_condition) == "observers.id = users.id"
    assert set(d.ROLE_TYPES) == set(d.Role)


def test_werkzeug_login_rules_as_the_app_calls_them():
    # What the app's /login does with password_hash values a migration might write.
    assert check_password_hash("!unusable-legacy", "x") is False  # Django's unusable form: clean reject
    assert check_password_hash("", "x") is False
    with pytest.raises(ValueError):
        check_password_hash("argon2$argon2id$v=19$m=102400,t=2,p=8$c2FsdA$aGFzaA", "x")
    with pytest.raises(ValueError):
        check_password_hash("bcrypt_sha256$$2b$12$abcdefghijklmnopqrstuu", "x")
    with pytest.raises(AttributeError):
        check_password_hash(None, "x")
    # Werkzeug's default (scrypt) does not fit pin_hash; pbkdf2:sha256 does, at any sane cost.
    assert len(generate_password_hash("12345")) == 162 > d.PIN_HASH_MAX
    assert len(generate_password_hash("12345", method="pbkdf2:sha256:1000")) == 100
    assert len("pbkdf2:sha256:1000000$") + 16 + 1 + 64 == 103 <= d.PIN_HASH_MAX


def _world(s: OrmSession, pin_hash: str) -> dict:
    district = d.District(name="D1", code="D1")
    s.add(district)
    s.flush()
    school = d.School(name="Lincoln", district_id=district.id)
    module = d.Module(name="Module 2", sort_order=2)
    s.add_all([school, module])
    s.flush()
    teacher = d.User(username="t1", email="t1@example.org", password_hash="pbkdf2:sha256:1000$s$h",
                     role=d.Role.TEACHER, school_id=school.id, district_id=district.id)
    s.add(teacher)
    s.flush()
    observer = d.Observer(username="o1", email="o1@example.org", password_hash="!", role=d.Role.OBSERVER,
                          district_id=district.id, created_by_id=teacher.id)
    session = d.Session(name="Period 1", session_code="ABCD1234", section=1, module_id=module.id,
                        created_by_id=teacher.id)
    s.add_all([observer, session])
    s.flush()
    student = d.Student(username="s1", email="s1@students.invalid", password_hash="!", role=d.Role.STUDENT,
                        character_name="Bear01", teacher_id=teacher.id, section_id=session.id,
                        pin_hash=pin_hash)
    s.add(student)
    s.flush()
    media = d.Media(session_id=session.id, title="Graph", media_type="image", image_file="m/1.png",
                    student_id=student.id, project_images=["m/1.png", "m/2.png"])
    s.add(media)
    s.flush()
    s.add(d.Comment(media_id=media.id, text="Nice", student_id=student.id))
    s.add(d.StudentMediaInteraction(student_id=student.id, media_id=media.id, liked_eye=True))
    return {"teacher": teacher.id, "observer": observer.id, "student": student.id, "media": media.id}


def test_create_insert_read_drop(target_db):
    engine = target_db.engine()
    d.create_all(engine)
    d.create_all(engine)  # idempotent, like the app's own create_all at every start
    insp = sa.inspect(engine)
    assert set(insp.get_table_names()) == set(NAMES)
    pin_hash = generate_password_hash("12345", method="pbkdf2:sha256:1000")
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(seconds=1)
    with OrmSession(engine) as s, s.begin():
        ids = _world(s, pin_hash)
    # One id space for all accounts: the observer and the student follow the teacher.
    assert ids["teacher"] < ids["observer"] < ids["student"]
    with OrmSession(engine) as s:
        kinds = {u.id: type(u) for u in s.scalars(sa.select(d.User))}
        assert kinds == {ids["teacher"]: d.User, ids["observer"]: d.Observer, ids["student"]: d.Student}
        student = s.get(d.Student, ids["student"])
        assert check_password_hash(student.pin_hash or student.password_hash, "12345")
        assert student.role is d.Role.STUDENT and student.current_pin is None
        media = s.get(d.Media, ids["media"])
        assert media.project_images == ["m/1.png", "m/2.png"]
        # Filled by the server default now(): UTC on SQLite, but the server's local time on
        # PostgreSQL/MariaDB (naive column), so a migration must always write it itself.
        assert media.uploaded_at.tzinfo is dt.timezone.utc
        assert media.created_at.tzinfo is dt.timezone.utc and media.created_at >= before
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, type, role FROM users ORDER BY id")).all()
        assert [tuple(r)[1:] for r in rows] == [("user", "TEACHER"), ("observer", "OBSERVER"),
                                                ("student", "STUDENT")]
    d.drop_all(engine)
    assert sa.inspect(engine).get_table_names() == []
    if target_db.kind == "postgresql":
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM pg_type WHERE typname IN "
                                        "('role', 'media_type_enum')")).scalar() == 0
    engine.dispose()


def test_constraints_hold(target_db):
    engine = target_db.engine()
    d.create_all(engine)
    with OrmSession(engine) as s, s.begin():
        ids = _world(s, generate_password_hash("12345", method="pbkdf2:sha256:1000"))

    def fails(stmt, params) -> bool:
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(stmt), params)
        except sa.exc.DBAPIError:
            return True
        return False

    insert_user = ("INSERT INTO users (type, username, email, password_hash, role, created_at, updated_at) "
                   "VALUES ('user', :u, :e, :p, :r, :t, :t)")
    now = dt.datetime(2024, 1, 1)
    assert fails(insert_user, {"u": "dup", "e": "t1@example.org", "p": "!", "r": "TEACHER", "t": now})
    assert fails(insert_user, {"u": "t1", "e": "new@example.org", "p": "!", "r": "TEACHER", "t": now})
    assert fails(insert_user, {"u": "nohash", "e": "nohash@example.org", "p": None, "r": "TEACHER", "t": now})
    assert not fails(insert_user, {"u": "ok", "e": "ok@example.org", "p": "!", "r": "ADMIN", "t": now})
    # werkzeug's default scrypt PIN hash (162 chars) into pin_hash VARCHAR(128): PostgreSQL and
    # MariaDB (strict mode) refuse it, SQLite stores it; a pbkdf2:sha256 hash fits everywhere.
    scrypt_hash = generate_password_hash("12345")
    too_long = fails("UPDATE students SET pin_hash = :h WHERE id = :i", {"h": scrypt_hash, "i": ids["student"]})
    assert too_long is (target_db.kind != "sqlite")
    fits = "pbkdf2:sha256:1000000$" + "s" * 16 + "$" + "0" * 64
    assert not fails("UPDATE students SET pin_hash = :h WHERE id = :i", {"h": fits, "i": ids["student"]})
    # Enums are enforced by the servers (SQLite: a plain VARCHAR). The role column holds the
    # names: PostgreSQL refuses the lower-case value; MariaDB matches ENUM members through the
    # case-insensitive collation and stores the declared name.
    lower = fails(insert_user, {"u": "lower", "e": "lower@example.org", "p": "!", "r": "teacher", "t": now})
    assert lower is (target_db.kind == "postgresql")
    if target_db.kind == "mariadb":
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT role FROM users WHERE username = 'lower'")).scalar() == "TEACHER"
    if target_db.kind != "sqlite":
        assert fails("UPDATE media SET media_type = 'document' WHERE id = :i", {"i": ids["media"]})
    with OrmSession(engine) as s:
        with pytest.raises(sa.exc.IntegrityError):
            with s.begin():
                s.add(d.StudentMediaInteraction(student_id=ids["student"], media_id=ids["media"]))
    engine.dispose()


def test_naive_datetimes_are_refused_and_aware_ones_stored_as_naive_utc():
    engine = sa.create_engine("sqlite://")
    d.create_all(engine)
    with pytest.raises(sa.exc.StatementError, match="naive datetime"):
        with OrmSession(engine) as s, s.begin():
            s.add(d.District(name="x", created_at=dt.datetime(2024, 1, 1)))
    plus_two = dt.timezone(dt.timedelta(hours=2))
    with OrmSession(engine) as s, s.begin():
        s.add(d.District(name="y", created_at=dt.datetime(2024, 1, 1, 12, tzinfo=plus_two),
                         updated_at=dt.datetime(2024, 1, 1, 12, tzinfo=plus_two)))
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT created_at FROM districts")).scalar().startswith("2024-01-01 10:00:00")
    with OrmSession(engine) as s:
        assert s.scalar(sa.select(d.District.created_at)) == dt.datetime(2024, 1, 1, 10, tzinfo=dt.timezone.utc)
