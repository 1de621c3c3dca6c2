"""The migration's own tables, in the target database (never in the legacy one).

- ``bridge_runs``: one row per export run (options, status, whether the source was frozen).
- ``bridge_checkpoints``: per entity, the last source id committed and running counts;
  written in the same transaction as the batch it follows, so a kill loses nothing.
- ``bridge_ranges``: the same per id range, while row workers (``--row-workers``) export
  an entity's ranges at once (ranges.py); gone once the entity is complete.
- ``bridge_notes``: per source row, what the report lists: rejects (with reason),
  skips, password outcomes, inferred attributions, archived duplicate sessions.
- ``bridge_deferred``: rows waiting for a parent later in id order (comment replies).
- ``bridge_row_digests``: per source row, what ``--sync`` compares (fingerprint.py).
- ``bridge_pin_hashes``: per hashed PIN, a keyed digest of it and the hash written, so
  that a sync writes the same hash for an unchanged PIN instead of hashing it again.
- ``bridge_files``: the file manifest, one row per referenced media file (files.py).
- ``bridge_settings``: the target schema and key scheme the target was written with.
- ``bridge_deferred_schema``: the Flask tables' indexes and foreign keys an export dropped
  while loading and has not built again yet (dialects.built_after_loading).
"""
from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from flask_models import UtcDateTime

from . import dialects
from .transforms import Reject, Root, Skip, root_of

bookkeeping_metadata = sa.MetaData()
_MYSQL = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin", "mysql_engine": "InnoDB"}

runs = sa.Table(
    "bridge_runs", bookkeeping_metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(20), nullable=False),  # export | sync
    sa.Column("status", sa.String(20), nullable=False),  # running | complete | failed
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("finished_at", UtcDateTime),
    sa.Column("options", sa.JSON),
    sa.Column("source_frozen", sa.Boolean),
    sa.Column("report_dir", sa.String(1000)),
    **_MYSQL,
)


def _progress_columns() -> list[sa.Column]:
    """What a checkpoint records (``load.EntityStats.as_checkpoint``): the last source id
    committed and the running counts."""
    return [
        sa.Column("last_id", sa.BigInteger, nullable=False, default=0),
        sa.Column("read", sa.BigInteger, nullable=False, default=0),
        sa.Column("written", sa.BigInteger, nullable=False, default=0),
        sa.Column("rejected", sa.BigInteger, nullable=False, default=0),
        sa.Column("skipped", sa.BigInteger, nullable=False, default=0),
        sa.Column("seconds", sa.Float, nullable=False, default=0.0),
        sa.Column("done", sa.Boolean, nullable=False, default=False),
        sa.Column("updated_at", UtcDateTime),
    ]


checkpoints = sa.Table(
    "bridge_checkpoints", bookkeeping_metadata,
    sa.Column("entity", sa.String(50), primary_key=True),
    *_progress_columns(),
    **_MYSQL,
)

ranges = sa.Table(
    "bridge_ranges", bookkeeping_metadata,
    sa.Column("entity", sa.String(50), primary_key=True),
    sa.Column("lo", sa.BigInteger, primary_key=True, autoincrement=False),  # ids > lo ...
    sa.Column("hi", sa.BigInteger),  # ... and <= hi (NULL: no upper bound)
    *_progress_columns(),
    **_MYSQL,
)

