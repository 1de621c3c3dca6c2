"""PIN hashing in a process pool, with progress and an ETA: the CPU-heavy part of a run."""
from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from .passwords import die_with_parent, hash_pins
from .progress import Progress, format_seconds

log = logging.getLogger("migration_bridge")

DEFAULT_PIN_HASH_METHOD = "scrypt"  # werkzeug's default, what the Flask app uses for new PINs
DRY_RUN_PIN_HASH_METHOD = "pbkdf2:sha256:1"  # --dry-run: checks the path, not the cost
PIN_CHUNK = 16  # PINs per task of the pool (progress moves per task)


class PinPool:
    """Hashes the PINs of each batch; ``workers`` spawn processes, started on first use."""

    def __init__(self, method: str, workers: int, interactive: bool | None = None):
        self.method, self.workers, self.interactive = method, workers, interactive
        # reused: PINs a sync found unchanged, whose earlier hash was written again
        self.stats = {"method": method, "workers": workers, "hashed": 0, "reused": 0, "seconds": 0.0}
        self._pool: ProcessPoolExecutor | None = None
        self._progress: Progress | None = None

    def hash(self, pins: list[str], label: str, total) -> list[str]:
        """Hashes of ``pins``; ``total()``: how many the entity has, for the ETA (asked once)."""
        started = time.monotonic()
        if self._progress is None:
            self._progress = Progress(f"{label}: PIN hashing", total(), unit="hashes", interactive=self.interactive)
        progress = self._progress
        if self.workers == 1 or len(pins) < 2:
            hashes = []
            for i in range(0, len(pins), PIN_CHUNK):
                hashes.extend(hash_pins(pins[i:i + PIN_CHUNK], self.method))
                progress.update(min(PIN_CHUNK, len(pins) - i))
        else:
            if self._pool is None:
                # spawn: workers inherit no database connection from this process; each
                # one ends when this process does, however it ends (kill -9 included)
                self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=get_context("spawn"),
                                                 initializer=die_with_parent, initargs=(os.getpid(),))
            # small chunks, so that the progress moves and an interrupt waits for little
            size = max(1, min(PIN_CHUNK, -(-len(pins) // self.workers)))
            chunks = [pins[i:i + size] for i in range(0, len(pins), size)]
            hashes = []
            for part in self._pool.map(hash_pins, chunks, [self.method] * len(chunks)):
                hashes.extend(part)
                progress.update(len(part))
        self.stats["hashed"] += len(hashes)
        self.stats["seconds"] += time.monotonic() - started
        return hashes

    def end_entity(self) -> None:
        if self._progress is not None:
            self._progress.close()
            self._progress = None

    def as_report(self) -> dict:
        seconds = self.stats["seconds"]
        return {**self.stats, "hashes_per_s": round(self.stats["hashed"] / seconds, 1) if seconds else None}

    def close(self, kill: bool = False) -> None:
        """Stop the workers; ``kill`` (a failed or interrupted run): at once, without
        waiting for the chunks they are hashing."""
        self.end_entity()
        if self._pool is None:
            return
        pool, self._pool = self._pool, None
        if not kill:
            pool.shutdown(cancel_futures=True)
            return
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            try:
                process.kill()
            except Exception:  # noqa: BLE001 - already gone
                pass
        try:
            # waits for the pool's own thread only (its workers are gone): left running, it
            # would make an interrupted command end without releasing the pool's semaphores
            pool.shutdown(wait=True, cancel_futures=True)
        except Exception:  # noqa: BLE001 - a broken pool is what we wanted
            pass


def estimate_cost(count: int, workers: int, method: str = DEFAULT_PIN_HASH_METHOD) -> dict:
    """--dry-run hashes PINs cheaply; what the real method would cost, measured here."""
    started = time.monotonic()
    hash_pins(["00000"] * 3, method)
    per_hash = (time.monotonic() - started) / 3
    workers = min(workers, os.cpu_count() or 1)
    seconds = count * per_hash / workers
    log.info("dry run: PINs are hashed with %s (cheap) instead of %s; hashing the %d PINs with %s "
             "would take about %s on %d workers (pass --pin-hash-method to time the real one)",
             DRY_RUN_PIN_HASH_METHOD, method, count, method, format_seconds(seconds), workers)
    return {"method": method, "pins": count, "workers": workers,
            "seconds_per_hash": round(per_hash, 4), "estimated_seconds": round(seconds, 1)}
