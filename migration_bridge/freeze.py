"""Read-only freeze of the legacy app for the cutover window.

The flag lives in the bridge's one table in the legacy database
(``LegacyFreeze``), so every worker and host sees it; each process caches its
reads for ``MIGRATION_BRIDGE["FREEZE_CACHE_SECONDS"]`` (default 2).

While frozen, a guard installed on every database connection (the technique of
django-read-only, but with this shared flag) refuses writes to the legacy app's
tables, wherever they come from. What it refuses:

- statements that write (INSERT, REPLACE, UPDATE, DELETE, TRUNCATE, and
  CREATE/ALTER/DROP/RENAME of a table or CREATE/DROP INDEX ... ON a table)
- whose target table belongs to the legacy app label
  (``MIGRATION_BRIDGE["LEGACY_APP"]``, default ``video_app``, M2M tables included);
- except Django's login bookkeeping on the user table: an UPDATE whose SET
  assigns exactly one column, ``last_login`` (update_last_login) or ``password``
  (the hash upgrade ``check_password`` does); both keep the same credentials.

Everything else (sessions, auth/admin/contenttypes tables, this freeze table)
stays writable.

API for the export: ``get_freeze_state``, ``is_frozen``, ``set_freeze``.
"""
from __future__ import annotations

import datetime as dt
import re
import threading
import time
from dataclasses import dataclass

from django.apps import apps
from django.core import checks
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connections, router, transaction
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
    """Turn the freeze on or off. Re-freezing keeps ``since`` (it names one freeze period)."""
    model = _freeze_model()
    alias = router.db_for_write(model)
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
    # Write-through: this process sees its own change at once.
    return _remember(FreezeState(frozen=on, message=row.message, by=by, since=row.since))


# --- the database guard ------------------------------------------------------

_IDENT = r'(?:[`"\[]?[\w$]+[`"\]]?\s*\.\s*)?[`"\[]?(?P<table>[\w$]+)[`"\]]?'
_WRITE_KEYWORDS = frozenset({"INSERT", "REPLACE", "UPDATE", "DELETE", "TRUNCATE",
                             "CREATE", "ALTER", "DROP", "RENAME"})
_WRITE_STATEMENTS = [re.compile(r"^\s*" + pattern + _IDENT, re.IGNORECASE | re.DOTALL) for pattern in (
    r"(?P<kw>INSERT|REPLACE)(?:\s+(?:OR\s+\w+|IGNORE|LOW_PRIORITY|DELAYED|HIGH_PRIORITY))*\s+INTO\s+",
    r"(?P<kw>UPDATE)(?:\s+(?:OR\s+\w+|LOW_PRIORITY|IGNORE))*\s+",
    r"(?P<kw>DELETE)\b.*?\bFROM\s+",  # also MySQL's multi-table `DELETE t FROM t JOIN ...`
    r"(?P<kw>TRUNCATE)(?:\s+TABLE)?\s+",
    r"(?P<kw>CREATE|ALTER|DROP|RENAME)\s+(?:TEMP\w*\s+)?TABLE\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?",
    r"(?P<kw>CREATE|DROP)\s+(?:UNIQUE\s+)?INDEX\b.*?\bON\s+",
)]


def written_table(sql: str) -> tuple[str, str] | None:
    """(statement keyword, lower-cased table) when ``sql`` writes a table, else None."""
    head = sql.lstrip()[:9].split(None, 1)
    if not head or head[0].upper() not in _WRITE_KEYWORDS:
        return None  # the fast path: SELECT, SAVEPOINT, SET, ...
    for pattern in _WRITE_STATEMENTS:
        match = pattern.match(sql)
        if match:
            return match.group("kw").upper(), match.group("table").lower()
    return None


_guarded_tables: frozenset[str] | None = None
_bookkeeping: re.Pattern | None = None


def legacy_tables() -> frozenset[str]:
    """The legacy app's tables, found through the app registry (never by import)."""
    global _guarded_tables, _bookkeeping
    if _guarded_tables is None:
        label = bridge_setting("LEGACY_APP", "video_app")
        try:
            models = apps.get_app_config(label).get_models(include_auto_created=True)
        except LookupError:
            raise ImproperlyConfigured(
                f"MIGRATION_BRIDGE['LEGACY_APP'] = {label!r} is not an installed app label") from None
        tables = frozenset(m._meta.db_table.lower() for m in models)
        user = get_user_model()._meta
        columns = "|".join(re.escape(user.get_field(name).column) for name in ("last_login", "password"))
        # One `col = %s` assignment and nothing else: a comma would mean more columns.
        _bookkeeping = re.compile(
            rf'^\s*UPDATE\s+[`"]?{re.escape(user.db_table)}[`"]?\s+SET\s+[`"]?(?:{columns})[`"]?\s*=\s*(?:%s|NULL)\s+WHERE\s',
            re.IGNORECASE)
        _guarded_tables = tables
    return _guarded_tables


def is_auth_bookkeeping(sql: str) -> bool:
    legacy_tables()
    return bool(_bookkeeping.match(sql))


def refusal(sql: str) -> tuple[str, str] | None:
    """(keyword, table) when the guard must refuse ``sql`` if frozen, else None."""
    target = written_table(sql)
    if target is None:
        return None
    try:
        tables = legacy_tables()
    except ImproperlyConfigured:
        return target  # the legacy tables are unknown: while frozen, refuse every write
    if target[1] not in tables or is_auth_bookkeeping(sql):
        return None
    return target


def check_legacy_app(app_configs=None, **kwargs) -> list:
    """System check: the guard needs the legacy app's label to know what to protect."""
    try:
        legacy_tables()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), hint="set it to the label of the legacy app (default video_app)",
                             id="migration_bridge.E001")]
    return []


_local = threading.local()


def freeze_guard(execute, sql, params, many, context):
    """A connection.execute_wrapper: refuse legacy writes while frozen."""
    target = refusal(sql)
    # The freeze read below is a SELECT, so it passes straight through this
    # wrapper; the flag only makes that explicit should that ever change.
    if target is not None and not getattr(_local, "reading", False):
        _local.reading = True
        try:
            state = get_freeze_state(use_cache=True)
        finally:
            _local.reading = False
        if state.frozen:
            raise LegacyFrozenError(state, *target)
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
