"""``export_to_flask --sync``: bring a migrated target up to date with the source.

After a complete export (typically a pre-copy while the legacy app was live), a sync
moves only what changed since: rows added, changed and deleted, then their files. It
needs no ``updated_at``. The export recorded, per source row, a digest the legacy
database computed plus a keyed part for the row's secrets (``fingerprint.py``). A sync
asks the target for per-chunk counts and sums of the recorded digests (``CHUNK_WIDTH``
ids a chunk) and the legacy database for each chunk's row digests gathered into one
text (one GROUP BY over the table on each side, every row digested once). Chunks whose
sums agree are done. In the others, the target's sums weighted by each id's place in
the chunk name the row when one row differs (``diff.single_difference``: a change spread
thin); the rest are compared row by row, from the text already read and the target's
recorded digests of those chunks alone. Contexts are recomputed only
for the rows a context can have changed (``Context.recheck``). No row is pulled through
the ORM to find that it did not change. Secrets are read (id and secret only) and keyed
here, since their digest may not be computed where the key would show. With the legacy
database's change log (``changelog.py``) to follow, only the rows it names are digested,
by id, and compared with their recorded digests (``logged_changes``). Then work
proportional to the change (PINs hashed again only for the students whose row changed),
and the files of the rows written.

Order: deletes children first (interactions → … → districts), then inserts and
updates parents first, then the deletes a foreign key refused before the updates moved
its references away (a derived school, a module); each chunk in its own transaction. A
sync killed part-way leaves a consistent target; the next sync finds what is left and
converges.
"""
from __future__ import annotations

import contextlib
import functools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Mapping

import sqlalchemy as sa

from . import bookkeeping as bk
from . import changelog
from .dialects import chunk_start, prepare_aggregate_reads
from .diff import (ChunkDiff, chunk_digest_sum, chunk_row_digests, chunk_spans, compare_range, differing_chunks,
                   id_parts, single_difference)
from .errors import BridgeError
from .fingerprint import FINGERPRINT_VERSION, ROW_DIGEST, keyed_digest, row_digest, secret_part
from .idmap import id_map
from .idset import IdSet
from .load import EntityStats
from .mapping import Entity
from .transforms import Reject, Skip


# a released value is "~released-<id>": columns too short for any id keep their value
RELEASED_LENGTH = 30
# ids per chunk of the per-chunk sums: narrow, so that a change spread over the whole table
# (1% of the rows) leaves most chunks equal; the sums travel as one row per chunk
CHUNK_WIDTH = 16
_NO_ROWS = (0, 0, 0, 0)  # the target's place_moments of a chunk it holds no row of
FIND_THREADS = 3  # id ranges whose changes are looked for at once (a third fills the waits of two)
# changed rows the change log's comparison read and keeps for the writing (a sync's
# changed rows lie each on a page of its own: reading them twice costs a second pass)
ROWS_HELD = 50_000
SPAN_IDS = 65_536  # ids one query of the target's digests of differing chunks covers


@dataclass
class SyncStats:
    name: str
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    rejected: int = 0
    ranges: int = 0  # id ranges searched for changes
    seconds: float = 0.0
    logged: int | None = None  # rows named by the change log, the only ones compared (None: every row was)

    def as_report(self) -> dict:
        return {"inserted": self.inserted, "updated": self.updated, "deleted": self.deleted,
                "unchanged": self.unchanged, "rejected": self.rejected, "ranges": self.ranges,
                "compared": "every row" if self.logged is None else "the rows the change log names",
                "logged": self.logged, "seconds": round(self.seconds, 3)}


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
    unchanged: int = 0
    seconds: float = 0.0  # spent finding them

    @classmethod
    def merged(cls, parts: list[EntityChanges]) -> EntityChanges:
        """One entity's changes from those of its id ranges."""
        return cls(sorted(i for p in parts for i in p.upsert), {i for p in parts for i in p.inserted},
                   sorted(i for p in parts for i in p.delete), sum(p.unchanged for p in parts),
                   sum(p.seconds for p in parts))


