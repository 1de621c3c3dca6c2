"""Password re-encoding and PIN hashing: pure functions, no database."""
import pytest
from django.contrib.auth import hashers as dj
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.security import check_password_hash

from flask_models import verify_password
from migration_bridge.passwords import (
    CONVERTED,
    KEPT_LEGACY,
    MUST_RESET,
    convert_django_hash,
    hash_pin,
    hasher_name,
    werkzeug_can_check_scrypt,
)

PLAIN = "Tr0ub4dor&3 – ünïcode 🎉"

EXPECTED = {
    "pbkdf2_sha256": CONVERTED,
    "pbkdf2_sha1": CONVERTED,
    "scrypt": CONVERTED,
    "argon2": KEPT_LEGACY,
    "bcrypt_sha256": KEPT_LEGACY,
    "md5": MUST_RESET,
}


def _row(outcome):
    return {
        "password_hash": outcome.password_hash,
        "legacy_password_hash": outcome.legacy_password_hash,
        "must_reset_password": outcome.must_reset_password,
    }


@pytest.mark.parametrize("hasher", sorted(EXPECTED))
def test_every_django_hasher_has_its_outcome_and_kept_hashes_verify(hasher):
    encoded = dj.make_password(PLAIN, hasher=hasher)
    outcome = convert_django_hash(encoded)
    assert (outcome.hasher, outcome.outcome) == (hasher, EXPECTED[hasher])
    check = verify_password(_row(outcome), PLAIN)
    wrong = verify_password(_row(outcome), PLAIN + "x")
    if outcome.outcome == MUST_RESET:
        assert outcome.password_hash is None and outcome.legacy_password_hash is None
        assert not check
    else:
        assert check.ok and not wrong.ok
        assert check.needs_rehash == (outcome.outcome == KEPT_LEGACY)
    if outcome.password_hash:
        assert check_password_hash(outcome.password_hash, PLAIN)


@pytest.mark.parametrize("encoded,name", [
    (dj.make_password(None), "unusable"),
    ("", "empty"),
    (None, "empty"),
    ("5f4dcc3b5aa765d61d8327deb882cf99", "unsalted_or_unknown"),
    ("sha1$abc$deadbeef", "sha1"),
    ("crypt$$abN8gqC0LYB1s", "crypt"),
    ("Summer$2024!", "unsalted_or_unknown"),  # a plain password with a "$": never named after its start
])
def test_weak_unusable_and_unknown_hashes_must_reset(encoded, name):
    outcome = convert_django_hash(encoded)
    assert outcome.hasher == name == hasher_name(encoded)
    assert outcome.outcome == MUST_RESET and outcome.must_reset_password
    assert outcome.password_hash is None and outcome.legacy_password_hash is None


SALTS = st.text(alphabet=st.characters(blacklist_characters="$", blacklist_categories=("Cs",)), min_size=1, max_size=30)
PASSWORDS = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(password=PASSWORDS, salt=SALTS, iterations=st.integers(1, 50),
       algorithm=st.sampled_from(["pbkdf2_sha256", "pbkdf2_sha1"]))
def test_pbkdf2_reencoding_is_lossless(password, salt, iterations, algorithm):
    hasher = dj.get_hasher(algorithm)
    encoded = hasher.encode(password, salt, iterations=iterations)
    outcome = convert_django_hash(encoded)
    assert outcome.outcome == CONVERTED
    assert check_password_hash(outcome.password_hash, password)
    assert not check_password_hash(outcome.password_hash, password + "!")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(password=PASSWORDS, salt=SALTS, log_n=st.integers(1, 9), r=st.integers(1, 4), p=st.integers(1, 2))
def test_scrypt_hashes_always_verify_converted_or_kept(password, salt, log_n, r, p):
    encoded = dj.ScryptPasswordHasher().encode(password, salt, n=2 ** log_n, r=r, p=p)
    outcome = convert_django_hash(encoded)
    # werkzeug's check cannot run tiny cost parameters: those are kept for upgrade on login
    assert outcome.outcome == (CONVERTED if werkzeug_can_check_scrypt(2 ** log_n, r, p) else KEPT_LEGACY)
    if outcome.password_hash:
        assert check_password_hash(outcome.password_hash, password)
    assert verify_password(_row(outcome), password).ok
    assert not verify_password(_row(outcome), password + "!").ok


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.text(max_size=120),
    st.builds(lambda a, b: f"{a}${b}", st.sampled_from(["pbkdf2_sha256", "pbkdf2_sha1", "scrypt", "argon2"]),
              st.text(max_size=80)),
))
def test_garbage_never_yields_a_hash_werkzeug_cannot_parse(encoded):
    outcome = convert_django_hash(encoded)
    if outcome.password_hash is not None:
        check_password_hash(outcome.password_hash, "anything")  # must not raise ValueError
    verify_password(_row(outcome), "anything")  # nor may the legacy column


@pytest.mark.parametrize("method", ["pbkdf2:sha256:1000", "scrypt:1024:8:1"])
def test_hash_pin_is_werkzeug_format_and_salted(method):
    first, second = hash_pin("04217", method), hash_pin("04217", method)
    assert first != second  # salted
    assert "04217" not in first
    assert check_password_hash(first, "04217") and not check_password_hash(first, "04218")
