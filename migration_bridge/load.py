"""Writing decided rows into the target: one transaction per batch holds the batch's
rows, its notes, fingerprints, deferrals and checkpoint, so a run killed at any point
resumes exactly where the last commit left it. Used by export and sync alike."""
from __future__ import annotations

import functools
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterable

import sqlalchemy as sa

from . import bookkeeping as bk
from . import dialects
from .idmap import IdMap, id_map
from .fingerprint import pin_digest
from .idset import IdSet
from .mapping import Entity
from .pinpool import PinPool
from .rowpath import BatchOutcome
from .source import BEFORE_FIRST_ID

log = logging.getLogger("migration_bridge")


@dataclass
class EntityStats:
    name: str
    read: int = 0
    written: int = 0
    rejected: int = 0
    skipped: int = 0
    seconds: float = 0.0
    last_id: int = BEFORE_FIRST_ID  # ids <= 0 exist in real data: nothing is "before" them
    done: bool = False

    @property
    def rows_per_s(self) -> float:
        return self.read / self.seconds if self.seconds > 0 else 0.0

    def as_checkpoint(self) -> dict:
        return {
            "entity": self.name, "last_id": self.last_id, "read": self.read,
            "written": self.written, "rejected": self.rejected, "skipped": self.skipped,
            "seconds": self.seconds, "done": self.done, "updated_at": bk.utcnow(),
        }

    @classmethod
    def committed(cls, conn: sa.Connection) -> dict[str, "EntityStats"]:
        """The checkpoints as committed in the target, per entity."""
        return {row.entity: cls(row.entity, row.read, row.written, row.rejected, row.skipped,
                                row.seconds, row.last_id, row.done)
                for row in conn.execute(sa.select(bk.checkpoints))}


class BatchWriter:
    """One background thread writing batches in order, at most one in flight: the next
    batch is read and transformed while the database stores the previous one. A failed
    write surfaces at the next submit or at exit."""

    def __init__(self):
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bridge-writer")
        self._pending: Future | None = None

    def submit(self, job) -> None:
        self.wait()
        self._pending = self._executor.submit(job)

    def wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def __enter__(self) -> "BatchWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.wait()
            elif self._pending is not None:
                self._pending.cancel()
        finally:
            self._executor.shutdown(wait=True)


