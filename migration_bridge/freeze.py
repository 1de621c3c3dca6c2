"""Read-only freeze of the legacy app for the cutover window.

The flag lives in the bridge's one table in the legacy database
(``LegacyFreeze``, one row), so every worker and host sees it.

While frozen, a guard installed on every Django database connection refuses:

- every statement that writes a legacy table (``MIGRATION_BRIDGE["LEGACY_APP"]``,
  default ``video_app``, M2M tables included), however it is spelled: leading
  comments, INSERT/REPLACE without INTO, INSERT OR REPLACE, multi-table UPDATE and
  DELETE, data-modifying CTEs, several statements in one string. Each statement is
  parsed with sqlparse (shipped with Django) and the tables it writes are named;
  a write whose table cannot be named is refused too;
- every DDL statement and everything that can hide a write: CREATE / ALTER / DROP /
  RENAME / TRUNCATE (triggers, procedures, functions, views, indexes included),
  CALL, DO, PREPARE / EXECUTE, COPY ... FROM, LOAD DATA, SELECT ... INTO a table,
  SQLite pragmas that change the file, and any statement it does not recognise;
- with one exception on a legacy table: exactly the UPDATE ``login()`` sends,
  ``UPDATE <user table> SET last_login = %s WHERE <user table>.<pk> = %s``.

Everything else (sessions, auth/admin/contenttypes tables, this freeze table)
stays writable. A password-hash upgrade at login (Django re-hashing an older
hash) is a write of ``password`` and is refused: such a user logs in after the
freeze, or turns it off from the shell.

Which process sees the freeze when: the guard reads the flag from the database
for every statement it would refuse, never from the per-process cache
(``MIGRATION_BRIDGE["FREEZE_CACHE_SECONDS"]``, which only serves the 503 page and
the admin banner). On MySQL/MariaDB and PostgreSQL that read locks the flag row in
share mode inside the writer's transaction (a write outside a transaction gets one
for the read and the write together), and ``set_freeze`` updates the row under an
exclusive lock: so ``flask_freeze on`` returns only after every transaction that
wrote through the guard has ended, and every write checked afterwards is refused.
On SQLite the database lock makes ``flask_freeze on`` wait for open write
transactions too; a single statement outside any transaction is checked there
microseconds before it runs, without a lock between the two.

What no in-process guard can stop: SQL sent through a raw DB-API connection
(``connection.connection.cursor()``), other programs or hosts using the database,
and stored routines or triggers created before the freeze. The cutover runbook
revokes the app's write grants for that (docs/CUTOVER.md).

API for the export: ``get_freeze_state``, ``is_frozen``, ``set_freeze``.
"""
from __future__ import annotations

import datetime as dt
import functools
import re
import threading
import time
from dataclasses import dataclass

from django.apps import apps
from django.core import checks
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, OperationalError, connections, router, transaction
from django.db.backends.signals import connection_created
from django.utils import timezone

DEFAULT_MESSAGE = "The site is moving to its new home; it is read-only for a short while."


def bridge_setting(name: str, default):
    # Read with a default so the real legacy project needs no new settings.
    return getattr(settings, "MIGRATION_BRIDGE", {}).get(name, default)


def cache_seconds() -> float:
    return float(bridge_setting("FREEZE_CACHE_SECONDS", 2))


def retry_after_seconds() -> int:
    return int(bridge_setting("FREEZE_RETRY_AFTER", 300))


def format_time(moment: dt.datetime | None) -> str:
    if moment is None:
        return "an unknown time"
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class FreezeState:
    frozen: bool
    message: str = ""
    by: str = ""
    since: dt.datetime | None = None  # when the current freeze began; None when live

    def describe(self) -> str:
        if not self.frozen:
            return "live (not frozen)"
        return f"read-only: {self.message}, since {format_time(self.since)}, by {self.by or 'unknown'}"

    def as_dict(self) -> dict:
        """JSON-ready, for reports."""
        return {"frozen": self.frozen, "message": self.message, "by": self.by,
                "since": self.since.isoformat() if self.since else None}


LIVE = FreezeState(frozen=False)


