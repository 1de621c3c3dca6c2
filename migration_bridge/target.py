"""The export's dealings with the target database before any row moves: opening it (or a
scratch copy for ``--dry-run``), refusing a target the tool did not write or that holds
another profile, emptying it for ``--reset``, and settling what it is written with (the
profile, the file key scheme, the fingerprint version) — the first run's choice stands."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import Callable

import sqlalchemy as sa

from . import bookkeeping as bk
from . import dialects
from .errors import BridgeError
from .files import KEY_SCHEMES
from .fingerprint import FINGERPRINT_VERSION
from .idmap import create_id_map, id_map
from .load import EntityStats
from .mapping import Entity, Profile


@dataclass
class OpenTarget:
    engine: sa.Engine
    recorded: dict[str, str]  # what the real target says it was written with
    scratch_dir: str | None = None  # --dry-run: where the scratch copy lives


def open_target(options, profile: Profile) -> OpenTarget:
    """The real target, or in --dry-run a scratch SQLite copy of the schema."""
    real = dialects.create_target_engine(options.target_url, lock_timeout=options.lock_timeout)
    try:
        with real.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
            missing = [t.name for t in profile.tables if not sa.inspect(conn).has_table(t.name)]
            recorded = bk.recorded_settings(conn)
    except sa.exc.DBAPIError as exc:
        raise BridgeError(dialects.describe_connect_error(exc, real.url)) from None
    if not options.reset:  # --reset starts over, whatever the target held
        check_recorded_schema(profile, recorded)
    if options.dry_run:
        real.dispose()
        scratch_dir = tempfile.mkdtemp(prefix="bridge-dry-run-")
        engine = dialects.create_target_engine(f"sqlite:///{scratch_dir}/scratch.sqlite3")
        profile.create_schema(engine)
        _create_own_tables(engine, profile)
        return OpenTarget(engine, recorded, scratch_dir)
    if missing:
        if not options.create_schema:
            raise BridgeError(
                f"target {dialects.mask_url(real.url)} has no Flask schema of the {profile.name!r} profile "
                f"(missing tables: {', '.join(missing)}); run with --create-schema"
            )
        profile.create_schema(real)
    _create_own_tables(real, profile)
    return OpenTarget(real, recorded)


def _create_own_tables(engine: sa.Engine, profile: Profile) -> None:
    bk.create_bookkeeping(engine)
    if profile.maps_ids:
        create_id_map(engine)


def check_recorded_schema(profile: Profile, recorded: dict[str, str]) -> None:
    schema = recorded.get("target_schema", profile.name)
    if schema != profile.name:
        raise BridgeError(f"the target holds the {schema!r} schema, not {profile.name!r}: pass "
                          f"--target-schema {recorded.get('target_schema_ref', schema)}, or --reset --yes "
                          "to start over")


def start(conn: sa.Connection, options, profile: Profile, entities: list[Entity],
          check: Callable[[sa.Connection, list[Entity], dict], None]) -> dict[str, EntityStats]:
    """Empty (--reset) or forget (--restart) what must go; the checkpoints committed so
    far, after ``check`` (the mover's) had its say; a target with rows the tool did not
    write is refused."""
    if options.reset:
        dialects.empty_tables(conn, profile.tables)
        # the manifest too: its keys follow the key scheme of the rows written next
        for table in (*bk.ROW_TABLES, bk.settings, bk.files):
            conn.execute(table.delete())
        if profile.maps_ids:
            conn.execute(id_map.delete())
    elif options.restart:
        for table in bk.ROW_TABLES:
            conn.execute(table.delete().where(table.c.entity.in_([e.name for e in entities])))
        # the rows read again record this version's digests
        conn.execute(bk.settings.delete().where(bk.settings.c.name == "fingerprints"))
    stats = EntityStats.committed(conn)
    check(conn, entities, stats)
    if not stats and not options.restart:
        foreign = [t.name for t in profile.tables
                   if conn.execute(sa.select(sa.literal(1)).select_from(t).limit(1)).first()]
        if foreign:
            raise BridgeError(
                f"target already holds rows this tool did not write (tables: {', '.join(foreign)}); "
                "use --reset --yes to empty it first"
            )
    return stats


def waiting_replies(conn: sa.Connection) -> dict[str, dict[int, int]]:
    """Replies still waiting for their parent, per entity (``bridge_deferred``)."""
    pending: dict[str, dict[int, int]] = {}
    for row in conn.execute(sa.select(bk.deferred)):
        pending.setdefault(row.entity, {})[row.source_id] = row.parent_id
    return pending


def settle(conn: sa.Connection, profile: Profile, profile_ref: str, recorded: dict[str, str],
           asked: str | None, default: str) -> str:
    """A target is read the way it was first written: same profile, same key scheme.
    ``asked``: the key scheme of --key-scheme (None: the recorded one, else ``default``).
    Returns the scheme."""
    check_recorded_schema(profile, recorded)
    chosen = asked or recorded.get("key_scheme") or default
    if chosen not in KEY_SCHEMES:
        raise BridgeError(f"key scheme {chosen!r}: choose from {', '.join(KEY_SCHEMES)}")
    if recorded.get("key_scheme", chosen) != chosen:
        raise BridgeError(f"the target's rows name files by the {recorded['key_scheme']!r} key scheme, "
                          f"not {chosen!r}: drop --key-scheme, or --reset --yes to start over")
    bk.record_settings(conn, {"target_schema": profile.name, "key_scheme": chosen,
                              "target_schema_ref": profile_ref, "fingerprints": FINGERPRINT_VERSION})
    return chosen


def check_parents_exported(entities: list[Entity], stats: dict[str, EntityStats]) -> None:
    """--only/--exclude: every table a selected entity points at is selected too or
    complete in the target; else its rows would be rejected for a parent never tried."""
    selected = {e.name for e in entities}
    for entity in entities:
        absent = sorted(p for p in set(entity.foreign_keys.values())
                        if p not in selected and not (p in stats and stats[p].done))
        if absent:
            raise BridgeError(
                f"{entity.name} points at {', '.join(absent)}, which the target does not hold yet: "
                f"export {', '.join(absent)} first (or in the same run)")


def drop_bookkeeping(target_url: str) -> list[str]:
    """After cutover: drop the tool's own tables (checkpoints, notes, fingerprints, manifest).
    The id map stays: it is the Flask app's way from old links to new rows."""
    engine = dialects.create_target_engine(target_url)
    try:
        with engine.begin() as conn:
            present = [t.name for t in bk.bookkeeping_metadata.sorted_tables if sa.inspect(conn).has_table(t.name)]
            if bk.deferred_schema.name in present and conn.execute(
                    sa.select(sa.func.count()).select_from(bk.deferred_schema)).scalar():
                # their definitions would go with the table
                raise BridgeError("the Flask tables have indexes or foreign keys an export dropped while loading "
                                  "and has not built again: run export_to_flask (or --sync) first, then --cleanup")
            if sa.inspect(conn).has_table(bk.OLD_FINGERPRINTS):  # written by versions before 3
                conn.execute(sa.text(f"DROP TABLE {bk.OLD_FINGERPRINTS}"))
                present.append(bk.OLD_FINGERPRINTS)
        bk.bookkeeping_metadata.drop_all(engine)
    except sa.exc.DBAPIError as exc:
        raise BridgeError(dialects.describe_connect_error(exc, engine.url)) from None
    finally:
        engine.dispose()
    return present
