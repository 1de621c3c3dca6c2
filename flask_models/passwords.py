"""Password checks shared by the Flask app and the migration's verifier.

``password_hash`` holds werkzeug hashes; ``legacy_password_hash`` holds Django
argon2 / bcrypt_sha256 hashes that werkzeug cannot express. A successful check
against the legacy column asks the caller to store a fresh werkzeug hash.
"""
from __future__ import annotations

import hashlib
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


LEGACY_CHECKERS = {
    "argon2": check_django_argon2,
    "bcrypt_sha256": check_django_bcrypt_sha256,
}


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