class LegacyFrozenError(DatabaseError):
    """A write to the legacy app's tables while the freeze is on."""

    def __init__(self, state: FreezeState, statement: str = "", table: str = ""):
        self.state, self.statement, self.table = state, statement, table
        text = (f"legacy app is frozen for the migration (read-only since {format_time(state.since)},"
                f" by {state.by or 'unknown'}): {state.message}")
        if table:
            text += f" [refused {statement} on {table}]"
        elif statement:
            text += f" [refused {statement}]"
        super().__init__(text)


# --- the shared flag ---------------------------------------------------------

_cache: tuple[FreezeState, float] | None = None  # (state, monotonic expiry), per process


def _remember(state: FreezeState) -> FreezeState:
    global _cache
    _cache = (state, time.monotonic() + cache_seconds())
    return state


def _freeze_model():
    from .models import LegacyFreeze  # lazy: importable before the app registry is ready

    return LegacyFreeze


def _read_state() -> FreezeState:
    model = _freeze_model()
    alias = router.db_for_read(model)
    try:
        # A savepoint: on PostgreSQL a failed read would otherwise abort the caller's
        # transaction (e.g. the one `migrate` runs before the table exists).
        with transaction.atomic(using=alias):
            row = (model.objects.using(alias).filter(pk=model.SINGLETON_PK)
                   .values_list("frozen", "message", "changed_by", "since").first())
    except DatabaseError:
        # Before `migrate` created the table nobody can have frozen the app
        # (and `migrate` itself must get through the guard); other errors propagate.
        if model._meta.db_table not in connections[alias].introspection.table_names():
            return LIVE
        raise
    if row is None:
        return LIVE
    frozen, message, by, since = row
    return FreezeState(frozen=frozen, message=message, by=by, since=since if frozen else None)


def get_freeze_state(use_cache: bool = False) -> FreezeState:
    """The current flag; with ``use_cache`` at most FREEZE_CACHE_SECONDS old."""
    if use_cache:
        cached = _cache
        if cached is not None and time.monotonic() < cached[1]:
            return cached[0]
    return _remember(_read_state())


def forget_cached_state() -> None:
    """Drop this process's cached flag (tests, whose transactions roll the row back)."""
    global _cache
    _cache = None


def is_frozen(use_cache: bool = True) -> bool:
    return get_freeze_state(use_cache=use_cache).frozen


def set_freeze(on: bool, message: str = "", by: str = "") -> FreezeState:
    """Turn the freeze on or off. Re-freezing keeps ``since`` (it names one freeze period).

    Returns once the change is committed: the row is updated under an exclusive lock,
    which waits for every transaction that wrote through the guard (they hold the row
    in share mode). On SQLite, where such a wait can end in "database is locked" at
    once (two transactions both upgrading their locks), it tries again for up to
    ``MIGRATION_BRIDGE["FREEZE_LOCK_WAIT_SECONDS"]`` (60)."""
    model = _freeze_model()
    alias = router.db_for_write(model)
    connection = connections[alias]
    deadline = time.monotonic() + float(bridge_setting("FREEZE_LOCK_WAIT_SECONDS", 60))
    while True:
        try:
            row = _write_flag(model, alias, on, message, by)
            break
        except OperationalError as exc:
            retry = (connection.vendor == "sqlite" and "locked" in str(exc)
                     and not connection.in_atomic_block and time.monotonic() < deadline)
            if not retry:
                raise
            time.sleep(0.05)
    # Write-through: this process sees its own change at once.
    return _remember(FreezeState(frozen=on, message=row.message, by=by, since=row.since))


def _write_flag(model, alias: str, on: bool, message: str, by: str):
    now = timezone.now()
    with transaction.atomic(using=alias):
        row, _ = model.objects.using(alias).select_for_update().get_or_create(pk=model.SINGLETON_PK)
        if on:
            if not row.frozen:
                row.since = now
            row.message = message or (row.message if row.frozen else "") or DEFAULT_MESSAGE
        else:
            row.since, row.message = None, ""
        row.frozen = on
        row.changed_by, row.changed_at = by, now
        row.save(using=alias)
    return row


# --- the database guard ------------------------------------------------------
#
# Each SQL text is parsed once (sqlparse, which ships with Django; verdicts are cached
# by text) into a Verdict: what kind of statement it is and which tables it writes.

READ, WRITE, DDL = "read", "write", "ddl"
UNKNOWN_TABLE = "?"  # a write whose target could not be read from the SQL

