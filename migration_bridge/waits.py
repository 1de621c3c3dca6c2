"""Say what a command waits for: a lock held by another session in the target database.

``watch(engine, lock_timeout)`` starts a daemon thread that every ``POLL`` seconds looks,
over a connection of its own, whether one of the engine's connections
(``engine.bridge_backends``, see ``dialects.create_target_engine``; on PostgreSQL also
those of the helpers it forked, by their application name) waits for a lock, and says on
which table and behind which server process:

    waiting 4s for a lock on comments held by pid 8123 (gives up after 300s: --lock-timeout)

The wait itself is bounded by the server (``lock_timeout``); this only makes it visible.
"""
from __future__ import annotations

import logging
import re
import threading
import time

import sqlalchemy as sa

log = logging.getLogger("migration_bridge")

POLL = 2.0  # seconds between looks
REPEAT = 15.0  # seconds between two lines about the same wait

_PG = sa.text("""
    SELECT a.pid, EXTRACT(EPOCH FROM (clock_timestamp() - a.state_change)) AS waited,
           (SELECT string_agg(DISTINCT l.relation::regclass::text, ', ')
              FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted AND l.relation IS NOT NULL) AS tables,
           pg_blocking_pids(a.pid) AS blockers
      FROM pg_stat_activity a
     WHERE (a.pid = ANY(:pids) OR a.application_name = :name) AND a.wait_event_type = 'Lock'
""")
_MYSQL = sa.text("""
    SELECT p.ID, p.TIME, p.STATE, p.INFO FROM information_schema.PROCESSLIST p
     WHERE p.ID IN :pids
""").bindparams(sa.bindparam("pids", expanding=True))
_MYSQL_BLOCKERS = sa.text("""
    SELECT r.trx_mysql_thread_id, b.trx_mysql_thread_id, l.lock_table
      FROM information_schema.INNODB_LOCK_WAITS w
      JOIN information_schema.INNODB_TRX r ON r.trx_id = w.requesting_trx_id
      JOIN information_schema.INNODB_TRX b ON b.trx_id = w.blocking_trx_id
      LEFT JOIN information_schema.INNODB_LOCKS l ON l.lock_id = w.requested_lock_id
""")


_TABLE_IN_SQL = re.compile(r"\b(?:FROM|INTO|UPDATE|TABLE|JOIN)\s+`?([\w$.]+)`?", re.IGNORECASE)


class Watch:
    def __init__(self, engine: sa.Engine | None, lock_timeout: float | None):
        self.engine, self.lock_timeout = engine, lock_timeout
        self._stop = threading.Event()
        self._said: dict[tuple, float] = {}
        self._thread = None
        self._probe: sa.Engine | None = None
        if engine is not None and engine.dialect.name in ("postgresql", "mysql", "mariadb"):
            self._thread = threading.Thread(target=self._loop, name="bridge-lock-watch", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        if self._probe is not None:
            self._probe.dispose()
            self._probe = None

    def _loop(self) -> None:
        while not self._stop.wait(POLL):
            try:
                for line in self.waits():
                    log.info("%s", line)
            except Exception:  # noqa: BLE001 - watching must never break the run
                continue

    def waits(self) -> list[str]:
        """One line per wait worth (re)telling now."""
        ours = sorted(getattr(self.engine, "bridge_backends", ()) or ())
        name = getattr(self.engine, "bridge_application_name", None)  # forked helpers' sessions too
        if not ours and not name:
            return []
        if self._probe is None:
            self._probe = sa.create_engine(self.engine.url, poolclass=sa.pool.NullPool,
                                           connect_args={"connect_timeout": 5})
        found = []  # (pid, seconds, tables, blockers)
        with self._probe.connect() as conn:
            if self.engine.dialect.name == "postgresql":
                for pid, waited, tables, blockers in conn.execute(_PG, {"pids": ours, "name": name}):
                    found.append((pid, float(waited or 0), tables or "a table", list(blockers or [])))
            else:
                blockers: dict = {}
                try:
                    for waiting, blocking, table in conn.execute(_MYSQL_BLOCKERS):
                        blockers.setdefault(waiting, ([], table))[0].append(blocking)
                except sa.exc.DBAPIError:
                    pass
                for pid, waited, state, info in conn.execute(_MYSQL, {"pids": ours}):
                    if pid not in blockers and "lock" not in (state or "").lower():
                        continue  # working, not waiting
                    held_by, table = blockers.get(pid, ([], None))
                    state = state if "lock" in (state or "").lower() else "row lock"
                    match = _TABLE_IN_SQL.search(info or "")
                    table = (table or (match.group(1) if match else "") or "a table").replace("`", "")
                    found.append((pid, float(waited or 0), f"{table} ({state})" if state else table, held_by))
        now = time.monotonic()
        lines = []
        for pid, waited, tables, held_by in found:
            key = (pid, tables, tuple(held_by))
            if now - self._said.get(key, -REPEAT) < REPEAT:
                continue
            self._said[key] = now
            who = f" held by pid {', '.join(map(str, held_by))}" if held_by else ""
            from . import cli

            cli.current["waiting_for"] = f"{tables}{who}"
            limit = f" (gives up after {self.lock_timeout:g}s: --lock-timeout)" if self.lock_timeout else ""
            lines.append(f"waiting {waited:.0f}s for a lock on {tables}{who}{limit}")
        return lines


def watch(engine: sa.Engine | None, lock_timeout: float | None) -> Watch:
    return Watch(engine, lock_timeout)
