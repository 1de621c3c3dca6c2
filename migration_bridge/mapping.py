"""How a migration is declared: a ``Profile`` holds one ``Entity`` per legacy model, in
dependency order, and each entity says everything the engine does with its rows.

The declarations are the whole truth: the row path, sync, verify and the file step
read them and never branch on an entity's name. ``profiles/plan.py`` is the table a
newcomer reads top to bottom.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping

import sqlalchemy as sa

from . import transforms as t


@dataclass(frozen=True)
class Context:
    """What a transform takes from other rows: ``ctx.<field>``, a mapping source id ->
    value, computed by ``query(source, entity, loaded, rows)`` from the legacy DB.

    ``loaded`` holds the ids the target holds (or, in verify, must hold) per table, for
    the tables in ``needs``; ``rows`` is the batch when ``per_batch``, else None (once
    per entity). What the context gives a row is part of the row's fingerprint.

    ``recheck(source, entity, changed)``: for a per-batch context, the ids of the rows
    whose context may differ now, given ``changed`` (entity -> legacy ids added, changed
    or deleted since the last run, for the entities before this one). ``--sync``
    recomputes the context of those rows only; without it, of every row (a full scan)."""

    field: str
    query: Callable[..., Mapping[int, Any]]
    needs: tuple[str, ...] = ()
    per_batch: bool = False
    recheck: Callable[..., Iterable[int]] | None = None
    # with --on-duplicate-session fail: rows this context would change stop the run, saying so
    refusal: str | None = None


@dataclass(frozen=True)
class FileColumn:
    """A source field that references files of the source storage, and the target
    column that references the copies.

    ``source_form``: ``name`` (a storage name, FileField), ``url`` (a URL under
    MEDIA_URL_PREFIX, anything else is not a file and kept as it is), ``url_list``
    (a JSON list of such URLs) or ``static`` (a path of the legacy app's static files, as
    ``{% static %}`` takes it, read through staticfiles and named under
    ``filerefs.STATIC_NAMESPACE``; a value that is already a URL is kept).
    ``target_form``: ``key`` (the target storage key) or ``url`` (MEDIA_BASE_URL + key),
    a list of them for ``url_list``. ``names_key``:
    the media-id key scheme may put the owner's id in the key of these files."""

    source_field: str
    target_column: str
    source_form: str = "name"
    target_form: str = "key"
    names_key: bool = True


@dataclass(frozen=True)
class Counter:
    """A cached counter of this entity's target table: the number of ``counted`` rows
    whose ``match`` columns equal this row's (counted column -> this table's column)
    and, with ``where``, whose boolean column is true. verify recomputes it."""

    column: str
    counted: str
    match: Mapping[str, str]
    where: str | None = None


@dataclass(frozen=True)
class ByMeaning:
    """A target column that cannot equal its source value (salted, encrypted): verify
    compares it by meaning. ``rule``: ``pin`` (the hash verifies the source PIN) or
    ``decrypts`` (MEDIA_PASSWORD_KEY decrypts it to the source value; only with a key)."""

    column: str
    source_field: str
    rule: str


@dataclass(frozen=True)
class Page:
    """The Flask page showing one row, ``{id}`` replaced; ``setting`` may override it."""

    path: str
    setting: str


# How an entity's rows get their target ids. Under LEGACY_ID the target id is the legacy
# id and nothing is recorded; the two others go through the id map (``idmap.py``).
LEGACY_ID = "legacy"
LEGACY_ID_IF_FREE = "legacy_if_free"  # the legacy id when the table has it free, else a new one
NEW_ID = "new"  # a new id past the table's highest (tables shared by several entities)
TARGET_ID_RULES = (LEGACY_ID, LEGACY_ID_IF_FREE, NEW_ID)


