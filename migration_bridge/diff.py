"""Chunked checksum comparison of two keyed row streams (source vs target).

Dialect-free and database-free: the caller supplies, per side, the rows of a
primary-key range already reduced to per-row hashes; this module finds what
differs. ``verify_flask`` uses it to prove content equality; the planned
``export_to_flask --sync`` can use the same ``ChunkDiff`` (missing → insert,
extra → delete, changed → update).

How a table is compared:

1. The source is read in primary-key order by keyset batches (e.g. 1000 ids).
   ``keyset_ranges`` turns those batches into consecutive, gap-free id ranges
   ``[lo, hi)`` that together cover the whole id line (the first starts at -inf,
   the last ends at +inf), so a target row whose id the source never had still
   falls into exactly one range.
2. For each range the target's rows of that range are fetched and hashed.
3. One digest per side over the range (ids and row hashes, in id order); equal
   digests end the range's work.
4. Otherwise the id sets give ``missing`` (source only) and ``extra`` (target
   only), and the common ids are bisected: each half's digests are compared
   and only differing halves are descended into, down to single ids
   (``changed``).

Row hashes come from ``row_hash``, over a canonical serialisation
(``canonical``): datetimes as UTC ISO 8601 with microseconds, UUIDs and
decimals as strings, JSON objects as key-sorted pairs — so the same logical row
hashes the same whatever database or driver produced it.
"""
from __future__ import annotations

import datetime as dt
import decimal
import enum
import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

DEFAULT_CHUNK_SIZE = 1000
LEAF_SIZE = 8  # below this many common ids, compare row hashes one by one


# --- canonical serialisation ------------------------------------------------------

def canonical(value: Any) -> Any:
    """A driver-independent form of one column value (what ``row_hash`` takes)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:  # naive values are UTC on both sides (USE_TZ, UtcDateTime)
            value = value.replace(tzinfo=dt.timezone.utc)
        elif value.tzinfo is not dt.timezone.utc:
            value = value.astimezone(dt.timezone.utc)
        return value.isoformat(timespec="microseconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, enum.Enum):  # SQLAlchemy's Enum reads members, stores their names
        return value.name
    if isinstance(value, (uuid.UUID, decimal.Decimal)):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, Mapping):  # a tuple of pairs by key: lists canonicalise to lists
        return tuple(sorted(((str(k), canonical(v)) for k, v in value.items()), key=lambda pair: pair[0]))
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    return str(value)


# values canonical as they are (the common case: no call per value)
_AS_THEY_ARE = frozenset({type(None), bool, str, int})


def canonical_row(row: Mapping[str, Any], columns: Sequence[str]) -> tuple:
    return tuple(v if type(v) in _AS_THEY_ARE else canonical(v) for v in map(row.get, columns))


def row_hash(canonical_values: tuple) -> bytes:
    # repr of canonical values is exact and deterministic: strings, ints, bools, None,
    # and lists and key-sorted tuples of them (a third of the cost of json.dumps)
    return hashlib.blake2b(repr(canonical_values).encode("utf-8", "surrogatepass"), digest_size=16).digest()


def digest(hashes: Mapping[int, bytes], ids: Iterable[int]) -> bytes:
    """One digest over (id, row hash) pairs, in the order given (callers pass sorted ids)."""
    h = hashlib.blake2b(digest_size=16)
    for i in ids:
        h.update(i.to_bytes(8, "big", signed=True))
        h.update(hashes[i])
    return h.digest()


# --- ranges -----------------------------------------------------------------------

@dataclass
class ChunkDiff:
    """What differs in one id range ``[lo, hi)`` (None = unbounded)."""

    lo: int | None
    hi: int | None
    missing: list[int] = field(default_factory=list)  # in the source only
    extra: list[int] = field(default_factory=list)  # in the target only
    changed: list[int] = field(default_factory=list)  # in both, content differs

    def __bool__(self) -> bool:
        return bool(self.missing or self.extra or self.changed)


def keyset_ranges(batches: Iterable[Mapping[int, Any]]) -> Iterator[tuple[int | None, int | None, Mapping[int, Any]]]:
    """Source batches keyed by id (ascending, consecutive batches of a keyset scan) →
    gap-free ranges ``(lo, hi, batch)``: every id of the line lies in exactly one.

    The first range starts at None (-inf) and the last ends at None (+inf); with no
    batches at all, one empty range covers everything. ``hi`` of a range is the
    last id of its batch + 1, so the ranges follow the source's own density (sparse
    ids cost no empty chunks).
    """
    lo: int | None = None
    pending: Mapping[int, Any] | None = None
    for batch in batches:
        if not batch:
            continue  # merges into the next range
        if pending is not None:
            hi = max(pending) + 1
            yield lo, hi, pending
            lo = hi
        pending = batch
    yield lo, None, pending if pending is not None else {}


def changed_ids(source: Mapping[int, bytes], target: Mapping[int, bytes], common: Sequence[int],
                leaf_size: int = LEAF_SIZE) -> list[int]:
    """Bisect the common ids (sorted): descend only into halves whose digests differ."""
    out: list[int] = []
    stack = [(0, len(common))]
    while stack:
        a, b = stack.pop()
        if b - a <= leaf_size:
            out.extend(i for i in common[a:b] if source[i] != target[i])
            continue
        m = (a + b) // 2
        for x, y in ((a, m), (m, b)):
            part = common[x:y]
            if digest(source, part) != digest(target, part):
                stack.append((x, y))
    return sorted(out)


def compare_range(lo: int | None, hi: int | None, source: Mapping[int, bytes],
                  target: Mapping[int, bytes], leaf_size: int = LEAF_SIZE) -> ChunkDiff:
    """Compare one range's row hashes; an empty ChunkDiff when they are equal."""
    result = ChunkDiff(lo, hi)
    src_ids, tgt_ids = sorted(source), sorted(target)
    if src_ids == tgt_ids and digest(source, src_ids) == digest(target, tgt_ids):
        return result
    tgt_set = set(tgt_ids)
    src_set = set(src_ids)
    result.missing = [i for i in src_ids if i not in tgt_set]
    result.extra = [i for i in tgt_ids if i not in src_set]
    common = [i for i in src_ids if i in tgt_set]
    result.changed = changed_ids(source, target, common, leaf_size)
    return result


