"""The target schema on every dialect: tables, constraints, shared queries."""
import datetime as dt

import pytest
import sqlalchemy as sa

import flask_models as fm

NOW = dt.datetime(2025, 3, 1, 8, 30, 15, 123456, tzinfo=dt.timezone.utc)


@pytest.fixture
def engine(target_db):
    engine = target_db.engine()
    if target_db.kind == "sqlite":
        sa.event.listen(engine, "connect", lambda c, _: c.execute("PRAGMA foreign_keys=ON"))
    fm.create_all(engine)
    yield engine
    engine.dispose()


def _fixture_rows(conn):
    """Two districts; teachers 1, 2 in district 1, teacher 3 in district 2, teacher 4 in none."""
    conn.execute(sa.insert(fm.District), [
        dict(id=1, name="North", code="N", is_active=True, created_at=NOW),
        dict(id=2, name="South", code="S", is_active=True, created_at=NOW),
    ])
    conn.execute(sa.insert(fm.User), [
        dict(id=i, username=f"t{i}", email="", district_id=d, date_joined=NOW, must_reset_password=False,
             is_active=True, is_staff=True, is_superuser=False)
        for i, d in [(1, 1), (2, 1), (3, 2), (4, None)]
    ])
    conn.execute(sa.insert(fm.Observer), [
        dict(id=1, name="o-north", email="n@x", district_id=1, created_at=NOW, is_active=True, must_reset_password=False),
        dict(id=2, name="o-south", email="s@x", district_id=2, created_at=NOW, is_active=True, must_reset_password=False),
    ])
    sessions = [(10, 1), (11, 2), (12, 3), (13, 4), (14, None)]
    conn.execute(sa.insert(fm.Session), [
        dict(id=i, name=f"s{i}", session_code=f"{i:08X}", section=i, module="4", created_at=NOW,
             is_paused=False, is_archived=False, created_by_id=t, character_set="marvel")
        for i, t in sessions
    ])
    conn.execute(sa.insert(fm.Student), [
        dict(id=100 + i, name=f"kid{i}", pin_hash="h", section_id=s, admin_id=a)
        for i, (s, a) in enumerate([(10, 1), (10, 1), (11, 2), (12, 3)])
    ])


def test_create_all_builds_every_table_and_round_trips_utc(engine):
    names = set(sa.inspect(engine).get_table_names())
    assert {t.name for t in fm.TABLES_IN_ORDER} <= names
    with engine.begin() as conn:
        _fixture_rows(conn)
    with engine.connect() as conn:
        created = conn.execute(sa.select(fm.District.created_at).where(fm.District.id == 1)).scalar_one()
    assert created == NOW  # microseconds and UTC kept on every dialect
    fm.drop_all(engine)
    assert not ({t.name for t in fm.TABLES_IN_ORDER} & set(sa.inspect(engine).get_table_names()))


def _session(i, teacher, section, archived):
    return dict(id=i, name=f"s{i}", session_code=f"C{i:07d}", section=section, module="4", created_at=NOW,
                is_paused=False, is_archived=archived, created_by_id=teacher, character_set="marvel")


def test_one_active_session_per_teacher_and_section(engine, target_db):
    with engine.begin() as conn:
        _fixture_rows(conn)
        conn.execute(sa.insert(fm.Session), [_session(50, 1, 7, False), _session(51, 1, 7, True),
                                             _session(52, 1, 7, True), _session(53, 2, 7, False)])
    second_active = _session(54, 1, 7, False)
    if target_db.kind == "mariadb":
        # MySQL has no partial indexes: the rule stays in application code there.
        with engine.begin() as conn:
            conn.execute(sa.insert(fm.Session), [second_active])
    else:
        with pytest.raises(sa.exc.IntegrityError):
            with engine.begin() as conn:
                conn.execute(sa.insert(fm.Session), [second_active])


@pytest.mark.parametrize("table,row", [
    (fm.Student, dict(id=900, name="x", pin_hash="h", section_id=999, admin_id=1)),
    (fm.Comment, dict(id=900, media_id=999, text="x", created_at=NOW, updated_at=NOW, name="n", is_admin=False)),
    (fm.Session, _session(900, 999, 1, False)),
])
def test_foreign_keys_are_real_constraints(engine, table, row):
    with engine.begin() as conn:
        _fixture_rows(conn)
    with pytest.raises(sa.exc.IntegrityError):
        with engine.begin() as conn:
            conn.execute(sa.insert(table), [row])


def test_insert_without_id_gets_a_fresh_one(engine):
    with engine.begin() as conn:
        new_id = conn.execute(sa.insert(fm.District).values(name="New", code="NEW", is_active=True,
                                                            created_at=NOW)).inserted_primary_key[0]
    assert new_id >= 1


def test_observer_sees_only_sessions_of_teachers_in_their_district(engine):
    with engine.begin() as conn:
        _fixture_rows(conn)
    with engine.connect() as conn:
        assert fm.observer_visible_session_ids(conn, 1) == {10, 11}
        assert fm.observer_visible_session_ids(conn, 2) == {12}
        assert fm.observer_visible_session_ids(conn, 404) == set()


def test_teacher_dashboard_lists_own_sessions_and_students(engine):
    with engine.begin() as conn:
        _fixture_rows(conn)
    with engine.connect() as conn:
        assert fm.teacher_dashboard(conn, 1) == fm.TeacherDashboard({10}, {100, 101})
        assert fm.teacher_dashboard(conn, 4) == fm.TeacherDashboard({13}, set())
        assert fm.teacher_dashboard(conn, 404) == fm.TeacherDashboard(set(), set())
