"""What moves rows: ``Run`` (the composed parts of one run and the row operations every
mover shares) and ``CopyRows``, the export's mover. ``sync.SyncRows`` is the other one."""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from . import bookkeeping as bk
from . import dialects, ranges
from .idmap import target_legacy_ids
from .load import BatchStore, BatchWriter, EntityStats
from .mapping import Entity, Profile
from .progress import Progress
from .rowpath import RowPath
from .source import LegacySource

log = logging.getLogger("migration_bridge")


@dataclass
class Run:
    """What a mover works with: the options, the target and the composed parts."""

    options: Any  # pipeline.ExportOptions
    profile: Profile
    entities: list[Entity]
    source: LegacySource
    engine: sa.Engine
    path: RowPath
    store: BatchStore
    changes: Any = None  # changelog.ChangeLog: the rows a sync compares instead of every row (None: every row)

    def load_parent_ids(self, entity: Entity, itself: bool = True) -> None:
        """The ids already in the target (and the rows rejected so far) for every table
        this entity's rows or contexts read (and, with ``itself``, its own)."""
        for name in entity.parents | ({entity.name} if itself else set()):
            self.load_ids(name)

    def load_ids(self, name: str) -> None:
        """The ids the target holds of one entity, and its rows rejected so far (once)."""
        if name not in self.path.loaded:
            with self.engine.connect() as conn:
                self.path.loaded[name] = target_legacy_ids(conn, self.profile, self.profile.entity(name))
                self.path.gone[name] = bk.gone_rows(conn, name)

    def copy_rows(self, entity: Entity, ctx, stats: EntityStats, before_id: int | None = None,
                  after_batch=lambda rows: None) -> None:
        """The entity's rows after ``stats.last_id`` (and before ``before_id``), down the row
        path a batch at a time, each committed with ``stats`` as its checkpoint while the next
        is read."""
        with BatchWriter() as writer:
            started = time.monotonic()  # consecutive intervals: reading, processing, waiting
            for rows in self.source.entity_rows(entity, stats.last_id, self.options.batch_size, before_id=before_id):
                outcome = self.path.process(entity, rows, ctx)
                stats.read += len(rows)
                stats.last_id = rows[-1]["id"]
                started = self.store.commit(entity, outcome, stats, started, fresh=not self.options.restart,
                                            writer=writer)
                after_batch(rows)
        stats.seconds += time.monotonic() - started

    def process_ids(self, entity: Entity, ctx, ids: list[int], stats: EntityStats, resolved: bool = False,
                    read=None) -> None:
        """Read ``ids`` again from the source and take them down the row path, a batch at a
        time (each read while the one before is processed, and written while the next is);
        ``resolved``: they were waiting for their parent; ``read``: what reads them, in
        place of ``source.rows_by_id_ahead``."""
        started = time.monotonic()
        read = read or self.source.rows_by_id_ahead
        with BatchWriter() as writer, contextlib.closing(read(entity, ids, self.options.batch_size)) as batches:
            for chunk, rows in batches:
                outcome = self.path.process(entity, rows, ctx)
                started = self.store.commit(entity, outcome, stats, started, resolved=chunk if resolved else (),
                                            writer=writer)

    def retry_rejected(self, entity: Entity, ctx, stats: EntityStats) -> None:
        """Every run decides again on the rows earlier runs rejected: a parent loaded or
        fixed since brings them in, and entity by entity their subtrees follow."""
        ids = self.store.rejected_ids(entity)
        started = time.monotonic()
        with BatchWriter() as writer, contextlib.closing(
                self.source.rows_by_id_ahead(entity, ids, self.options.batch_size)) as batches:
            for chunk, rows in batches:
                stats.rejected -= len(chunk)  # decided again below
                stats.read -= len(chunk) - len(rows)  # deleted from the source since: their notes go too
                outcome = self.path.process(entity, rows, ctx)
                started = self.store.commit(entity, outcome, stats, started, replace_notes_for=chunk, writer=writer)

    def resolve_deferred(self, entity: Entity, ctx, stats: EntityStats) -> None:
        """Replies that waited for a parent later in id order: in once it is there,
        rejected when it never came (missing, rejected, or a cycle)."""
        while self.path.pending.get(entity.name):
            ready = self.path.ready(entity)
            if ready:
                self.process_ids(entity, ctx, ready, stats, resolved=True)
                continue
            dead = self.path.never_ready(entity)
            started = time.monotonic()
            rows = self.source.rows_by_id(entity, sorted(dead))
            self.store.commit(entity, self.path.outcome_of_rejections(entity, rows, dead), stats, started,
                              resolved=sorted(dead))


