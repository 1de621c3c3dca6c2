"""A set of row ids as a bitmap: one bit per id, so a million ids cost 125 KB.

Legacy ids are dense auto-increment integers; the rare huge id goes to a plain set.
"""
from __future__ import annotations

from typing import Iterable, Mapping

_BITMAP_LIMIT = 1 << 31


class IdSet:
    def __init__(self, ids: Iterable[int] = ()):
        self._bits = bytearray()
        self._sparse: set[int] = set()
        self._len = 0
        self.update(ids)

    def add(self, i: int) -> None:
        if i < 0 or i >= _BITMAP_LIMIT:
            if i not in self._sparse:
                self._sparse.add(i)
                self._len += 1
            return
        byte, bit = divmod(i, 8)
        if byte >= len(self._bits):
            self._bits.extend(bytes(max(byte + 1 - len(self._bits), len(self._bits))))
        if not self._bits[byte] & (1 << bit):
            self._bits[byte] |= 1 << bit
            self._len += 1

    def discard(self, i: int) -> None:
        if i not in self:
            return
        self._len -= 1
        if i < 0 or i >= _BITMAP_LIMIT:
            self._sparse.discard(i)
        else:
            byte, bit = divmod(i, 8)
            self._bits[byte] &= ~(1 << bit)

    def update(self, ids: Iterable[int]) -> None:
        """Add ``ids``, in any order; runs of consecutive ids go in byte by byte."""
        first = last = None
        for i in ids:
            if last is not None and i == last + 1:
                last = i
                continue
            if first is not None:
                self.add_range(first, last)
            first = last = i
        if first is not None:
            self.add_range(first, last)

    @classmethod
    def from_ranges(cls, ranges: Iterable[tuple[int, int]]) -> IdSet:
        """The ids of the ``(first, last)`` ranges (both included)."""
        ids = cls()
        for first, last in ranges:
            ids.add_range(first, last)
        return ids

    def add_range(self, first: int, last: int) -> None:
        """Add every id from ``first`` to ``last`` (included): byte by byte, not bit by bit,
        inside the bitmap (a table's ids, read as a few ranges of consecutive ids)."""
        if first == last:
            self.add(first)
            return
        low, high = max(first, 0), min(last, _BITMAP_LIMIT - 1)
        for i in (*range(first, min(last + 1, 0)), *range(max(first, _BITMAP_LIMIT), last + 1)):
            self.add(i)
        if low > high:
            return
        full_from, full_to = -(-low // 8), (high + 1) // 8  # the bytes wholly inside
        if full_from >= full_to:  # within one or two bytes
            for i in range(low, high + 1):
                self.add(i)
            return
        for i in (*range(low, full_from * 8), *range(full_to * 8, high + 1)):
            self.add(i)
        if full_to > len(self._bits):
            self._bits.extend(bytes(full_to - len(self._bits)))
        held = int.from_bytes(self._bits[full_from:full_to], "little").bit_count()
        self._bits[full_from:full_to] = b"\xff" * (full_to - full_from)
        self._len += (full_to - full_from) * 8 - held

    def __contains__(self, i) -> bool:
        if i is None:
            return False
        if i < 0 or i >= _BITMAP_LIMIT:
            return i in self._sparse
        byte, bit = divmod(i, 8)
        return byte < len(self._bits) and bool(self._bits[byte] & (1 << bit))

    def __len__(self) -> int:
        return self._len

    def difference(self, other: IdSet) -> list[int]:
        """The ids here and not in ``other``, ascending: the bitmaps compared as two
        integers, the ids read only from the bytes that differ."""
        size = len(self._bits)
        left = int.from_bytes(self._bits, "little") & ~int.from_bytes(other._bits[:size], "little")
        out = []
        if left:
            for byte, value in enumerate(left.to_bytes(size, "little")):
                if value:
                    out.extend(byte * 8 + bit for bit in range(8) if value & (1 << bit))
        sparse = sorted(i for i in self._sparse if i not in other)
        return [*(i for i in sparse if i < 0), *out, *(i for i in sparse if i >= 0)]

    def __and__(self, other: IdSet) -> IdSet:
        """The ids in both: the bitmaps ANDed as two integers."""
        size = min(len(self._bits), len(other._bits))
        both = int.from_bytes(self._bits[:size], "little") & int.from_bytes(other._bits[:size], "little")
        out = IdSet()
        out._bits = bytearray(both.to_bytes(size, "little"))
        out._sparse = {i for i in self._sparse if i in other}
        out._len = both.bit_count() + len(out._sparse)
        return out

    def __iter__(self):
        """The ids, the bitmap's ascending, then the others."""
        for byte, value in enumerate(self._bits):
            if value:
                yield from (byte * 8 + bit for bit in range(8) if value & (1 << bit))
        yield from sorted(self._sparse)


class _AllIds:
    """Holds every id: what a context query sees when nothing is excluded yet."""

    def __contains__(self, i) -> bool:
        return i is not None


class _EveryTable(Mapping):
    def __getitem__(self, name):
        return _AllIds()

    def __iter__(self):
        return iter(())

    def __len__(self) -> int:
        return 0


# ``loaded`` for a context query run before anything is loaded (preflight refusals)
EVERY_ID: Mapping = _EveryTable()
