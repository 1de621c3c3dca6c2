"""Chunked checksum comparison of two keyed row streams (source vs target).

Dialect-free and database-free: the caller supplies, per side, the rows of a
primary-key range already reduced to per-row hashes or digests; this module finds
what differs. ``verify_flask`` uses it to prove content equality, ``export_to_flask
--sync`` to find what to move (missing → insert, extra → delete, changed → update),
after comparing per-chunk sums each database computed (``differing_chunks``).

How a table is compared:

1. The source is read in primary-key order by keyset batches (e.g. 1000 ids).
   ``chunks_at`` cuts them into consecutive, gap-free id ranges ``[lo, hi)`` at
   given starts (every 1000th source id) that together cover the whole id line (the
   first starts at -inf, the last ends at +inf), so a target row whose id the source
   never had still falls into exactly one range.
2. For each range the target's rows of that range are hashed (or, where the target
   can, the whole range is: one digest of its rows' text forms, ``text_form``).
3. Equal sides end the range's work.
4. Otherwise the id sets give ``missing`` (source only) and ``extra`` (target
   only), and the common ids whose hashes differ are ``changed``.

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
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Sequence

DEFAULT_CHUNK_SIZE = 1000


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


# --- a row's text form (what the target can hash itself) --------------------------------

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_EPOCH_NAIVE = dt.datetime(1970, 1, 1)
_MICROSECOND = dt.timedelta(microseconds=1)


_INTEGER = re.compile(r"-?[0-9]+").fullmatch


def _odd(text: str) -> str:
    # a value of a type the column cannot hold: no value the column holds starts its
    # text with "!", so a form holding this one differs from any the target computes
    return f"!{text},"


def _int_part(value) -> str:
    if type(value) is int:
        return f"{value},"
    if value is None:
        return ","
    text = str(value)
    return f"{text}," if _INTEGER(text) else _odd(text)


def _bool_part(value) -> str:
    return "t," if value is True else "f," if value is False else "," if value is None else _odd(repr(value))


def _datetime_part(value) -> str:
    """Microseconds since 1970 in UTC (naive values are UTC, as in ``canonical``)."""
    if type(value) is dt.datetime:
        return f"{(value - (_EPOCH if value.tzinfo is not None else _EPOCH_NAIVE)) // _MICROSECOND},"
    return "," if value is None else _odd(repr(value))


def _text_part(value) -> str:
    if value is None:
        return ":"
    text = value if type(value) is str else str(value)
    return f"{len(text)}:{text}"


# kind (``dialects.text_kind``) -> the value's part of a row's text form, as the target
# writes it out (``dialects.text_form``): a value whose text holds no comma and is never
# empty (an integer, t or f) is followed by a comma, None by the comma alone; a text is
# prefixed by its length and a colon, None by the colon alone
TEXT_FORMS = {
    "int": _int_part,
    "text": _text_part,
    "bool": _bool_part,
    "datetime": _datetime_part,
    "enum": lambda v: _text_part(v.name if isinstance(v, enum.Enum) else v),
}


def text_form(values: Sequence[Any], forms: Sequence) -> str:
    """The values' text form, their parts one after the other (``forms``: from
    TEXT_FORMS). Read from its start, a form gives back each value's text: any two rows'
    forms differ where their values do, and so do any two sequences of rows of as many
    columns."""
    return "".join([form(value) for value, form in zip(values, forms)])


# a value's part as ``text_former`` writes it inline for the common types (``{v}``: the
# value), the kind's TEXT_FORMS function (``{part}``) taking the rest
_INLINE_PARTS = {
    "int": 'f"{{{v}}}," if type({v}) is int else {part}({v})',
    "bool": '"t," if {v} is True else "f," if {v} is False else {part}({v})',
    "datetime": 'f"{{({v} - (_EPOCH if {v}.tzinfo is not None else _EPOCH_NAIVE)) // _MICROSECOND}}," '
                'if type({v}) is _DATETIME else {part}({v})',
    "text": 'f"{{len({v})}}:{{{v}}}" if type({v}) is str else {part}({v})',
    "enum": '{part}({v})',
}


def text_former(columns: Sequence[str], kinds: Sequence[str]):
    """row (a mapping) -> the text form of its ``columns`` (of these kinds): ``text_form``
    for every row of a table, as one function written for the table's columns, with no
    call per value of the common types."""
    lines = ["def text_of(row):", "    get = row.get"]
    lines += [f"    v{k} = get({column!r})" for k, column in enumerate(columns)]
    parts = [_INLINE_PARTS[kind].format(v=f"v{k}", part=f"part{k}") for k, kind in enumerate(kinds)]
    lines.append(f"    return ''.join(({''.join(f'{p}, ' for p in parts)}))")
    scope = {"_EPOCH": _EPOCH, "_EPOCH_NAIVE": _EPOCH_NAIVE, "_MICROSECOND": _MICROSECOND, "_DATETIME": dt.datetime,
             **{f"part{k}": TEXT_FORMS[kind] for k, kind in enumerate(kinds)}}
    exec("\n".join(lines), scope)  # noqa: S102 - the code above, from column names as literals
    return scope["text_of"]


def text_form_md5(values: Sequence[Any], forms: Sequence) -> str:
    """md5 (hex) of the values' text form."""
    return hashlib.md5(text_form(values, forms).encode("utf-8", "surrogatepass")).hexdigest()


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