notes = sa.Table(
    "bridge_notes", bookkeeping_metadata,
    sa.Column("entity", sa.String(50), primary_key=True),
    sa.Column("source_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("kind", sa.String(30), primary_key=True),  # reject | skip | password | attribution | ...
    sa.Column("detail", sa.JSON),
    **_MYSQL,
)

deferred = sa.Table(
    "bridge_deferred", bookkeeping_metadata,
    sa.Column("entity", sa.String(50), primary_key=True),
    sa.Column("source_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("parent_id", sa.BigInteger, nullable=False),
    **_MYSQL,
)

# --- the file manifest (see migration_bridge/files.py) ---------------------------------
# One row per distinct legacy storage name referenced by the source rows: where it goes
# (key), what was copied (size, sha256 of the content) and how it ended.
files = sa.Table(
    "bridge_files", bookkeeping_metadata,
    sa.Column("old_name", sa.String(500), primary_key=True),  # storage name in the source storage
    sa.Column("key", sa.String(500), nullable=False),  # storage name in the target storage
    sa.Column("size", sa.BigInteger),
    sa.Column("sha256", sa.String(64)),
    sa.Column("source_mtime_ns", sa.BigInteger),  # to trust a "done" entry on re-runs without reading it
    # pending (never attempted) | copying (attempted, outcome unknown) | copied | skipped_present
    # | missing | failed
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("error", sa.String(1000)),
    sa.Column("refs", sa.Integer, nullable=False, default=0),  # references from source rows
    sa.Column("migrated_refs", sa.Integer, nullable=False, default=0),  # ... from rows in the target
    sa.Column("first_media_id", sa.BigInteger),  # lowest referencing media id (media-id keys)
    sa.Column("updated_at", UtcDateTime),
    **_MYSQL,
)

# What --sync compares, per source row (fingerprint.py): the digest of its own values
# (the database's, plus a keyed part for its secrets) and the keyed digest of what its
# contexts gave it (NULL: nothing).
fingerprints = sa.Table(
    "bridge_row_digests", bookkeeping_metadata,
    sa.Column("entity", sa.String(50), primary_key=True),
    sa.Column("source_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("row_digest", sa.BigInteger, nullable=False),
    sa.Column("context_digest", sa.String(32)),
    **_MYSQL,
)
dialects.leave_room_for_updates(fingerprints)
# the table of fingerprint versions before 3, dropped with the others by --cleanup
OLD_FINGERPRINTS = "bridge_fingerprints"

# Per source row whose PIN was hashed: a keyed digest of the row, its PIN and the method
# (fingerprint.pin_digest), and the hash written. A sync that meets the same PIN under
# the same method writes that hash again instead of paying the method once more (a
# student whose name changed); any other PIN is hashed anew.
pin_hashes = sa.Table(
    "bridge_pin_hashes", bookkeeping_metadata,
    sa.Column("entity", sa.String(50), primary_key=True),
    sa.Column("source_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("pin_digest", sa.String(32), nullable=False),
    sa.Column("pin_hash", sa.Text, nullable=False),
    **_MYSQL,
)

# What the target was first written with (target_schema, key_scheme): later runs and
# verify must read it the same way.
settings = sa.Table(
    "bridge_settings", bookkeeping_metadata,
    sa.Column("name", sa.String(50), primary_key=True),
    sa.Column("value", sa.String(200), nullable=False),
    **_MYSQL,
)

# The definitions of the indexes and foreign keys an export drops while it loads the Flask
# tables (PostgreSQL: dialects.built_after_loading), committed with the drops and deleted
# as each is built again: a run that stops midway leaves them for the next one to build.
deferred_schema = sa.Table(
    "bridge_deferred_schema", bookkeeping_metadata,
    sa.Column("table_name", sa.String(300), primary_key=True),  # quoted, as the database prints it
    sa.Column("name", sa.String(300), primary_key=True),  # quoted
    sa.Column("kind", sa.String(20), nullable=False),  # index | foreign_key
    sa.Column("definition", sa.Text, nullable=False),  # CREATE INDEX ... | FOREIGN KEY ... REFERENCES ...
    **_MYSQL,
)

ROW_TABLES = (checkpoints, ranges, notes, deferred, fingerprints, pin_hashes)


def recorded_settings(conn: sa.Connection) -> dict[str, str]:
    if not sa.inspect(conn).has_table(settings.name):
        return {}
    return dict(conn.execute(sa.select(settings.c.name, settings.c.value)).all())


def record_settings(conn: sa.Connection, values: dict[str, str]) -> None:
    """Record the values not recorded yet (the first run's choice stands)."""
    known = recorded_settings(conn)
    new = [{"name": k, "value": v} for k, v in values.items() if k not in known]
    if new:
        conn.execute(settings.insert(), new)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def create_bookkeeping(engine: sa.Engine) -> None:
    bookkeeping_metadata.create_all(engine)


def gone_rows(conn: sa.Connection, entity: str) -> dict:
    """{source id: Root} of the rows of ``entity`` rejected or skipped so far."""
    gone = {}
    for source_id, kind, detail in conn.execute(
            sa.select(notes.c.source_id, notes.c.kind, notes.c.detail)
            .where(notes.c.entity == entity, notes.c.kind.in_(("reject", "skip")))):
        detail = detail or {}
        root = detail.get("root")
        if root:
            gone[source_id] = Root(root["entity"], root["id"], root["reason"])
        else:
            result = (Skip if kind == "skip" else Reject)(detail.get("reason", ""))
            gone[source_id] = root_of(entity, source_id, result)
    return gone


def has_bookkeeping(conn: sa.Connection) -> bool:
    return sa.inspect(conn).has_table("bridge_checkpoints")
