"""Keyed fingerprints of source rows, kept in the target's bookkeeping for ``--sync``.

A salted column (a PIN hash) cannot be compared with its source by value, so each
source row is remembered as a MAC of everything that shapes its target row: its own
values (the plain PIN included) and what its declared contexts gave it (an inferred
author, an archiving date; ``RowPath.fingerprint``). The key never leaves the legacy
host (a setting, by default derived from Django's SECRET_KEY): without it, a stored
fingerprint cannot be matched to a PIN by trying all 100,000 of them.
"""
from __future__ import annotations

import hashlib

# 2: one entry per context an entity declares (was: the same two contexts for every entity)
FINGERPRINT_VERSION = "2"


def fingerprint_key(configured: str, secret_key: str) -> bytes:
    """64 bytes for keyed BLAKE2b: the configured key, or one derived from SECRET_KEY."""
    material = configured or f"migration_bridge.fingerprint:{secret_key}"
    return hashlib.sha512(material.encode("utf-8")).digest()


def row_fingerprint(key: bytes, values: tuple, context: tuple) -> str:
    # repr is exact and deterministic for the driver's types (datetime, Decimal, UUID, str)
    data = repr((values, context)).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, key=key, digest_size=16).hexdigest()