def chunks_at(batches: Iterable[Mapping[int, Any]], starts: Sequence[int],
              ) -> Iterator[tuple[int | None, int | None, dict[int, Any]]]:
    """Source batches keyed by id (ascending, consecutive batches of a keyset scan) → one
    ``(lo, hi, rows)`` per range ``[lo, hi)`` cut at ``starts`` (ascending): the first from
    None (-inf), the last to None (+inf), each yielded even when empty, so that every id
    of the line lies in exactly one and a target row whose id the source lacks is still
    compared. Cut where the source's own ids fall, the chunks follow its density."""
    edges = [None, *starts, None]
    k, rows = 0, {}
    for batch in batches:
        if not batch:
            continue
        first = next(iter(batch))
        while edges[k + 1] is not None and first >= edges[k + 1]:
            yield edges[k], edges[k + 1], rows
            k, rows = k + 1, {}
        hi = edges[k + 1]
        if hi is None or next(reversed(batch)) < hi:  # the common case: a whole batch in one chunk
            rows.update(batch)
            continue
        for i, value in batch.items():
            while edges[k + 1] is not None and i >= edges[k + 1]:
                yield edges[k], edges[k + 1], rows
                k, rows = k + 1, {}
            rows[i] = value
    while True:
        yield edges[k], edges[k + 1], rows
        k, rows = k + 1, {}
        if k == len(edges) - 1:
            return


def compare_range(lo: int | None, hi: int | None, source: Mapping[int, Any], target: Mapping[int, Any]) -> ChunkDiff:
    """Compare one range's row hashes (or digests) by id; an empty ChunkDiff when they are equal."""
    result = ChunkDiff(lo, hi)
    if source == target:
        return result
    result.missing = sorted(source.keys() - target.keys())
    result.extra = sorted(target.keys() - source.keys())
    result.changed = sorted(i for i in source.keys() & target.keys() if source[i] != target[i])
    return result


# --- per-chunk sums (what --sync asks each database for) ----------------------------

DIGEST_HEX = 12  # hex digits of a row's database digest in a chunk's text (dialects.ChunkRowDigests)
# A row's text: "0", its digest, "0", its id's place in the chunk. Read as a hex number it
# is digest * 256 + place, and the leading 0 leaves room for the carry of summing 16 of them.
_ROW_TEXT = 1 + DIGEST_HEX + 2
_ROWS_MODULUS = 16 ** _ROW_TEXT - 1


