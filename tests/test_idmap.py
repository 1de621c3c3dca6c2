"""The id map: deterministic target ids for entities whose ids cannot be kept, rows split
over joined tables, and the target read back in legacy ids — on a real SQLite target."""
from __future__ import annotations

import sqlalchemy as sa
import pytest

from migration_bridge import dialects
from migration_bridge.idmap import (IdMap, create_id_map, id_map, legacy_id_ranges_query, legacy_ids_query,
                                    legacy_view, unmapped_rows)
from migration_bridge.idset import IdSet
from migration_bridge.mapping import LEGACY_ID, LEGACY_ID_IF_FREE, NEW_ID, Entity, Profile

metadata = sa.MetaData()
people = sa.Table("people", metadata, sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(20)))
pupils = sa.Table("pupils", metadata, sa.Column("id", sa.Integer, sa.ForeignKey("people.id"), primary_key=True),
                  sa.Column("teacher_id", sa.Integer, sa.ForeignKey("people.id")), sa.Column("pin", sa.String(10)))
posts = sa.Table("posts", metadata, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("pupil_id", sa.Integer, sa.ForeignKey("pupils.id")), sa.Column("text", sa.String(20)))

PROFILE = Profile("toy-map", "people, pupils sharing their table, posts", metadata, (
    Entity("teachers", "T", people, ("id", "name"), target_ids=LEGACY_ID_IF_FREE),
    Entity("pupils", "P", people, ("id", "name", "teacher_id", "pin"), also=(pupils,),
           foreign_keys={"teacher_id": "teachers"}, target_ids=NEW_ID),
    Entity("posts", "M", posts, ("id", "pupil_id", "text"), foreign_keys={"pupil_id": "pupils"},
           target_ids=LEGACY_ID),
))


@pytest.fixture()
def engine(tmp_path):
    engine = dialects.create_target_engine(f"sqlite:///{tmp_path}/t.sqlite3")
    metadata.create_all(engine)
    create_id_map(engine)
    yield engine
    engine.dispose()


def write(engine, idmap: IdMap, name: str, rows: list[dict]) -> None:
    tables, entries = idmap.to_target(PROFILE.entity(name), [dict(r) for r in rows])
    with engine.begin() as conn:
        for table, table_rows in tables:
            dialects.insert_new(conn, table, table_rows)
        dialects.insert_new(conn, id_map, entries)


def load_all(engine, idmap=None) -> IdMap:
    # the source's highest teacher id is 7: new ids start above it
    idmap = idmap or IdMap(PROFILE, engine, lambda entity: 7)
    write(engine, idmap, "teachers", [{"id": 0, "name": "t0"}, {"id": 3, "name": "t3"}, {"id": 7, "name": "t7"}])
    write(engine, idmap, "pupils", [{"id": 3, "name": "p3", "teacher_id": 7, "pin": "x"},
                                    {"id": 4, "name": "p4", "teacher_id": 3, "pin": "y"}])
    write(engine, idmap, "posts", [{"id": 1, "pupil_id": 4, "text": "hi"}])
    return idmap


def target_rows(engine, table) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(table).order_by(*table.primary_key.columns))]


def test_kept_where_free_new_past_the_highest(engine):
    load_all(engine)
    # teacher 0 cannot keep its id (ids start at 1): it gets one past the highest legacy id,
    # 8, not 1, which a later teacher may hold
    assert target_rows(engine, people) == [(3, "t3"), (7, "t7"), (8, "t0"), (9, "p3"), (10, "p4")]
    assert target_rows(engine, pupils) == [(9, 7, "x"), (10, 3, "y")]
    assert target_rows(engine, posts) == [(1, 10, "hi")]  # the FK follows the pupil's new id


def test_allocation_is_deterministic_and_survives_a_restart(engine, tmp_path):
    idmap = load_all(engine)
    first = target_rows(engine, id_map)
    # a new process (resume): the map is read back, nothing is allocated twice
    again = IdMap(PROFILE, engine, lambda entity: 7)
    tables, entries = again.to_target(PROFILE.entity("pupils"), [{"id": 3, "name": "p3", "teacher_id": 7, "pin": "x"}])
    assert entries == [] and tables[0][1][0]["id"] == 9
    tables, entries = again.to_target(PROFILE.entity("pupils"), [{"id": 5, "name": "p5", "teacher_id": 7, "pin": "z"}])
    assert entries == [{"entity": "pupils", "legacy_id": 5, "target_table": "people", "target_id": 11}]
    assert idmap.of("pupils") == {3: 9, 4: 10}
    assert target_rows(engine, id_map) == first


def test_a_later_teacher_whose_id_is_taken_gets_a_new_one(engine):
    idmap = load_all(engine)
    tables, entries = idmap.to_target(PROFILE.entity("teachers"), [{"id": 9, "name": "t9"}, {"id": 42, "name": "t42"}])
    assert [r["id"] for r in tables[0][1]] == [11, 42]


