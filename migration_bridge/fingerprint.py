"""What the target's bookkeeping remembers of each source row, for ``--sync``.

Per row, two values (``bridge_row_digests``):

- ``row_digest``, an integer under 2**49: the **database's own** 48-bit digest of the
  row's non-secret fields (``dialects.RowDigest``: MD5 or SHA1 over the fields, computed by
  the legacy database, so a sync can ask the database for per-chunk sums instead of pulling
  every row through Python), **plus** a 48-bit keyed digest of its secret fields and its
  id computed here (``secret_part``). The key never reaches the legacy database, its query log or the
  target: without it, a stored digest cannot be matched to a PIN by trying all 100,000
  of them. The database part only says whether a secret is NULL, empty or set.
- ``context_digest``: a keyed digest of what the entity's declared contexts gave the row
  (an inferred author, an archiving date), None when they gave it nothing. A context
  depends on other rows, so it is compared apart from the row's own values.

Derived rows (made in Python, no database row to digest) get a keyed digest of all
their values instead of the database part.

The key is a setting, by default derived from Django's SECRET_KEY.
"""
from __future__ import annotations

import hashlib

# 5: the keyed secret part covers the row's id (4: the secrets alone, so two rows of one
# chunk swapping PINs left its sum as it was; 3: MD5 on MySQL/MariaDB, not SHA1; 2: one
# keyed BLAKE2b per row over everything, computed in Python)
FINGERPRINT_VERSION = "5"
# the key of a model row's database digest, on rows read by export and sync (source.py)
ROW_DIGEST = "_row_digest"
DIGEST_BITS = 48  # per row (plus a 48-bit secret part): a chunk's sum fits any SQL BIGINT


def fingerprint_key(configured: str, secret_key: str) -> bytes:
    """64 bytes for keyed BLAKE2b: the configured key, or one derived from SECRET_KEY."""
    material = configured or f"migration_bridge.fingerprint:{secret_key}"
    return hashlib.sha512(material.encode("utf-8")).digest()


def _keyed(key: bytes, values: tuple, size: int) -> bytes:
    # repr is exact and deterministic for the driver's types (datetime, Decimal, UUID, str)
    return hashlib.blake2b(repr(values).encode("utf-8", "surrogatepass"), key=key, digest_size=size).digest()


def keyed_digest(key: bytes, values: tuple) -> int:
    """A 48-bit keyed digest of ``values`` (derived rows, secret parts)."""
    return int.from_bytes(_keyed(key, values, DIGEST_BITS // 8), "big")


def secret_part(key: bytes, source_id: int, secrets: tuple) -> int:
    """What a row's secret fields add to its digest: 0 when none is set (NULL or empty;
    the database part tells those apart), else a keyed digest of them and of the row's
    id. The id is in it so that two rows swapping their PINs change their digests (and
    their chunk's sum), and two students with one PIN do not show it by equal parts."""
    if not any(secrets):
        return 0
    return keyed_digest(key, ("secret", source_id, secrets))


def pin_digest(key: bytes, entity: str, source_id: int, method: str, pin) -> str:
    """A row's PIN and the method it is hashed with, keyed: a sync writes the hash it wrote
    before only for the same digest (bookkeeping.pin_hashes). The row is in it, so that
    two students with one PIN do not show it by equal digests."""
    return _keyed(key, ("pin", entity, source_id, method, pin), 16).hex()


def context_digest(key: bytes, values: tuple) -> str | None:
    """The row's context values, keyed; None when every context gave the row nothing."""
    if all(v is None for v in values):
        return None
    return _keyed(key, ("context", values), 16).hex()


def row_digest(key: bytes, source_id: int, database_digest: int | None, secrets: tuple, values: tuple) -> int:
    """The stored digest of one source row: the database's digest plus the keyed secret
    part; a derived row (no database digest) is keyed over all its ``values``."""
    if database_digest is None:
        return keyed_digest(key, values)
    return int(database_digest) + secret_part(key, source_id, secrets)