class BatchStore:
    """Commits outcomes of the row path to the target, PINs hashed first."""

    def __init__(self, engine: sa.Engine, pins: PinPool, count, idmap: IdMap, fingerprint_key: bytes, *,
                 checkpoints: sa.Table | None = bk.checkpoints, replace_notes: bool = False,
                 track_written: bool = False, reuse_pin_hashes: bool = False):
        self.engine = engine
        self.fingerprint_key = fingerprint_key
        # True (sync): a row whose PIN (and method) is the one hashed before gets that hash again
        self.reuse_pin_hashes = reuse_pin_hashes
        self.idmap = idmap  # rows are decided in legacy ids and written in target ids
        self.pins = pins
        self.count = count  # entity -> source rows, for the PIN progress
        # where each batch's checkpoint goes: bk.ranges for a row worker; None (sync): the
        # export's checkpoints stay as they are
        self.checkpoints = checkpoints
        self.replace_notes = replace_notes  # True (sync): a row's old notes go when it is decided again
        # per entity, the ids written by this store (sync tells inserts from updates by them)
        self.written_ids: dict[str, IdSet] | None = {} if track_written else None
        self._upsert_only: set[str] = set()  # entities whose fast insert met existing rows

    def commit(self, entity: Entity, outcome: BatchOutcome, stats: EntityStats, started: float, *,
               resolved: Iterable[int] = (), replace_notes_for: Iterable[int] = (),
               fresh: bool = False, writer: BatchWriter | None = None) -> float:
        """Hash the batch's PINs, count it, and write it in one transaction with its notes,
        fingerprints and checkpoint — in ``writer``'s thread when given, so that the next
        batch is read while this one is written. Returns when the caller's next interval starts."""
        waiting = {d["source_id"] for d in outcome.deferred}
        resolved = [i for i in resolved if i not in waiting]  # decided again, to wait once more
        if self.replace_notes:
            replace_notes_for = sorted(set(replace_notes_for) | outcome.touched | set(resolved))
        if self.written_ids is not None:
            self.written_ids.setdefault(entity.name, IdSet()).update(r["id"] for r in outcome.rows)
        if outcome.pins:
            self._hash_pins(entity, outcome)
        tables, entries = self.idmap.to_target(entity, outcome.rows)
        stats.written += len(outcome.rows)
        stats.rejected += outcome.rejected
        stats.skipped += outcome.skipped
        now = time.monotonic()
        stats.seconds += now - started
        job = functools.partial(self._write, entity, outcome, tables, entries,
                                stats.as_checkpoint() if self.checkpoints is not None else None,  # a snapshot
                                resolved, list(replace_notes_for), fresh)
        if writer is None:
            job()
        else:
            writer.submit(job)
        return now

    def _hash_pins(self, entity: Entity, outcome: BatchOutcome) -> None:
        """Each accepted row's PIN column: the hash written before when the PIN and the
        method are the same (a sync), else a new hash; the pairs are kept for the next sync."""
        column = entity.hashed_pin[0]
        ids = [row["id"] for row in outcome.rows]
        digests = [pin_digest(self.fingerprint_key, entity.name, i, self.pins.method, pin)
                   for i, pin in zip(ids, outcome.pins)]
        before = self._pin_hashes_before(entity, ids) if self.reuse_pin_hashes else {}
        new = [k for k, (i, digest) in enumerate(zip(ids, digests)) if before.get(i, (None,))[0] != digest]
        hashes = dict(zip(new, self.pins.hash([outcome.pins[k] for k in new], entity.name,
                                              lambda: self.count(entity)))) if new else {}
        self.pins.stats["reused"] += len(ids) - len(new)
        for k, (row, i, digest) in enumerate(zip(outcome.rows, ids, digests)):
            row[column] = hashes[k] if k in hashes else before[i][1]
            outcome.pin_hashes.append({"entity": entity.name, "source_id": i, "pin_digest": digest,
                                       "pin_hash": row[column]})
        outcome.pins = []

    def _pin_hashes_before(self, entity: Entity, ids: list[int]) -> dict[int, tuple[str, str]]:
        table = bk.pin_hashes
        with self.engine.connect() as conn:
            return {i: (digest, hashed) for i, digest, hashed in conn.execute(
                sa.select(table.c.source_id, table.c.pin_digest, table.c.pin_hash).where(
                    table.c.entity == entity.name, table.c.source_id.in_(ids)))}

    def _write(self, entity: Entity, outcome: BatchOutcome, tables: list, entries: list[dict],
               checkpoint_row: dict | None,
               resolved: list[int], replace_notes_for: list[int], fresh: bool) -> None:
        if fresh and entity.name not in self._upsert_only:
            # Rows past the last checkpoint cannot be in the target (each batch commits with
            # its checkpoint): a plain insert is safe, and on PostgreSQL a COPY straight in.
            try:
                self._transaction(entity, outcome, tables, entries, checkpoint_row, resolved, replace_notes_for,
                                  dialects.insert_new)
                return
            except (sa.exc.IntegrityError, self.engine.dialect.dbapi.IntegrityError):
                # e.g. resuming a killed --restart: the old rows are still there
                self._upsert_only.add(entity.name)
                log.warning("%s: rows past id %s are in the target already; upserting from here on",
                            entity.name, checkpoint_row and checkpoint_row["last_id"])
        self._transaction(entity, outcome, tables, entries, checkpoint_row, resolved, replace_notes_for,
                          dialects.upsert)

    def _transaction(self, entity, outcome, tables, entries, checkpoint_row, resolved, replace_notes_for,
                     load) -> None:
        with self.engine.begin() as conn:
            for table, rows in tables:
                load(conn, table, rows)
            load(conn, id_map, entries)
            if replace_notes_for:
                conn.execute(bk.notes.delete().where(
                    bk.notes.c.entity == entity.name, bk.notes.c.source_id.in_(replace_notes_for)))
            load(conn, bk.notes, outcome.notes)
            load(conn, bk.fingerprints, outcome.fingerprints)
            load(conn, bk.pin_hashes, outcome.pin_hashes)
            dialects.upsert(conn, bk.deferred, outcome.deferred)
            if resolved:
                dialects.delete_keys(conn, bk.deferred,
                                     [{"entity": entity.name, "source_id": i} for i in resolved])
            if checkpoint_row is not None:
                dialects.upsert(conn, self.checkpoints, [checkpoint_row])

    def rejected_ids(self, entity: Entity) -> list[int]:
        """The source ids an earlier run rejected for this entity."""
        with self.engine.connect() as conn:
            return sorted(conn.execute(sa.select(bk.notes.c.source_id).where(
                bk.notes.c.entity == entity.name, bk.notes.c.kind == "reject")).scalars())
