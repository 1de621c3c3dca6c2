"""Check ``content``: every source row, decided by the row path's own rules against the
ids *verify* expects (not the export's bookkeeping), and the rows the target must hold
compared with it — chunked checksums over id ranges, descending to the ids (``diff``),
then a field-by-field comparison of a random sample. Salted and encrypted columns are
compared by meaning in the sample (``Entity.by_meaning``); cached counters are left to
the ``counters`` check (``--fix-counts`` must not turn into content differences).

A table of more than a chunk is cut into id ranges, one per worker (``--workers``,
default the machine's cores), each replayed by a forked process against the decisions of
the tables before it; a reply whose parent lies in an earlier range waits, and once
every range is in, the waiting replies are decided again here, in id order, as one
process decides them. Each range's target rows are read and hashed by a process of
their own (``TargetHashes``). On PostgreSQL the target digests each chunk itself
(``TargetChunks``): the md5 of its rows' text forms in id order, which the replay
computes from the transformed source rows; only a chunk whose digests differ is read
row by row. Every row is still hashed on both sides, each side from its own database,
and nothing the export recorded is read.

It also checks each text value read against the UTF-8 byte length the legacy database
computes itself: a lossy connection fails here even when every read decodes the same way.
"""
from __future__ import annotations

import bisect
import dataclasses
import hashlib
import math
import multiprocessing.connection
import os
import random
from dataclasses import dataclass, field
from typing import Any, Iterable

import sqlalchemy as sa

from .. import dialects
from ..diff import canonical, canonical_row, chunks_at, compare_range, row_hash, text_former
from ..errors import Interrupted
from ..files import KeyLookup
from ..forked import Helper
from ..idmap import legacy_view
from ..mapping import Entity
from ..rowpath import WAIT, RowPath, base_context, file_urls, media_password_cipher
from ..source import BEFORE_FIRST_ID
from ..transforms import Reject, Skip
from .state import SHOW_IDS, CheckResult, IdList, State, offending


def replay_path(state: State) -> RowPath:
    """The export's row path, deciding against what verify expects."""
    path = RowPath(state.source, base_context(state.conf), file_urls(state.conf, state.profile), b"",
                   KeyLookup(state.engine, state.key_scheme))
    path.loaded, path.gone = state.expected, state.gone
    return path


def compared_columns(state: State, entity: Entity) -> tuple[list[str], list]:
    """(columns in the checksum, ``ByMeaning`` rules compared in the sample)."""
    by_meaning = [m for m in entity.by_meaning if m.rule != "decrypts" or state.conf.MEDIA_PASSWORD_KEY]
    excluded = {c.column for c in entity.counters} | {m.column for m in by_meaning}
    return [c for c in entity.column_names if c not in excluded], by_meaning


def check_content(state: State) -> CheckResult:
    path = replay_path(state)
    figures, off = {}, {}
    problems = 0
    sample_rng = state.rng("content-sample")
    with state.engine.connect() as conn:
        for entity in state.profile.entities:
            columns, by_meaning = compared_columns(state, entity)
            stats, changed, changed_columns, misread, sampled = _audit_table(
                state, conn, path, entity, columns, sample_rng)
            sample_diffs, meaning_failures = _sample_table(state, conn, path, entity, columns, by_meaning, sampled)
            stats.update({
                "excluded_from_checksum": sorted(set(entity.column_names) - set(columns)),
                "sampled": len(sampled), "sample_ids": sorted(sampled),
                "sample_differences": len(sample_diffs), "compared_by_meaning": [m.column for m in by_meaning],
                "meaning_failures": len(meaning_failures),
            })
            figures[entity.name] = stats
            if changed:
                first = sorted(changed)[:SHOW_IDS]
                off[f"{entity.name}: rows differ"] = offending(
                    changed, columns={str(i): changed_columns[i] for i in first})
            if misread:
                off[f"{entity.name}: text read differs from the bytes the legacy DB holds (lossy connection)"] = \
                    offending(misread)
            if sample_diffs:
                off[f"{entity.name}: sample, fields differ"] = offending(
                    sample_diffs, columns={str(i): sample_diffs[i] for i in sorted(sample_diffs)[:SHOW_IDS]})
            if meaning_failures:
                names = "/".join(m.column for m in by_meaning)
                off[f"{entity.name}: sample, {names} does not match the legacy value"] = offending(meaning_failures)
            problems += len(changed) + len(misread) + len(sample_diffs) + len(meaning_failures)
    state.audited = True
    rows = sum(f["rows_compared"] for f in figures.values())
    sampled = sum(f["sampled"] for f in figures.values())
    if problems:
        summary = "; ".join(f"{label}: {o['count']}" for label, o in off.items())
    else:
        summary = (f"{rows} rows equal by checksum in {sum(f['chunks'] for f in figures.values())} chunks, "
                   f"source text checked byte for byte; {sampled} sampled rows equal field by field "
                   "(secrets by meaning)")
    return CheckResult("content", not problems, summary, figures, off)


