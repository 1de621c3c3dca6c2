"""Check ``content``: every source row, decided by the row path's own rules against the
ids *verify* expects (not the export's bookkeeping), and the rows the target must hold
compared with it — chunked checksums over id ranges, descending to the ids (``diff``),
then a field-by-field comparison of a random sample. Salted and encrypted columns are
compared by meaning in the sample (``Entity.by_meaning``); cached counters are left to
the ``counters`` check (``--fix-counts`` must not turn into content differences).

The target's side is read and hashed by a forked process (``TargetHashes``), on another
core, while this one replays the source: every row is still hashed on both sides, each
side from its own database.

It also checks each text value read against the UTF-8 byte length the legacy database
computes itself: a lossy connection fails here even when every read decodes the same way.
"""
from __future__ import annotations

import multiprocessing
import random

import sqlalchemy as sa

from ..diff import canonical, canonical_row, compare_range, keyset_ranges, row_hash
from ..errors import EXIT_INTERRUPTED, BridgeError, Interrupted, describe, quiet_child_signals
from ..files import KeyLookup
from ..idmap import legacy_view
from ..mapping import Entity
from ..rowpath import WAIT, RowPath, base_context, file_urls, media_password_cipher
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
    losslessly, and compare the rows the target must hold with the target, chunk by chunk."""
    name = entity.name
    state.expected[name] = IdList()
    state.gone[name] = {}
    reasons = state.gone_reason[name] = {}
    misread: list[int] = []
    ctx = path.entity_context(entity)

    def rule_out(source_id: int, result) -> None:
        path.rule_out(entity, source_id, result)
        reasons[source_id] = result.reason

    def source_batches():
        # every id read is kept (None = the target must not hold it) so the ranges
        # follow the source; the rest carry (row hash, canonical values)
        for batch in state.source.extract_rows_with_text_bytes(entity, state.options.chunk_size):
            rows = [row for row, _, _ in batch]
            misread.extend(row["id"] for row, in_db, decoded in batch if in_db != decoded)
            hashes: dict[int, tuple | None] = {r["id"]: None for r in rows}
            for src, result in path.transform(entity, path.batch_context(entity, ctx, rows), rows):
                problem = path.decide(entity, src, result)
                if problem is not None and problem != WAIT:
                    rule_out(src["id"], problem)
                    continue
                if problem is None:
                    path.accept(entity, src["id"])
                values = canonical_row(result.row, columns)
                hashes[src["id"]] = (row_hash(values), values)
            yield hashes

    view = legacy_view(state.profile, entity)
    chunks = differing_chunks = rows_compared = seen = 0
    changed: list[int] = []
    shown: dict[int, tuple] = {}  # canonical source values of the first rows that differ
    sampled: list[int] = []
    target = TargetHashes(state.engine, sa.select(*[view.c[c] for c in columns]).order_by(view.c.id), columns,
                          state.options.chunk_size)
    try:
        for lo, hi, batch in keyset_ranges(source_batches()):
            source_hashes = {i: v[0] for i, v in batch.items() if v is not None}
            # rows the target must not hold are left out: row_counts lists them
            target_hashes = {i: h for i, h in target.below(hi).items() if i in source_hashes}
            diff = compare_range(lo, hi, source_hashes, target_hashes)
            chunks += 1
            if diff:
                differing_chunks += 1
            for i in diff.changed:
                changed.append(i)
                if len(shown) < SHOW_IDS:
                    shown[i] = batch[i][1]
            # reservoir sample over the rows present on both sides
            for i in source_hashes:
                if i in target_hashes:
                    rows_compared += 1
                    seen += 1
                    if len(sampled) < state.options.sample:
                        sampled.append(i)
                    else:
                        j = sample_rng.randrange(seen)
                        if j < state.options.sample:
                            sampled[j] = i
    finally:
        target.close()
    changed_columns = {}
    if shown:
        for row in conn.execute(sa.select(*[view.c[c] for c in columns]).where(view.c.id.in_(sorted(shown)))):
            values = canonical_row(row._mapping, columns)
            changed_columns[row.id] = [c for c, a, b in zip(columns, shown[row.id], values) if a != b]
    _settle_waiting(path, entity, rule_out)
    stats = {"rows_compared": rows_compared, "chunks": chunks, "chunks_differing": differing_chunks,
             "rows_differing": len(changed), "rows_misread": len(misread)}
    return stats, changed, changed_columns, misread, sampled


class TargetHashes:
    """The target's rows of one entity (``select``, in id order), hashed by a forked
    process while this one replays the source: ``below(hi)`` gives the next ids under
    ``hi`` with their row hashes. The pipe between them holds a batch or two, no more."""

    def __init__(self, engine: sa.Engine, select: sa.Select, columns: list[str], batch: int):
        fork = multiprocessing.get_context("fork")
        self._receive, send = fork.Pipe(duplex=False)
        self._process = fork.Process(target=_hash_target, args=(engine, select, columns, batch, send),
                                     name="bridge-verify-target", daemon=True)
        self._process.start()
        send.close()
        self._rows: list[tuple[int, bytes]] = []
        self._at = 0
        self._done = False

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
            self._next_batch()

    def _next_batch(self) -> None:
        try:
            kind, payload = self._receive.recv()
        except EOFError:
            self._process.join()
            raise BridgeError(f"the process reading the target died (exit status {self._process.exitcode})") from None
        if kind == "error":
            code, line = payload
            raise Interrupted() if code == EXIT_INTERRUPTED else BridgeError(line)
        self._rows, self._at, self._done = payload or [], 0, kind == "done"

    def close(self) -> None:
        if self._done:  # it has said all: let it end by itself
            self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.terminate()
        self._process.join()
        self._receive.close()


def _hash_target(engine: sa.Engine, select: sa.Select, columns: list[str], batch: int, send) -> None:
    """In the forked process: (id, row hash) batches in id order, then ("done", None)."""
    quiet_child_signals()
    try:
        engine.dispose(close=False)  # the parent's pooled connections are not ours
        with engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=batch).execute(select).mappings()
            for rows in result.partitions():
                send.send(("rows", [(row["id"], row_hash(canonical_row(row, columns))) for row in rows]))
        send.send(("done", None))
    except BaseException as exc:  # noqa: BLE001 - the parent raises it
        send.send(("error", describe(exc)))
    finally:
        send.close()


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
