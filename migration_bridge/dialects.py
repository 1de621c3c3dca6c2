"""All dialect-specific SQL of the target side lives here.

- ``upsert``: insert-or-update on the primary key only (PostgreSQL: COPY into a staging
  table, then INSERT ... ON CONFLICT; MySQL/MariaDB: INSERT ... ON DUPLICATE KEY
  UPDATE, or UPDATE by key then INSERT for tables with other unique keys, which ON
  DUPLICATE KEY would also fire on; SQLite: INSERT ... ON CONFLICT).
- ``insert_new``: plain insert of rows known to be new (PostgreSQL: COPY into the table).
- ``reset_sequences``: after loading explicit ids, move PostgreSQL sequences past them.
- ``refresh_statistics``: ANALYZE what an export loaded; ``leave_room_for_updates``: a
  bookkeeping table's fill factor; ``room_while_loading``: the loaded tables' pages;
  ``built_after_loading``: their indexes and foreign keys dropped while loading, built after.
- ``empty_tables``: children first.
- URL normalisation and masking.
- The legacy side: the connection's charset forced to utf8mb4 and read back,
  ``Utf8Bytes``, text length in bytes counted by the database itself, and ``RowDigest``,
  a row's digest computed by the database itself, and ``ChunkRowDigests``, a chunk's
  digests gathered by the database (what ``--sync`` sums and compares per chunk).
- ``chunk_start``: the first id of the fixed-width chunk an id falls in, the same
  integer on every dialect, for the per-chunk sums on both sides.
- The legacy side's change log (``changelog``): its tables and triggers (MariaDB, MySQL,
  SQLite).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import json
import logging
import operator
import os
import re
import time
from typing import Iterable, Sequence

import sqlalchemy as sa
from django.db.models import Aggregate, BigIntegerField, F, Func, TextField
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import make_url

from .errors import BridgeError, first_line

_DATETIME, _UTC = dt.datetime, dt.timezone.utc
_UTC_EPOCH, _NAIVE_EPOCH = _DATETIME(1970, 1, 1, tzinfo=_UTC), _DATETIME(1970, 1, 1)

log = logging.getLogger("migration_bridge")


# --- URLs ------------------------------------------------------------------------

def normalize_url(url: str) -> sa.URL:
    """Accept the URLs users type: postgres:// and postgresql:// use psycopg 3,
    mysql:// uses mysqlclient with utf8mb4."""
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError:
        from .errors import redact

        raise BridgeError(f"invalid database URL {redact(str(url))!r}: expected e.g. postgresql://user@host/name, "
                          "mysql://user@host/name or sqlite:///path/to/file.sqlite3") from None
    driver = parsed.drivername
    if driver in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif driver in ("mysql", "mariadb", "mysql+mysqldb", "mariadb+mysqldb"):
        parsed = parsed.set(drivername="mysql+mysqldb")
        if "charset" not in parsed.query:
            parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return parsed


def mask_url(url) -> str:
    """The URL with its password replaced by ***, for every message and report."""
    if isinstance(url, sa.URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - unparsable: show no part that may hold a secret
        return "<unparsable URL>"


CONNECT_TIMEOUT = 10  # seconds to reach the server before "unreachable"


def create_target_engine(url: str, lock_timeout: float | None = None) -> sa.Engine:
    """The target engine. ``lock_timeout`` (seconds): no statement waits longer for a lock
    (PostgreSQL ``lock_timeout``, MariaDB ``lock_wait_timeout`` and
    ``innodb_lock_wait_timeout``, SQLite's busy timeout); connections record their server
    process id in ``engine.bridge_backends``, and on PostgreSQL go by the name in
    ``engine.bridge_application_name`` (for ``waits.watch``)."""
    parsed = normalize_url(url)
    backend = parsed.get_backend_name()
    connect_args: dict = {}
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(parsed.database)), exist_ok=True)
        if lock_timeout:
            connect_args["timeout"] = lock_timeout
    elif backend in ("postgresql", "mysql", "mariadb") and "connect_timeout" not in parsed.query:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT
    if backend == "postgresql" and "keepalives" not in parsed.query:
        # a server that vanishes mid-statement is noticed in about a minute, not hours
        connect_args.update(keepalives=1, keepalives_idle=30, keepalives_interval=10, keepalives_count=3)
    if backend == "postgresql" and "application_name" not in parsed.query:
        # the sessions of this process and of the helpers it forks (they share the engine)
        # go by one name: waits.watch finds theirs too
        connect_args["application_name"] = f"migration_bridge {os.getpid()}"
    try:
        # hide_parameters: row values (media passwords, hashes) never reach an error message
        engine = sa.create_engine(parsed, pool_pre_ping=True, hide_parameters=True, connect_args=connect_args)
    except (sa.exc.NoSuchModuleError, sa.exc.ArgumentError, ImportError) as exc:
        raise BridgeError(f"unsupported target URL {mask_url(parsed)}: {exc}") from None
    engine.bridge_backends = set()
    engine.bridge_application_name = connect_args.get("application_name")
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    else:
        sa.event.listen(engine, "connect", functools.partial(_session_setup, engine, lock_timeout))
    return engine