class CopyRows:
    """The export's mover: every selected entity in dependency order, from its checkpoint."""

    kind = "export"
    store_options: dict = {}

    def __init__(self):
        self.nothing_to_do: str | None = None

    def check(self, options) -> None:
        pass

    def check_target(self, conn, entities, stats) -> None:
        pass

    def prepare(self, run: Run, stats: dict[str, EntityStats]) -> None:
        """Say what this run starts from: fresh, resumed (from where), or nothing to do."""
        o = run.options
        if o.restart or o.files_only:
            return
        selected = [e.name for e in run.entities]
        done = [n for n in selected if n in stats and stats[n].done]
        started = [stats[n] for n in selected if n in stats and not stats[n].done]
        if len(done) == len(selected):
            self.nothing_to_do = (f"rows: nothing to do: all {len(selected)} entities were already complete "
                                  f"({sum(stats[n].written for n in done)} rows in the target; rows rejected "
                                  "before were decided again); --restart reads everything again, --sync moves "
                                  "what changed")
        elif done or started:
            parts = [f"{s.name} from id {s.last_id} ({s.read} rows read before)" for s in started]
            log.info("resuming: %s%s%s", f"complete: {', '.join(done)}" if done else "",
                     "; " if done and parts else "", "; ".join(parts))

    def move(self, run: Run, stats: dict[str, EntityStats]) -> None:
        for entity in run.entities:
            stats[entity.name] = self.copy_entity(run, entity, stats.get(entity.name) or EntityStats(entity.name))

    def copy_entity(self, run: Run, entity: Entity, stats: EntityStats) -> EntityStats:
        run.load_parent_ids(entity)
        ctx = run.path.entity_context(entity)
        run.retry_rejected(entity, ctx, stats)
        if stats.done and not run.options.restart:
            run.resolve_deferred(entity, ctx, stats)
            if self.nothing_to_do is None:  # else said once for all
                log.info("%s: already complete (%d rows written), skipped", entity.name, stats.written)
            return stats
        total = run.source.count(entity)  # counted once: how to split, and the progress
        workers = ranges.workers_for(run, entity, stats, total)
        if workers > 1 or ranges.recorded_ranges(run.engine, entity):
            why_not = ranges.why_not_split(entity, run.engine)
            if why_not is None:
                return ranges.copy_in_ranges(run, entity, ctx, stats, workers, total)
            log.info("%s: one process (%s)", entity.name, why_not)
        progress = Progress(entity.name, total, interactive=run.options.interactive, initial=stats.read)
        try:
            run.copy_rows(entity, ctx, stats, after_batch=lambda rows: progress.update(len(rows)))
            run.resolve_deferred(entity, ctx, stats)
            stats.done = True
            with run.engine.begin() as conn:
                dialects.upsert(conn, bk.checkpoints, [stats.as_checkpoint()])
        finally:
            progress.close()
            run.store.pins.end_entity()
        return stats

    def committed_stats(self, engine: sa.Engine, stats: dict[str, EntityStats]) -> dict[str, EntityStats]:
        """After a failure: the counts as committed (checkpoints, and the ranges of row
        workers), not as read in memory."""
        with engine.connect() as conn:
            return ranges.with_range_counts(conn, EntityStats.committed(conn))

    @property
    def loaded_tables(self) -> bool:
        """Whole tables were loaded (their statistics are refreshed after)."""
        return self.nothing_to_do is None

    def report_extra(self) -> dict:
        return {}

    def file_rows(self, run: Run) -> None:
        """The file step looks at every row's references."""
        return None

    sync_stats = None
