"""Row workers (``--row-workers N``; by default one per core for a large entity): one
entity's rows cut into N id ranges, exported by N processes at once, each from its own
connections to both databases.

Each worker takes its range down the same row path and batch store as a one-process
export; only its checkpoints go to ``bridge_ranges`` (one row per range, committed with
each batch), so a killed run resumes every range where its last batch left it, with the
same cut. Once every range is complete the coordinating process, alone again:

- re-decides, in id order, every reply that waited for a parent (a worker cannot tell a
  parent in another range from a missing one, so any parent below its range makes a
  reply wait); in id order, decisions and reasons are those of one process;
- resolves the replies still waiting, marks the entity complete and forgets its ranges.

Those two steps count as work of the last range (their counts go to its row with each
batch), so a run killed while settling is resumed by settling what still waits.

Entities cut into ranges: read from a model, with their legacy ids as target ids (the
id map allocates in write order), no PIN to hash (the PIN pool already uses every core)
and a target that takes several writers (not SQLite). The others are exported by the
coordinating process as before.
"""
from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import multiprocessing.connection
import os
import time
from dataclasses import dataclass

import sqlalchemy as sa

from . import bookkeeping as bk
from . import dialects
from .errors import EXIT_INTERRUPTED, EXIT_UNEXPECTED, BridgeError, Interrupted, describe, signals_held_for_fork
from .forked import settle_forked_child
from .load import BatchStore, EntityStats
from .mapping import Entity
from .progress import Progress
from .source import BEFORE_FIRST_ID
from .target import waiting_replies

log = logging.getLogger("migration_bridge")

POLL_SECONDS = 1.0  # how often the coordinator reads the ranges' counts for its progress
# Without --row-workers: one worker per core, at most AUTO_MAX_WORKERS (more would crowd
# the two databases they share), when each gets AUTO_MIN_ROWS rows (below, forking and
# settling the replies cost more than they save)
AUTO_MAX_WORKERS = 4
AUTO_MIN_ROWS = 100_000


@dataclass
class RangeStats(EntityStats):
    """An ``EntityStats`` of the ids in (lo, hi] (hi None: no upper bound)."""

    lo: int = 0
    hi: int | None = None

    def as_checkpoint(self) -> dict:
        return {**super().as_checkpoint(), "lo": self.lo, "hi": self.hi}


class WorkerFailed(BridgeError):
    """A row worker's own error, as it described it (one line, its exit code)."""

    def __init__(self, line: str, exit_code: int):
        super().__init__(line)
        self.exit_code = exit_code


def why_not_split(entity: Entity, engine: sa.Engine) -> str | None:
    """None when the entity's rows can be cut into ranges, else why not."""
    if engine.dialect.name == "sqlite":
        return "SQLite takes one writer at a time"
    if entity.source_model is None or entity.derived is not None:
        return "it has derived rows"
    if entity.mapped:
        return "its target ids are allocated in write order"
    if entity.hashed_pin:
        return "its PINs are hashed by the pool of every core"
    return None


def workers_for(run, entity: Entity, stats: EntityStats, total: int) -> int:
    """How many processes export the entity (``total`` source rows): ``--row-workers``, else
    one per core (at most AUTO_MAX_WORKERS) when the rows left give each AUTO_MIN_ROWS,
    else one."""
    if run.options.row_workers is not None:
        return run.options.row_workers
    cores = min(os.cpu_count() or 1, AUTO_MAX_WORKERS)
    if cores < 2 or why_not_split(entity, run.engine) is not None:
        return 1
    return cores if total - stats.read >= cores * AUTO_MIN_ROWS else 1


def recorded_ranges(engine: sa.Engine, entity: Entity) -> list[RangeStats]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(bk.ranges).where(bk.ranges.c.entity == entity.name)
                            .order_by(bk.ranges.c.lo)).all()
    return [RangeStats(entity.name, r.read, r.written, r.rejected, r.skipped, r.seconds, r.last_id, r.done,
                       lo=r.lo, hi=r.hi) for r in rows]


def with_range_counts(conn: sa.Connection, stats: dict[str, EntityStats]) -> dict[str, EntityStats]:
    """``stats`` (the checkpoints) plus what the ranges of unfinished entities committed."""
    c = bk.ranges.c
    totals = conn.execute(sa.select(c.entity, sa.func.sum(c.read), sa.func.sum(c.written), sa.func.sum(c.rejected),
                                    sa.func.sum(c.skipped)).group_by(c.entity))
    for name, read, written, rejected, skipped in totals:  # PostgreSQL sums bigints as numeric
        entity = stats.setdefault(name, EntityStats(name))
        entity.read += int(read)
        entity.written += int(written)
        entity.rejected += int(rejected)
        entity.skipped += int(skipped)
    return stats


def cut(run, entity: Entity, stats: EntityStats, parts: int) -> list[RangeStats]:
    """The entity's ranges: those recorded by an earlier run (same cut), else the rows
    after its checkpoint cut into ``parts``, recorded before any is worked on."""
    ranges = recorded_ranges(run.engine, entity)
    if ranges:
        return ranges
    points = run.source.split_points(entity, stats.last_id, parts)
    bounds = [stats.last_id, *points]
    ranges = [RangeStats(entity.name, last_id=lo, lo=lo, hi=hi)
              for lo, hi in zip(bounds, [*points, None])]
    with run.engine.begin() as conn:
        conn.execute(bk.ranges.insert(), [r.as_checkpoint() for r in ranges])
    return ranges


