"""Check ``content``: every source row, decided by the row path's own rules against the
ids *verify* expects (not the export's bookkeeping), and the rows the target must hold
compared with it — chunked checksums over id ranges, descending to the ids (``diff``),
then a field-by-field comparison of a random sample. Salted and encrypted columns are
compared by meaning in the sample (``Entity.by_meaning``); cached counters are left to
the ``counters`` check (``--fix-counts`` must not turn into content differences).

It also checks each text value read against the UTF-8 byte length the legacy database
computes itself: a lossy connection fails here even when every read decodes the same way.
"""
from __future__ import annotations

import random

import sqlalchemy as sa

from ..diff import canonical, canonical_row, compare_range, keyset_ranges, row_hash
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
    select_cols = [view.c[c] for c in columns]
    chunks = differing_chunks = rows_compared = seen = 0
    changed: list[int] = []
    changed_columns: dict[int, list[str]] = {}
    sampled: list[int] = []
    for lo, hi, batch in keyset_ranges(source_batches()):
        source_hashes = {i: v[0] for i, v in batch.items() if v is not None}
        stmt = sa.select(*select_cols).order_by(view.c.id)
        if lo is not None:
            stmt = stmt.where(view.c.id >= lo)
        if hi is not None:
            stmt = stmt.where(view.c.id < hi)
        canon_tgt: dict[int, tuple] = {}
        target_hashes: dict[int, bytes] = {}
        for row in conn.execute(stmt).mappings():
            if row["id"] not in source_hashes:
                continue  # a row the target must not hold: row_counts lists it
            values = canonical_row(row, columns)
            canon_tgt[row["id"]] = values
            target_hashes[row["id"]] = row_hash(values)
        diff = compare_range(lo, hi, source_hashes, target_hashes)
        chunks += 1
        if diff:
            differing_chunks += 1
        for i in diff.changed:
            changed.append(i)
            if len(changed_columns) < SHOW_IDS:
                changed_columns[i] = [c for c, a, b in zip(columns, batch[i][1], canon_tgt[i]) if a != b]
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
    _settle_waiting(path, entity, rule_out)
    stats = {"rows_compared": rows_compared, "chunks": chunks, "chunks_differing": differing_chunks,
             "rows_differing": len(changed), "rows_misread": len(misread)}
    return stats, changed, changed_columns, misread, sampled


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
