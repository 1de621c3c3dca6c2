"""Per-entity progress: a tqdm bar on a terminal, periodic log lines otherwise."""
from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("migration_bridge")


class Progress:
    def __init__(self, label: str, total: int | None, unit: str = "rows", interactive: bool | None = None,
                 initial: int = 0, log_every: float = 5.0):
        self.label, self.total, self.unit = label, total, unit
        self.done = initial
        self.started = time.monotonic()
        self._last_log = self.started
        self._log_every = log_every
        if interactive is None:
            interactive = sys.stderr.isatty()
        self._bar = None
        if interactive:
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=f"{label:<27}", unit=f" {unit}",
                             unit_scale=True, dynamic_ncols=True, leave=True)

    def update(self, n: int, postfix: str | None = None) -> None:
        """``postfix``: extra text after the counts (the file copy shows its bytes/s there)."""
        self.done += n
        if self._bar is not None:
            if postfix is not None:
                self._bar.set_postfix_str(postfix, refresh=False)
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last_log >= self._log_every:
            self._last_log = now
            rate = self.done / max(now - self.started, 1e-9)
            of = f"/{self.total}" if self.total is not None else ""
            eta = ""
            if self.total and rate > 0:
                eta = f", ETA {max(self.total - self.done, 0) / rate:.0f}s"
            log.info("%s: %d%s %s, %.0f %s/s%s%s", self.label, self.done, of, self.unit, rate, self.unit, eta,
                     f", {postfix}" if postfix else "")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