@dataclass(frozen=True)
class Entity:
    name: str  # the entity's name: on the command line, in the bookkeeping and in other declarations
    source_model: str | None  # model name in the legacy app (label from settings); None: derived rows only
    target: sa.Table  # the table the row's id lives in
    source_fields: tuple[str, ...]  # Django attnames read with values_list, "id" first
    transform: Callable = t.copy_row
    # target FK column -> entity whose loaded ids it must point at
    foreign_keys: Mapping[str, str] = field(default_factory=dict)
    # a FK to the same table: rows whose parent comes later in id order wait for it
    self_foreign_key: str | None = None
    choices: Mapping[str, frozenset] = field(default_factory=dict)
    contexts: tuple[Context, ...] = ()
    # target column filled by the PIN-hashing pool from this source field
    hashed_pin: tuple[str, str] | None = None
    # source fields holding secrets: never copied into rejects or notes
    secret_fields: tuple[str, ...] = ()
    # target columns holding secrets: no value of them is ever shown
    secret_columns: tuple[str, ...] = ()
    by_meaning: tuple[ByMeaning, ...] = ()
    files: tuple[FileColumn, ...] = ()
    counters: tuple[Counter, ...] = ()
    page: Page | None = None
    # rows made from the legacy DB rather than read from one model (schools from free
    # text, a placeholder owner): ``derived(source) -> [source-shaped dicts]`` with
    # synthetic ids, added to the model's rows in id order
    derived: Callable[[Any], list[dict]] | None = None
    # tables holding more columns of the same row under the same id (joined inheritance:
    # a student is a ``users`` row and a ``students`` row)
    also: tuple[sa.Table, ...] = ()
    target_ids: str = LEGACY_ID

    @property
    def tables(self) -> tuple[sa.Table, ...]:
        return (self.target, *self.also)

    @property
    def column_names(self) -> tuple[str, ...]:
        """The target columns of its rows, across its tables (``id`` once)."""
        return tuple(dict.fromkeys(c.name for table in self.tables for c in table.columns))

    @property
    def mapped(self) -> bool:
        """Its target ids are not its legacy ids: the id map translates them."""
        return self.target_ids != LEGACY_ID

    @property
    def all_foreign_keys(self) -> dict[str, str]:
        """Every FK column -> entity, the self-reference included."""
        keys = dict(self.foreign_keys)
        if self.self_foreign_key:
            keys[self.self_foreign_key] = self.name
        return keys

    @property
    def secret_free_fields(self) -> tuple[str, ...]:
        return tuple(f for f in self.source_fields if f not in self.secret_fields)

    @property
    def parents(self) -> frozenset[str]:
        """Every table whose ids this entity's rows or contexts read."""
        return frozenset(self.foreign_keys.values()).union(*(c.needs for c in self.contexts))


@dataclass(frozen=True)
class Checks:
    """The access rules verify's checks share with the Flask app, for one profile (an
    ``AccessRule`` each, or None: the check does not run)."""

    observer_scope: "AccessRule | None" = None
    teacher_dashboards: "AccessRule | None" = None


@dataclass(frozen=True)
class AccessRule:
    """Who sees what: ``legacy(source) -> {owner id: {entity: ids}}`` by the legacy app's
    rule, ``target(conn, owner id) -> {entity: ids}`` by the Flask app's own query."""

    owner: str  # entity whose rows see (observers, users)
    seen: tuple[str, ...]  # entities whose ids they see
    legacy: Callable[[Any], Mapping[int, Mapping[str, set]]]
    target: Callable[[Any, int], Mapping[str, set]]


@dataclass(frozen=True)
class Profile:
    """A target schema and the migration into it."""

    name: str
    description: str
    metadata: sa.MetaData
    entities: tuple[Entity, ...]
    checks: Checks = field(default_factory=Checks)
    # (teacher, session code, session name, student id, student name, PIN) rows
    pin_roster: Callable[[Any], Iterator[tuple]] | None = None
    roster_entity: str | None = None  # ids of the roster rows: only migrated ones are listed
    # where the Flask app serves the target storage, when the app fixes it (else the
    # MEDIA_BASE_URL setting)
    media_base_url: str | None = None
    # werkzeug method for PINs when --pin-hash-method is not given (None: werkzeug's default)
    pin_hash_method: str | None = None

    @property
    def maps_ids(self) -> bool:
        return any(e.mapped for e in self.entities)

    @property
    def tables(self) -> list[sa.Table]:
        """The target tables, parents first."""
        return list(self.metadata.sorted_tables)

    @property
    def entity_names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.entities)

    def entity(self, name: str) -> Entity:
        for entity in self.entities:
            if entity.name == name:
                return entity
        raise KeyError(name)

    def create_schema(self, engine: sa.Engine) -> None:
        self.metadata.create_all(engine)