# First words of statements that change nothing (the ones Django, the drivers and
# the usual tools send). SELECT-like ones are still searched for write clauses.
_READ_FIRST_WORDS = frozenset({
    "SHOW", "SET", "SAVEPOINT", "RELEASE", "ROLLBACK", "COMMIT", "BEGIN", "START", "END",
    "USE", "LOCK", "UNLOCK", "DEALLOCATE", "RESET", "DISCARD", "DECLARE", "FETCH", "CLOSE",
    "MOVE", "CHECKSUM", "PRAGMA",
})
_QUERY_FIRST_WORDS = frozenset({"SELECT", "WITH", "VALUES", "TABLE", "EXPLAIN", "DESCRIBE", "DESC", "("})
_DML = frozenset({"INSERT", "REPLACE", "UPDATE", "DELETE", "MERGE", "UPSERT"})
# A DML word after these is part of another clause (FOR UPDATE, ON DUPLICATE KEY UPDATE,
# ON CONFLICT DO UPDATE, ON DELETE CASCADE, INSERT OR REPLACE, MERGE ... THEN UPDATE).
_NOT_A_CLAUSE_AFTER = frozenset({"FOR", "KEY", "DO", "ON", "OR", "THEN", "NO KEY"})
_MODIFIERS = frozenset({"LOW_PRIORITY", "DELAYED", "HIGH_PRIORITY", "IGNORE", "INTO", "OR", "ROLLBACK",
                        "ABORT", "REPLACE", "FAIL", "ONLY", "QUICK", "FROM"})
# Where the table list of an UPDATE / DELETE ends.
_UPDATE_END = frozenset({"SET"})
_DELETE_END = frozenset({"WHERE", "ORDER BY", "ORDER", "LIMIT", "RETURNING"})
# SQLite pragmas that change the database file.
_WRITING_PRAGMAS = frozenset({"writable_schema", "user_version", "schema_version", "application_id"})


@dataclass(frozen=True)
class Verdict:
    kind: str  # READ, WRITE (tables below) or DDL (anything else that is not a plain read)
    keyword: str = ""  # the statement's keyword, for the error message
    tables: frozenset[str] = frozenset()  # written tables, lower-case, UNKNOWN_TABLE if unreadable


_READ_VERDICT = Verdict(READ)
_COMMENTS = re.compile(r"\A(?:\s+|--[^\n]*(?:\n|\Z)|#[^\n]*(?:\n|\Z)|/\*.*?\*/)*", re.DOTALL)
_FAST_READ = frozenset({"SELECT", "SAVEPOINT", "RELEASE", "SET", "SHOW", "ROLLBACK", "COMMIT", "BEGIN"})


def _first_word(sql: str) -> str:
    body = sql[_COMMENTS.match(sql).end():]
    return body[:12].split(None, 1)[0].split("(", 1)[0].upper() if body.strip() else ""


def _significant(statement) -> list:
    import sqlparse.tokens as T

    return [tok for tok in statement.flatten()
            if not tok.is_whitespace and tok.ttype not in T.Comment and tok.ttype not in T.Comment.Multiline
            and tok.ttype not in (T.Comment.Single,) and not (tok.ttype in T.Punctuation and tok.value == ";")]


def _is_name(tok) -> bool:
    import sqlparse.tokens as T

    return (tok.ttype in T.Name and tok.ttype not in T.Name.Placeholder) or tok.ttype in T.Literal.String.Symbol


def _unquote(value: str) -> str:
    return value.strip('`"[]').lower()


def _word(tok) -> str:
    return tok.normalized.upper() if tok.is_keyword else tok.value.upper()


def _names_in(tokens: list, start: int, end_words: frozenset) -> tuple[set[str], int]:
    """Table-like names from ``start`` up to an end word at the same parenthesis depth
    (or a closing parenthesis below it); the last part of dotted names only."""
    names, depth, i = set(), 0, start
    while i < len(tokens):
        tok = tokens[i]
        if tok.value == "(":
            depth += 1
        elif tok.value == ")":
            depth -= 1
            if depth < 0:
                break
        elif depth == 0 and tok.is_keyword and _word(tok) in end_words:
            break
        elif _is_name(tok) and not (i + 1 < len(tokens) and tokens[i + 1].value == "."):
            names.add(_unquote(tok.value))
        i += 1
    return names, i


