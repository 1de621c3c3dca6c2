"""``export_to_flask --sync``: bring a migrated target up to date with the source.

After a complete export (typically a pre-copy while the legacy app was live), a sync
moves only what changed since: rows added, changed and deleted, then new files. It
needs no ``updated_at``: every source row is fingerprinted the way the export
fingerprinted it when it loaded the row (``fingerprint.py``), and the chunked
checksum engine of ``verify_flask`` (``diff.py``) finds the differing ids. Cost: one
scan of the source and of the stored fingerprints, plus work proportional to the
change (PINs are hashed again only for the students whose row changed).

Order: deletes children first (interactions → … → districts), then inserts and
updates parents first, each chunk in its own transaction. A sync killed part-way
leaves a consistent target; the next sync finds what is left and converges.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import sqlalchemy as sa

from . import bookkeeping as bk
from .diff import diff_ranges, keyset_ranges
from .errors import BridgeError
from .mapping import Entity
from .pipeline import EntityStats, Exporter
from .source import BEFORE_FIRST_ID


@dataclass
class SyncStats:
    name: str
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    rejected: int = 0
    seconds: float = 0.0

    def as_report(self) -> dict:
        return {"inserted": self.inserted, "updated": self.updated, "deleted": self.deleted,
                "unchanged": self.unchanged, "rejected": self.rejected, "seconds": round(self.seconds, 3)}


@contextlib.contextmanager
def _timed(stats: SyncStats):
    started = time.monotonic()
    try:
        yield
    finally:
        stats.seconds += time.monotonic() - started


@dataclass
class EntityChanges:
    upsert: list[int]  # in the source, new or changed since the row was loaded
    inserted: set[int]  # the new ones among them
    delete: list[int]  # gone from the source


class Syncer(Exporter):
    """Reuses the export's whole row path (transform, validation, keys, PIN pool)."""

    def preflight(self) -> None:
        o = self.options
        if o.reset or o.restart or o.dry_run or o.files_only:
            raise BridgeError("--sync cannot be combined with --reset, --restart, --dry-run or --files-only")
        super().preflight()

    def check_synchronisable(self, engine: sa.Engine) -> None:
        with engine.connect() as conn:
            done = {row.entity: row.done for row in conn.execute(sa.select(bk.checkpoints))}
            fingerprinted = conn.execute(sa.select(sa.func.count()).select_from(bk.fingerprints)).scalar()
        unfinished = [e.name for e in self.entities if not done.get(e.name)]
        if unfinished:
            raise BridgeError(
                f"--sync needs a complete export first (not complete: {', '.join(unfinished)}); "
                "run export_to_flask without --sync"
            )
        if not fingerprinted:
            raise BridgeError("the target holds no row fingerprints (exported by an older version): "
                              "run export_to_flask --restart once, then --sync")

    run_kind = "sync"

    def prepare_target(self, engine: sa.Engine) -> dict[str, EntityStats]:
        self.check_synchronisable(engine)
        return super().prepare_target(engine)

    def move_rows(self, engine: sa.Engine, stats: dict[str, EntityStats]) -> None:
        self.sync_stats = [SyncStats(e.name) for e in self.entities]
        by_name = {s.name: s for s in self.sync_stats}
        changes = {}
        for entity in self.entities:
            with _timed(by_name[entity.name]):
                changes[entity.name] = self.find_changes(engine, entity, by_name[entity.name])
        for entity in reversed(self.entities):
            with _timed(by_name[entity.name]):
                self.delete_rows(engine, entity, changes[entity.name].delete, by_name[entity.name])
        self.loaded.clear()  # the deletes changed what the target holds
        self.gone.clear()
        for entity in self.entities:
            with _timed(by_name[entity.name]):
                self.apply_upserts(engine, entity, changes[entity.name], by_name[entity.name])

    def report_extra(self) -> dict:
        return {"kind": "sync", "sync": {s.name: s.as_report() for s in self.sync_stats or []}}

    # --- 1. what changed ---------------------------------------------------------------

    def find_changes(self, engine: sa.Engine, entity: Entity, stats: SyncStats) -> EntityChanges:
        self.load_parent_ids(engine, entity)
        ctx = self.entity_context(entity)

        scanned = 0

        def source_chunks():
            nonlocal scanned
            for rows in self.source.extract_rows(entity.source_model, entity.source_fields, BEFORE_FIRST_ID,
                                                 self.options.batch_size):
                scanned += len(rows)
                batch_ctx = self.batch_context(entity, ctx, rows)
                yield {r["id"]: bytes.fromhex(self.fingerprint(r, batch_ctx)) for r in rows}

        def stored(lo, hi) -> dict[int, str]:
            fp = bk.fingerprints
            query = sa.select(fp.c.source_id, fp.c.fingerprint).where(fp.c.entity == entity.name)
            if lo is not None:
                query = query.where(fp.c.source_id >= lo)
            if hi is not None:
                query = query.where(fp.c.source_id < hi)
            with engine.connect() as conn:
                return {i: bytes.fromhex(f) for i, f in conn.execute(query)}

        upsert, inserted, delete = [], set(), []
        for chunk in diff_ranges(keyset_ranges(source_chunks()), stored):
            upsert.extend(chunk.missing)
            upsert.extend(chunk.changed)
            inserted.update(chunk.missing)
            delete.extend(chunk.extra)
        stats.unchanged = scanned - len(upsert)
        return EntityChanges(sorted(upsert), inserted, delete)

    # --- 2. deletes, children first ------------------------------------------------------

    def delete_rows(self, engine: sa.Engine, entity: Entity, ids: list[int], stats: SyncStats) -> None:
        table = entity.target
        for start in range(0, len(ids), self.options.batch_size):
            chunk = ids[start:start + self.options.batch_size]
            with engine.begin() as conn:
                if entity.self_foreign_key:  # replies first, then their parents
                    stats.deleted += self._delete_self_referencing(conn, table, entity.self_foreign_key, chunk)
                else:
                    stats.deleted += conn.execute(table.delete().where(table.c.id.in_(chunk))).rowcount
                for book in (bk.fingerprints, bk.notes, bk.deferred):
                    conn.execute(book.delete().where(book.c.entity == entity.name, book.c.source_id.in_(chunk)))

    @staticmethod
    def _delete_self_referencing(conn, table, column, ids) -> int:
        """Delete ``ids`` leaves first (no reply outlives its parent); returns the count."""
        pending, deleted = set(ids), 0
        while pending:
            children = set(conn.execute(sa.select(table.c.id).where(table.c[column].in_(pending))).scalars())
            leaves = pending - children
            if not leaves:  # a cycle: break it
                conn.execute(table.update().where(table.c.id.in_(pending)).values({column: None}))
                leaves = pending
            deleted += conn.execute(table.delete().where(table.c.id.in_(leaves))).rowcount
            pending -= leaves
        return deleted

    # --- 3. inserts and updates, parents first ---------------------------------------------

    def apply_upserts(self, engine: sa.Engine, entity: Entity, changes: EntityChanges, stats: SyncStats) -> None:
        self.load_parent_ids(engine, entity)
        ctx = self.entity_context(entity)
        # rows rejected before are decided again even when unchanged: their parent may be in now
        retried = set(self.rejected_ids(engine, entity)) - set(changes.upsert)
        changes = EntityChanges(sorted(set(changes.upsert) | retried), changes.inserted | retried, changes.delete)
        self._accepted, self._rejected = set(), 0
        scratch = EntityStats(entity.name)  # the export's checkpoint counters stay as they are
        for start in range(0, len(changes.upsert), self.options.batch_size):
            chunk = changes.upsert[start:start + self.options.batch_size]
            rows = self.source.rows_by_id(entity.source_model, entity.source_fields, chunk)
            outcome = self.process_rows(entity, rows, self.batch_context(entity, ctx, rows))
            self.commit_batch(engine, entity, outcome, scratch, time.monotonic())
        if entity.self_foreign_key:
            self.resolve_deferred(engine, entity, ctx, scratch)
        stats.inserted = len(self._accepted & changes.inserted)
        stats.updated = len(self._accepted - changes.inserted)
        stats.rejected = self._rejected

    def commit_batch(self, engine, entity, outcome, stats, started, resolved=()) -> float:
        """The export's commit, replacing the notes of every row it touches."""
        touched = ({r["id"] for r in outcome.rows} | {n["source_id"] for n in outcome.notes}
                   | {d["source_id"] for d in outcome.deferred} | set(resolved))
        self._accepted.update(r["id"] for r in outcome.rows)
        self._rejected += outcome.rejected + outcome.skipped
        return super().commit_batch(engine, entity, outcome, stats, started, resolved,
                             replace_notes_for=sorted(touched), checkpoint=False)