class SyncRows:
    """The ``--sync`` mover: the export's row path and batch store, fed with the changed rows."""

    kind = "sync"
    # the export's checkpoints stay as they are; a row decided again loses its old notes
    store_options = {"checkpoints": None, "replace_notes": True, "track_written": True, "reuse_pin_hashes": True}
    nothing_to_do = None
    loaded_tables = False  # a sync changes a few rows: the export's statistics still hold

    def __init__(self, part_rows: int):
        # rows of about one id range: a large table is cut, so that every thread stays busy to the end
        self.part_rows = part_rows
        self.sync_stats: list[SyncStats] = []
        self.redecided: dict[str, set[int]] = {}  # entity -> source ids this sync decided again or deleted
        self.retry_every_reject = True
        self.held: dict[str, dict[int, dict]] = {}  # entity -> changed rows read by ``logged_changes``
        self._holding = threading.Lock()

    def check(self, options) -> None:
        if (options.reset or options.restart or options.dry_run or options.files_only
                or (options.row_workers or 1) > 1):
            raise BridgeError("--sync cannot be combined with --reset, --restart, --dry-run, --files-only "
                              "or --row-workers")

    def check_target(self, conn, entities, stats: dict[str, EntityStats]) -> None:
        """Before anything else is said of the target: a sync needs a complete export."""
        # one row tells (a count of millions took 0.2 s warm, 1.2 s cold)
        fingerprinted = conn.execute(sa.select(sa.literal(1)).select_from(bk.fingerprints).limit(1)).first()
        version = bk.recorded_settings(conn).get("fingerprints")
        unfinished = [e.name for e in entities if not (e.name in stats and stats[e.name].done)]
        if unfinished:
            raise BridgeError(
                f"--sync needs a complete export first (not complete: {', '.join(unfinished)}); "
                "run export_to_flask without --sync"
            )
        if not fingerprinted or version != FINGERPRINT_VERSION:
            raise BridgeError("the target holds no row fingerprints of this version (exported by an older "
                              "version): run export_to_flask --restart once, then --sync")

    def prepare(self, run, stats: dict[str, EntityStats]) -> None:
        pass

    def committed_stats(self, engine, stats):
        return stats

    def report_extra(self) -> dict:
        return {"kind": "sync", "sync": {s.name: s.as_report() for s in self.sync_stats}}

    def file_rows(self, run) -> dict | None:
        """The file step looks at the references of the rows this sync wrote only, when
        the run before copied the files of everything it wrote; else (it failed, was
        killed, or skipped files) at every row's."""
        before = _run_before(run)
        if before is None or before.status != "complete" or (before.options or {}).get("skip_files", True):
            return None
        return dict(run.store.written_ids)

    def move(self, run, stats: dict[str, EntityStats]) -> None:
        self.sync_stats = [SyncStats(e.name) for e in run.entities]
        by_name = {s.name: s for s in self.sync_stats}
        changes: dict[str, EntityChanges] = {}
        changed: dict[str, set[int]] = {}  # what a later entity's context recheck looks at
        # each entity's own changes are found in id ranges by FIND_THREADS threads at once
        # (the legacy database digests on two cores), its context changes then, in order
        with ThreadPoolExecutor(max_workers=FIND_THREADS, thread_name_prefix="bridge-sync-find") as finder:
            work = []  # (rows, entity, lo, hi)
            own: dict[str, list] = {e.name: [] for e in run.entities}
            logged = {e.name: changelog.logged_table(run.source, e) for e in run.entities} if run.changes else {}
            named = []  # (rows the change log names, entity)
            for entity in run.entities:
                if logged.get(entity.name):
                    ids = run.changes.logged(logged[entity.name])
                    by_name[entity.name].logged = len(ids)
                    named.append((ids, entity))
                    continue
                rows = stats[entity.name].read if entity.name in stats else 0
                parts = id_parts(run.source.id_bounds(entity), rows, self.part_rows, CHUNK_WIDTH)
                by_name[entity.name].ranges = len(parts)
                work.extend((rows / len(parts), entity, lo, hi) for lo, hi in parts)
            # the largest first, so that no large one is left to run alone at the end
            for ids, entity in sorted(named, key=lambda n: -len(n[0])):
                own[entity.name].append(finder.submit(self.logged_changes, run, entity, ids))
            for _, entity, lo, hi in sorted(work, key=lambda w: -w[0]):
                own[entity.name].append(finder.submit(self.own_changes, run, entity, lo, hi))
            # the ids the writing of the logged rows needs, read meanwhile (a scanned
            # entity's first range reads them while the databases scan)
            loads = [finder.submit(run.load_ids, name) for name in sorted({n for _, e in named for n in _ids_read(e)})]
            try:
                for load in loads:
                    load.result()
                for entity in run.entities:
                    found = changes[entity.name] = EntityChanges.merged([f.result() for f in own[entity.name]])
                    by_name[entity.name].seconds += found.seconds
                    by_name[entity.name].unchanged = found.unchanged
                    with _timed(by_name[entity.name]):
                        self.add_context_changes(run, entity, found, by_name[entity.name], changed)
                    changed[entity.name] = set(found.upsert) | set(found.delete)
            finally:
                for future in [*loads, *(f for futures in own.values() for f in futures)]:
                    future.cancel()
        # Deletes children first; a row still referenced (a derived school whose teachers
        # move to another one, a module no session will use) waits until the updates moved
        # the references away, then goes.
        postponed: dict[str, list[int]] = {}
        for entity in reversed(run.entities):
            with _timed(by_name[entity.name]):
                postponed[entity.name] = self.delete_rows(run, entity, changes[entity.name].delete,
                                                          by_name[entity.name], postpone_referenced=True)
        for entity in run.entities:  # what the target holds now
            deleted = set(changes[entity.name].delete) - set(postponed[entity.name])
            loaded, gone = run.path.loaded.get(entity.name), run.path.gone.get(entity.name, {})
            for i in deleted:
                gone.pop(i, None)
                if loaded is not None:
                    loaded.discard(i)
        for entity in run.entities:  # before any update: a value may move from one row to another
            with _timed(by_name[entity.name]):
                self.release_unique_values(run, entity, changes[entity.name].upsert)
        self.retry_every_reject = not _rejects_settled(run)
        for entity in run.entities:
            with _timed(by_name[entity.name]):
                self.apply_upserts(run, entity, changes[entity.name], by_name[entity.name])
        for entity in reversed(run.entities):
            with _timed(by_name[entity.name]):
                self.delete_rows(run, entity, postponed[entity.name], by_name[entity.name])

    # --- 1. what changed ---------------------------------------------------------------

    def own_changes(self, run, entity: Entity, lo: int | None, hi: int | None) -> EntityChanges:
        """Rows with lo <= id < hi (None: no bound) whose own values changed, found by
        per-chunk sums each database computes (only the rows of differing chunks are then
        compared). The target is read in a thread of its own while the source is read: both
        databases work at once. Runs in a thread of ``move``'s: it reads, and changes
        nothing of ``run`` but the parent ids it loads (with the range open below)."""
        started = time.monotonic()
        try:
            found = self._own_changes(run, entity, lo, hi)
            found.seconds = time.monotonic() - started
            return found
        finally:
            from django.db import connections

            connections.close_all()  # this thread's legacy connection

    def _own_changes(self, run, entity: Entity, lo: int | None, hi: int | None) -> EntityChanges:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bridge-sync-target") as target:
            parents = target.submit(run.load_parent_ids, entity, _reads_itself(entity)) if lo is None else None
            stored = target.submit(self.stored_sums, run, entity, lo, hi)
            source, differing_rows = self.source_chunks(run, entity, lo, hi, stored)
            upsert, inserted, delete = [], set(), []

            def take(diff: ChunkDiff) -> None:
                upsert.extend(diff.missing)
                upsert.extend(diff.changed)
                inserted.update(diff.missing)
                delete.extend(diff.extra)

            # a chunk differing in one row names it by the target's sums alone (the common
            # case: a change spread thin); only the others read the target's row digests
            stored_moments = stored.result()
            for start in list(differing_rows):
                diff = single_difference(start, CHUNK_WIDTH, differing_rows[start],
                                         stored_moments.get(start, _NO_ROWS))
                if diff is not None:
                    take(diff)
                    del differing_rows[start]
            spans = chunk_spans(sorted(differing_rows), CHUNK_WIDTH, SPAN_IDS)
            # the next span's recorded digests are read while this span is compared
            stored_spans = [target.submit(self.stored_digests, run, entity, *span) for span in spans[:1]]
            for k, (span_lo, span_hi, chunks) in enumerate(spans):
                if k + 1 < len(spans):
                    stored_spans.append(target.submit(self.stored_digests, run, entity, *spans[k + 1]))
                mine = {i: digest for start in (chunks or range(span_lo, span_hi, CHUNK_WIDTH))
                        for i, digest in differing_rows.pop(start, {}).items()}
                take(compare_range(span_lo, span_hi, mine, stored_spans[k].result()))
                stored_spans[k] = None
            if parents is not None:
                parents.result()
        unchanged = sum(rows for rows, _ in source.values()) - len(upsert)
        return EntityChanges(upsert, inserted, delete, unchanged)

    def logged_changes(self, run, entity: Entity, ids: list[int]) -> EntityChanges:
        """The rows among ``ids`` (those the change log names) that changed: their digests,
        computed by the legacy database as the export's were, compared with the recorded
        ones. The changed rows read are kept for the writing (up to ``ROWS_HELD`` in all).
        Runs in a thread of ``move``'s, as ``own_changes``."""
        started = time.monotonic()
        try:
            key, fp = run.path.fingerprint_key, bk.fingerprints
            upsert, inserted, delete, unchanged = [], set(), [], 0
            with self._holding:
                held = self.held.setdefault(entity.name, {})
            with run.engine.connect() as conn:
                for at in range(0, len(ids), run.options.batch_size):
                    batch = ids[at:at + run.options.batch_size]
                    rows = {row["id"]: row for row in run.source.rows_by_id(entity, batch)}
                    mine = {i: row_digest(key, i, row[ROW_DIGEST], tuple(map(row.get, entity.secret_fields)), ())
                            for i, row in rows.items()}
                    stored = dict(_driver_rows(conn, sa.select(fp.c.source_id, fp.c.row_digest).where(
                        fp.c.entity == entity.name, fp.c.source_id.in_(batch))))
                    diff = compare_range(None, None, mine, stored)
                    upsert += [*diff.missing, *diff.changed]
                    inserted.update(diff.missing)
                    delete += diff.extra
                    unchanged += len(mine) - len(diff.missing) - len(diff.changed)
                    with self._holding:
                        room = ROWS_HELD - sum(map(len, self.held.values()))
                        held.update((i, rows[i]) for i in [*diff.missing, *diff.changed][:max(room, 0)])
            return EntityChanges(sorted(upsert), inserted, sorted(delete), unchanged, time.monotonic() - started)
        finally:
            from django.db import connections

            connections.close_all()  # this thread's legacy connection

    def read_changed(self, entity: Entity, ids: list[int], batch_size: int, source):
        """``source.rows_by_id_ahead`` for ``process_ids``, the rows ``logged_changes`` kept
        taken from memory."""
        held = self.held.pop(entity.name, {})
        reads = source.rows_by_id_ahead(entity, [i for i in ids if i not in held], batch_size)
        fetched: dict[int, dict | None] = {}  # None: gone from the source since
        with contextlib.closing(reads):
            for start in range(0, len(ids), batch_size):
                batch = ids[start:start + batch_size]
                while any(i not in held and i not in fetched for i in batch):
                    chunk, rows = next(reads, (None, None))
                    if chunk is None:
                        break
                    found = {row["id"]: row for row in rows}
                    fetched.update((i, found.get(i)) for i in chunk)
                yield batch, [row for i in batch if (row := held.pop(i, None) or fetched.pop(i, None))]

    def add_context_changes(self, run, entity: Entity, found: EntityChanges, stats: SyncStats,
                            changed: Mapping[str, set[int]]) -> None:
        """Rows whose contexts give them something else now, added to ``found``."""
        ctx = run.path.entity_context(entity)
        more = self.context_changes(run, entity, ctx, changed, set(found.upsert) | set(found.delete))
        if more:
            found.upsert = sorted({*found.upsert, *more})
            stats.unchanged -= len(more)

    def source_chunks(self, run, entity: Entity, lo: int | None, hi: int | None, stored,
                      ) -> tuple[dict[int, list[int]], dict[int, dict[int, int]]]:
        """Chunk start -> [rows, digest sum] of the source rows with lo <= id < hi, and the
        row digests (id -> digest) of the chunks whose sums differ from the ``stored`` ones
        (a future): the database's digests, plus the keyed secret parts and the derived
        rows, added here. The source's GROUP BY runs while the target sums its side."""
        key = run.path.fingerprint_key
        added: dict[int, int] = {}  # id -> what is added to the database's digest of the row
        derived: dict[int, int] = {}  # id -> digest of a row made in Python
        for source_id, *secrets in run.source.secret_values(entity, lo, hi):
            added[source_id] = secret_part(key, source_id, tuple(secrets))
        for row in run.source.derived_rows(entity):
            if (lo is None or row["id"] >= lo) and (hi is None or row["id"] < hi):
                derived[row["id"]] = keyed_digest(key, tuple(row.values()))
        extra: dict[int, list[int]] = {}  # chunk start -> what they add to its [rows, sum]
        for ids, rows in ((added, 0), (derived, 1)):
            for i, digest in ids.items():
                entry = extra.setdefault(chunk_start(i, CHUNK_WIDTH), [0, 0])
                entry[0] += rows
                entry[1] += digest

        def rows_of(start: int, rows: int, text: str) -> dict[int, int]:
            try:
                digests = chunk_row_digests(start, rows, text)
            except ValueError as exc:
                raise BridgeError(f"{entity.name}: the legacy database cut its digest text short ({exc})") from None
            return {i: d + added.get(i, 0) for i, d in digests.items()}

        sums: dict[int, list[int]] = {}
        texts: dict[int, tuple[int, str]] = {}  # the differing chunks' database digests
        stored_sums = None
        for start, rows, text in run.source.chunk_digests(entity, CHUNK_WIDTH, lo, hi):
            if stored_sums is None:  # the source's GROUP BY is done: the target's is, most likely
                stored_sums = _rows_and_sums(stored.result())
            more = extra.get(start, (0, 0))
            sums[start] = mine = [rows + more[0], chunk_digest_sum(text) + more[1]]
            if stored_sums.get(start) != mine:
                texts[start] = (rows, text)
        for start, more in extra.items():
            sums.setdefault(start, list(more))
        if stored_sums is None:  # the source holds no row in the range
            stored_sums = _rows_and_sums(stored.result())
        differing: dict[int, dict[int, int]] = {}
        for start in differing_chunks(sums, stored_sums):
            mine = rows_of(start, *texts[start]) if start in texts else {}
            mine.update((i, d) for i in range(start, start + CHUNK_WIDTH) if (d := derived.get(i)) is not None)
            differing[start] = mine
        return sums, differing

    def stored_sums(self, run, entity: Entity, lo: int | None, hi: int | None) -> dict[int, list[int]]:
        """Chunk start -> the recorded digests' ``diff.place_moments``: rows, sum, and the
        sums weighted by place and place² (``diff.single_difference`` reads those)."""
        fp = bk.fingerprints
        chunk = self._stored_chunk()
        place = fp.c.source_id - chunk
        # each sum fits a BIGINT (a recorded digest is under 2**49, 16 rows 2**4, place² 2**8): no NUMERIC to convert
        sums = [sa.cast(sa.func.sum(term), sa.BigInteger)
                for term in (fp.c.row_digest, fp.c.row_digest * place, fp.c.row_digest * place * place)]
        start = chunk.label("start")
        query = (sa.select(start, sa.func.count(), *sums).where(fp.c.entity == entity.name).group_by(start))
        if lo is not None:
            query = query.where(fp.c.source_id >= lo)
        if hi is not None:
            query = query.where(fp.c.source_id < hi)
        with run.engine.connect() as conn:
            prepare_aggregate_reads(conn)
            return {int(lo): [rows, *map(int, moments)] for lo, rows, *moments in _driver_rows(conn, query)}

    @staticmethod
    def _stored_chunk():
        return chunk_start(bk.fingerprints.c.source_id, sa.literal_column(str(CHUNK_WIDTH), sa.BigInteger))

    def stored_digests(self, run, entity: Entity, lo: int, hi: int, chunks: list[int] | None) -> dict[int, int]:
        fp = bk.fingerprints
        query = sa.select(fp.c.source_id, fp.c.row_digest).where(
            fp.c.entity == entity.name, fp.c.source_id >= lo, fp.c.source_id < hi)
        if chunks is not None:
            query = query.where(self._stored_chunk().in_(chunks))
        with run.engine.connect() as conn:
            prepare_aggregate_reads(conn)
            return dict(_driver_rows(conn, query))

    def context_changes(self, run, entity: Entity, ctx, changed: Mapping[str, set[int]], known: set[int],
                        ) -> list[int]:
        """Rows (not in ``known``) whose contexts give them something else than when they
        were loaded: among the rows a context gives something now or gave something then,
        and the rows a per-batch context's ``recheck`` names (all, without one)."""
        if not entity.contexts:
            return []
        fp = bk.fingerprints
        with run.engine.connect() as conn:
            stored = dict(conn.execute(sa.select(fp.c.source_id, fp.c.context_digest).where(
                fp.c.entity == entity.name, fp.c.context_digest.is_not(None))).all())
        candidates = set(stored)
        for context in entity.contexts:
            if not context.per_batch:
                candidates.update(getattr(ctx, context.field))
            elif context.recheck is None:
                candidates.update(run.source.ids(entity))
            else:
                candidates.update(context.recheck(run.source, entity, changed))
        per_batch = any(c.per_batch for c in entity.contexts)
        out = []
        candidates = sorted(candidates - known)
        for start in range(0, len(candidates), run.options.batch_size):
            ids = candidates[start:start + run.options.batch_size]
            batch_ctx = ctx
            if per_batch:
                rows = run.source.rows_by_id(entity, ids)
                ids = [row["id"] for row in rows]
                batch_ctx = run.path.batch_context(entity, ctx, rows)
            out.extend(i for i in ids if run.path.context_digest(entity, i, batch_ctx) != stored.get(i))
        return out

    # --- 2. deletes, children first ------------------------------------------------------

    def delete_rows(self, run, entity: Entity, ids: list[int], stats: SyncStats,
                    postpone_referenced: bool = False) -> list[int]:
        """Delete ``ids`` chunk by chunk; with ``postpone_referenced``, a chunk whose delete a
        foreign key refuses is left for later and returned."""
        postponed: list[int] = []
        for start in range(0, len(ids), run.options.batch_size):
            chunk = ids[start:start + run.options.batch_size]
            try:
                self._delete_chunk(run, entity, chunk, stats)
            except (sa.exc.IntegrityError, run.engine.dialect.dbapi.IntegrityError):
                if not postpone_referenced:
                    raise
                postponed.extend(chunk)
        return postponed

    def _delete_chunk(self, run, entity: Entity, chunk: list[int], stats: SyncStats) -> None:
        table = entity.target
        deleted = 0
        targets = [t for i in chunk if (t := run.store.idmap.target_id(entity, i)) is not None]
        with run.engine.begin() as conn:
            for sub in entity.also:  # joined sub-rows before the row they extend
                conn.execute(sub.delete().where(sub.c.id.in_(targets)))
            if entity.self_foreign_key:  # replies first, then their parents
                deleted = _delete_self_referencing(conn, table, entity.self_foreign_key, targets)
            else:
                deleted = conn.execute(table.delete().where(table.c.id.in_(targets))).rowcount
            for book in (bk.fingerprints, bk.notes, bk.deferred):
                conn.execute(book.delete().where(book.c.entity == entity.name, book.c.source_id.in_(chunk)))
            if entity.mapped:
                conn.execute(id_map.delete().where(id_map.c.entity == entity.name, id_map.c.legacy_id.in_(chunk)))
        stats.deleted += deleted  # counted once committed
        run.store.idmap.forget(entity, chunk)

    # --- 3. inserts and updates, parents first ---------------------------------------------

    def release_unique_values(self, run, entity: Entity, ids: list[int]) -> None:
        """The changed rows give up their unique text values (an e-mail, a username) for a
        placeholder unique to the row, so that an update taking a value another changed row
        still holds does not collide; their own update writes them back. Killed in between,
        the rows are still found changed and rewritten by the next sync."""
        for table in entity.tables:
            columns = [c for c in table.columns if c.unique and isinstance(c.type, sa.String)
                       and (c.type.length or 0) >= RELEASED_LENGTH]
            if not columns:
                continue
            for start in range(0, len(ids), run.options.batch_size):
                chunk = ids[start:start + run.options.batch_size]
                targets = [t for i in chunk if (t := run.store.idmap.target_id(entity, i)) is not None]
                placeholder = sa.literal("~released-") + sa.cast(table.c.id, sa.String)
                untouched = {c.name: c for c in table.columns if c.onupdate is not None}  # updated_at stays
                with run.engine.begin() as conn:
                    conn.execute(table.update().where(table.c.id.in_(targets)).values(
                        {**untouched, **{c.name: placeholder for c in columns}}))

    def apply_upserts(self, run, entity: Entity, changes: EntityChanges, stats: SyncStats) -> None:
        run.load_parent_ids(entity, itself=_reads_itself(entity))
        partial = entity.name not in run.path.loaded  # its rows will be known by the ones written only
        ctx = run.path.entity_context(entity)
        rejected = sorted(set(run.store.rejected_ids(entity)) - set(changes.upsert))
        retried = set(rejected) if self.retry_every_reject else self.affected_rejects(run, entity, ctx, rejected, changes)
        upsert = sorted(set(changes.upsert) | retried)
        self.redecided[entity.name] = set(upsert) | set(changes.delete)
        inserted = changes.inserted | retried
        scratch = EntityStats(entity.name)  # the export's checkpoint counters stay as they are
        run.store.written_ids[entity.name] = accepted = IdSet()
        run.process_ids(entity, ctx, upsert, scratch,
                        read=functools.partial(self.read_changed, source=run.source) if self.held else None)
        run.resolve_deferred(entity, ctx, scratch)
        run.store.pins.end_entity()
        stats.inserted = sum(1 for i in inserted if i in accepted)
        stats.updated = len(accepted) - stats.inserted
        stats.rejected = scratch.rejected + scratch.skipped
        if partial:  # an entity after this one reads all of its ids from the target
            run.path.loaded.pop(entity.name, None)

    def affected_rejects(self, run, entity: Entity, ctx, ids: list[int], changes: EntityChanges) -> set[int]:
        """Among rows rejected before and unchanged since (``ids``), those whose decision
        this sync can change: the ones pointing at a parent it decided again or deleted (it
        may be in now, or out for another reason), and replies to those or to a reply it
        decided again. A row its transform rejects stays as it is: that depends on its own
        values and its contexts, and a row whose contexts changed is among the changed rows
        already (``add_context_changes``). Holds when the rejects are settled
        (``_rejects_settled``); otherwise every one is decided again."""
        touched = {parent: self.redecided.get(parent, set()) for parent in entity.foreign_keys.values()}
        column = entity.self_foreign_key
        own = set(changes.upsert) | set(changes.delete)
        out: set[int] = set()
        replying: dict[int, int] = {}  # reply -> its parent, for the replies not taken yet
        read = run.source.rows_by_id_ahead(entity, ids, run.options.batch_size, digests=False)
        with contextlib.closing(read) as batches:
            for _, rows in batches:
                batch_ctx = run.path.batch_context(entity, ctx, rows)
                for src in rows:
                    result = entity.transform(src, batch_ctx)
                    if isinstance(result, (Reject, Skip)):
                        continue
                    if any(result.row.get(c) in touched[parent] for c, parent in entity.foreign_keys.items()):
                        out.add(src["id"])
                    elif column and result.row.get(column) is not None:
                        replying[src["id"]] = result.row[column]
        while taken := [i for i, parent in replying.items() if parent in own or parent in out]:
            out.update(taken)
            for i in taken:
                del replying[i]
        return out


