"""Helpers shared by the bench scripts: the servers, seeding, measured subprocesses, a raw
streaming copy (MySQLdb SSCursor -> psycopg COPY) and the PIN-hashing pool measurement.

Servers: MariaDB 127.0.0.1:3306 (root, no password), PostgreSQL 127.0.0.1:5432 (postgres,
trust). Everything the benches write on disk goes under ``var/bench/``.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

VAR = ROOT / "var" / "bench"
PY = sys.executable
SEED = 1
CHEAP_PIN_METHOD = "pbkdf2:sha256:1"
MYSQL = {"host": "127.0.0.1", "port": 3306, "user": "root"}
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
MODELS = ["district", "customadmin", "observer", "session", "student", "media",
          "comment", "studentmediainteraction"]  # = seeding.VIDEO_APP_MODELS
LEGACY_TABLES = [f"video_app_{m}" for m in MODELS]


def mysql_url(db: str) -> str:
    return f"mysql://root@127.0.0.1:3306/{db}"


def pg_url(db: str) -> str:
    return f"postgres://postgres@127.0.0.1:5432/{db}"


def pg_dsn(db: str) -> str:
    return f"host=127.0.0.1 port=5432 user=postgres dbname={db}"


def say(text: str = "") -> None:
    print(text, flush=True)


def fmt_rate(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.0f}"


# --- databases ---------------------------------------------------------------------

def mysql_conn(db: str | None = None, **kw):
    import MySQLdb

    return MySQLdb.connect(**MYSQL, **({"db": db} if db else {}), charset="utf8mb4", **kw)


def mysql_recreate(db: str) -> None:
    conn = mysql_conn()
    try:
        cur = conn.cursor()
        cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
        cur.execute(f"CREATE DATABASE `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    finally:
        conn.close()


def legacy_counts(db: str) -> dict[str, int] | None:
    try:
        conn = mysql_conn(db)
    except Exception:  # noqa: BLE001 - no such database
        return None
    try:
        cur = conn.cursor()
        counts = {}
        for m in MODELS:
            cur.execute(f"SELECT COUNT(*) FROM `video_app_{m}`")
            counts[m] = cur.fetchone()[0]
        return counts
    except Exception:  # noqa: BLE001 - not migrated
        return None
    finally:
        conn.close()


def pg_admin(*statements: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        for sql in statements:
            conn.execute(sql)


def pg_recreate(db: str) -> None:
    pg_admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)', f'CREATE DATABASE "{db}"')


def pg_drop(db: str) -> None:
    pg_admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


# --- measured subprocesses -------------------------------------------------------------

def legacy_env(db_url: str, media_root: Path | None = None) -> dict:
    env = {**os.environ, "LEGACY_DATABASE_URL": db_url}
    if media_root is not None:
        env["LEGACY_MEDIA_ROOT"] = str(media_root)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


@dataclass
class Run:
    args: tuple
    returncode: int
    seconds: float
    stdout: str
    stderr: str
    peak_rss_kb: int = 0  # VmHWM of the main pid, polled
    peak_children_kb: int = 0  # largest VmHWM seen among its descendants (pool workers)
    wait4_maxrss_kb: int = 0  # ru_maxrss from wait4: max over the process and its reaped children
    descendants: dict = field(default_factory=dict)  # pid -> [largest VmHWM seen (kB), command line]

    def tail(self, n: int = 15) -> str:
        return "\n".join((self.stdout + "\n" + self.stderr).strip().splitlines()[-n:])


def _vmhwm_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def cpu_busy(window: float = 1.0) -> float:
    """The share of all cores busy over ``window`` seconds (from /proc/stat)."""
    def ticks() -> tuple[int, int]:
        with open("/proc/stat") as fh:
            values = [int(v) for v in fh.readline().split()[1:]]
        idle = values[3] + values[4]  # idle + iowait
        return sum(values) - idle, sum(values)
    busy0, total0 = ticks()
    time.sleep(window)
    busy1, total1 = ticks()
    return (busy1 - busy0) / max(1, total1 - total0)


def settle(limit: float = 60.0, quiet: float = 0.10) -> tuple[float, float]:
    """Wait (at most ``limit`` s) until the machine is quiet: the step before (a server
    flushing what it wrote, purging what it changed) would otherwise be counted against
    the next one. Returns (seconds waited, busy share at the end)."""
    started = time.perf_counter()
    busy = cpu_busy()
    while busy > quiet and time.perf_counter() - started < limit:
        busy = cpu_busy()
    return round(time.perf_counter() - started, 1), round(busy, 3)


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace").strip()[:200]
    except OSError:
        return "?"


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for path in glob.glob(f"/proc/{p}/task/*/children"):
            try:
                with open(path) as fh:
                    kids = [int(k) for k in fh.read().split()]
            except OSError:
                continue
            out.extend(kids)
            todo.extend(kids)
    return out


def run_measured(cmd: list[str], *, env: dict | None = None, log: Path, measure_memory: bool = False) -> Run:
    """Run ``cmd`` as a child process; its wall time, and wait4's rusage of that child alone
    (ru_maxrss = the largest RSS of the child or of any descendant it reaped). With
    measure_memory the VmHWM of the child and of its descendants is also polled every 20 ms."""
    log.parent.mkdir(parents=True, exist_ok=True)
    out_path, err_path = log.with_suffix(".out"), log.with_suffix(".err")
    with out_path.open("w") as out, err_path.open("w") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err)
        peaks = {"main": 0, "children": 0}
        seen: dict[int, list] = {}
        done = threading.Event()

        def poll():
            while not done.is_set():
                peaks["main"] = max(peaks["main"], _vmhwm_kb(proc.pid))
                for child in _descendants(proc.pid):
                    kb = _vmhwm_kb(child)
                    peaks["children"] = max(peaks["children"], kb)
                    if child not in seen:
                        seen[child] = [0, _cmdline(child)]
                    seen[child][0] = max(seen[child][0], kb)
                done.wait(0.02)

        poller = threading.Thread(target=poll, daemon=True)
        if measure_memory:
            poller.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        done.set()
        if measure_memory:
            poller.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
    return Run(tuple(cmd), proc.returncode, seconds, out_path.read_text(), err_path.read_text(),
               peaks["main"], peaks["children"], usage.ru_maxrss, seen)


def manage(*args: str, env: dict, log: Path, measure_memory: bool = False) -> Run:
    """``manage.py <args>`` in a subprocess, measured as in run_measured."""
    return run_measured([PY, str(ROOT / "manage.py"), *args], env=env, log=log, measure_memory=measure_memory)


def check(run: Run, what: str) -> Run:
    if run.returncode != 0:
        raise SystemExit(f"{what} failed (exit {run.returncode}):\n{run.tail()}")
    return run


# --- seeding -----------------------------------------------------------------------------

def ensure_seeded(db: str, scale: str, reseed: bool) -> dict:
    """A MariaDB database seeded with (scale, SEED); reused when its counts match the manifest."""
    manifest_path = VAR / f"seed_{db}.json"
    media_root = VAR / f"media_{db}"
    if not reseed and manifest_path.exists() and media_root.is_dir():
        manifest = json.loads(manifest_path.read_text())
        if (manifest.get("scale"), manifest.get("seed")) == (scale, SEED) and \
                legacy_counts(db) == manifest["counts"]:
            say(f"[seed] {db}: reused (scale {scale}, seed {SEED}, "
                f"{sum(manifest['counts'].values()):,} rows)")
            return {"db": db, "media_root": media_root, "counts": manifest["counts"], "seconds": None}
    say(f"[seed] {db}: seeding scale {scale} (seed {SEED}) ...")
    mysql_recreate(db)
    shutil.rmtree(media_root, ignore_errors=True)
    manifest_path.unlink(missing_ok=True)
    env = legacy_env(mysql_url(db), media_root)
    migrate = check(manage("migrate", "-v0", env=env, log=VAR / "logs" / f"migrate_{db}"), f"migrate {db}")
    seed = check(manage("seed_legacy", "--scale", scale, "--seed", str(SEED), "--manifest", str(manifest_path),
                        env=env, log=VAR / "logs" / f"seed_{db}"), f"seed_legacy {db}")
    counts = json.loads(manifest_path.read_text())["counts"]
    total = sum(counts.values())
    say(f"[seed] {db}: migrate {migrate.seconds:.1f} s, seed_legacy {seed.seconds:.1f} s "
        f"({total:,} rows, {total / seed.seconds:,.0f} rows/s incl. files and process start)")
    return {"db": db, "media_root": media_root, "counts": counts, "seconds": seed.seconds}


# --- raw streaming copy ------------------------------------------------------------------

PG_TYPE = {"bigint": "bigint", "int": "integer", "smallint": "integer", "mediumint": "integer",
           "datetime": "timestamp", "date": "date", "uuid": "uuid", "double": "double precision"}
MYSQL_TEXT_TYPES = {"char", "varchar", "tinytext", "text", "mediumtext", "longtext"}


def legacy_columns(mcur, db: str, table: str, columns=None) -> list[tuple[str, str, str]]:
    """(column, MariaDB DATA_TYPE, PostgreSQL type) of ``table``: all its columns in table
    order, or ``columns`` in that order. tinyint(1) -> boolean, JSON (a longtext with a
    json_valid check) -> jsonb, unsigned ints -> bigint, strings -> text."""
    mcur.execute("SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
                 "WHERE CONSTRAINT_SCHEMA = %s AND TABLE_NAME = %s", (db, table))
    json_checks = " ".join(c for (c,) in mcur.fetchall())
    mcur.execute("SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE FROM information_schema.COLUMNS "
                 "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION", (db, table))
    info = {name: (dtype, ctype) for name, dtype, ctype in mcur.fetchall()}
    out = []
    for col in (columns or list(info)):
        dtype, ctype = info[col]
        if ctype.startswith("tinyint(1)"):
            pg_type = "boolean"
        elif f"json_valid(`{col}`)" in json_checks and dtype == "longtext":
            pg_type = "jsonb"
        elif dtype in ("int", "bigint") and "unsigned" in ctype:
            pg_type = "bigint"
        else:
            pg_type = PG_TYPE.get(dtype, "text")
        out.append((col, dtype, pg_type))
    return out


def stream_copy(src_db: str, pg_db: str, tables: dict[str, list | None], *, text: bool = False) -> dict:
    """Raw streaming copy of ``tables`` ({table: columns, or None for all}) from MariaDB
    ``src_db`` into fresh tables of PostgreSQL ``pg_db`` (matching types, PRIMARY KEY (id),
    no other index or FK): SSCursor -> fetchmany(10000) -> one psycopg COPY ... write_row
    and one commit per table. ``text``: every non-string column is CAST(... AS CHAR) in the
    SELECT, so Python moves strings only and PostgreSQL parses them; otherwise MySQLdb's
    Python objects (int, datetime, ...) are written. Returns {"rows", "seconds" (the copy,
    without the CREATE TABLEs), "tables": {table: [rows, seconds]}}."""
    import MySQLdb.cursors
    import psycopg

    src = mysql_conn(src_db, cursorclass=MySQLdb.cursors.SSCursor)
    meta = mysql_conn(src_db)
    per_table = {}
    try:
        mcur = meta.cursor()
        with psycopg.connect(pg_dsn(pg_db)) as pg:
            plan = {}
            for table, columns in tables.items():
                cols = legacy_columns(mcur, src_db, table, columns)
                defs = ", ".join(f'"{c}" {t}' + (" PRIMARY KEY" if c == "id" else "") for c, _, t in cols)
                pg.execute(f'CREATE TABLE "{table}" ({defs})')
                plan[table] = cols
            pg.commit()
            started = time.perf_counter()
            for table, cols in plan.items():
                t0 = time.perf_counter()
                n = 0
                select = ", ".join(f"CAST(`{c}` AS CHAR)" if text and d not in MYSQL_TEXT_TYPES else f"`{c}`"
                                   for c, d, _ in cols)
                scur = src.cursor()
                scur.execute(f"SELECT {select} FROM `{table}`")
                names = ", ".join(f'"{c}"' for c, _, _ in cols)
                with pg.cursor() as cur, cur.copy(f'COPY "{table}" ({names}) FROM STDIN') as copy:
                    while rows := scur.fetchmany(10000):
                        for row in rows:
                            copy.write_row(row)
                        n += len(rows)
                scur.close()
                pg.commit()
                per_table[table] = [n, time.perf_counter() - t0]
            seconds = time.perf_counter() - started
    finally:
        src.close()
        meta.close()
    return {"rows": sum(n for n, _ in per_table.values()), "seconds": seconds, "tables": per_table}


# --- PIN hashing -------------------------------------------------------------------------

def pin_hashing(db: str, sample: int) -> dict:
    """Single-core scrypt rate in this process vs the pipeline's own pool path
    (pinpool.PinPool: ProcessPoolExecutor(spawn), small chunks per task)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "legacy_app.settings")
    os.environ["LEGACY_DATABASE_URL"] = mysql_url(db)  # never connected to: no query is made
    import django

    django.setup()
    from migration_bridge.conf import BridgeSettings
    from migration_bridge.passwords import hash_pins
    from migration_bridge.pinpool import DEFAULT_PIN_HASH_METHOD, PinPool

    method = DEFAULT_PIN_HASH_METHOD
    conn = mysql_conn(db)
    try:
        cur = conn.cursor()
        cur.execute("SELECT password FROM video_app_student ORDER BY id LIMIT %s", (sample,))
        real = [p for (p,) in cur.fetchall()]
    finally:
        conn.close()
    pins = [real[i % len(real)] for i in range(sample)]
    workers = os.cpu_count() or 1
    conf = BridgeSettings()
    batch = conf.BATCH_SIZE

    n_single = min(200, sample)
    say(f"\n[pins] single core: {n_single} PINs with {method} in-process ...")
    t0 = time.perf_counter()
    single_hashes = hash_pins(pins[:n_single], method)
    single_s = time.perf_counter() - t0
    assert all(h.startswith("scrypt:") for h in single_hashes)
    single_rate = n_single / single_s

    pool = PinPool(method, workers, interactive=False)
    say(f"[pins] pool: {sample} PINs through pinpool.PinPool, workers={workers}, "
        f"batches of {batch} (BATCH_SIZE) ...")
    try:
        t0 = time.perf_counter()
        pool.hash(pins[:workers * 2], "students", lambda: sample)
        startup_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        hashed = []
        for start in range(0, sample, batch):
            hashed.extend(pool.hash(pins[start:start + batch], "students", lambda: sample))
        pool_s = time.perf_counter() - t0
    finally:
        pool.close()
    assert len(hashed) == sample and all(h.startswith("scrypt:") for h in hashed)
    pool_rate = sample / pool_s
    efficiency = pool_rate / (workers * single_rate)
    say(f"\n## PIN hashing ({method}, werkzeug's default)\n")
    say(f"PINs: {sample:,} (the first {len(real):,} student PINs of {db}"
        f"{', cycled' if len(real) < sample else ''}); cores (os.cpu_count): {workers}, "
        f"CPU affinity: {len(os.sched_getaffinity(0))}")
    say(f"single core: {n_single} hashes in {single_s:.2f} s = {single_rate:.1f} hashes/s")
    say(f"pool: {sample} hashes in {pool_s:.2f} s = {pool_rate:.1f} hashes/s (warm pool; spawning it and "
        f"hashing {workers * 2} warm-up PINs took {startup_s:.2f} s once per run)")
    say(f"efficiency = pool / (cores × single) = {pool_rate:.1f} / ({workers} × {single_rate:.1f}) = "
        f"**{efficiency:.1%}**")
    return {"method": method, "single": single_rate, "pool": pool_rate, "workers": workers,
            "efficiency": efficiency, "sample": sample}