def _session_setup(engine: sa.Engine, lock_timeout: float | None, dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    try:
        if engine.dialect.name == "postgresql":
            if lock_timeout:
                cursor.execute(f"SET lock_timeout = {int(lock_timeout * 1000)}")
            # the bridge's queries are many short range scans, each costed high enough to be
            # JIT-compiled: the compiling took 200 of 450 ms of a verify chunk-digest query
            # (where the server has the setting: PostgreSQL 11 on)
            cursor.execute("SELECT set_config('jit', 'off', false) FROM pg_settings WHERE name = 'jit'")
            cursor.execute("SELECT pg_backend_pid()")
        else:
            # an explicit id 0 is a real legacy id, not a request for the next AUTO_INCREMENT value
            cursor.execute("SET SESSION sql_mode = CONCAT_WS(',', NULLIF(@@sql_mode, ''), 'NO_AUTO_VALUE_ON_ZERO')")
            if lock_timeout:
                seconds = max(1, int(round(lock_timeout)))
                cursor.execute(f"SET SESSION lock_wait_timeout = {seconds}")
                cursor.execute(f"SET SESSION innodb_lock_wait_timeout = {seconds}")
            cursor.execute("SELECT CONNECTION_ID()")
        engine.bridge_backends.add(int(cursor.fetchone()[0]))
    finally:
        cursor.close()
    if engine.dialect.name == "postgresql":
        dbapi_connection.commit()  # psycopg opened a transaction for the SET; SET stays


def _sqlite_pragmas(dbapi_connection, _record):
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def describe_connect_error(exc: Exception, url) -> str:
    from .errors import database_error_line, first_line, is_wait_error

    if is_wait_error(exc):  # reached, but a lock or a statement timeout stopped us
        return database_error_line(exc, "target")
    return f"target database {mask_url(url)} unreachable: {first_line(exc)}"


# --- loading ----------------------------------------------------------------------

def upsert(conn: sa.Connection, table: sa.Table, rows: Sequence[dict]) -> None:
    if not rows:
        return
    name = conn.dialect.name
    if name == "postgresql":
        _copy_upsert_postgresql(conn, table, rows)
        return
    pk = [c.name for c in table.primary_key.columns]
    others = [c.name for c in table.columns if c.name not in pk]
    if name in ("mysql", "mariadb") and _has_unique_besides_key(table):
        _update_then_insert(conn, table, rows, pk, others)
        return
    if name in ("mysql", "mariadb"):
        stmt = mysql.insert(table)
        stmt = stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in (others or pk)})
    elif name == "sqlite":
        stmt = sqlite.insert(table)
        stmt = (stmt.on_conflict_do_update(index_elements=pk, set_={c: stmt.excluded[c] for c in others})
                if others else stmt.on_conflict_do_nothing(index_elements=pk))
    else:
        raise BridgeError(f"unsupported target dialect {name!r}")
    conn.execute(stmt, list(rows))


def _has_unique_besides_key(table: sa.Table) -> bool:
    return any(c.unique for c in table.columns) or any(
        isinstance(k, sa.UniqueConstraint) for k in table.constraints)


def _update_then_insert(conn: sa.Connection, table: sa.Table, rows: Sequence[dict], pk: list[str],
                        others: list[str]) -> None:
    """MySQL's ON DUPLICATE KEY UPDATE fires on *any* unique key: a row clashing with another
    row's unique value (a username) would overwrite that row. Here only the primary key
    decides; a unique clash raises IntegrityError."""
    keys = [tuple(r[k] for k in pk) for r in rows]
    columns = [table.c[k] for k in pk]
    existing = set()
    for start in range(0, len(keys), 1000):
        chunk = keys[start:start + 1000]
        existing.update(tuple(r) for r in conn.execute(sa.select(*columns).where(sa.tuple_(*columns).in_(chunk))))
    old = [r for r, k in zip(rows, keys) if k in existing]
    new = [r for r, k in zip(rows, keys) if k not in existing]
    if old and others:
        stmt = table.update().where(*[table.c[k] == sa.bindparam(f"k_{k}") for k in pk]).values(
            {c: sa.bindparam(f"v_{c}") for c in others})
        conn.execute(stmt, [{**{f"k_{k}": r[k] for k in pk}, **{f"v_{c}": r.get(c) for c in others}} for r in old])
    if new:
        conn.execute(table.insert(), list(new))