def _rows_and_sums(moments: dict[int, list[int]]) -> dict[int, list[int]]:
    """Chunk start -> [rows, digest sum], of the target's ``stored_sums``."""
    return {start: chunk[:2] for start, chunk in moments.items()}


def _driver_rows(conn, query) -> list[tuple]:
    """The rows as the driver's tuples. A sync reads hundreds of thousands of integer
    pairs, and SQLAlchemy's Row objects cost twice the fetch; integers need no result
    processing on any dialect."""
    result = conn.execute(query)
    try:
        return result.cursor.fetchall()
    finally:
        result.close()


def _earlier_runs(conn):
    """(status, options) of the runs before this one, the latest first."""
    runs = bk.runs
    return conn.execute(sa.select(runs.c.status, runs.c.options).order_by(runs.c.id.desc()).offset(1))


def _run_before(run):
    """The status and options of the run before this one (None: there is none)."""
    with run.engine.connect() as conn:
        return _earlier_runs(conn).first()


def _rejects_settled(run) -> bool:
    """Whether every reject in the target was decided against its parents as they are now:
    the last run before this one that decided rows completed, over every entity. After a
    run killed or failed part-way, or one limited by --only/--exclude, a parent may have
    come in after its children were turned away."""
    with run.engine.connect() as conn:
        for status, options in _earlier_runs(conn):
            options = options or {}
            if options.get("files_only") or options.get("dry_run"):
                continue
            return status == "complete" and not options.get("only") and not options.get("exclude")
    return False


def _ids_read(entity: Entity) -> set[str]:
    """The entities whose target ids writing this one's rows reads (``Run.load_parent_ids``)."""
    return set(entity.parents) | ({entity.name} if _reads_itself(entity) else set())


def _reads_itself(entity: Entity) -> bool:
    """Whether deciding a row needs the ids of its own table (a reply's parent); else only
    its parents' are read (the interactions alone hold half the rows)."""
    return bool(entity.self_foreign_key) or entity.name in entity.parents


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
