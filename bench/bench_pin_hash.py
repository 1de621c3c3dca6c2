"""Which werkzeug method can hash a PIN into DataDeckv2's students.pin_hash (VARCHAR(128)),
and how fast is it on this machine?

    .venv/bin/python bench/bench_pin_hash.py [--seconds 3]

For each candidate: the stored length, whether it fits 128 characters, and the measured
single-core rate of ``generate_password_hash`` (= the rate of ``check_password_hash``:
the same key derivation). From the rate: the single-core time to try every 5-digit PIN
against one stolen hash, and what the real app's student login costs, since it checks
the typed PIN against every candidate student's hash in turn.
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from importlib.metadata import version

from werkzeug.security import check_password_hash, generate_password_hash

PIN_HASH_MAX = 128  # flask_models.datadeckv2.PIN_HASH_MAX
CANDIDATES = [
    "scrypt",  # werkzeug's default (scrypt:32768:8:1)
    "pbkdf2:sha512:1000000",
    "pbkdf2",  # pbkdf2:sha256 at werkzeug's default iteration count
    "pbkdf2:sha256:600000",
    "pbkdf2:sha256:200000",
    "pbkdf2:sha256:100000",
]


def rate(method: str, seconds: float) -> tuple[float, int]:
    n, start = 0, time.perf_counter()
    while True:
        generate_password_hash(f"{n % 100000:05d}", method=method)
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and n >= 3:
            return n / elapsed, n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0, help="time spent per method")
    args = parser.parse_args()
    print(f"werkzeug {version('werkzeug')}, Python {platform.python_version()}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs (single-core rates below)")
    header = f"{'method':<24} {'stored as':<26} {'len':>4} {'fits':>5} {'hashes/s':>9} {'ms/hash':>8} " \
             f"{'all 1e5 PINs':>13} {'login, 30 st.':>14} {'login, 500 st.':>15}"
    print(header)
    print("-" * len(header))
    for method in CANDIDATES:
        h = generate_password_hash("12345", method=method)
        assert check_password_hash(h, "12345") and not check_password_hash(h, "12346")
        stored = h.split("$")[0]
        per_s, _ = rate(method, args.seconds)
        ms = 1000 / per_s
        brute = 100_000 / per_s
        print(f"{method:<24} {stored:<26} {len(h):>4} {('yes' if len(h) <= PIN_HASH_MAX else 'NO'):>5} "
              f"{per_s:>9.1f} {ms:>8.1f} {brute / 3600:>11.1f} h {30 * ms / 1000:>12.1f} s "
              f"{500 * ms / 1000:>13.1f} s")


if __name__ == "__main__":
    main()