def _write_clause(tokens: list, i: int) -> set[str]:
    """The tables the DML clause starting at ``tokens[i]`` writes (conservatively: for
    multi-table UPDATE / DELETE every table named before SET / WHERE)."""
    keyword = _word(tokens[i])
    j = i + 1
    while j < len(tokens) and _word(tokens[j]) in _MODIFIERS:
        if keyword in ("UPDATE", "DELETE") and _word(tokens[j]) == "FROM":
            break  # DELETE FROM t: the names start here
        j += 1
    if keyword in ("UPDATE", "DELETE"):
        names, _ = _names_in(tokens, j, _UPDATE_END if keyword == "UPDATE" else _DELETE_END)
        return names or {UNKNOWN_TABLE}
    # INSERT / REPLACE / UPSERT / MERGE [INTO] [schema.]table
    if j < len(tokens) and _is_name(tokens[j]):
        if j + 2 < len(tokens) and tokens[j + 1].value == "." and _is_name(tokens[j + 2]):
            return {_unquote(tokens[j + 2].value)}
        return {_unquote(tokens[j].value)}
    return {UNKNOWN_TABLE}


def _statement_verdict(statement) -> Verdict:
    tokens = _significant(statement)
    if not tokens:
        return _READ_VERDICT
    first = "(" if tokens[0].value == "(" else _word(tokens[0])
    if first == "PRAGMA":
        name = _unquote(tokens[1].value.split(".")[-1]) if len(tokens) > 1 else ""
        writes = name in _WRITING_PRAGMAS and any(t.value in ("=", "(") for t in tokens[2:])
        return Verdict(DDL, "PRAGMA") if writes else _READ_VERDICT
    if first in _READ_FIRST_WORDS:
        return _READ_VERDICT
    if first == "COPY":  # PostgreSQL: COPY t FROM ... writes, COPY ... TO reads
        return Verdict(DDL, "COPY") if any(_word(t) == "FROM" for t in tokens) else _READ_VERDICT
    if first not in _DML and first not in _QUERY_FIRST_WORDS:
        return Verdict(DDL, first or "UNKNOWN")  # CREATE, ALTER, DROP, TRUNCATE, CALL, DO, PREPARE, ...
    tables: set[str] = set()
    keyword = ""
    for i, tok in enumerate(tokens):
        word = _word(tok)
        if word in _DML and (tok.is_keyword or i == 0):
            prev = _word(tokens[i - 1]) if i else ""
            if prev in _NOT_A_CLAUSE_AFTER:
                continue  # FOR UPDATE, ON DUPLICATE KEY UPDATE, DO UPDATE, ON DELETE, ...
            if word in ("REPLACE", "INSERT") and i + 1 < len(tokens) and tokens[i + 1].value == "(":
                continue  # MySQL's REPLACE(str, from, to) / INSERT(str, pos, len, new) functions
            tables |= _write_clause(tokens, i)
            keyword = keyword or word
        elif word == "INTO" and first in _QUERY_FIRST_WORDS and (i == 0 or _word(tokens[i - 1]) not in _DML):
            # SELECT ... INTO new_table (PostgreSQL) creates a table; INTO @var / OUTFILE do not.
            nxt = tokens[i + 1].value if i + 1 < len(tokens) else ""
            if not nxt.startswith("@") and nxt.upper() not in ("OUTFILE", "DUMPFILE"):
                return Verdict(DDL, "SELECT INTO")
    if not tables:
        if first in _DML:  # a write the scan could not follow: refuse it while frozen
            return Verdict(WRITE, first, frozenset({UNKNOWN_TABLE}))
        return _READ_VERDICT
    return Verdict(WRITE, keyword, frozenset(tables))


@functools.lru_cache(maxsize=2048)
def _parse_verdict(sql: str) -> Verdict:
    import sqlparse

    kinds = [_statement_verdict(statement) for statement in sqlparse.parse(sql)]
    for verdict in kinds:  # DDL first: it is refused whatever the tables
        if verdict.kind == DDL:
            return verdict
    writes = [v for v in kinds if v.kind == WRITE]
    if not writes:
        return _READ_VERDICT
    return Verdict(WRITE, writes[0].keyword, frozenset().union(*(v.tables for v in writes)))


