"""Password checks shared by the Flask app and the migration's verifier.

``password_hash`` holds werkzeug hashes; ``legacy_password_hash`` holds Django
argon2 / bcrypt_sha256 hashes that werkzeug cannot express. A successful check
against the legacy column asks the caller to store a fresh werkzeug hash.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass

from werkzeug.security import check_password_hash


@dataclass(frozen=True)
class PasswordCheck:
    ok: bool
    needs_rehash: bool = False

    def __bool__(self) -> bool:
        return self.ok


def check_django_argon2(encoded: str, password: str) -> bool:
    import argon2

    if not encoded.startswith("argon2$"):
        return False
    # Django stores "argon2" + the argon2 library's own "$argon2id$v=19$..." string.
    try:
        return argon2.PasswordHasher().verify(encoded[len("argon2"):], password)
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        return False


def check_django_bcrypt_sha256(encoded: str, password: str) -> bool:
    import bcrypt

    algorithm, _, data = encoded.partition("$")
    if algorithm != "bcrypt_sha256" or not data:
        return False
    # Django pre-hashes with SHA-256 (hex) so long passwords are not truncated at 72 bytes.
    prehashed = hashlib.sha256(password.encode()).hexdigest().encode("ascii")
    try:
        return bcrypt.checkpw(prehashed, data.encode("ascii"))
    except ValueError:
        return False


def _django_scrypt_parts(encoded: str):
    algorithm, n, salt, r, p, b64 = encoded.split("$")
    if algorithm != "scrypt":
        raise ValueError(algorithm)
    key = base64.b64decode(b64.encode("ascii"), validate=True)
    return int(n), salt, int(r), int(p), key


def check_django_scrypt(encoded: str, password: str) -> bool:
    """Django scrypt hashes whose cost is too small for werkzeug's own check."""
    try:
        n, salt, r, p, key = _django_scrypt_parts(encoded)
        derived = hashlib.scrypt(password.encode(), salt=salt.encode(), n=n, r=r, p=p,
                                 maxmem=128 * r * (n + p + 2) + 1024 * 1024, dklen=len(key))
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(derived, key)


LEGACY_CHECKERS = {
    "argon2": check_django_argon2,
    "bcrypt_sha256": check_django_bcrypt_sha256,
    "scrypt": check_django_scrypt,
}


def legacy_hash_parses(encoded: str) -> bool:
    """True when ``encoded`` is a hash one of LEGACY_CHECKERS can evaluate."""
    algorithm = encoded.partition("$")[0]
    try:
        if algorithm == "argon2":
            import argon2

            argon2.extract_parameters(encoded[len("argon2"):])
            return True
        if algorithm == "bcrypt_sha256":
            data = encoded.partition("$")[2]
            return data.startswith("$2") and len(data) == 60
        if algorithm == "scrypt":
            n, salt, r, p, key = _django_scrypt_parts(encoded)
            return n > 1 and (n & (n - 1)) == 0 and r > 0 and p > 0 and bool(salt) and len(key) > 0
    except Exception:  # noqa: BLE001 - any parse failure means the hash is not kept
        return False
    return False


def verify_password(row, plaintext: str) -> PasswordCheck:
    """Check ``plaintext`` against a users/observers row (object or mapping).

    ``needs_rehash`` is true when the match came from ``legacy_password_hash``:
    the caller should store ``generate_password_hash(plaintext)`` in
    ``password_hash`` and clear ``legacy_password_hash``.
    """
    get = row.get if isinstance(row, dict) else (lambda name: getattr(row, name, None))
    if get("must_reset_password"):
        return PasswordCheck(False)
    werkzeug_hash = get("password_hash")
    if werkzeug_hash:
        return PasswordCheck(check_password_hash(werkzeug_hash, plaintext))
    legacy_hash = get("legacy_password_hash")
    if legacy_hash:
        checker = LEGACY_CHECKERS.get(legacy_hash.partition("$")[0])
        if checker is not None and checker(legacy_hash, plaintext):
            return PasswordCheck(True, needs_rehash=True)
    return PasswordCheck(False)