def _audit_table(state: State, conn, path: RowPath, entity: Entity, columns: list[str],
                 sample_rng: random.Random):
    """One pass over the source table: decide every row, check its text was read
    losslessly, and compare the rows the target must hold with the target, chunk by chunk;
    by one process per id range (``audit_bounds``) when the table is large enough."""
    name = entity.name
    state.expected[name] = IdList()
    state.gone[name] = {}
    reasons = state.gone_reason[name] = {}
    ctx = path.entity_context(entity)

    def rule_out(source_id: int, result) -> None:
        path.rule_out(entity, source_id, result)
        reasons[source_id] = result.reason

    bounds = audit_bounds(state.source_ids[name], state.options.workers, state.options.chunk_size)
    waited: dict[int, int] = {}
    if len(bounds) == 1:
        audits = [_audit_range(state, path, entity, columns, ctx, rule_out, None, None, sample_rng)]
        sampled = audits[0].sample.items
    else:
        audits = _audit_in_workers(state, path, entity, columns, ctx, rule_out, bounds, sample_rng)
        for audit in audits:
            state.expected[name].extend(audit.accepted)
            state.gone[name].update(audit.gone)
            reasons.update(audit.reasons)
            waited.update(audit.pending)
        sampled = merge_samples([(a.sample.items, a.sample.seen) for a in audits], state.options.sample, sample_rng)
        # what a reply waited for in a worker is known now: those ruled out were, in one
        # process, decided on the spot and never compared
        ruled_out = _decide_again(state, path, entity, ctx, sorted(waited), rule_out)
        for audit in audits:
            audit.forget(ruled_out)
        sampled = [i for i in sampled if i not in ruled_out]
    changed = [i for a in audits for i in a.changed]
    shown = {i: v for a in audits for i, v in a.shown.items()}
    shown = {i: shown[i] for i in changed[:SHOW_IDS] if i in shown}
    changed_columns = {}
    if shown:
        view = legacy_view(state.profile, entity)
        for row in conn.execute(sa.select(*[view.c[c] for c in columns]).where(view.c.id.in_(sorted(shown)))):
            values = canonical_row(row._mapping, columns)
            changed_columns[row.id] = [c for c, a, b in zip(columns, shown[row.id], values) if a != b]
    _settle_waiting(path, entity, rule_out)
    misread = [i for a in audits for i in a.misread]
    stats = {"rows_compared": sum(a.rows_compared for a in audits), "chunks": sum(a.chunks for a in audits),
             "chunks_differing": sum(a.chunks_differing for a in audits),
             "rows_differing": len(changed), "rows_misread": len(misread), "processes": len(bounds),
             "replies_decided_again": len(waited)}
    return stats, changed, changed_columns, misread, sampled


