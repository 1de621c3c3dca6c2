"""The id map: which target row each legacy row became, for the entities whose target
ids are not their legacy ids (``Entity.target_ids``), e.g. observers and students that
become rows of a ``users`` table shared with teachers.

Everything between reading the source and writing the target works in *legacy* ids:
the row path, notes, fingerprints, sync's diff, verify's expectations. This module is
the one place ids cross over: ``IdMap.to_target`` gives written rows their target ids
(allocating new ones, recorded in ``legacy_id_map`` in the same transaction as the
rows), ``legacy_view`` reads a target table back in legacy ids.

Allocation is deterministic: in the order rows are written, the legacy id when the rule
allows it and the table has it free, else one past the highest id the table or the map
holds. A resumed run continues from what was committed, so it allocates exactly what an
uninterrupted run would have.

``legacy_id_map`` is not bookkeeping: ``--cleanup`` keeps it, for the Flask app to
redirect old links (shape in docs/INSTALL.md).
"""
from __future__ import annotations

from typing import Callable, Iterable

import sqlalchemy as sa

from . import dialects
from .idset import IdSet
from .mapping import LEGACY_ID_IF_FREE, Entity, Profile

id_map_metadata = sa.MetaData()

id_map = sa.Table(
    "legacy_id_map", id_map_metadata,
    sa.Column("entity", sa.String(50), primary_key=True),
    sa.Column("legacy_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("target_table", sa.String(64), nullable=False),
    sa.Column("target_id", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("target_table", "target_id", name="uq_legacy_id_map_target"),
    # the way back (target id -> legacy id), joined for every mapped foreign key: without it
    # MariaDB scans the entity's whole map per row
    sa.UniqueConstraint("entity", "target_id", name="uq_legacy_id_map_entity_target"),
    mysql_charset="utf8mb4", mysql_collate="utf8mb4_bin", mysql_engine="InnoDB",
)

# a kept legacy id must fit the target's INTEGER ids (ids <= 0 exist in real data, too)
KEEPABLE = range(1, 2**31)


def create_id_map(engine: sa.Engine) -> None:
    id_map_metadata.create_all(engine)


def has_id_map(conn: sa.Connection) -> bool:
    return sa.inspect(conn).has_table(id_map.name)


class IdMap:
    """Legacy id -> target id per mapped entity, loaded from the target on first use and
    kept current in memory by this run's allocations (one thread allocates: the reader)."""

    def __init__(self, profile: Profile, engine: sa.Engine, highest_kept: Callable[[Entity], int | None] = None):
        self.profile = profile
        self.engine = engine
        # the highest legacy id an entity may keep (from the source): new ids go above it,
        # so that an early row given a new id never takes a later row's own id
        self.highest_kept = highest_kept or (lambda entity: None)
        self._maps: dict[str, dict[int, int]] = {}
        self._reverse: dict[str, dict[int, int]] = {}
        self._taken: dict[str, set[int]] = {}  # target table -> ids mapped (every entity)
        self._next: dict[str, int] = {}  # target table -> next new id

    # --- reading -----------------------------------------------------------------

    def of(self, entity_name: str) -> dict[int, int]:
        """Legacy id -> target id of one mapped entity."""
        if entity_name not in self._maps:
            with self.engine.connect() as conn:
                self._maps[entity_name] = dict(conn.execute(
                    sa.select(id_map.c.legacy_id, id_map.c.target_id).where(id_map.c.entity == entity_name)).all())
        return self._maps[entity_name]

    def target_id(self, entity: Entity, legacy_id: int) -> int | None:
        return self.of(entity.name).get(legacy_id) if entity.mapped else legacy_id

    def legacy_ids(self, entity: Entity, target_ids: Iterable[int]) -> set[int]:
        """The legacy ids of target rows of ``entity`` (ids of other entities' rows dropped).
        For readers only (verify): the reverse map is built once."""
        if not entity.mapped:
            return set(target_ids)
        if entity.name not in self._reverse:
            self._reverse[entity.name] = {t: legacy for legacy, t in self.of(entity.name).items()}
        reverse = self._reverse[entity.name]
        return {reverse[t] for t in target_ids if t in reverse}

    def forget(self, entity: Entity, legacy_ids: Iterable[int]) -> None:
        """Rows deleted (sync): their entries go with them, in memory too."""
        if entity.mapped:
            known = self.of(entity.name)
            for i in legacy_ids:
                target = known.pop(i, None)
                if target is not None:
                    self._taken.get(entity.target.name, set()).discard(target)

    # --- allocating and translating ------------------------------------------------

    def _taken_ids(self, table: sa.Table) -> set[int]:
        """The ids the table or the map hold (a row the Flask app added itself, too); on first
        use also where new ids start."""
        if table.name not in self._taken:
            with self.engine.connect() as conn:
                taken = set(conn.execute(sa.select(id_map.c.target_id)
                                         .where(id_map.c.target_table == table.name)).scalars())
                taken.update(conn.execute(sa.select(table.c.id)).scalars())
            reserved = [self.highest_kept(e) or 0 for e in self.profile.entities
                        if e.target is table and e.target_ids == LEGACY_ID_IF_FREE]
            self._taken[table.name] = taken
            self._next[table.name] = max([max(taken, default=0), *reserved]) + 1
        return self._taken[table.name]

    def _allocate(self, entity: Entity, legacy_id: int) -> int:
        table = entity.target
        taken = self._taken_ids(table)
        keep = entity.target_ids == LEGACY_ID_IF_FREE and legacy_id in KEEPABLE and legacy_id not in taken
        target = legacy_id if keep else self._next[table.name]
        taken.add(target)
        self._next[table.name] = max(self._next[table.name], target + 1)
        return target

    def to_target(self, entity: Entity, rows: list[dict]) -> tuple[list[tuple[sa.Table, list[dict]]], list[dict]]:
        """The rows as the target tables take them, and the new entries of the map."""
        parents = {column: self.profile.entity(parent) for column, parent in entity.all_foreign_keys.items()}
        mapped_parents = {column: parent for column, parent in parents.items() if parent.mapped}
        if not entity.mapped and not mapped_parents and not entity.also:
            return [(entity.target, rows)], []
        new_entries = []
        if entity.mapped:
            known = self.of(entity.name)
            for row in rows:  # every id first: a row may point at another of the same batch
                if row["id"] not in known:
                    known[row["id"]] = target = self._allocate(entity, row["id"])
                    new_entries.append({"entity": entity.name, "legacy_id": row["id"],
                                        "target_table": entity.target.name, "target_id": target})
        translated = []
        for row in rows:
            out = dict(row)
            if entity.mapped:
                out["id"] = self.of(entity.name)[row["id"]]
            for column, parent in mapped_parents.items():
                if out.get(column) is not None:
                    out[column] = self.of(parent.name)[out[column]]
            translated.append(out)
        if not entity.also:
            return [(entity.target, translated)], new_entries
        return [(table, [{c.name: r.get(c.name) for c in table.columns} for r in translated])
                for table in entity.tables], new_entries


def legacy_ids_query(profile: Profile, entity: Entity, ordered: bool = True) -> sa.Select:
    """The legacy ids of the entity's target rows (ascending when ``ordered``): one join at
    most, none for its foreign keys."""
    main = entity.target
    if not entity.mapped:
        column, query = main.c.id, sa.select(main.c.id.label("id"))
    else:
        own = id_map.alias(f"map_{entity.name}")
        column = own.c.legacy_id
        query = sa.select(own.c.legacy_id.label("id")).select_from(
            main.join(own, sa.and_(own.c.entity == entity.name, own.c.target_id == main.c.id)))
    return query.order_by(column) if ordered else query


def legacy_id_ranges_query(profile: Profile, entity: Entity) -> sa.Select:
    """``(first, last)`` of each run of consecutive legacy ids of the entity's target rows,
    ascending: the database reads a million ids, Python a few ranges (``IdSet.from_ranges``)."""
    ids = legacy_ids_query(profile, entity, ordered=False).subquery()
    # consecutive ids share their id minus their rank
    run = sa.select(ids.c.id, (ids.c.id - sa.func.row_number().over(order_by=ids.c.id)).label("run")).subquery()
    first = sa.func.min(run.c.id)
    return sa.select(first, sa.func.max(run.c.id)).group_by(run.c.run).order_by(first)


def target_legacy_ids(conn: sa.Connection, profile: Profile, entity: Entity) -> IdSet:
    """The legacy ids of every target row of the entity, read as ranges (one query)."""
    dialects.prepare_aggregate_reads(conn)
    ranges = legacy_id_ranges_query(profile, entity)
    return IdSet.from_ranges(conn.execution_options(stream_results=True, yield_per=50_000).execute(ranges))


def legacy_view(profile: Profile, entity: Entity) -> sa.Subquery:
    """The entity's target rows as the row path sees them: the columns of all its tables,
    its id and every foreign key to a mapped entity translated back to legacy ids.
    Without a map or sub-tables, the table itself."""
    main = entity.target
    columns: dict[str, sa.ColumnElement] = {}
    for table in entity.tables:
        for column in table.columns:
            columns.setdefault(column.name, column)
    joined = main
    for table in entity.also:
        joined = joined.join(table, table.c.id == main.c.id)
    if entity.mapped:
        own = id_map.alias(f"map_{entity.name}")
        joined = joined.join(own, sa.and_(own.c.entity == entity.name, own.c.target_id == main.c.id))
        columns["id"] = own.c.legacy_id
    for column, parent in entity.all_foreign_keys.items():
        if profile.entity(parent).mapped:
            ref = id_map.alias(f"map_{column}")
            joined = joined.outerjoin(ref, sa.and_(ref.c.entity == parent, ref.c.target_id == columns[column]))
            columns[column] = ref.c.legacy_id
    return sa.select(*[c.label(name) for name, c in columns.items()]).select_from(joined).subquery(
        f"legacy_{entity.name}")


def unmapped_rows(conn: sa.Connection, profile: Profile, show: int = 20) -> dict[str, tuple[int, list[int]]]:
    """Per table written by mapped entities: the rows no map entry of those entities names
    (``legacy_view`` cannot see them, so the per-entity counts would miss them)."""
    writers: dict[str, list[str]] = {}
    tables: dict[str, sa.Table] = {}
    for entity in profile.entities:
        if entity.mapped:
            for table in entity.tables:
                writers.setdefault(table.name, []).append(entity.name)
                tables[table.name] = table
    found = {}
    for name, entities in writers.items():
        table = tables[name]
        mapped = sa.exists().where(id_map.c.entity.in_(entities), id_map.c.target_id == table.c.id)
        stray = sa.select(table.c.id).where(~mapped)  # an anti-join: NOT IN would be quadratic on PostgreSQL
        count = conn.execute(sa.select(sa.func.count()).select_from(stray.subquery())).scalar_one()
        if count:
            found[name] = (count, list(conn.execute(stray.order_by(table.c.id).limit(show)).scalars()))
    return found


CSV_HEADER = ("entity", "legacy_id", "target_table", "target_id")


def write_csv(engine: sa.Engine, path) -> int:
    """The whole map as CSV (the shape of ``legacy_id_map``), for redirects outside the
    database; returns the number of entries."""
    import csv

    count = 0
    with engine.connect() as conn, open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_HEADER)
        result = conn.execution_options(stream_results=True, yield_per=20_000).execute(
            sa.select(*[id_map.c[c] for c in CSV_HEADER]).order_by(id_map.c.entity, id_map.c.legacy_id))
        for row in result:
            writer.writerow(row)
            count += 1
    return count
