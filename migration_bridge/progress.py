"""Per-phase progress: a tqdm bar on a terminal (count, rate, ETA); without one (cron, CI,
nohup), a log line every ``log_every`` seconds of work from a timer thread, whether or
not a batch ended meanwhile, and a closing line."""
from __future__ import annotations

import logging
import sys
import threading
import time

log = logging.getLogger("migration_bridge")

LOG_EVERY = 5.0  # seconds between two lines without a terminal (the promise is <= 10 s)


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Progress:
    def __init__(self, label: str, total: int | None, unit: str = "rows", interactive: bool | None = None,
                 initial: int = 0, log_every: float = LOG_EVERY):
        self.label, self.total, self.unit = label, total, unit
        self.done = initial
        self._initial = initial
        self.started = time.monotonic()
        self._log_every = log_every
        self._postfix: str | None = None
        self._lines = 0
        self._closed = threading.Event()
        self._lock = threading.Lock()
        if interactive is None:
            interactive = sys.stderr.isatty()
        self._bar = None
        self._timer = None
        if interactive:
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=f"{label:<27}", unit=f" {unit}",
                             unit_scale=True, dynamic_ncols=True, leave=True)
        else:
            self._timer = threading.Thread(target=self._tick, name="bridge-progress", daemon=True)
            self._timer.start()

    def update(self, n: int, postfix: str | None = None) -> None:
        """``postfix``: extra text after the counts (the file copy shows its bytes/s there)."""
        with self._lock:
            self.done += n
            if postfix is not None:
                self._postfix = postfix
        if self._bar is not None:
            if postfix is not None:
                self._bar.set_postfix_str(postfix, refresh=False)
            self._bar.update(n)

    def line(self) -> str:
        with self._lock:
            done, postfix = self.done, self._postfix
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = (done - self._initial) / elapsed
        of = f"/{self.total}" if self.total is not None else ""
        eta = ""
        if self.total and rate > 0:
            eta = f", {format_seconds(max(self.total - done, 0) / rate)} left"
        return (f"{self.label}: {done}{of} {self.unit}, {rate:.0f} {self.unit}/s{eta}"
                + (f", {postfix}" if postfix else ""))

    def _tick(self) -> None:
        while not self._closed.wait(self._log_every):
            self._lines += 1
            log.info("%s", self.line())

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        if self._bar is not None:
            self._bar.close()
            return
        if self._timer is not None:
            self._timer.join(timeout=1)
        if self._lines:  # a phase that printed progress says when it ends
            elapsed = time.monotonic() - self.started
            log.info("%s: %d %s in %s", self.label, self.done, self.unit, format_seconds(elapsed))