def copy_in_ranges(run, entity: Entity, ctx, stats: EntityStats, parts: int, total: int) -> EntityStats:
    """Export the entity's rows (``total`` in the source) after its checkpoint by one
    process per range; returns ``stats`` with the ranges' counts added, the entity complete."""
    ranges = cut(run, entity, stats, parts)
    todo = [r for r in ranges if not r.done]
    if todo:
        log.info("%s: %d row workers over ids %s", entity.name, len(todo), ", ".join(_bounds(r) for r in todo))
    else:
        log.info("%s: every id range is in; the replies still waiting are settled", entity.name)
    progress = Progress(entity.name, total, interactive=run.options.interactive,
                        initial=stats.read + sum(r.read for r in ranges))
    started = time.monotonic()
    try:
        if todo:
            _run_workers(run, entity, ctx, todo, progress)
    finally:
        progress.close()
    # the replies are settled as work of the last range: killed meanwhile, a re-run finds
    # every range complete and settles what still waits, its counts kept in that range
    last = recorded_ranges(run.engine, entity)[-1]
    _settle_waiting(dataclasses.replace(run, store=range_store(run)), entity, ctx, last)
    for r in recorded_ranges(run.engine, entity):
        stats.read += r.read
        stats.written += r.written
        stats.rejected += r.rejected
        stats.skipped += r.skipped
        stats.last_id = max(stats.last_id, r.last_id)
    stats.seconds += time.monotonic() - started
    stats.done = True
    with run.engine.begin() as conn:
        dialects.upsert(conn, bk.checkpoints, [stats.as_checkpoint()])
        conn.execute(bk.ranges.delete().where(bk.ranges.c.entity == entity.name))
    return stats


def range_store(run) -> BatchStore:
    """The run's batch store, with checkpoints per range."""
    return BatchStore(run.engine, run.store.pins, run.source.count, run.store.idmap, run.store.fingerprint_key,
                      checkpoints=bk.ranges)


def _settle_waiting(run, entity: Entity, ctx, stats: EntityStats) -> None:
    """What the workers wrote is read back (ids, rejects, waiting replies); every waiting
    reply is decided again in id order, then the rest wait as in one process."""
    run.path.loaded.pop(entity.name, None)
    run.path.gone.pop(entity.name, None)
    run.load_parent_ids(entity)
    with run.engine.connect() as conn:
        waiting = sorted(waiting_replies(conn).get(entity.name, {}))
    run.path.pending[entity.name] = {}
    run.process_ids(entity, ctx, waiting, stats, resolved=True)
    run.resolve_deferred(entity, ctx, stats)


def _bounds(rng: RangeStats) -> str:
    return f"({'-inf' if rng.lo == BEFORE_FIRST_ID else rng.lo}, {'+inf' if rng.hi is None else rng.hi}]"


def _run_workers(run, entity: Entity, ctx, todo: list[RangeStats], progress: Progress) -> None:
    """One forked process per range; the first failure stops the others and is raised
    with the worker's own line and exit code."""
    from django.db import connections

    # a forked child must open its own connections, never share the parent's sockets
    connections.close_all()
    run.engine.dispose()
    fork = multiprocessing.get_context("fork")
    workers = []
    try:
        for rng in todo:
            receive, send = fork.Pipe(duplex=False)
            process = fork.Process(target=_work, args=(run, entity, ctx, rng, send),
                                   name=f"bridge-rows-{entity.name}-{rng.lo}", daemon=True)
            with signals_held_for_fork():
                process.start()
            send.close()
            workers.append((process, receive, rng))
        running = {process: (receive, rng) for process, receive, rng in workers}
        seen = ranges_read(run.engine, entity)
        while running:
            ready = multiprocessing.connection.wait([r for r, _ in running.values()], timeout=POLL_SECONDS)
            for process in [p for p, (r, _) in running.items() if r in ready]:
                receive, rng = running.pop(process)
                try:
                    code, line = receive.recv()
                except EOFError:
                    process.join()
                    code, line = EXIT_UNEXPECTED, f"the row worker died (exit status {process.exitcode})"
                if code == EXIT_INTERRUPTED:
                    raise Interrupted()
                if code:
                    raise WorkerFailed(f"{entity.name}, ids {_bounds(rng)}: {line}", code)
            read = ranges_read(run.engine, entity)
            progress.update(read - seen)
            seen = read
    finally:
        for process, _, _ in workers:
            if process.is_alive():
                process.terminate()
        for process, receive, _ in workers:
            process.join()
            receive.close()


def ranges_read(engine: sa.Engine, entity: Entity) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.coalesce(sa.func.sum(bk.ranges.c.read), 0))
                                .where(bk.ranges.c.entity == entity.name)).scalar_one())


def _work(run, entity: Entity, ctx, rng: RangeStats, send) -> None:
    """In the forked worker: the range's rows, batch by batch, from its checkpoint;
    sends (0, None) when complete, else (exit code, one line)."""
    coordinator = os.getppid()
    settle_forked_child()

    def check_coordinator(rows) -> None:
        if os.getppid() != coordinator:  # killed: its workers stop too, after the batch in flight
            raise Interrupted("the coordinating process is gone")

    try:
        run.engine.dispose(close=False)  # the parent's pooled connections are not ours
        run.path.range_start = rng.lo
        own = dataclasses.replace(run, store=range_store(run))
        own.copy_rows(entity, ctx, rng, before_id=rng.hi + 1 if rng.hi is not None else None,
                      after_batch=check_coordinator)
        rng.done = True
        with run.engine.begin() as conn:
            dialects.upsert(conn, bk.ranges, [rng.as_checkpoint()])
        send.send((0, None))
    except BaseException as exc:  # noqa: BLE001 - told to the coordinator, which stops the run
        try:
            send.send(describe(exc, run.options.lock_timeout))
        except OSError:  # the coordinator is gone
            pass
    finally:
        send.close()
