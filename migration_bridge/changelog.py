"""The legacy database's change log: what lets a freeze-window ``--sync`` read the ids of
the rows written since the last run instead of digesting every row.

``export_to_flask --track-changes`` installs, before it reads a row, a trigger per event
on every legacy table an entity reads, writing each written row's id into
``bridge_change_log`` in the writing transaction (a rolled-back write leaves no entry, a
committed one cannot miss its own), and a token naming this installation and the target
it follows (its address), which the target records once every row was read after the
install. A later ``--sync`` trusts the log only when the legacy database holds the
target's token, for this target's address, and every trigger: then each logged row's
digest is computed by the database and compared with the recorded one, for those rows
alone; otherwise (a trigger dropped, the log made again for another target, a copy of
the target, ``--full-scan``) it compares every row's digest as without a log, and says
why. The log is trimmed of the entries a sync read only once the sync completed, by
their own ids: an entry committed meanwhile stays, whatever its id.

Nothing here is needed to prove the result: ``verify_flask`` reads neither the log nor
the digests.
"""
from __future__ import annotations

import hashlib
import logging
import os
import uuid
from dataclasses import dataclass, field

from django.db import DatabaseError, connections, transaction

from . import bookkeeping as bk
from . import dialects
from .errors import BridgeError, first_line
from .mapping import Entity

log = logging.getLogger("migration_bridge")

TOKEN_SETTING = "change_log"  # the target's record of the installation it follows
TRIM_RUNS = 400  # runs of consecutive entry ids per DELETE (two parameters each: under SQLite's old 999)


@dataclass
class ChangeLog:
    """The entries a sync read: the ids logged per legacy table, and the runs of entry ids
    to trim once it completed."""

    ids: dict[str, set[int]] = field(default_factory=dict)
    entry_runs: list[tuple[int, int]] = field(default_factory=list)
    entries: int = 0

    def logged(self, table: str) -> list[int]:
        return sorted(self.ids.get(table, ()))


def logged_table(source, entity: Entity) -> str | None:
    """The legacy table whose log names the entity's changed rows; None for an entity
    with derived rows (those are compared by their digests every time)."""
    if not entity.source_model or entity.derived is not None:
        return None
    meta = source.model(entity.source_model)._meta.concrete_model._meta
    # a model inheriting another's table writes part of each row there: not logged here
    return None if meta.parents else meta.db_table


def logged_tables(source, entities: list[Entity]) -> dict[str, str]:
    """Legacy table -> primary key column, for the entities with a ``logged_table``."""
    return {table: source.model(e.source_model)._meta.concrete_model._meta.pk.column
            for e in entities if (table := logged_table(source, e))}


def target_identity(target_url: str) -> str:
    """Which target a log follows: its database's address without the password (a copy of
    the target under another name holds the same token but is not the target)."""
    url = dialects.normalize_url(target_url).set(password=None)
    if url.get_backend_name() == "sqlite" and url.database:
        url = url.set(database=os.path.realpath(url.database))
    return hashlib.sha256(url.render_as_string(hide_password=False).encode()).hexdigest()[:16]


def _failed(what: str, exc: Exception) -> BridgeError:
    return BridgeError(f"the change log: {what} failed in the legacy database ({first_line(exc)})")


def installed_token(source, tables: dict[str, str]) -> tuple[str | None, str]:
    """(the installation's token, "") when the log, its token and every trigger on
    ``tables`` are in place; else (None, what is missing)."""
    connection = connections[source.alias]
    try:
        with connection.cursor() as cursor:
            if not dialects.change_log_tables_exist(cursor, connection):
                return None, "no change log in the legacy database"
            present = dialects.change_log_triggers(cursor, connection)
            blind = dialects.change_log_blind_spots(cursor, connection, tables)
            cursor.execute(f"SELECT token FROM {connection.ops.quote_name(dialects.CHANGE_TRACKING)}")
            tokens = [row[0] for row in cursor.fetchall()]
    except DatabaseError as exc:
        raise _failed("reading its state", exc) from None
    missing = [name for table in tables for name in dialects.change_log_trigger_names(table).values()
               if (name, table) not in present]
    if missing:
        return None, f"trigger {missing[0]} is missing" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
    if blind:
        return None, f"foreign key {blind[0]} writes rows without firing triggers"
    if len(tokens) != 1:
        return None, "the change log holds no installation token"
    return tokens[0], ""