def test_legacy_view_reads_the_target_in_legacy_ids(engine):
    load_all(engine)
    with engine.connect() as conn:
        view = legacy_view(PROFILE, PROFILE.entity("pupils"))
        assert [tuple(r) for r in conn.execute(sa.select(view).order_by(view.c.id))] == [
            (3, "p3", 7, "x"), (4, "p4", 3, "y")]
        view = legacy_view(PROFILE, PROFILE.entity("posts"))
        assert [tuple(r) for r in conn.execute(sa.select(view))] == [(1, 4, "hi")]
        view = legacy_view(PROFILE, PROFILE.entity("teachers"))
        assert sorted(conn.execute(sa.select(view.c.id)).scalars()) == [0, 3, 7]  # not the pupils


def test_rows_outside_the_map_are_found(engine):
    load_all(engine)
    with engine.begin() as conn:
        assert unmapped_rows(conn, PROFILE) == {}
        conn.execute(people.insert().values(id=50, name="stray"))
        conn.execute(pupils.insert().values(id=3, teacher_id=None, pin=None))  # a sub-row a teacher id owns
    with engine.connect() as conn:
        assert unmapped_rows(conn, PROFILE) == {"people": (1, [50]), "pupils": (1, [3])}


def test_forget_frees_nothing_but_the_entry(engine):
    idmap = load_all(engine)
    idmap.forget(PROFILE.entity("pupils"), [3])
    assert idmap.of("pupils") == {4: 10}
    # the freed target id is not reused: a new pupil still gets one past the highest
    tables, entries = idmap.to_target(PROFILE.entity("pupils"), [{"id": 6, "name": "p6", "teacher_id": 7, "pin": "q"}])
    assert entries[0]["target_id"] == 11


def test_unmapped_entities_pass_through_untouched(engine):
    idmap = IdMap(PROFILE, engine)
    entity = Entity("plain", "X", posts, ("id", "pupil_id", "text"), target_ids=LEGACY_ID)
    rows = [{"id": 5, "pupil_id": None, "text": "a"}]
    assert idmap.to_target(entity, rows) == ([(posts, rows)], [])


def test_an_upsert_clashing_on_another_unique_key_never_overwrites_that_row(target_db):
    """MySQL's ON DUPLICATE KEY UPDATE fires on any unique key: two users would become one.
    On every dialect the upsert decides by primary key only, and a clash is an error."""
    accounts = sa.Table("accounts", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
                        sa.Column("login", sa.String(20), unique=True), sa.Column("name", sa.String(20)))
    engine = target_db.engine()
    accounts.metadata.create_all(engine)
    with engine.begin() as conn:
        dialects.upsert(conn, accounts, [{"id": 1, "login": "ann", "name": "Ann"},
                                         {"id": 2, "login": "bob", "name": "Bob"}])
        dialects.upsert(conn, accounts, [{"id": 1, "login": "ann", "name": "Ann B."},
                                         {"id": 3, "login": "cy", "name": "Cy"}])  # update + insert
    with pytest.raises((sa.exc.IntegrityError, engine.dialect.dbapi.IntegrityError)):  # PostgreSQL: COPY
        with engine.begin() as conn:
            dialects.upsert(conn, accounts, [{"id": 4, "login": "bob", "name": "Intruder"}])
    with engine.connect() as conn:
        assert [tuple(r) for r in conn.execute(sa.select(accounts).order_by(accounts.c.id))] == [
            (1, "ann", "Ann B."), (2, "bob", "Bob"), (3, "cy", "Cy")]
    engine.dispose()


def test_id_ranges_read_back_exactly_the_legacy_ids(target_db):
    """A parent's ids are read as runs of consecutive ids (the database finds the runs):
    gaps, single ids and negative ids come back as they are, mapped or not."""
    engine = target_db.engine()
    metadata.create_all(engine)
    create_id_map(engine)
    idmap = IdMap(PROFILE, engine, lambda entity: 40)
    write(engine, idmap, "teachers", [{"id": i, "name": f"t{i}"} for i in (-3, -2, 0, 1, 2, 5, 9, 10, 11, 40)])
    pupils = [3, 4, 5, 8, 20, 21]
    write(engine, idmap, "pupils", [{"id": i, "name": f"p{i}", "teacher_id": 1, "pin": None} for i in pupils])
    write(engine, idmap, "posts", [{"id": i, "pupil_id": 3, "text": "t"} for i in (*range(100, 300), 302)])
    with engine.connect() as conn:
        for entity in PROFILE.entities:
            ids = IdSet.from_ranges(conn.execute(legacy_id_ranges_query(PROFILE, entity)))
            assert sorted(ids) == sorted(conn.execute(legacy_ids_query(PROFILE, entity)).scalars()), entity.name
    engine.dispose()