def audit_bounds(ids: IdList, workers: int, chunk_size: int) -> list[tuple[int | None, int | None]]:
    """The ranges ``(lo, hi]`` (None: unbounded) the source ids are cut into, about as
    many ids each, one per worker but never less than a chunk's worth."""
    parts = max(1, min(workers, len(ids) // max(chunk_size, 1)))
    points = [ids.items[len(ids) * k // parts - 1] for k in range(1, parts)]
    return list(zip([None, *points], [*points, None]))


def merge_samples(parts: list[tuple[list[int], int]], size: int, rng: random.Random) -> list[int]:
    """A uniform sample of ``size`` ids from disjoint populations, each given as
    (a uniform sample of up to ``size`` of its ids, its size): each pick is drawn from a
    population in proportion to what it has left."""
    pools = [list(sample) for sample, _ in parts]
    for pool in pools:
        rng.shuffle(pool)  # a reservoir's order is not random
    left = [seen for _, seen in parts]
    out: list[int] = []
    while len(out) < size and any(left):
        k = rng.choices(range(len(pools)), weights=left)[0]
        out.append(pools[k].pop())
        left[k] -= 1
    return out


class Reservoir:
    """A uniform sample of up to ``size`` of the ids offered, in batches of any size, drawn
    by skipping ahead (Li's algorithm L): a few random numbers per id taken, none per id
    passed over."""

    def __init__(self, size: int, rng: random.Random):
        self.size, self.rng = size, rng
        self.items: list[int] = []
        self.seen = 0  # ids offered
        self._w = 1.0
        self._next = 0  # the number (from 1) of the next id offered that is taken

    def offer(self, ids: list[int]) -> None:
        if self.size <= 0:
            self.seen += len(ids)
            return
        at = 0
        if len(self.items) < self.size:
            at = min(len(ids), self.size - len(self.items))
            self.items.extend(ids[:at])
            self.seen += at
            if len(self.items) < self.size:
                return
            self._next = self.seen
            self._skip()
        last = self.seen + len(ids) - at
        while self._next <= last:
            self.items[self.rng.randrange(self.size)] = ids[at + self._next - self.seen - 1]
            self._skip()
        self.seen = last

    def _skip(self) -> None:
        self._w *= math.exp(math.log(self._uniform()) / self.size)
        self._next += math.floor(math.log(self._uniform()) / (math.log1p(-self._w) or -1e-300)) + 1

    def _uniform(self) -> float:
        while not (u := self.rng.random()):  # in (0, 1)
            pass
        return u


@dataclass
class RangeAudit:
    """What the content pass found over one id range; from a worker, with its decisions."""

    chunks: int = 0
    chunks_differing: int = 0
    rows_compared: int = 0
    changed: list[int] = field(default_factory=list)
    shown: dict[int, tuple] = field(default_factory=dict)  # canonical source values of the first that differ
    misread: list[int] = field(default_factory=list)
    sample: Reservoir | None = None  # of the rows compared
    waiting_compared: set[int] = field(default_factory=set)  # waiting replies the target holds
    accepted: Any = ()
    gone: dict[int, Any] = field(default_factory=dict)
    reasons: dict[int, str] = field(default_factory=dict)
    pending: dict[int, int] = field(default_factory=dict)

    def forget(self, ids: set[int]) -> None:
        """Rows that were compared while waiting, and turned out to be left out."""
        self.rows_compared -= len(self.waiting_compared & ids)
        self.changed = [i for i in self.changed if i not in ids]


def _audit_range(state: State, path: RowPath, entity: Entity, columns: list[str], ctx, rule_out,
                 lo: int | None, hi: int | None, sample_rng: random.Random, after_batch=None) -> RangeAudit:
    """The source rows in ``(lo, hi]`` decided (into ``path``) and compared with the target's."""
    name = entity.name
    audit = RangeAudit(sample=Reservoir(state.options.sample, sample_rng))
    path.range_start = lo

    def source_batches():
        # every id read is kept (None = the target must not hold it) so the ranges
        # follow the source; the rest carry their transformed row
        for batch in state.source.extract_rows_with_text_bytes(
                entity, state.options.chunk_size, after_id=BEFORE_FIRST_ID if lo is None else lo,
                before_id=None if hi is None else hi + 1):
            rows = [row for row, _, _ in batch]
            audit.misread.extend(row["id"] for row, in_db, decoded in batch if in_db != decoded)
            held: dict[int, dict | None] = {r["id"]: None for r in rows}
            accept, accepted = path.accepting(entity)
            for src, result in path.transform(entity, path.batch_context(entity, ctx, rows), rows):
                problem = path.decide(entity, src, result)
                if problem is not None and problem != WAIT:
                    rule_out(src["id"], problem)
                    continue
                if problem is None:
                    accept(src["id"])
                held[src["id"]] = result.row
            accepted()
            yield held
            if after_batch is not None:
                after_batch()

    view = legacy_view(state.profile, entity)
    hashing = RowHashing(view, columns, state.engine.dialect)
    select = hashing.select
    if lo is not None:
        select = select.where(view.c.id > lo)
    if hi is not None:
        select = select.where(view.c.id <= hi)
    starts = chunk_starts(state.source_ids[name], lo, hi, state.options.chunk_size)
    waiting = path.pending.setdefault(name, {})
    target = (TargetChunks(state.engine, select, hashing, starts, lo, hi) if hashing.by_chunk
              else TargetHashes(state.engine, select, hashing, state.options.chunk_size))
    try:
        for chunk_lo, chunk_hi, batch in chunks_at(source_batches(), starts):
            held = {i: row for i, row in batch.items() if row is not None}
            changed, compared = target.compare(chunk_lo, chunk_hi, held)
            audit.chunks += 1
            audit.chunks_differing += bool(changed or len(compared) < len(held))
            for i in changed:
                audit.changed.append(i)
                if len(audit.shown) < SHOW_IDS:
                    audit.shown[i] = canonical_row(held[i], columns)
            compared = list(compared)
            audit.rows_compared += len(compared)
            audit.sample.offer(compared)  # a sample of the rows present on both sides
            if waiting:
                audit.waiting_compared.update(i for i in compared if i in waiting)
    finally:
        target.close()
    path.range_start = None
    return audit


def chunk_starts(ids: IdList, lo: int | None, hi: int | None, chunk_size: int) -> list[int]:
    """Where the chunks of the range ``(lo, hi]`` start: every ``chunk_size``-th source id in it."""
    first = 0 if lo is None else bisect.bisect_right(ids.items, lo)
    end = len(ids) if hi is None else bisect.bisect_right(ids.items, hi)
    return list(ids.items[first + chunk_size:end:chunk_size])


def _audit_in_workers(state: State, path: RowPath, entity: Entity, columns: list[str], ctx, rule_out,
                      bounds: list[tuple[int | None, int | None]], sample_rng: random.Random) -> list[RangeAudit]:
    """``_audit_range`` of each range in a forked process of its own (each with its own
    target reader), their audits in range order."""
    from django.db import connections

    connections.close_all()  # a forked worker opens its own, never shares the parent's sockets
    state.engine.dispose()
    workers: list[Helper] = []
    audits: dict[int, RangeAudit] = {}
    try:
        for lo, hi in bounds:  # started inside the try: interrupted meanwhile, the started ones stop
            workers.append(Helper(_audit_in_worker, (state, path, entity, columns, ctx, rule_out, lo, hi,
                                                     random.Random(sample_rng.getrandbits(64))),
                                  f"the verify worker of {entity.name}, ids ({lo}, {hi}]", state.engine,
                                  daemon=False))
        running = {w.connection: k for k, w in enumerate(workers)}
        while running:
            for ready in multiprocessing.connection.wait(list(running)):
                k = running.pop(ready)
                audits[k] = workers[k].receive()[1]
    finally:
        for worker in workers:
            worker.stop()
    return [audits[k] for k in range(len(workers))]


def _audit_in_worker(state: State, path: RowPath, entity: Entity, columns: list[str], ctx, rule_out, lo, hi,
                     sample_rng: random.Random, send) -> None:
    parent = os.getppid()

    def check_parent() -> None:
        if os.getppid() != parent:  # verify_flask was killed: stop too
            raise Interrupted("verify_flask is gone")

    audit = _audit_range(state, path, entity, columns, ctx, rule_out, lo, hi, sample_rng, after_batch=check_parent)
    audit.accepted = state.expected[entity.name].items
    audit.gone, audit.reasons = state.gone[entity.name], state.gone_reason[entity.name]
    audit.pending = path.pending.get(entity.name, {})
    send.send(("done", audit))


def _decide_again(state: State, path: RowPath, entity: Entity, ctx, ids: list[int], rule_out) -> set[int]:
    """The replies that waited in a worker, decided again in id order now that every
    range is in, as one process decided them; returns those ruled out on the spot (one
    process never compared them)."""
    column = entity.self_foreign_key
    pending = path.pending[entity.name] = {}
    ruled_out: set[int] = set()
    for start in range(0, len(ids), state.options.chunk_size):
        rows = state.source.rows_by_id(entity, ids[start:start + state.options.chunk_size], digests=False)
        for src, result in path.transform(entity, path.batch_context(entity, ctx, rows), rows):
            problem = path.decide(entity, src, result)
            if problem is None:
                path.accept(entity, src["id"])
            elif problem != WAIT:
                parent = None if isinstance(result, (Reject, Skip)) else result.row.get(column)
                if parent is not None and (parent > src["id"] or parent in pending) and path.decide(
                        entity, src, dataclasses.replace(result, row={**result.row, column: None})) is None:
                    # its parent came later (or waits): in one process it waited and was
                    # compared; settling rules it out with the same root
                    pending[src["id"]] = parent
                    continue
                rule_out(src["id"], problem)
                ruled_out.add(src["id"])
    return ruled_out


class RowHashing:
    """How one entity's rows are hashed alike on both sides. Where the target computes it
    (``dialects.text_form``), the columns of a known kind go into the md5 of their text
    form, computed by the target from what it holds and here from the transformed source
    row; the rest (JSON) are read and hashed as canonical values, as every column is on
    the other targets. There a whole chunk is digested at once (``by_chunk``)."""

    def __init__(self, view, columns: list[str], dialect):
        kinds = {c: dialects.text_kind(view.c[c].type) for c in columns}
        self.texted = [c for c in columns if kinds[c]]
        texted = [(view.c[c], kinds[c]) for c in self.texted]
        self.form = dialects.text_form(dialect, texted)
        if self.form is None or not self.texted:
            self.form, self.texted = None, []
        self.text_of = text_former(self.texted, [kinds[c] for c in self.texted])
        self.rest = [c for c in columns if c not in self.texted]
        self.id_column = view.c.id
        self.rest_columns = [view.c[c] for c in self.rest if c != "id"]
        md5 = [dialects.text_form_md5(dialect, texted).label(TEXT_MD5)] if self.form is not None else []
        self.select = sa.select(view.c.id, *md5, *self.rest_columns).order_by(view.c.id)

    @property
    def by_chunk(self) -> bool:
        return self.form is not None

    def source(self, row: dict) -> bytes | str:
        """The hash of a transformed source row."""
        if not self.texted:
            return row_hash(canonical_row(row, self.rest))
        md5 = hashlib.md5(self.text_of(row).encode("utf-8", "surrogatepass")).hexdigest()
        return row_hash((md5, *canonical_row(row, self.rest))) if self.rest else md5

    def target(self, row: sa.Row) -> bytes | str:
        """The hash of a target row read by ``select`` (id, md5 when the target computes it, the rest)."""
        if not self.texted:
            return row_hash(canonical_row(row._mapping, self.rest))
        return row_hash((row[1], *canonical_row(row._mapping, self.rest))) if self.rest else row[1]

    def source_chunk(self, rows: dict[int, dict]) -> tuple[str | None, dict[int, bytes]]:
        """A chunk's digest from its transformed source rows (in id order): the md5 of
        their text forms one after the other (None for no rows, as the target's
        ``string_agg``), and the rest's hash of each row holding any (as
        ``_digest_target_chunks`` reads them)."""
        if not rows:
            return None, {}
        texts = "".join(map(self.text_of, rows.values()))
        return (hashlib.md5(texts.encode("utf-8", "surrogatepass")).hexdigest(),
                self.rest_hashes(rows.items()) if self.rest else {})

    def rest_hashes(self, rows) -> dict[int, bytes]:
        """(id, row) -> the rest's hash, for the rows holding a value there: the target
        reads only those."""
        out = {}
        for i, row in rows:
            values = canonical_row(row, self.rest)
            if any(v is not None for v in values):
                out[i] = row_hash(values)
        return out


TEXT_MD5 = "_bridge_text_md5"


def _descend(hashing: RowHashing, held: dict[int, dict], target: dict[int, Any], lo, hi) -> tuple[list[int], list[int]]:
    """A chunk's rows compared one by one: (ids that differ, ids on both sides). Rows the
    target must not hold are left out: ``row_counts`` lists them."""
    target = {i: h for i, h in target.items() if i in held}
    source = {i: hashing.source(row) for i, row in held.items()}
    return compare_range(lo, hi, source, target).changed, [i for i in held if i in target]


class TargetHashes:
    """The target's rows of one entity (``select``, in id order), hashed by a forked
    process while this one replays the source: ``below(hi)`` gives the next ids under
    ``hi`` with their row hashes. The pipe between them holds a batch or two, no more."""

    def __init__(self, engine: sa.Engine, select: sa.Select, hashing: RowHashing, batch: int):
        self._hashing = hashing
        self._reader = Helper(_hash_target, (engine, select, hashing, batch), "the process reading the target",
                              engine)
        self._rows: list[tuple[int, bytes]] = []
        self._at = 0
        self._done = False

    def compare(self, lo, hi, held: dict[int, dict]) -> tuple[list[int], Iterable[int]]:
        """(ids that differ, ids present on both sides) in ``[lo, hi)``."""
        return _descend(self._hashing, held, self.below(hi), lo, hi)

    def below(self, hi: int | None) -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        while True:
            rows, at = self._rows, self._at
            while at < len(rows) and (hi is None or rows[at][0] < hi):
                out[rows[at][0]] = rows[at][1]
                at += 1
            self._at = at
            if at < len(rows) or self._done:
                return out
            kind, payload = self._reader.receive()
            self._rows, self._at, self._done = payload or [], 0, kind == "done"

    def close(self) -> None:
        self._reader.stop()


def _hash_target(engine: sa.Engine, select: sa.Select, hashing: RowHashing, batch: int, send) -> None:
    """In the forked process: (id, row hash) batches in id order, then ("done", None)."""
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=batch).execute(select)
        for rows in result.partitions():
            send.send(("rows", [(row[0], hashing.target(row)) for row in rows]))
    send.send(("done", None))


MIN_ID, MAX_ID = -(2 ** 63), 2 ** 63 - 1


class TargetChunks:
    """The target's digest of each chunk (``RowHashing.source_chunk``), computed by the
    target itself and gathered by a forked process while this one replays the source, so
    that no row crosses the wire unless its chunk differs; ``compare`` then reads that
    chunk's rows one by one. ``starts``: where the chunks of ``(lo, hi]`` start."""

    def __init__(self, engine: sa.Engine, select: sa.Select, hashing: RowHashing, starts: list[int],
                 lo: int | None, hi: int | None):
        self._engine, self._select, self._hashing = engine, select, hashing
        firsts = [MIN_ID if lo is None else lo + 1, *starts]
        lasts = [s - 1 for s in starts] + [MAX_ID if hi is None else hi]
        self._reader = Helper(_digest_target_chunks, (engine, hashing, firsts, lasts),
                              "the process reading the target", engine)
        self._digests: list = []
        self._conn = None

    def compare(self, lo, hi, held: dict[int, dict]) -> tuple[list[int], Iterable[int]]:
        """(ids that differ, ids present on both sides) in ``[lo, hi)``: from the digests
        when they agree, else row by row."""
        if not self._digests:
            self._digests = self._reader.receive()[1][::-1]
        if self._digests.pop() == self._hashing.source_chunk(held):
            return [], held
        if self._conn is None:
            self._conn = self._engine.connect()
        select = self._select
        if lo is not None:
            select = select.where(self._hashing.id_column >= lo)
        if hi is not None:
            select = select.where(self._hashing.id_column < hi)
        return _descend(self._hashing, held, {row[0]: self._hashing.target(row) for row in self._conn.execute(select)},
                        lo, hi)

    def close(self) -> None:
        self._reader.stop()
        if self._conn is not None:
            self._conn.close()


CHUNKS_PER_QUERY = 64


def _digest_target_chunks(engine: sa.Engine, hashing: RowHashing, firsts: list[int], lasts: list[int],
                          send) -> None:
    """In the forked process: lists of chunk digests, in chunk order, then ("done", None)."""
    digests = dialects.chunk_text_md5s(hashing.id_column, hashing.form)
    with engine.connect() as conn:
        for at in range(0, len(firsts), CHUNKS_PER_QUERY):
            los, his = firsts[at:at + CHUNKS_PER_QUERY], lasts[at:at + CHUNKS_PER_QUERY]
            md5s = [md5 for _, md5 in conn.execute(digests, {"los": los, "his": his})]
            rests: list[dict] = [{} for _ in los]
            if hashing.rest_columns:  # only the rows holding a value there
                # bound as BIGINT: the first and last chunks reach past an INTEGER id's range
                held = sa.select(hashing.id_column, *hashing.rest_columns).where(
                    hashing.id_column.between(sa.literal(los[0], sa.BigInteger), sa.literal(his[-1], sa.BigInteger)),
                    sa.or_(*[c.is_not(None) for c in hashing.rest_columns])).order_by(hashing.id_column)
                found = hashing.rest_hashes((row[0], row._mapping) for row in conn.execute(held))
                for i, h in found.items():
                    rests[bisect.bisect_right(los, i) - 1][i] = h
            send.send(("chunks", list(zip(md5s, rests))))
    send.send(("done", None))


def _settle_waiting(path: RowPath, entity: Entity, rule_out) -> None:
    """Replies that waited for a later parent: in once it is, out with its root when it
    is out, out on their own when it never came — the export's own rule."""
    while path.pending.get(entity.name):
        ready = path.ready(entity)
        for i in ready:
            path.accept(entity, i)
        if not ready:
            for i, why in path.never_ready(entity).items():
                rule_out(i, why)


def _sample_table(state: State, conn, path: RowPath, entity: Entity, columns: list[str],
                  by_meaning: list, sampled: list[int]):
    """Field by field, every column but the counters; salted ones by meaning."""
    diffs: dict[int, list[str]] = {}
    meaning_failures: list[int] = []
    if not sampled:
        return diffs, meaning_failures
    view = legacy_view(state.profile, entity)
    ctx = path.entity_context(entity)
    rows = state.source.rows_by_id(entity, sorted(sampled))
    source_rows = {src["id"]: (src, result)
                   for src, result in path.transform(entity, path.batch_context(entity, ctx, rows), rows)}
    target_rows = {r["id"]: r for r in conn.execute(
        sa.select(view).where(view.c.id.in_(sorted(sampled)))).mappings()}
    decrypt = media_password_cipher(state.conf.MEDIA_PASSWORD_KEY)[1]
    for i in sorted(sampled):
        src, result = source_rows.get(i, (None, None))
        target = target_rows.get(i)
        if src is None or target is None or isinstance(result, (Reject, Skip)):
            diffs[i] = ["<row>"]
            continue
        bad = [c for c in columns if canonical(result.row.get(c)) != canonical(target[c])]
        if bad:
            diffs[i] = bad
        for rule in by_meaning:
            value, legacy = target[rule.column], src[rule.source_field]
            ok = _pin_matches(value, legacy) if rule.rule == "pin" else decrypt(value) == legacy
            if not ok:
                meaning_failures.append(i)
    return diffs, meaning_failures


def _pin_matches(pin_hash: str | None, pin: str | None) -> bool:
    from werkzeug.security import check_password_hash

    if not pin_hash or pin is None:
        return False
    try:
        return check_password_hash(pin_hash, pin)
    except (ValueError, TypeError):
        return False