def install(source, tables: dict[str, str], token: str) -> None:
    """Make the log and the triggers again, empty the log, and record ``token`` in it. The
    triggers are in place before the log is emptied: a row written after that is logged."""
    connection = connections[source.alias]
    q = connection.ops.quote_name
    try:
        with connection.cursor() as cursor:
            if dialects.change_log_read_only(cursor, connection):
                raise BridgeError("--track-changes: the legacy server is read-only (a replica?); its triggers "
                                  "would not see the writes replicated to it: install the log on the primary")
            blind = dialects.change_log_blind_spots(cursor, connection, tables)
            if blind:
                raise BridgeError(f"--track-changes: the foreign key {blind[0]} changes rows without firing "
                                  "triggers (ON DELETE/UPDATE CASCADE or SET NULL): a change log would miss them; "
                                  "--sync compares every row's digest without one")
            for statement in dialects.change_log_install_statements(connection, tables):
                cursor.execute(statement)
        with transaction.atomic(using=source.alias), connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {q(dialects.CHANGE_LOG)}")
            cursor.execute(f"DELETE FROM {q(dialects.CHANGE_TRACKING)}")
            cursor.execute(f"INSERT INTO {q(dialects.CHANGE_TRACKING)} (token) VALUES (%s)", [token])
    except DatabaseError as exc:
        raise _failed("installing it (it needs the right to create tables and triggers; on MariaDB/MySQL "
                      "with binary logging, SUPER or log_bin_trust_function_creators)", exc) from None


def remove(source) -> int:
    """Drop every trigger of the change log, the log and its token (after the cutover);
    returns the number of triggers dropped (0 when none was installed)."""
    connection = connections[source.alias]
    if connection.vendor not in ("mysql", "sqlite"):
        return 0
    try:
        with connection.cursor() as cursor:  # the triggers go even when the log went first
            triggers = sorted(name for name, _ in dialects.change_log_triggers(cursor, connection))
            for statement in dialects.change_log_remove_statements(connection, triggers):
                cursor.execute(statement)
    except DatabaseError as exc:
        raise _failed("removing it", exc) from None
    return len(triggers)


def read(source, tables: dict[str, str]) -> ChangeLog:
    """The entries the log holds now for ``tables``."""
    connection = connections[source.alias]
    out = ChangeLog()
    names = list(tables)
    if not names:
        return out
    marks = ", ".join(["%s"] * len(names))
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT id, table_name, row_id FROM {connection.ops.quote_name(dialects.CHANGE_LOG)} "
                           f"WHERE table_name IN ({marks}) ORDER BY id", names)
            while rows := cursor.fetchmany(10_000):
                for entry, table, row_id in rows:
                    out.ids.setdefault(table, set()).add(row_id)
                    if out.entry_runs and out.entry_runs[-1][1] == entry - 1:
                        out.entry_runs[-1] = (out.entry_runs[-1][0], entry)
                    else:
                        out.entry_runs.append((entry, entry))
                out.entries += len(rows)
    except DatabaseError as exc:
        raise _failed("reading it", exc) from None
    return out


def trim(source, log: ChangeLog) -> str | None:
    """Delete the entries ``log`` read (and no other). The rows are in the target already:
    a failure only leaves entries the next sync reads again, and is returned, not raised."""
    connection = connections[source.alias]
    table = connection.ops.quote_name(dialects.CHANGE_LOG)
    try:
        for at in range(0, len(log.entry_runs), TRIM_RUNS):
            runs = log.entry_runs[at:at + TRIM_RUNS]
            where = " OR ".join(["id BETWEEN %s AND %s"] * len(runs))
            with transaction.atomic(using=source.alias), connection.cursor() as cursor:
                cursor.execute(f"DELETE FROM {table} WHERE {where}", [i for run in runs for i in run])
    except DatabaseError as exc:
        return (f"the entries it read could not be deleted ({first_line(exc)}): the next sync reads them again "
                f"(the database user needs DELETE on {dialects.CHANGE_LOG})")
    return None