def insert_new(conn: sa.Connection, table: sa.Table, rows: Sequence[dict]) -> None:
    """Plain insert, for rows the caller knows are not in the table yet (the fast path:
    PostgreSQL COPYs straight into the table). A row that is there raises IntegrityError."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        with conn.connection.driver_connection.cursor() as cur:
            _copy_rows(cur, table.name, table, rows)
        return
    conn.execute(table.insert(), list(rows))


def _copy_rows(cur, into: str, table: sa.Table, rows: Sequence[dict]) -> None:
    keys = [c.name for c in table.columns]
    names = ", ".join(f'"{k}"' for k in keys)
    values = [list(map(row.get, keys)) for row in rows]  # a column the row lacks is NULL
    for i, c in enumerate(table.columns):
        if isinstance(c.type, sa.JSON):
            for row in values:
                if row[i] is not None:
                    row[i] = json.dumps(row[i])
    types = _binary_copy_types(cur, into, keys, values)
    with cur.copy(f'COPY "{into}" ({names}) FROM STDIN' + (" (FORMAT BINARY)" if types else "")) as copy:
        if types:
            copy.set_types(types)
        for row in values:
            copy.write_row(row)


# the type of a column in the database -> what its values are sent as in a binary COPY (an
# enum, a JSON value and a varchar are received as their text); the Python types it takes
_BINARY_COPY = {"int8": ("int8", {int}), "int4": ("int4", {int}), "int2": ("int2", {int}), "bool": ("bool", {bool}),
                "text": ("text", {str}), "varchar": ("text", {str}), "json": ("text", {str}),
                "timestamptz": ("timestamptz", {dt.datetime}), "timestamp": ("timestamp", {dt.datetime})}
# psycopg's binary dumpers wrap an integer out of range (2**31 into int4 becomes -2**31):
# such a batch goes as text, where PostgreSQL refuses it
_INTEGER_RANGE = {"int2": (-2**15, 2**15 - 1), "int4": (-2**31, 2**31 - 1), "int8": (-2**63, 2**63 - 1)}
_NONE = type(None)
_is_not_none = functools.partial(operator.is_not, None)
_tzinfo = operator.attrgetter("tzinfo")


def _binary_copy_types(cur, into: str, keys: list[str], values: list[list]) -> list[str] | None:
    """The types to send ``values`` (rows, in ``keys`` order) as in a binary COPY into the
    table ``into``, taken from the database's catalog; None when a column or a value is not
    one binary COPY takes here as it is, and the rows go as text, as they always did. The
    text form of a datetime costs ten times its binary one (CPython writes the offset
    slowly), of an integer three. Aware UTC values for a column without time zone are made
    naive here (the text form dropped the offset)."""
    cur.execute("SELECT a.attname, t.typname, t.typtype FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
                "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped", (f'"{into}"',))
    in_database = {name: _BINARY_COPY.get("text" if kind == "e" else typname)
                   for name, typname, kind in cur.fetchall()}
    types, naive_at = [], []
    # column by column, each test one pass in C over the column's values
    for i, (key, column) in enumerate(zip(keys, zip(*values))):
        binary = in_database.get(key)
        if binary is None:
            return None
        name, takes = binary
        kinds = set(map(type, column))
        if not kinds <= {*takes, _NONE}:
            return None
        present = column if _NONE not in kinds else tuple(filter(_is_not_none, column))
        if name in _INTEGER_RANGE and present:
            lowest, highest = _INTEGER_RANGE[name]
            if min(present) < lowest or max(present) > highest:
                return None
        zones = set(map(_tzinfo, present)) if name.startswith("timestamp") else set()
        if (name == "timestamptz" and None in zones) or (name == "timestamp" and zones - {None, _UTC}):
            return None
        if name == "timestamp" and _UTC in zones:
            naive_at.append(i)
        types.append(name)
    for i in naive_at:
        for row in values:
            if row[i] is not None and row[i].tzinfo is _UTC:
                row[i] = _NAIVE_EPOCH + (row[i] - _UTC_EPOCH)
    return types


def _copy_upsert_postgresql(conn: sa.Connection, table: sa.Table, rows: Sequence[dict]) -> None:
    """COPY into a staging table, then one INSERT ... ON CONFLICT from it."""
    columns = list(table.columns)
    names = ", ".join(f'"{c.name}"' for c in columns)
    pk = ", ".join(f'"{c.name}"' for c in table.primary_key.columns)
    updates = ", ".join(f'"{c.name}" = EXCLUDED."{c.name}"' for c in columns if not c.primary_key)
    staging = f"_bridge_stage_{table.name}"
    with conn.connection.driver_connection.cursor() as cur:
        cur.execute(
            f'CREATE TEMP TABLE IF NOT EXISTS "{staging}" '
            f'(LIKE "{table.name}" INCLUDING DEFAULTS) ON COMMIT DELETE ROWS'
        )
        _copy_rows(cur, staging, table, rows)
        conflict = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
        cur.execute(
            f'INSERT INTO "{table.name}" ({names}) SELECT {names} FROM "{staging}" '
            f"ON CONFLICT ({pk}) {conflict}"
        )
        cur.execute(f'DELETE FROM "{staging}"')


def delete_keys(conn: sa.Connection, table: sa.Table, keys: Iterable[dict]) -> None:
    keys = list(keys)
    if keys:
        pk = list(table.primary_key.columns)
        cond = sa.and_(*[c == sa.bindparam(f"k_{c.name}") for c in pk])
        conn.execute(table.delete().where(cond), [{f"k_{c.name}": k[c.name] for c in pk} for k in keys])


def reset_sequences(conn: sa.Connection, tables: Iterable[sa.Table]) -> None:
    """PostgreSQL: the next generated id comes after the highest loaded one.
    (MySQL/MariaDB AUTO_INCREMENT and SQLite rowids follow explicit ids by themselves.)"""
    if conn.dialect.name != "postgresql":
        return
    for table in tables:
        conn.execute(sa.text(
            f"SELECT setval(pg_get_serial_sequence('\"{table.name}\"', 'id'), "
            f'COALESCE((SELECT MAX(id) FROM "{table.name}"), 0) + 1, false)'
        ))


def refresh_statistics(conn: sa.Connection, tables: Iterable[sa.Table]) -> None:
    """The planner's statistics of tables just loaded, so that the first queries on them
    (the Flask app's, a sync's sums) are planned for millions of rows, not for none:
    autovacuum gets there in its own time. SQLite: left alone (its ANALYZE reads every row)."""
    names = ", ".join(conn.dialect.identifier_preparer.quote(t.name) for t in tables)
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text(f"ANALYZE {names}"))
    elif conn.dialect.name in ("mysql", "mariadb"):
        conn.execute(sa.text(f"ANALYZE TABLE {names}")).all()


# the share of each page PostgreSQL fills where later updates should stay in their page
ROOM_FILLFACTOR = 90


def leave_room_for_updates(table: sa.Table, fillfactor: int = ROOM_FILLFACTOR) -> None:
    """PostgreSQL: ``table`` is created with its pages a tenth empty, so that a row updated
    later fits in its own page (a HOT update, no new index entry): a sync rewrites the
    digest of every row it moves."""
    sa.event.listen(table, "after_create", sa.DDL(
        f"ALTER TABLE {table.name} SET (fillfactor = {fillfactor})").execute_if(dialect="postgresql"))


@contextlib.contextmanager
def room_while_loading(engine: sa.Engine, tables: Sequence[sa.Table], fillfactor: int = ROOM_FILLFACTOR):
    """PostgreSQL, while an export loads ``tables``: the pages it writes are filled to
    ``fillfactor`` percent, then the tables' fill factor is reset, so that their definition
    is the Flask app's as before. The room stays in the pages: a later update that changes
    no indexed column (a sync's, the app's own edits) fits in the row's own page, a HOT
    update with no new entry in any index. Where the role does not own the tables, the
    pages are filled as before."""
    names = [engine.dialect.identifier_preparer.quote(t.name) for t in tables]

    def alter(option: str, lock_timeout: str | None = None) -> None:
        with engine.begin() as conn:
            if lock_timeout:
                conn.execute(sa.text(f"SET LOCAL lock_timeout = '{lock_timeout}'"))
            for name in names:
                conn.execute(sa.text(f"ALTER TABLE {name} {option}"))

    room = engine.dialect.name == "postgresql"
    if room:
        try:
            alter(f"SET (fillfactor = {fillfactor})")
        except sa.exc.DBAPIError as exc:
            room = False
            log.info("the loaded pages are filled as before (%s)", first_line(exc))
    failed = True
    try:
        yield
        failed = False
    finally:
        if room:
            try:
                # a failed or interrupted run does not wait long for the locks: the next
                # run resets the fill factor as well
                alter("RESET (fillfactor)", lock_timeout="2s" if failed else None)
            except sa.exc.DBAPIError as exc:
                # the run's own outcome stands (a failed run's one line says it): the next
                # run sets and resets the fill factor again
                (log.debug if failed else log.warning)(
                    "the loaded tables keep a fill factor of %d (%s)", fillfactor, first_line(exc))


# PostgreSQL: the indexes no constraint needs and the foreign keys of some tables, each
# with its quoted table, its quoted name and what builds it again
_DEFERRABLE_SCHEMA = """
SELECT c.oid::regclass::text AS table_name, quote_ident(x.relname) AS name, 'index' AS kind,
       pg_get_indexdef(i.indexrelid) AS definition
FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_class x ON x.oid = i.indexrelid
WHERE c.oid = ANY(%(tables)s::regclass[]) AND NOT i.indisunique AND NOT i.indisprimary
  AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
UNION ALL
SELECT c.oid::regclass::text, quote_ident(k.conname), 'foreign_key', pg_get_constraintdef(k.oid)
FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
WHERE c.oid = ANY(%(tables)s::regclass[]) AND k.contype = 'f'
"""


_ALREADY_EXISTS = ("42P07", "42710")  # duplicate_table (an index), duplicate_object (a constraint)


@contextlib.contextmanager
def built_after_loading(engine: sa.Engine, tables: Sequence[sa.Table], record: sa.Table):
    """PostgreSQL, while an export loads ``tables``: their foreign keys, and the indexes no
    unique or primary key needs, are dropped, and built once when the load is done, as
    pgloader does: maintained row by row they cost the load more than the build. The row
    path checks every row's parents itself, and the build validates every foreign key
    again. Their definitions wait in ``record``, committed with the drops: a run that stops
    midway leaves them dropped, and the next export builds them (those of tables it does
    not load, before it starts). Where the role does not own the tables, they stay."""
    if engine.dialect.name != "postgresql":
        yield
        return
    names = [engine.dialect.identifier_preparer.quote(t.name) for t in tables]
    build_deferred_schema(engine, record, but=names)
    try:
        with engine.begin() as conn, conn.connection.driver_connection.cursor() as cur:
            cur.execute(_DEFERRABLE_SCHEMA, {"tables": names})
            found = [dict(zip(("table_name", "name", "kind", "definition"), row)) for row in cur.fetchall()]
            if found:
                conn.execute(record.insert(), found)
            for row in found:
                cur.execute(f"DROP INDEX {row['name']}" if row["kind"] == "index" else
                            f"ALTER TABLE {row['table_name']} DROP CONSTRAINT {row['name']}")
    except (sa.exc.DBAPIError, engine.dialect.dbapi.Error) as exc:
        log.info("the loaded tables keep their indexes and foreign keys while loading (%s)", first_line(exc))
    yield
    build_deferred_schema(engine, record)


def build_deferred_schema(engine: sa.Engine, record: sa.Table, but: Sequence[str] = ()) -> int:
    """Build again what ``built_after_loading`` dropped (but the tables in ``but``): indexes
    first, each in its own transaction with the deletion of its definition. A foreign key
    the rows break is not built: the run fails saying which, and its definition stays."""
    if engine.dialect.name != "postgresql":
        return 0
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(record.name):
            return 0
        waiting = conn.execute(sa.select(record).where(record.c.table_name.notin_(but))
                               .order_by(record.c.kind.desc(), record.c.table_name, record.c.name)).all()
    started = time.monotonic()
    for row in waiting:  # 'index' sorts after 'foreign_key': descending, indexes first
        statement = (row.definition if row.kind == "index" else
                     f"ALTER TABLE {row.table_name} ADD CONSTRAINT {row.name} {row.definition}")
        built = record.delete().where(record.c.table_name == row.table_name, record.c.name == row.name)
        try:
            with engine.begin() as conn, conn.connection.driver_connection.cursor() as cur:
                cur.execute("SET LOCAL maintenance_work_mem = '256MB'")
                cur.execute(statement)
                conn.execute(built)
        except engine.dialect.dbapi.IntegrityError as exc:
            raise BridgeError(f"{row.table_name}: foreign key {row.name} cannot be built again, rows break it "
                              f"({first_line(exc)}); its definition is kept in {record.name}") from None
        except engine.dialect.dbapi.ProgrammingError as exc:
            if getattr(exc, "sqlstate", None) not in _ALREADY_EXISTS:
                raise
            with engine.begin() as conn:  # built meanwhile by someone else: only its record goes
                conn.execute(built)
    if waiting:
        log.info("indexes and foreign keys: %d built after loading in %.1fs", len(waiting),
                 time.monotonic() - started)
    return len(waiting)


def prepare_aggregate_reads(conn: sa.Connection) -> None:
    """For the rest of ``conn``'s transaction, a GROUP BY over millions of bookkeeping rows
    runs in memory (PostgreSQL's default work_mem spills it to disk) and is not JIT-compiled
    (compiling costs more than it saves on these short queries)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SET LOCAL work_mem = '64MB'"))
        conn.execute(sa.text("SET LOCAL jit = off"))


def empty_tables(conn: sa.Connection, tables_in_dependency_order: Sequence[sa.Table]) -> None:
    if conn.dialect.name == "postgresql":
        names = ", ".join(f'"{t.name}"' for t in tables_in_dependency_order)
        conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        return
    if conn.dialect.name in ("mysql", "mariadb"):
        # TRUNCATE is refused on referenced tables unless checks are off for the session.
        conn.execute(sa.text("SET FOREIGN_KEY_CHECKS=0"))
        try:
            for table in tables_in_dependency_order:
                conn.execute(sa.text(f"TRUNCATE TABLE `{table.name}`"))
        finally:
            conn.execute(sa.text("SET FOREIGN_KEY_CHECKS=1"))
        return
    for table in reversed(tables_in_dependency_order):
        conn.execute(table.delete())


# --- the legacy side (a Django connection) ------------------------------------------

def prepare_source_connection(connection, datetimes: str = "fast") -> None:
    """Every legacy connection: full UTF-8, and on SQLite the function ``RowDigest``
    calls (SQLite has no MD5 of its own)."""
    force_source_utf8(connection)
    if connection.vendor == "sqlite" and connection.connection is not None:
        connection.connection.create_function("bridge_digest48", 1, _digest48, deterministic=True)
        connection.connection.create_function("bridge_digest48_hex", 1, _digest48_hex, deterministic=True)
    if connection.vendor == "mysql" and connection.connection is not None:
        with connection.connection.cursor() as cursor:  # ChunkRowDigests: the server's default may be 1,024 bytes
            cursor.execute("SET SESSION group_concat_max_len = 1048576")
        # with USE_TZ and no TIME_ZONE of the database's own, Django makes every value aware in UTC
        utc = connection.timezone is dt.timezone.utc
        aware = use_fast_datetimes(connection.connection.converter, DATETIME_PARSERS[datetimes], utc=utc)
        read_aware_datetimes_as_they_are(connection.ops, aware)


def use_fast_datetimes(converter: dict, parser=None, utc: bool = False) -> bool:
    """MySQLdb parses DATETIME and TIMESTAMP values in Python, a tenth of the cost of reading
    a row; ``parser`` (``mysql_datetime_parser``, the export's) gives the same values
    faster (with ``utc``: aware, in UTC). A project's own parser is left as it is. Returns
    whether both give aware UTC values now."""
    from MySQLdb.constants import FIELD_TYPE
    from MySQLdb.times import DateTime_or_None

    kinds = (FIELD_TYPE.DATETIME, FIELD_TYPE.TIMESTAMP)
    # aware values from both or from neither: a project's own parser gives naive ones
    utc = utc and all(converter.get(k) is DateTime_or_None or getattr(converter.get(k), "gives_utc", False)
                      for k in kinds)
    for kind in kinds:
        if converter.get(kind) is DateTime_or_None:
            converter[kind] = (parser or mysql_datetime_parser)(DateTime_or_None, utc=utc)
    # a connection prepared before keeps the parsers it was given
    return all(getattr(converter.get(k), "gives_utc", False) for k in kinds)


def read_aware_datetimes_as_they_are(ops, as_they_are: bool) -> None:
    """Django's MySQL backend makes each DATETIME it reads aware (``make_aware``: a
    ``replace``, most of the cost of a datetime read); when the connection's parsers
    read them aware already, that converter is left out (it refuses an aware value).
    Decided again at every connect, on the connection's own ``ops``."""
    ops.__dict__.pop("get_db_converters", None)
    if as_they_are:
        converters_of, make_aware = ops.get_db_converters, ops.convert_datetimefield_value
        ops.get_db_converters = lambda expression: [c for c in converters_of(expression) if c != make_aware]


# the only form MySQL/MariaDB send a DATETIME in (fractions: the column's 0 to 6 digits)
_MYSQL_DATETIME = r"[0-9]{4}-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9](?:\.[0-9]{1,6})?"


def mysql_datetime_parser(driver_parser, utc: bool = False):
    """A parser returning what ``driver_parser`` (MySQLdb's ``DateTime_or_None``) returns:
    by ``fromisoformat`` where the text has MySQL's own form, by the driver's otherwise
    (zero dates, impossible dates). MySQLdb passes text; bytes are taken too. With
    ``utc``, a datetime comes aware in UTC, as Django's ``make_aware`` would make it."""
    mysql_form, parse = re.compile(_MYSQL_DATETIME).fullmatch, dt.datetime.fromisoformat

    def mysql_datetime(value):
        # latin-1 maps each byte to one character: bytes match as their text would
        text = value if type(value) is str else value.decode("latin-1") if isinstance(value, bytes) else None
        if text is not None and mysql_form(text):
            try:
                return parse(text)
            except ValueError:
                pass  # an impossible date (month 0, 24:00): the driver's answer
        return driver_parser(value)

    def mysql_datetime_utc(value):
        naive = mysql_datetime(value)
        # the value of naive.replace(tzinfo=utc), at a tenth of the cost of replace
        return _UTC_EPOCH + (naive - _NAIVE_EPOCH) if type(naive) is _DATETIME else naive

    mysql_datetime.gives_utc, mysql_datetime_utc.gives_utc = False, True
    return mysql_datetime_utc if utc else mysql_datetime


# the text's length -> how ``isoformat`` writes a value back as that text
_TIMESPEC_OF_LENGTH = {19: "seconds", 23: "milliseconds", 26: "microseconds"}


def checked_datetime_parser(driver_parser, utc: bool = False):
    """verify's parser: the value ``fromisoformat`` reads only when ``isoformat`` writes it
    back as the very text the server sent, digit for digit; the driver's answer for any
    other text. What it gives is then right whatever the export's parser does, and
    whatever ``fromisoformat`` alone would have made of the text. With ``utc``, the value
    so checked comes aware in UTC (the epoch in UTC plus its distance from the naive epoch)."""
    parse = dt.datetime.fromisoformat

    def checked_datetime(value):
        text = value if type(value) is str else value.decode("latin-1") if isinstance(value, bytes) else None
        spec = _TIMESPEC_OF_LENGTH.get(len(text)) if text is not None else None
        if spec is not None:
            try:
                naive = parse(text)
            except ValueError:
                naive = None
            # checked naive (writing an offset back costs isoformat as much again), made
            # aware by exact arithmetic on the checked value
            if naive is not None and naive.isoformat(" ", spec) == text:
                return _UTC_EPOCH + (naive - _NAIVE_EPOCH) if utc else naive
        answer = driver_parser(value)
        return answer.replace(tzinfo=_UTC) if utc and type(answer) is _DATETIME else answer

    checked_datetime.gives_utc = utc
    return checked_datetime


# LegacySource(datetimes=...): the export's parser, and verify's, which does not rest on it
DATETIME_PARSERS = {"fast": mysql_datetime_parser, "checked": checked_datetime_parser}


def force_source_utf8(connection) -> None:
    """MySQL/MariaDB: make a Django connection send and return utf8mb4 (the client
    library then decodes 4-byte characters instead of the server replacing them by ?)."""
    if connection.vendor == "mysql" and connection.connection is not None:
        connection.connection.set_character_set("utf8mb4")


def _digest48_hex(text) -> str:
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    return hashlib.md5(data).hexdigest()[:12]


def _digest48(text) -> int:
    return int(_digest48_hex(text), 16)


def source_connection_facts(connection) -> dict:
    """What shapes the values read through ``connection``: charset, time zone, SQL mode.
    ``lossless``: every character the database holds reaches Python as it is."""
    connection.ensure_connection()
    with connection.cursor() as cursor:
        if connection.vendor == "mysql":
            cursor.execute("SELECT @@character_set_client, @@character_set_connection, "
                           "@@character_set_results, @@session.time_zone, @@session.sql_mode")
            client, conn_cs, results, time_zone, sql_mode = cursor.fetchone()
            decoder = connection.connection.character_set_name()
            charset = f"client={client} connection={conn_cs} results={results} decoder={decoder}"
            lossless = all(cs == "utf8mb4" for cs in (client, conn_cs, results, decoder))
        elif connection.vendor == "postgresql":
            cursor.execute("SELECT current_setting('client_encoding'), current_setting('TimeZone')")
            charset, time_zone = cursor.fetchone()
            sql_mode, lossless = None, charset.upper() in ("UTF8", "UTF-8")
        else:  # SQLite stores and returns UTF-8 text as it is
            cursor.execute("PRAGMA encoding")
            charset, time_zone, sql_mode, lossless = cursor.fetchone()[0], None, None, True
    return {"vendor": connection.vendor, "charset": charset, "time_zone": time_zone, "sql_mode": sql_mode,
            "lossless": lossless}


class Utf8Bytes(Func):
    """Bytes of a text column in UTF-8 as the database itself counts them (0 for NULL):
    independent of how the client decodes the value."""

    template = "COALESCE(OCTET_LENGTH(%(expressions)s), 0)"
    output_field = BigIntegerField()

    def as_mysql(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection,
                           template="COALESCE(OCTET_LENGTH(CONVERT(%(expressions)s USING utf8mb4)), 0)", **extra)

    def as_sqlite(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection,
                           template="COALESCE(LENGTH(CAST(%(expressions)s AS BLOB)), 0)", **extra)


class _DigestPart(Func):
    """One field as a digest takes it. Text (JSON included): its length, then its value,
    so that no two rows of different values concatenate alike ('N' for NULL); numbers,
    booleans and dates cannot hold the separator and go as they are."""

    template = "COALESCE((%(expressions)s)::text, 'N')"
    text_template = "COALESCE(LENGTH((%(expressions)s)::text) || ':' || (%(expressions)s)::text, 'N')"

    def __init__(self, expression, text: bool):
        super().__init__(expression)
        self.text = text

    def as_sql(self, compiler, connection, template=None, **extra):
        return super().as_sql(compiler, connection, template=template or (self.text_template if self.text else None),
                              **extra)

    def as_mysql(self, compiler, connection, **extra):
        # text as binary: no collation to mix, whatever charsets the legacy columns have
        return self.as_sql(compiler, connection, template=(
            "COALESCE(CONCAT(LENGTH(CAST(%(expressions)s AS BINARY)), ':', CAST(%(expressions)s AS BINARY)), 'N')"
            if self.text else "IFNULL(%(expressions)s, 'N')"), **extra)

    def as_sqlite(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, template=(
            "COALESCE(LENGTH(CAST(%(expressions)s AS BLOB)) || ':' || CAST(%(expressions)s AS TEXT), 'N')"
            if self.text else "COALESCE(CAST(%(expressions)s AS TEXT), 'N')"), **extra)


class _SecretState(Func):
    """Only whether a secret is NULL, empty or set: its value is digested outside the
    database, keyed (``fingerprint.secret_part``)."""

    template = "(CASE WHEN %(expressions)s IS NULL THEN 'N' WHEN LENGTH(%(expressions)s) = 0 THEN 'E' ELSE 'S' END)"


class RowDigest(Func):
    """A 48-bit digest of ``fields`` (``text_fields`` among them length-prefixed) and of
    the state of ``secret_fields``, computed by the legacy database: the first 12 hex
    digits of an MD5 (a SHA1 on MySQL/MariaDB), as an integer (``as_hex``: as those 12
    digits). The same row digests the same as long as its stored values do, on one
    database; digests are never compared across databases."""

    output_field = BigIntegerField()
    arg_joiner = ", "
    template = "('x' || LEFT(MD5(CONCAT_WS('|', %(expressions)s)), 12))::bit(48)::bigint"
    hex_template = "LEFT(MD5(CONCAT_WS('|', %(expressions)s)), 12)"

    def __init__(self, fields: Sequence[str], secret_fields: Sequence[str] = (), text_fields: Sequence[str] = (),
                 as_hex: bool = False):
        super().__init__(*(_DigestPart(F(f), f in text_fields) for f in fields),
                         *(_SecretState(F(f)) for f in secret_fields),
                         output_field=TextField() if as_hex else BigIntegerField())
        self.as_hex = as_hex

    def as_sql(self, compiler, connection, template=None, **extra):
        return super().as_sql(compiler, connection,
                              template=template or (self.hex_template if self.as_hex else self.template), **extra)

    def as_mysql(self, compiler, connection, **extra):
        # SHA1, not MD5: MariaDB's MD5 costs a third more CPU per row (a sync digests every row)
        hex_digits = "LEFT(SHA1(CONCAT_WS('|', %(expressions)s)), 12)"
        return self.as_sql(compiler, connection, template=hex_digits if self.as_hex else (
            f"CAST(CONV({hex_digits}, 16, 10) AS UNSIGNED)"), **extra)

    def as_sqlite(self, compiler, connection, **extra):
        function = "bridge_digest48_hex" if self.as_hex else "bridge_digest48"
        return self.as_sql(compiler, connection, template=f"{function}(%(expressions)s)",
                           arg_joiner=" || '|' || ", **extra)


class ChunkRowDigests(Aggregate):
    """Per chunk of ``width`` ids (the GROUP BY), the database digests of its rows as one
    text, in no particular order: per row "0", the 12 hex digits of ``RowDigest``, "0" and
    one hex digit, its id's place in the chunk (``diff.chunk_digest_sum`` and
    ``diff.chunk_row_digests`` read it). One scan gives both the chunk's sum and, where
    the sum differs, its rows' digests."""

    output_field = TextField()
    template = "STRING_AGG('0' || %(digest)s || '0' || TO_HEX(%(place)s), '')"

    def __init__(self, id_expression, width: int, digest: RowDigest):
        if not 1 < width <= 16:
            raise ValueError("a chunk's places are one hex digit: width 2..16")
        super().__init__(id_expression - chunk_start(id_expression, width), digest)

    def as_sql(self, compiler, connection, template=None, **extra):
        (place, place_params), (digest, digest_params) = (compiler.compile(e) for e in self.source_expressions)
        return (template or self.template) % {"place": place, "digest": digest}, (*place_params, *digest_params)

    def as_mysql(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, template="GROUP_CONCAT('0', %(digest)s, '0', HEX(%(place)s) SEPARATOR '')")

    def as_sqlite(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection,
                           template="GROUP_CONCAT('0' || %(digest)s || '0' || SUBSTR('0123456789abcdef', %(place)s + 1, 1), '')")


def chunk_start(id_expression, width: int):
    """The first id of the ``width``-wide chunk holding the id: floor semantics for
    negative ids too, in integers on every dialect (no division), as a Django or an
    SQLAlchemy expression alike."""
    return id_expression - ((id_expression % width + width) % width)


# --- the legacy side's change log (``changelog``): a table and a trigger per event ----------

CHANGE_LOG, CHANGE_TRACKING = "bridge_change_log", "bridge_change_tracking"
_TRIGGER_PREFIX = "bridge_log_"
_TRIGGER_EVENTS = {"i": "INSERT", "u": "UPDATE", "d": "DELETE"}


def change_log_trigger_names(table: str) -> dict[str, str]:
    """Event -> the name of the trigger logging it on ``table`` (64 characters at most: a
    long table name is replaced by its digest)."""
    base = table if len(_TRIGGER_PREFIX + table) + 2 <= 64 else hashlib.sha1(table.encode()).hexdigest()[:40]
    return {event: f"{_TRIGGER_PREFIX}{base}_{code}" for code, event in _TRIGGER_EVENTS.items()}


def _change_log_vendor(connection) -> str:
    if connection.vendor not in ("mysql", "sqlite"):
        raise BridgeError(f"a change log needs a MariaDB, MySQL or SQLite legacy database, not {connection.vendor}: "
                          "--sync compares every row's digest instead")
    return connection.vendor


def change_log_install_statements(connection, tables: dict[str, str]) -> list[str]:
    """The log, the tracking table and, per legacy table (name -> primary key column), a
    trigger per event writing the ids of the rows it wrote (an update that moves a row's
    id: both). Each trigger is dropped and made again."""
    vendor = _change_log_vendor(connection)
    q = connection.ops.quote_name
    if vendor == "mysql":
        statements = [
            f"CREATE TABLE IF NOT EXISTS {q(CHANGE_LOG)} (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
            "table_name VARCHAR(64) NOT NULL, row_id BIGINT NOT NULL) ENGINE=InnoDB",
            f"CREATE TABLE IF NOT EXISTS {q(CHANGE_TRACKING)} (token VARCHAR(64) NOT NULL) ENGINE=InnoDB",
        ]
    else:
        statements = [
            f"CREATE TABLE IF NOT EXISTS {q(CHANGE_LOG)} (id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "table_name TEXT NOT NULL, row_id INTEGER NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {q(CHANGE_TRACKING)} (token TEXT NOT NULL)",
        ]
    for table, pk in tables.items():
        names = change_log_trigger_names(table)

        def log_row(row: str) -> str:
            return f"INSERT INTO {q(CHANGE_LOG)} (table_name, row_id) VALUES ('{table}', {row}.{q(pk)});"

        moved = (f"IF NOT (OLD.{q(pk)} <=> NEW.{q(pk)}) THEN {log_row('OLD')} END IF;" if vendor == "mysql" else
                 f"INSERT INTO {q(CHANGE_LOG)} (table_name, row_id) SELECT '{table}', OLD.{q(pk)} "
                 f"WHERE OLD.{q(pk)} IS NOT NEW.{q(pk)};")
        bodies = {"INSERT": log_row("NEW"), "UPDATE": f"{log_row('NEW')} {moved}", "DELETE": log_row("OLD")}
        for event, name in names.items():
            statements.append(f"DROP TRIGGER IF EXISTS {q(name)}")
            statements.append(f"CREATE TRIGGER {q(name)} AFTER {event} ON {q(table)} FOR EACH ROW "
                              f"BEGIN {bodies[event]} END")
    return statements


def change_log_remove_statements(connection, triggers: Iterable[str]) -> list[str]:
    q = connection.ops.quote_name
    return [*(f"DROP TRIGGER IF EXISTS {q(name)}" for name in triggers),
            f"DROP TABLE IF EXISTS {q(CHANGE_LOG)}", f"DROP TABLE IF EXISTS {q(CHANGE_TRACKING)}"]


def change_log_triggers(cursor, connection) -> set[tuple[str, str]]:
    """(trigger name, its table) of the change log's triggers in the legacy database."""
    if _change_log_vendor(connection) == "mysql":
        cursor.execute("SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE FROM information_schema.TRIGGERS "
                       "WHERE TRIGGER_SCHEMA = DATABASE() AND TRIGGER_NAME LIKE %s", [_TRIGGER_PREFIX + "%"])
    else:
        cursor.execute("SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger' AND name LIKE %s",
                       [_TRIGGER_PREFIX + "%"])
    return {(name, table) for name, table in cursor.fetchall()}


def change_log_blind_spots(cursor, connection, tables: Iterable[str]) -> list[str]:
    """Foreign keys whose actions write rows of ``tables`` without firing their triggers
    (InnoDB's ON DELETE/UPDATE CASCADE and SET NULL; SQLite fires triggers for them)."""
    names = list(tables)
    if _change_log_vendor(connection) != "mysql" or not names:
        return []
    cursor.execute("SELECT TABLE_NAME, CONSTRAINT_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS "
                   "WHERE CONSTRAINT_SCHEMA = DATABASE() AND TABLE_NAME IN (" + ", ".join(["%s"] * len(names)) + ") "
                   "AND (DELETE_RULE NOT IN ('RESTRICT', 'NO ACTION') OR UPDATE_RULE NOT IN ('RESTRICT', 'NO ACTION'))",
                   names)
    return [f"{table}.{constraint}" for table, constraint in cursor.fetchall()]


def change_log_read_only(cursor, connection) -> bool:
    """Whether the server refuses writes (a replica, most likely): the rows replicated to it
    would not fire its triggers."""
    if _change_log_vendor(connection) != "mysql":
        return False
    cursor.execute("SELECT @@GLOBAL.read_only")
    return bool(int(cursor.fetchone()[0]))


def change_log_tables_exist(cursor, connection) -> bool:
    tables = set(connection.introspection.table_names(cursor))
    return {CHANGE_LOG, CHANGE_TRACKING} <= tables


# --- verify: a row's text form, hashed by the target itself ---------------------------------

def text_kind(column_type) -> str | None:
    """The kind of a column's text form (``diff.TEXT_FORMS``); None for the types whose
    values are compared in Python (JSON: a database need not keep its text as written)."""
    kind = column_type.impl if isinstance(column_type, sa.types.TypeDecorator) else column_type
    if isinstance(kind, sa.Boolean):
        return "bool"
    if isinstance(kind, sa.Integer):
        return "int"
    if isinstance(kind, sa.DateTime):
        return "datetime"
    if isinstance(kind, sa.Enum):
        return "enum"
    if isinstance(kind, sa.String):
        return "text"
    return None


def text_form(dialect, columns: Sequence[tuple[sa.ColumnElement, str]]) -> sa.ColumnElement | None:
    """A row's text form (``diff.text_form``) computed by the database, in one CONCAT
    (which writes NULL as nothing); None where it is not (the row is then read and hashed
    in Python)."""
    if dialect.name != "postgresql":
        return None
    exact_epoch = (dialect.server_version_info or (0,)) >= (14,)  # EXTRACT gives numeric, not float
    parts = []
    for expression, kind in columns:
        if kind == "datetime" and exact_epoch:  # microseconds since 1970 in UTC (a naive value's nominal ones)
            expression = sa.cast(sa.extract("epoch", expression) * 1_000_000, sa.BigInteger)
        elif kind == "datetime":  # whole seconds and microseconds apart: a float holds each exactly
            seconds = sa.cast(sa.extract("epoch", sa.func.date_trunc("second", expression)), sa.BigInteger)
            micros = sa.cast(sa.extract("microseconds", expression), sa.BigInteger) % 1_000_000
            expression = seconds * 1_000_000 + micros
        if kind in ("text", "enum"):
            text = sa.cast(expression, sa.Text)
            parts += [sa.func.length(text), sa.literal_column("':'"), text]
        else:  # an integer, t or f: never empty, no comma
            parts += [expression, sa.literal_column("','")]
    return sa.func.concat(*parts)


def text_form_md5(dialect, columns: Sequence[tuple[sa.ColumnElement, str]]) -> sa.ColumnElement | None:
    """The md5 (hex) of a row's text form computed by the database; None where it is not."""
    form = text_form(dialect, columns)
    return None if form is None else sa.func.md5(form)


def chunk_text_md5s(id_column: sa.ColumnElement, form: sa.ColumnElement) -> sa.Select:
    """Per chunk ``[lo, hi]`` (both included; bound as the arrays ``los`` and ``his``), in
    ``lo`` order: the md5 (hex) of the text forms of its rows concatenated in id order
    (NULL for none) — one query for many chunks, each an index range scan, so the target
    sends a digest per chunk instead of one per row. PostgreSQL only, as ``text_form``."""
    from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by

    ids = ARRAY(sa.BigInteger)
    chunks = sa.func.unnest(sa.bindparam("los", type_=ids), sa.bindparam("his", type_=ids)) \
        .table_valued("lo", "hi").render_derived(name="chunks")
    digest = sa.select(sa.func.md5(sa.func.string_agg(form, aggregate_order_by(sa.literal_column("''"), id_column)))) \
        .where(id_column.between(chunks.c.lo, chunks.c.hi)).scalar_subquery()
    return sa.select(chunks.c.lo, digest).order_by(chunks.c.lo)