def analyse(sql: str) -> Verdict:
    """What ``sql`` does: READ, WRITE (with the tables written) or DDL."""
    if not sql:
        return _READ_VERDICT
    if not isinstance(sql, str):  # e.g. bytes, or a driver's composed SQL object
        sql = sql.decode() if isinstance(sql, bytes) else str(sql)
    # The fast path for the statements a Django app sends all the time: one SELECT (or
    # SAVEPOINT, ...) with nothing after it and no INTO.
    first = _first_word(sql)
    single = ";" not in sql.rstrip().rstrip(";")
    if first in _FAST_READ and single and (first != "SELECT" or not re.search(r"\binto\b", sql, re.IGNORECASE)):
        return _READ_VERDICT
    if first in ("INSERT", "REPLACE") and single:
        # One INSERT writes one table, named at its start (neither MySQL nor PostgreSQL
        # allows another write inside it): parse the start only, not 2000 rows of VALUES.
        start = _COMMENTS.match(sql).end()
        return _parse_verdict(sql[:start + 512])
    if len(sql) > 4096:
        return _parse_verdict.__wrapped__(sql)  # not kept in the cache
    return _parse_verdict(sql)


_guarded_tables: frozenset[str] | None = None
_login_update: re.Pattern | None = None


def legacy_tables() -> frozenset[str]:
    """The legacy app's tables, found through the app registry (never by import)."""
    global _guarded_tables, _login_update
    if _guarded_tables is None:
        label = bridge_setting("LEGACY_APP", "video_app")
        try:
            models = apps.get_app_config(label).get_models(include_auto_created=True)
        except LookupError:
            raise ImproperlyConfigured(
                f"MIGRATION_BRIDGE['LEGACY_APP'] = {label!r} is not an installed app label") from None
        tables = frozenset(m._meta.db_table.lower() for m in models)
        user = get_user_model()._meta
        q = r'[`"]'
        table, column, pk = (re.escape(name) for name in
                             (user.db_table, user.get_field("last_login").column, user.pk.column))
        # Exactly what django.contrib.auth.models.update_last_login sends (through
        # user.save(update_fields=["last_login"])): one column, one row by primary key.
        _login_update = re.compile(
            rf"UPDATE {q}{table}{q} SET {q}{column}{q} = %s WHERE {q}{table}{q}\.{q}{pk}{q} = %s")
        _guarded_tables = tables
    return _guarded_tables


def is_login_bookkeeping(sql: str) -> bool:
    """The one write to a legacy table allowed while frozen: login() setting last_login."""
    legacy_tables()
    return bool(_login_update.fullmatch(sql))


@dataclass(frozen=True)
class Refusal:
    kind: str  # WRITE or DDL
    keyword: str
    table: str  # the (first) legacy table written; "" for DDL


def refusal(sql: str) -> Refusal | None:
    """What the guard refuses about ``sql`` while frozen (None: allowed even then).

    Refused: any DDL / routine / trigger / CALL / PREPARE / COPY FROM / unknown statement,
    and any write to a legacy table (or to a table the parser could not name), except
    login()'s ``UPDATE <user table> SET last_login = %s WHERE <pk> = %s``.
    """
    verdict = analyse(sql)
    if verdict.kind == READ:
        return None
    if verdict.kind == DDL:
        return Refusal(DDL, verdict.keyword, "")
    try:
        tables = legacy_tables()
    except ImproperlyConfigured:
        tables = None  # the legacy tables are unknown: while frozen, refuse every write
    hit = sorted(verdict.tables if tables is None else verdict.tables & (tables | {UNKNOWN_TABLE}))
    if not hit or is_login_bookkeeping(sql):
        return None
    return Refusal(WRITE, verdict.keyword, hit[0])


def check_legacy_app(app_configs=None, **kwargs) -> list:
    """System check: the guard needs the legacy app's label to know what to protect."""
    try:
        legacy_tables()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), hint="set it to the label of the legacy app (default video_app)",
                             id="migration_bridge.E001")]
    return []


_local = threading.local()


_LOCKING_READ = {"mysql": " LOCK IN SHARE MODE", "postgresql": " FOR SHARE"}