@dataclass
class Tracking:
    """What a run does with the change log: ``log``, the entries a sync compares instead
    of every row's digest (None: it compares every row's); ``note``, one line for the user;
    ``installed``, the installation it follows or made (legacy database's value);
    ``record``, the token the target records once the run is complete."""

    log: ChangeLog | None = None
    note: str | None = None
    installed: str | None = None
    record: str | None = None


def _record(engine, token: str) -> None:
    with engine.begin() as conn:
        conn.execute(bk.settings.delete().where(bk.settings.c.name == TOKEN_SETTING))
        conn.execute(bk.settings.insert().values(name=TOKEN_SETTING, value=token))


def start(source, profile_entities: list[Entity], entities: list[Entity], engine, options, reads_every_row: bool,
          ) -> Tracking:
    """Before a run reads a row: install the log when asked (only for a run that reads
    every row after it: an export from the start, or a sync comparing every row of every
    entity), and tell a sync whether it may read the log instead. The legacy database
    holds the token and the target it follows; the target, the token."""
    if not (options.track_changes or options.sync) or options.dry_run or options.files_only:
        return Tracking()
    tables = logged_tables(source, profile_entities)
    identity = target_identity(options.target_url)
    with engine.connect() as conn:
        recorded = bk.recorded_settings(conn).get(TOKEN_SETTING)
    installed, why = installed_token(source, tables) if (recorded or options.track_changes) else (None, "")
    follows = installed is not None and installed == f"{recorded}:{identity}"
    if installed is not None and not follows:
        why = "the change log follows another target, or this target under another address"
    if options.track_changes and not follows:
        every_entity = {e.name for e in entities} >= {e.name for e in profile_entities if logged_table(source, e)}
        if not (reads_every_row or (options.sync and every_entity)):
            raise BridgeError("--track-changes: rows read before the change log existed may have changed unseen; "
                              "install it with an export into an empty target, or with a --sync of every entity "
                              "(no --only/--exclude), which compares every row once")
        token = uuid.uuid4().hex
        install(source, tables, f"{token}:{identity}")
        note = (f"change log: installed on {len(tables)} legacy tables; rows written from now on are logged "
                "for the next --sync")
        if options.sync:  # trusted once this sync has compared every row: recorded when it completes
            return Tracking(note=note, installed=f"{token}:{identity}", record=token)
        _record(engine, token)  # an export resumed after a stop still reads the rest after the install
        return Tracking(note=note, installed=f"{token}:{identity}")
    if not options.sync:
        return Tracking(note="change log: in place, installed by an earlier run" if follows else None)
    if follows and options.full_scan:
        return Tracking(note="change log: not read (--full-scan): every row's digest is compared")
    if follows:
        selected = logged_tables(source, entities)
        entries = read(source, selected)
        if installed_token(source, tables)[0] != installed:  # installed again while it was read
            return Tracking(note="change log: not usable (installed again meanwhile): every row's digest is compared")
        return Tracking(log=entries, installed=installed,
                        note=f"change log: {entries.entries} entries for {sum(map(len, entries.ids.values()))} rows; "
                             "the other rows are not read")
    if recorded:
        return Tracking(note=f"change log: not usable ({why}): every row's digest is compared")
    return Tracking()


def finish(source, engine, profile_entities: list[Entity], tracking: Tracking) -> None:
    """Once the run is complete: the target records an installation this sync made, and
    the entries a sync read are deleted, unless the log was installed again since."""
    if tracking.record:
        _record(engine, tracking.record)
    if tracking.log is None:
        return
    if installed_token(source, logged_tables(source, profile_entities))[0] != tracking.installed:
        problem = "the log was installed again during this sync: its entries are left as they are"
    else:
        problem = trim(source, tracking.log)
    if problem:
        log.warning("change log: %s", problem)  # what it read is in the target: not a failure
        tracking.note = f"{tracking.note}; {problem}"
