"""Password and PIN transforms: pure functions, no database, no Django.

Django stores ``<algorithm>$<fields...>``; werkzeug checks ``<method>$<salt>$<hex>``.
Both hash the UTF-8 bytes of password and salt, so PBKDF2 and scrypt hashes can be
re-encoded losslessly: keep the salt string, hex-encode the base64 digest.
"""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from werkzeug.security import generate_password_hash

# Outcomes, as counted in the report.
CONVERTED = "converted"  # werkzeug hash in password_hash
KEPT_LEGACY = "kept_legacy"  # Django hash in legacy_password_hash, upgraded on login
MUST_RESET = "must_reset"  # nothing kept: weak, unusable or unknown

# The algorithm names of the password hashers Django has shipped (django.contrib.auth.hashers).
DJANGO_HASHERS = frozenset({
    "pbkdf2_sha256", "pbkdf2_sha1", "argon2", "bcrypt_sha256", "bcrypt", "scrypt", "sha1", "md5",
    "unsalted_sha1", "unsalted_md5", "crypt",
})

# Hashers werkzeug cannot express but flask_models.verify_password checks
# (scrypt only when its cost parameters are too small for werkzeug's check).
LEGACY_VERIFIABLE = ("argon2", "bcrypt_sha256", "scrypt")


@dataclass(frozen=True)
class PasswordOutcome:
    hasher: str
    outcome: str
    password_hash: str | None = None
    legacy_password_hash: str | None = None

    @property
    def must_reset_password(self) -> bool:
        return self.outcome == MUST_RESET


def hasher_name(encoded: str | None) -> str:
    """The Django hasher of an encoded password, as the report names it."""
    if not encoded:
        return "empty"
    if encoded.startswith("!"):
        return "unusable"
    prefix = encoded.split("$", 1)[0] if "$" in encoded else ""
    # only a hasher Django ships is named: whatever else precedes a "$" may be a plain password
    return prefix if prefix in DJANGO_HASHERS else "unsalted_or_unknown"


def _b64_to_hex(data: str) -> str:
    return base64.b64decode(data.encode("ascii"), validate=True).hex()


def _pbkdf2(digest: str, parts: list[str]) -> str | None:
    iterations, salt, b64 = parts
    if not iterations.isdigit() or int(iterations) < 1 or not salt or "$" in salt:
        return None
    return f"pbkdf2:{digest}:{int(iterations)}${salt}${_b64_to_hex(b64)}"


def werkzeug_can_check_scrypt(n: int, r: int, p: int) -> bool:
    """werkzeug passes maxmem=132*n*r*p to OpenSSL, which needs 128*r*(n+p+2) bytes:
    tiny cost parameters would make check_password_hash raise."""
    return n > 1 and r > 0 and p > 0 and 128 * r * (n + p + 2) <= 132 * n * r * p


def _scrypt(parts: list[str]) -> str | None:
    n, salt, r, p, b64 = parts
    if not (n.isdigit() and r.isdigit() and p.isdigit()) or not salt:
        return None
    if not werkzeug_can_check_scrypt(int(n), int(r), int(p)):
        return None
    key = base64.b64decode(b64.encode("ascii"), validate=True)
    if len(key) != 64:  # werkzeug derives 64-byte keys, like Django
        return None
    return f"scrypt:{int(n)}:{int(r)}:{int(p)}${salt}${key.hex()}"


_CONVERTERS = {
    "pbkdf2_sha256": (3, lambda parts: _pbkdf2("sha256", parts)),
    "pbkdf2_sha1": (3, lambda parts: _pbkdf2("sha1", parts)),
    "scrypt": (5, _scrypt),
}


def convert_django_hash(encoded: str | None) -> PasswordOutcome:
    """Re-encode a Django password hash for werkzeug, keep it for upgrade, or drop it."""
    hasher = hasher_name(encoded)
    if hasher in _CONVERTERS:
        nparts, convert = _CONVERTERS[hasher]
        parts = encoded.split("$")[1:]
        if len(parts) == nparts:
            try:
                converted = convert(parts)
            except (binascii.Error, ValueError):
                converted = None
            if converted is not None:
                return PasswordOutcome(hasher, CONVERTED, password_hash=converted)
    if hasher in LEGACY_VERIFIABLE and legacy_hash_is_checkable(encoded):
        return PasswordOutcome(hasher, KEPT_LEGACY, legacy_password_hash=encoded)
    if hasher in _CONVERTERS:
        return PasswordOutcome(hasher, MUST_RESET)
    return PasswordOutcome(hasher, MUST_RESET)


def legacy_hash_is_checkable(encoded: str) -> bool:
    """Keep only what flask_models.verify_password can parse: never a dead hash."""
    from flask_models.passwords import legacy_hash_parses

    return legacy_hash_parses(encoded)


def check_pin_hash_method(method: str, max_length: int | None = None) -> None:
    """Raise ValueError unless werkzeug accepts ``method`` and its hashes fit ``max_length``."""
    try:
        sample = generate_password_hash("00000", method=method)
    except ValueError as exc:
        raise ValueError(f"not a werkzeug method: {exc}") from None
    if max_length is not None and len(sample) > max_length:
        raise ValueError(f"its hashes take {len(sample)} characters, the target's PIN column holds "
                         f"{max_length} (pbkdf2:sha256 fits, e.g. pbkdf2:sha256:200000)")


def hash_pin(pin: str, method: str) -> str:
    return generate_password_hash(pin, method=method)


def hash_pins(pins: list[str], method: str) -> list[str]:
    """Process-pool entry point: one task hashes a chunk of PINs."""
    return [generate_password_hash(pin, method=method) for pin in pins]


def die_with_parent(parent_pid: int) -> None:
    """Process-pool initializer: the worker ends when the process that started it ends,
    however that ends (kill -9 included), and leaves Ctrl-C to its parent.

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``; everywhere: a thread that watches the
    parent pid (it also covers a parent gone before the prctl)."""
    import os
    import signal
    import sys
    import threading
    import time

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the pool itself
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="bridge-parent-watch", daemon=True).start()