def _flag_is_set(connection) -> bool:
    """Read the flag on ``connection`` itself, uncached. Inside a transaction the read
    locks the flag row in share mode (MySQL/MariaDB, PostgreSQL), so `set_freeze(True)`
    waits for every transaction that has written through the guard, and every write
    checked after it committed sees the freeze."""
    model = _freeze_model()
    table = connection.ops.quote_name(model._meta.db_table)
    frozen = connection.ops.quote_name(model._meta.get_field("frozen").column)
    pk = connection.ops.quote_name(model._meta.pk.column)
    lock = _LOCKING_READ.get(connection.vendor, "")
    sql = f"SELECT {frozen} FROM {table} WHERE {pk} = %s{lock}"
    if not getattr(connection, "_migration_bridge_flag_table", False):
        # Until the table is known to exist (a fresh database being migrated), read in a
        # savepoint: on PostgreSQL a failed read would abort the caller's transaction.
        if model._meta.db_table not in connection.introspection.table_names():
            return False  # before `migrate` created it nobody can have frozen the app
        connection._migration_bridge_flag_table = True
    with connection.cursor() as cursor:
        cursor.execute(sql, [model.SINGLETON_PK])
        row = cursor.fetchone()
    return bool(row and row[0])


def _refuse_if_frozen(connection, found: Refusal) -> None:
    if _flag_is_set(connection):
        raise LegacyFrozenError(get_freeze_state(use_cache=False), found.keyword, found.table)


def freeze_guard(execute, sql, params, many, context):
    """A connection.execute_wrapper: refuse legacy writes and DDL while frozen.

    The flag is read on every such statement, never from the cache: the cache only
    serves the 503 page and the admin banner. A write outside any transaction runs in
    one together with the (locking) read of the flag, so none can slip in after
    `flask_freeze on` has returned.
    """
    found = refusal(sql)
    if found is None or getattr(_local, "reading", False):
        return execute(sql, params, many, context)
    connection = context["connection"]
    if found.kind == DDL:
        # DDL may drop or rename the flag's table (migrate ... zero): look for it again.
        connection._migration_bridge_flag_table = False
    same_database = router.db_for_read(_freeze_model()) == connection.alias
    _local.reading = True
    try:
        if not same_database:
            state = get_freeze_state(use_cache=False)
            if state.frozen:
                raise LegacyFrozenError(state, found.keyword, found.table)
        elif (found.kind == WRITE and connection.vendor in _LOCKING_READ
              and connection.get_autocommit() and not connection.in_atomic_block):
            # (Not on SQLite: its driver reads INSERT ... RETURNING rows lazily, after
            # this wrapper returns, and cannot commit before; there the write follows
            # the read within microseconds, and the database lock serialises the rest.)
            with transaction.atomic(using=connection.alias):
                _refuse_if_frozen(connection, found)
                _local.reading = False
                return execute(sql, params, many, context)
        else:
            _refuse_if_frozen(connection, found)
    finally:
        _local.reading = False
    return execute(sql, params, many, context)


def _install(connection, **kwargs):
    if freeze_guard not in connection.execute_wrappers:
        connection.execute_wrappers.insert(0, freeze_guard)


def install_guard() -> None:
    """Called from AppConfig.ready: every new connection, and the ones already made."""
    checks.register(check_legacy_app)  # a wrong LEGACY_APP shows in `manage.py check`
    connection_created.connect(_install, dispatch_uid="migration_bridge.freeze_guard")
    for connection in connections.all():
        _install(connection)


def freeze_unavailable(exc: DatabaseError):
    """Why the freeze table could not be used, as a one-line ``BridgeError`` (exit 2):
    the legacy database is down or refuses us, or ``migrate`` has not created the table."""
    from .errors import BridgeError, first_line

    model = _freeze_model()
    alias = router.db_for_write(model)
    try:
        connections[alias].close()  # a broken connection would answer the probe below
        tables = connections[alias].introspection.table_names()
    except DatabaseError as probe:
        return BridgeError(f"legacy database unreachable ({first_line(probe)}): start it or fix "
                           "LEGACY_DATABASE_URL / DATABASES, then run the same command again")
    if model._meta.db_table not in tables:
        return BridgeError(f"the freeze table {model._meta.db_table} does not exist: run "
                           "`python manage.py migrate migration_bridge` once, then repeat")
    return BridgeError(f"cannot use the freeze table ({first_line(exc)})")