def chunk_digest_sum(text: str) -> int:
    """The sum of the row digests in a chunk's text. The text read as one number has the
    rows as its digits in base 16**15, and a number is congruent to the sum of its digits
    modulo the base - 1 (casting out nines). At most 16 rows sum to less than that, and
    their places (at most 240) stay in the low byte: one C-level parse per chunk."""
    return (int(text, 16) % _ROWS_MODULUS) >> 8 if text else 0


def chunk_row_digests(start: int, rows: int, text: str) -> dict[int, int]:
    """Id -> database digest of the ``rows`` rows in the text of the chunk at ``start``;
    a text cut short (a server limit on aggregated text) is refused, never half read."""
    if len(text) != rows * _ROW_TEXT:
        raise ValueError(f"the digests of chunk {start} are {len(text)} characters long, not {rows * _ROW_TEXT}")
    return {start + int(text[i + _ROW_TEXT - 1], 16): int(text[i + 1:i + 1 + DIGEST_HEX], 16)
            for i in range(0, len(text), _ROW_TEXT)}


def place_moments(start: int, digests: Mapping[int, int]) -> tuple[int, int, int, int]:
    """A chunk's (rows, sum of digests, sum of digest × place, sum of digest × place²), its
    row ids' places counted from ``start``: what the target sums of its recorded digests."""
    total = weighted = squared = 0
    for i, digest in digests.items():
        place = i - start
        total += digest
        weighted += digest * place
        squared += digest * place * place
    return len(digests), total, weighted, squared


def single_difference(start: int, width: int, mine: Mapping[int, int], theirs: Sequence[int]) -> ChunkDiff | None:
    """The one row in which a chunk's sides differ, found from the source's row digests
    (``mine``, id -> digest) and the target's ``place_moments`` alone; None when it cannot
    be told that way (then compare the chunk row by row).

    The differences (source - target) of the sums are Σδ, Σδ·p and Σδ·p², over the places
    p whose digests differ by δ (a row on one side only: δ = ± its digest). One row at
    place q gives Σδ·p = q·Σδ and Σδ·p² = q²·Σδ; rows at two distinct places never give
    both for an integer q (Σδ(p-q) = Σδ(p-q)² = 0 has no solution then), and rows at three
    or more only by an exact coincidence of their digests, which are independent keyed or
    database digests of 48 bits and more (each covers its row's id). A row whose digest is
    0 adds nothing to the sums: a zero in ``mine``, or a changed row whose target digest
    would be 0, sends the chunk row by row."""
    if 0 in mine.values():
        return None
    rows, total, weighted, squared = place_moments(start, mine)
    d_rows, d_total = rows - theirs[0], total - theirs[1]
    d_weighted, d_squared = weighted - theirs[2], squared - theirs[3]
    if d_total == 0 or d_weighted % d_total:
        return None
    place = d_weighted // d_total
    if not 0 <= place < width or d_squared != place * place * d_total:
        return None
    i, result = start + place, ChunkDiff(start, start + width)
    if d_rows == 0 and i in mine and mine[i] != d_total:
        result.changed.append(i)
    elif d_rows == 1 and mine.get(i) == d_total:
        result.missing.append(i)
    elif d_rows == -1 and i not in mine:
        result.extra.append(i)
    else:
        return None
    return result


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


def id_parts(bounds: tuple[int, int] | None, rows: int, part_rows: int, width: int,
             ) -> list[tuple[int | None, int | None]]:
    """``(lo, hi)`` id ranges (lo <= id < hi; None: no bound) covering the whole id line in
    about ``rows / part_rows`` parts of even id width between ``bounds`` (the lowest and
    highest id), cut on ``width``-wide chunk boundaries."""
    if bounds is None or rows <= part_rows:
        return [(None, None)]
    low, high = bounds
    parts = -(-rows // part_rows)
    cuts = sorted({(low + (high - low) * k // parts) // width * width for k in range(1, parts)})
    edges = [None, *cuts, None]
    return list(zip(edges, edges[1:]))