def diff_ranges(
    source_chunks: Iterable[tuple[int | None, int | None, Mapping[int, bytes]]],
    fetch_target: Callable[[int | None, int | None], Mapping[int, bytes]],
    leaf_size: int = LEAF_SIZE,
) -> Iterator[ChunkDiff]:
    """For every source range ``(lo, hi, hashes)``, fetch the target's hashes of the
    same range and yield the range's ChunkDiff (empty ones included, for counting)."""
    for lo, hi, source in source_chunks:
        yield compare_range(lo, hi, source, fetch_target(lo, hi), leaf_size)


# --- per-chunk sums (what --sync asks each database for) ----------------------------

def differing_chunks(source: Mapping[int, Sequence[int]], target: Mapping[int, Sequence[int]]) -> list[int]:
    """Chunk starts whose (rows, digest sum) differ between the sides, or that one side
    lacks: only their rows need comparing."""
    return sorted(start for start in source.keys() | target.keys() if source.get(start) != target.get(start))


def chunk_spans(starts: Sequence[int], width: int, span: int) -> list[tuple[int, int, list[int] | None]]:
    """Sorted chunk starts -> ``(lo, hi, chunks)``: one query each, over at most ``span``
    ids, for the rows of ``chunks`` in ``[lo, hi)`` (None: all of them, the chunks being
    adjacent)."""
    spans: list[tuple[int, int, list[int] | None]] = []
    group: list[int] = []
    for start in [*starts, None]:
        if group and (start is None or start + width - group[0] > span):
            lo, hi = group[0], group[-1] + width
            spans.append((lo, hi, None if hi - lo == len(group) * width else group))
            group = []
        if start is not None:
            group.append(start)
    return spans


def compare_rows(lo: int | None, hi: int | None, source: Mapping[int, Any], target: Mapping[int, Any]) -> ChunkDiff:
    """Row by row, by id: what one range's source and target digests say."""
    result = ChunkDiff(lo, hi)
    result.missing = sorted(source.keys() - target.keys())
    result.extra = sorted(target.keys() - source.keys())
    result.changed = sorted(i for i in source.keys() & target.keys() if source[i] != target[i])
    return result
