#!/usr/bin/env python
"""Our export, sync and verify side by side with pgloader and a raw Python copy (issue 15).

One invocation, on this machine (MariaDB 127.0.0.1:3306 root -> PostgreSQL 127.0.0.1:5432
postgres, both without password), every figure from this run:

1. seeds ``--scale`` (default medium) into MariaDB ``bench_pgl_<scale>`` with
   ``seed_legacy --seed 1`` (``--reuse-source``: kept when it already holds the seeded counts);
2. raw Python copy, text values: MySQLdb SSCursor -> psycopg COPY of every column of the 8
   legacy tables into tables with only a PRIMARY KEY, every non-string column
   ``CAST(... AS CHAR)`` in the SELECT (PostgreSQL parses the strings);
3. raw Python copy, typed values: the same with MySQLdb's Python objects;
4. pgloader (Debian's package, installed with apt-get when missing), the same 8 tables with
   ``prefetch rows = 10000``: COPY, then indexes, primary keys, foreign keys, sequences;
5. ``manage.py export_to_flask --row-workers 1`` (rows + files, every transform, PINs with
   the cheap ``pbkdf2:sha256:1``, one process) into a fresh database; then the same with
   the default options into another fresh database: each large entity that can be cut
   into id ranges is exported by one process per core (2 here: the issue's "measure 2
   workers here"), with ``--track-changes`` (the legacy database logs the ids it writes);
6. a 1% change of the source by SQL (every table: 1% of its rows, spread over the ids,
   one column changed; undone at the end), then ``export_to_flask --sync`` on the target
   of the default export (reading the change log), and ``export_to_flask --sync
   --full-scan`` (every row's digest, as without a log) on a copy of that target taken
   before;
7. ``manage.py verify_flask`` on the synced target;
8. PIN hashing with the production method (scrypt): the export's own pool on N workers vs
   N x the single-core rate.

Each contender runs as its own child process, on a fresh PostgreSQL database, one after
the other; wall = that child's wall time (start-up included), rows/s = the source's rows /
wall, peak RSS = wait4's ru_maxrss of that child (the largest resident set of the child
or of any process it started and reaped, e.g. PIN-hashing workers). It ends with a
markdown table and the ratios to the issue's anchors, written also as JSON (``--output``)
and markdown (same name, ``.md``). Nothing here asserts a speed: missed anchors are named.

    .venv/bin/python bench/bench_vs_pgloader.py --scale small            # ~1 min
    .venv/bin/python bench/bench_vs_pgloader.py                          # medium, ~15-20 min
    options: --reuse-source --output PATH --pin-sample N --keep
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402  (the benches' shared helpers)
    CHEAP_PIN_METHOD,
    LEGACY_TABLES,
    PY,
    VAR,
    Run,
    check,
    ensure_seeded,
    legacy_env,
    manage,
    mysql_conn,
    mysql_url,
    pg_admin,
    pg_drop,
    pg_recreate,
    pin_hashing,
    run_measured,
    say,
    settle,
    stream_copy,
)

PG_DBS = {"text": "bench_pgl_raw_text", "typed": "bench_pgl_raw_typed", "pgloader": "bench_pgl_pgloader",
          "flask": "bench_pgl_flask", "flask_scan": "bench_pgl_flask_scan"}
LOGS = VAR / "logs" / "vs_pgloader"
REPORTS = VAR / "vs_pgloader"

ANCHOR_EXPORT_VS_PGLOADER = 1.0  # export wall <= pgloader's
ANCHOR_SYNC_VS_EXPORT = 0.10
ANCHOR_VERIFY_VS_EXPORT = 0.50
ANCHOR_EXPORT_RSS_MB = 150.0
ANCHOR_PIN_EFFICIENCY = 0.90

# The 1% change: per table, the column changed and the SQL that changes it and undoes it
# (so that --reuse-source finds the seeded data again). REVERSE() is its own inverse; it
# leaves a palindrome as it was (rows really changed are counted by the server).
CHANGES = {
    "video_app_district": ("created_at", "`created_at` + INTERVAL 1 SECOND", "`created_at` - INTERVAL 1 SECOND"),
    "video_app_customadmin": ("date_joined", "`date_joined` + INTERVAL 1 SECOND",
                              "`date_joined` - INTERVAL 1 SECOND"),
    "video_app_observer": ("name", "REVERSE(`name`)", "REVERSE(`name`)"),
    "video_app_session": ("name", "REVERSE(`name`)", "REVERSE(`name`)"),
    "video_app_student": ("name", "REVERSE(`name`)", "REVERSE(`name`)"),
    "video_app_media": ("title", "REVERSE(`title`)", "REVERSE(`title`)"),
    "video_app_comment": ("text", "REVERSE(`text`)", "REVERSE(`text`)"),
    "video_app_studentmediainteraction": ("updated_at", "`updated_at` + INTERVAL 1 SECOND",
                                          "`updated_at` - INTERVAL 1 SECOND"),
}
CHANGE_MARKER = "bench_pgl_pending_change"  # a table in the legacy DB while the change is applied


@dataclass
class Contender:
    key: str
    label: str
    wall: float
    rows: int  # the source's rows (the same denominator for every contender)
    peak_rss_mb: float  # wait4 ru_maxrss of the contender's child process
    exit_code: int = 0
    detail: dict = field(default_factory=dict)
    load: tuple = ()  # 1-minute load average before and after
    memory: dict = field(default_factory=dict)  # wait4 and the 20 ms VmHWM poll, per process

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.wall if self.wall else 0.0


def loadavg() -> float:
    return round(os.getloadavg()[0], 2)


def quiet(key: str) -> None:
    """Every contender starts on a quiet machine: dirty pages of the step before written
    out (CHECKPOINT), and the CPU idle (``settle``)."""
    pg_admin("CHECKPOINT")
    waited, busy = settle()
    say(f"[{key}] started after {waited:.1f} s of settling (CPU {busy:.0%} busy)")


def measured(key: str, label: str, rows: int, runner) -> tuple[Contender, Run]:
    quiet(key)
    before = loadavg()
    run = runner()
    say(f"[{key}] {run.seconds:.1f} s, peak RSS {run.wait4_maxrss_kb / 1024:.0f} MB, exit {run.returncode}")
    largest = sorted(run.descendants.values(), reverse=True)[:3]
    memory = {"wait4_maxrss_mb": round(run.wait4_maxrss_kb / 1024, 1),
              "polled_vmhwm_main_mb": round(run.peak_rss_kb / 1024, 1),
              "polled_vmhwm_descendants": [[round(kb / 1024, 1), cmd] for kb, cmd in largest],
              "descendants_seen": len(run.descendants)}
    return Contender(key, label, run.seconds, rows, run.wait4_maxrss_kb / 1024, run.returncode,
                     {}, (before, loadavg()), memory), run


# --- raw copies (child processes of this script) -----------------------------------------

def raw_copy_child(mode: str, src_db: str, pg_db: str, out: str) -> int:
    copied = stream_copy(src_db, pg_db, {t: None for t in LEGACY_TABLES}, text=(mode == "text"))
    Path(out).write_text(json.dumps(copied))
    return 0


def run_raw(mode: str, db: str, rows: int) -> Contender:
    pg_recreate(PG_DBS[mode])
    out = REPORTS / f"raw_{mode}.json"
    say(f"[raw-{mode}] SSCursor -> COPY, {mode} values, into {PG_DBS[mode]} ...")
    label = ("raw Python copy, text values (MySQLdb SSCursor → PostgreSQL COPY, PK only)" if mode == "text"
             else "raw Python copy, typed values (same, Python objects)")
    contender, run = measured(f"raw-{mode}", label, rows, lambda: run_measured(
        [PY, __file__, "--raw-copy-child", mode, db, PG_DBS[mode], str(out)], log=LOGS / f"raw_{mode}", measure_memory=True))
    check(run, f"raw copy ({mode})")
    copied = json.loads(out.read_text())
    if copied["rows"] != rows:
        raise SystemExit(f"raw copy ({mode}) moved {copied['rows']:,} rows, the source has {rows:,}")
    contender.detail = {"copy_seconds": round(copied["seconds"], 2), "tables": copied["tables"]}
    return contender


# --- pgloader ------------------------------------------------------------------------------

def ensure_pgloader() -> str:
    if not shutil.which("pgloader"):
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        say("[pgloader] not installed: apt-get install -y pgloader ...")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "pgloader"], env=env,
                          stdout=subprocess.DEVNULL).returncode != 0:
            subprocess.run([*sudo, "apt-get", "update", "-qq"], env=env, check=True)
            subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "pgloader"], env=env,
                           stdout=subprocess.DEVNULL, check=True)
    out = subprocess.run(["pgloader", "--version"], capture_output=True, text=True).stdout
    version = out.split('"')[1] if out.count('"') >= 2 else "(version unknown)"
    deb = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "pgloader"], capture_output=True, text=True)
    return f"pgloader {version}" + (f" (Debian package {deb.stdout.strip()})" if deb.returncode == 0 else "")


PGLOADER_COMMAND = """LOAD DATABASE
     FROM {source}
     INTO {target}

 WITH include drop, create tables, create indexes, reset sequences, foreign keys,
      prefetch rows = 10000

 INCLUDING ONLY TABLE NAMES MATCHING {tables}

 ALTER SCHEMA '{db}' RENAME TO 'public'
;
"""


def pgloader_summary(stdout: str) -> dict:
    """The phases of pgloader's closing summary: {name: (errors, count, its time as printed)}."""
    phases = {}
    for line in stdout.splitlines():
        m = re.match(r"\s*(.+?)\s{2,}(\d+|✓)\s+(\d+)\s.*?(\S+s)?$", line)
        if m:
            phases[m.group(1).strip()] = (0 if m.group(2) == "✓" else int(m.group(2)), int(m.group(3)),
                                          m.group(4) or "")
    return phases


def run_pgloader(db: str, rows: int, version: str) -> Contender:
    pg_recreate(PG_DBS["pgloader"])
    work = REPORTS / "pgloader"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    command = work / "load.pgl"
    command.write_text(PGLOADER_COMMAND.format(
        source=mysql_url(db), target=f"postgresql://postgres@127.0.0.1:5432/{PG_DBS['pgloader']}",
        tables=", ".join(f"'{t}'" for t in LEGACY_TABLES), db=db))
    say(f"[pgloader] {version}: {command} ...")
    contender, run = measured("pgloader", "pgloader (COPY, then indexes, PKs, FKs)", rows, lambda: run_measured(
        ["pgloader", "--root-dir", str(work), "--logfile", str(work / "pgloader.log"), str(command)],
        log=LOGS / "pgloader", measure_memory=True))
    check(run, "pgloader")
    phases = pgloader_summary(run.stdout)
    tables = [v for name, v in phases.items() if name.startswith("public.video_app_")]
    loaded, load_errors = sum(v[1] for v in tables), sum(v[0] for v in tables)
    fk_errors, fks, _ = phases.get("Create Foreign Keys", (0, 0, ""))
    contender.label = f"{version.split(' (')[0]} (COPY, then indexes, PKs, FKs)"
    contender.detail = {
        "version": version, "rows_loaded": loaded, "row_errors": load_errors,
        "indexes": phases.get("Create Indexes", (0, 0))[1], "primary_keys": phases.get("Primary Keys", (0, 0))[1],
        "phase_times": {k: v[2] for k, v in phases.items() if not k.startswith("public.")},
        "foreign_keys_created": fks, "foreign_keys_refused": fk_errors,
        "command_file": str(command), "summary": {k: list(v) for k, v in phases.items()}}
    if loaded != rows or load_errors:
        say(f"[pgloader] WARNING: {loaded:,} rows loaded with {load_errors} errors; the source has {rows:,}")
    return contender


# --- export, sync, verify --------------------------------------------------------------------

def bridge_env(seeded: dict) -> dict:
    env = {**legacy_env(mysql_url(seeded["db"]), seeded["media_root"]),
           "FLASK_MEDIA_ROOT": str(REPORTS / "flask_media")}
    env.pop("FLASK_S3_BUCKET", None)
    return env


def run_export(seeded: dict, rows: int, tag: str, *flags: str, db: str = PG_DBS["flask"]) -> Contender:
    if "--sync" not in flags:  # a fresh database and an empty target storage
        pg_recreate(db)
        shutil.rmtree(REPORTS / "flask_media", ignore_errors=True)
    report_dir = REPORTS / tag
    shutil.rmtree(report_dir, ignore_errors=True)
    target = f"postgresql://postgres@127.0.0.1:5432/{db}"
    say(f"[{tag}] export_to_flask {' '.join(flags)} --pin-hash-method {CHEAP_PIN_METHOD} ...")
    contender, run = measured(tag, "", rows, lambda: manage(
        "export_to_flask", "--target", target, "--allow-live", "--pin-hash-method", CHEAP_PIN_METHOD,
        "--report-dir", str(report_dir), *flags, env=bridge_env(seeded), log=LOGS / tag, measure_memory=True))
    check(run, f"export_to_flask {' '.join(flags)}")
    report = json.loads((report_dir / "report.json").read_text())
    if report["status"] != "complete":
        raise SystemExit(f"{tag}: status {report['status']}: {report.get('error')}")
    contender.detail = {"totals": report.get("totals"), "report": str(report_dir / "report.json")}
    if "sync" in report:
        contender.detail["sync"] = {name: {k: s[k] for k in ("inserted", "updated", "deleted", "unchanged",
                                                              "rejected", "seconds") if k in s}
                                    for name, s in report["sync"].items()}
    contender.detail["row_workers"] = sorted({int(n) for n in re.findall(r": (\d+) row workers over ids", run.stdout)})
    files = [line for line in run.stdout.splitlines() if line.startswith("files:")]
    if files:
        contender.detail["files"] = files
    return contender


def _sync_totals(sync: Contender) -> tuple[int, int, int]:
    found = sync.detail.get("sync", {}).values()
    return tuple(sum(s.get(k, 0) for s in found) for k in ("inserted", "updated", "deleted"))


def run_verify(seeded: dict, rows: int) -> Contender:
    report = REPORTS / "verify.json"
    report.unlink(missing_ok=True)
    say("[verify] verify_flask --accept-missing-source-files ...")
    contender, run = measured("verify", "`verify_flask` (every check, content of every row)", rows, lambda: manage(
        "verify_flask", "--target", f"postgresql://postgres@127.0.0.1:5432/{PG_DBS['flask']}",
        "--accept-missing-source-files", "--report", str(report), env=bridge_env(seeded), log=LOGS / "verify",
        measure_memory=True))
    if run.returncode not in (0, 1):  # 1 = a check failed: still a complete run, reported below
        check(run, "verify_flask")
    checks = {}
    if report.exists():
        data = json.loads(report.read_text())
        checks = {c["name"]: [c["status"], c["summary"]] for c in data.get("checks", [])}
    contender.detail = {"checks": checks, "report": str(report)}
    return contender


# --- the 1% change ---------------------------------------------------------------------------

def change_ids(db: str, table: str, fraction: float) -> list[int]:
    """``fraction`` of the table's ids, spread evenly; streamed, so that this process stays
    small (a child's wait4 ru_maxrss counts the RSS its parent had when it was started)."""
    import MySQLdb.cursors

    conn = mysql_conn(db, cursorclass=MySQLdb.cursors.SSCursor)
    try:
        cur = conn.cursor()
        cur.execute(f"SELECT COUNT(*) FROM `{table}`")
        (n,) = cur.fetchone()
        k = max(1, round(n * fraction))
        step = n / k
        wanted = iter([int(i * step + step / 2) for i in range(k)])
        chosen, next_index = [], next(wanted)
        cur.execute(f"SELECT id FROM `{table}` ORDER BY id")
        for index, (i,) in enumerate(cur):
            if index == next_index:
                chosen.append(i)
                next_index = next(wanted, -1)
        return chosen
    finally:
        conn.close()


def apply_change(db: str, fraction: float, undo: bool = False) -> dict:
    """Change (or undo) `fraction` of the rows of every legacy table, spread over the ids;
    returns {table: [rows chosen, rows changed]} (changed as counted by the server)."""
    conn = mysql_conn(db)
    out = {}
    try:
        cur = conn.cursor()
        if not undo:
            cur.execute(f"CREATE TABLE `{CHANGE_MARKER}` (fraction DOUBLE NOT NULL)")
            cur.execute(f"INSERT INTO `{CHANGE_MARKER}` VALUES (%s)", (fraction,))
        for table, (column, do_sql, undo_sql) in CHANGES.items():
            ids = change_ids(db, table, fraction)
            changed = 0
            for start in range(0, len(ids), 10000):
                chunk = ids[start:start + 10000]
                cur.execute(f"UPDATE `{table}` SET `{column}` = {undo_sql if undo else do_sql} "
                            f"WHERE id IN ({', '.join(['%s'] * len(chunk))})", chunk)
                changed += cur.rowcount
            out[table] = [len(ids), changed]
        if undo:
            cur.execute(f"DROP TABLE `{CHANGE_MARKER}`")
        conn.commit()
    finally:
        conn.close()
    return out


def pending_change(db: str) -> float | None:
    conn = mysql_conn(db)
    try:
        cur = conn.cursor()
        cur.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                    (db, CHANGE_MARKER))
        if not cur.fetchone()[0]:
            return None
        cur.execute(f"SELECT fraction FROM `{CHANGE_MARKER}`")
        return cur.fetchone()[0]
    finally:
        conn.close()


# --- the table -------------------------------------------------------------------------------

def fmt_s(x: float) -> str:
    return f"{x:.1f} s" if x >= 10 else f"{x:.2f} s"


def fmt_k(x: float) -> str:
    return f"{x / 1000:.1f}k" if x < 100_000 else f"{x / 1000:.0f}k"


def verdict(ok: bool | None) -> str:
    return "" if ok is None else "met" if ok else "**missed**"


def markdown(result: dict) -> str:
    lines = [f"### bench_vs_pgloader, scale {result['scale']}: {result['rows']:,} rows in 8 tables, "
             f"{result['files']} files; {result['cores']} cores; load average {result['load_start']} at start, "
             f"{result['load_end']} at the end", "",
             "| | wall | rows/s | peak RSS |", "|---|---:|---:|---:|"]
    for c in result["contenders"]:
        lines.append(f"| {c['label']} | {fmt_s(c['wall'])} | {fmt_k(c['rows_per_s'])} | {c['peak_rss_mb']:.0f} MB |")
    lines += ["", "| ratio | measured | anchor | |", "|---|---:|---:|---|"]
    for r in result["ratios"]:
        lines.append(f"| {r['name']} | {r['measured']} | {r['anchor']} | {verdict(r['ok'])} |")
    lines += [""] + [f"- {n}" for n in result["notes"]]
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) == 6 and sys.argv[1] == "--raw-copy-child":
        return raw_copy_child(*sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--scale", choices=["small", "medium", "large"], default="medium")
    parser.add_argument("--reuse-source", action="store_true",
                        help="keep MariaDB bench_pgl_<scale> when it holds the seeded counts (default: seed again)")
    parser.add_argument("--output", type=Path, help="JSON result (default /tmp/bench_vs_pgloader_<scale>.json; "
                                                    "the markdown table goes next to it as .md)")
    parser.add_argument("--change-fraction", type=float, default=0.01, help="share of rows changed before --sync")
    parser.add_argument("--pin-sample", type=int, default=600, help="scrypt PINs hashed by the pool (600)")
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL databases of the contenders")
    args = parser.parse_args()
    output = args.output or Path(f"/tmp/bench_vs_pgloader_{args.scale}.json")
    REPORTS.mkdir(parents=True, exist_ok=True)
    started, load_start = time.perf_counter(), loadavg()
    say(f"# bench_vs_pgloader: scale {args.scale}, {os.cpu_count()} cores, load average {load_start} at start\n")

    version = ensure_pgloader()
    db = f"bench_pgl_{args.scale}"
    if args.reuse_source and (pending := pending_change(db)) is not None:
        say(f"[source] {db}: undoing a {pending:.0%} change left by an interrupted run ...")
        apply_change(db, pending, undo=True)
    seeded = ensure_seeded(db, args.scale, reseed=not args.reuse_source)
    rows = sum(seeded["counts"].values())

    contenders = []
    try:
        contenders.append(run_raw("text", db, rows))
        contenders.append(run_raw("typed", db, rows))
        contenders.append(run_pgloader(db, rows, version))
        single = run_export(seeded, rows, "export-1p", "--create-schema", "--row-workers", "1")
        single.label = (f"`export_to_flask --row-workers 1` (rows + files, every transform, one process; "
                        f"PINs {CHEAP_PIN_METHOD})")
        contenders.append(single)
        # the default options into a fresh database; sync and verify then run on this target
        export = run_export(seeded, rows, "export", "--create-schema", "--track-changes")
        workers = "/".join(map(str, export.detail["row_workers"])) or "no"
        export.label = (f"`export_to_flask --track-changes` (the same, default options: {workers} row workers for "
                        "each large entity; triggers installed in the legacy DB first)")
        contenders.append(export)
        t0 = time.perf_counter()
        change = apply_change(db, args.change_fraction)
        change_s = time.perf_counter() - t0
        changed = sum(c for _, c in change.values())
        say(f"[change] {changed:,} rows changed in {change_s:.1f} s: "
            + ", ".join(f"{t.removeprefix('video_app_')} {c:,}/{n:,}" for t, (n, c) in change.items()))
        try:
            pg_drop(PG_DBS["flask_scan"])  # the same target for the sync comparing every digest
            pg_admin(f'CREATE DATABASE "{PG_DBS["flask_scan"]}" TEMPLATE "{PG_DBS["flask"]}"')
            sync = run_export(seeded, rows, "sync", "--sync")
            sync.label = (f"`export_to_flask --sync` after a {args.change_fraction:.0%} change ({changed:,} rows), "
                          "reading the change log")
            sync.detail["change"] = change
            contenders.append(sync)
            scan = run_export(seeded, rows, "sync-scan", "--sync", "--full-scan", db=PG_DBS["flask_scan"])
            scan.label = "`export_to_flask --sync --full-scan` (the same change, every row's digest compared)"
            contenders.append(scan)
            pg_drop(PG_DBS["flask_scan"])
            contenders.append(run_verify(seeded, rows))
        finally:
            apply_change(db, args.change_fraction, undo=True)
            say("[change] undone")
        quiet("pins")
        load_before = loadavg()
        pins = {**pin_hashing(db, args.pin_sample), "load": (load_before, loadavg())}
    finally:
        if not args.keep:
            for name in PG_DBS.values():
                pg_drop(name)

    by = {c.key: c for c in contenders}
    exp, pgl, syn, ver, one = by["export"], by["pgloader"], by["sync"], by["verify"], by["export-1p"]
    scan = by["sync-scan"]
    workers = "/".join(map(str, exp.detail["row_workers"])) or "no"
    pgl_d = pgl.detail
    planted = json.loads((VAR / f"seed_{db}.json").read_text()).get("anomalies", {})
    ratios = [
        {"name": f"export ({workers} row workers, the default) / pgloader (wall)",
         "measured": f"{exp.wall / pgl.wall:.2f}×",
         "anchor": f"≤ {ANCHOR_EXPORT_VS_PGLOADER:g}×", "ok": exp.wall / pgl.wall <= ANCHOR_EXPORT_VS_PGLOADER},
        {"name": "export, one process / pgloader (wall)", "measured": f"{one.wall / pgl.wall:.2f}×",
         "anchor": f"≤ {ANCHOR_EXPORT_VS_PGLOADER:g}×", "ok": one.wall / pgl.wall <= ANCHOR_EXPORT_VS_PGLOADER},
        {"name": f"{workers} row workers: speed-up over one process (wall)", "measured": f"{one.wall / exp.wall:.2f}×",
         "anchor": "no goal", "ok": None},
        {"name": "export peak RSS (its largest process; one process / the default)",
         "measured": f"{one.peak_rss_mb:.0f} / {exp.peak_rss_mb:.0f} MB", "anchor": f"≤ {ANCHOR_EXPORT_RSS_MB:g} MB",
         "ok": max(one.peak_rss_mb, exp.peak_rss_mb) <= ANCHOR_EXPORT_RSS_MB},
        {"name": "sync reading the change log / export (wall)", "measured": f"{syn.wall / exp.wall:.1%}",
         "anchor": f"≤ {ANCHOR_SYNC_VS_EXPORT:.0%}", "ok": syn.wall / exp.wall <= ANCHOR_SYNC_VS_EXPORT},
        {"name": "sync comparing every row's digest (--full-scan) / export (wall)",
         "measured": f"{scan.wall / exp.wall:.1%}",
         "anchor": f"≤ {ANCHOR_SYNC_VS_EXPORT:.0%}", "ok": scan.wall / exp.wall <= ANCHOR_SYNC_VS_EXPORT},
        {"name": "sync reading the change log / export, one process (wall)", "measured": f"{syn.wall / one.wall:.1%}",
         "anchor": "for comparison", "ok": None},
        {"name": "verify / export (wall)", "measured": f"{ver.wall / exp.wall:.1%}",
         "anchor": f"≤ {ANCHOR_VERIFY_VS_EXPORT:.0%}", "ok": ver.wall / exp.wall <= ANCHOR_VERIFY_VS_EXPORT},
        {"name": "verify / export, one process (wall)", "measured": f"{ver.wall / one.wall:.1%}",
         "anchor": "for comparison", "ok": None},
        {"name": f"PIN hashing, {pins['method']} (werkzeug's default): pool of {pins['workers']} / "
                 f"({pins['workers']} × single core)",
         "measured": f"{pins['pool']:.1f} / ({pins['workers']} × {pins['single']:.1f}) hashes/s = "
                     f"{pins['efficiency']:.1%}",
         "anchor": f"≥ {ANCHOR_PIN_EFFICIENCY:.0%}", "ok": pins["efficiency"] >= ANCHOR_PIN_EFFICIENCY},
    ]
    verify_note = (f"verify_flask: exit {ver.exit_code}{'' if ver.exit_code == 0 else ' (a check failed)'}: "
                   + "; ".join(f"{name} {status}" + (f" ({summary})" if status == "FAIL" else "")
                               for name, (status, summary) in ver.detail["checks"].items())
                   + f". The seed plants {len(planted.get('drifted_counter_media', []))} media with drifted like "
                   f"counters and {len(planted.get('drifted_comment_count_interactions', []))} interactions with a "
                   "drifted comment_count; this bench does not pass --fix-counts (it writes the target).")
    notes = [
        "wall: the contender's child process, start-up included; rows/s: the source's rows / wall, the same "
        "denominator for every line; peak RSS: wait4 ru_maxrss of that child (its largest process, "
        "PIN-hashing workers included); the database servers' own CPU and memory are in no line.",
        f"pgloader: {pgl_d['rows_loaded']:,} rows, {pgl_d['indexes']} indexes, {pgl_d['primary_keys']} primary keys, "
        f"{pgl_d['foreign_keys_created']} foreign keys created and {pgl_d['foreign_keys_refused']} refused by "
        "PostgreSQL (the seed plants orphan rows); no transform, the legacy schema as is; its own summary: COPY "
        f"{pgl_d['phase_times'].get('COPY Threads Completion', '?')}, index build "
        f"{pgl_d['phase_times'].get('Index Build Completion', '?')}, total "
        f"{pgl_d['phase_times'].get('Total import time', '?')}.",
        "peak RSS cross-check (VmHWM polled every 20 ms: the contender's own process / its largest descendant): "
        + ", ".join(f"{c.key} {c.memory['polled_vmhwm_main_mb']:.0f} / "
                    f"{max([m for m, _ in c.memory['polled_vmhwm_descendants']], default=0):.0f} MB"
                    for c in contenders) + ".",
        f"sync: the change was made by SQL UPDATEs of one column in {len(CHANGES)} tables (1 row at least per "
        "table, spread over the ids; the triggers logged each row's id), and undone after verify_flask. Both syncs "
        "start from the same target (the second from a copy taken before the first); both found "
        + ("the same" if _sync_totals(syn) == _sync_totals(scan) else "DIFFERENT")
        + f" changes ({_sync_totals(syn)} vs {_sync_totals(scan)}: inserted, updated, deleted).",
        verify_note,
        "1-minute load average before → after each: " + ", ".join(f"{c.key} {c.load[0]} → {c.load[1]}"
                                                                 for c in contenders) + ".",
        f"PIN hashing: {pins['sample']} PINs through the export's own pool after a warm-up, single core "
        f"{min(200, pins['sample'])} PINs in-process just before; load average {pins['load'][0]} before, "
        f"{pins['load'][1]} after (other work on the machine competes with the pool of workers more than "
        "with the single-core run).",
    ]
    result = {
        "scale": args.scale, "rows": rows, "files": len(list(seeded["media_root"].rglob("*.*"))),
        "source_db": db, "cores": os.cpu_count(), "load_start": load_start, "load_end": loadavg(),
        "bench_seconds": round(time.perf_counter() - started, 1), "pin_method_of_rows": CHEAP_PIN_METHOD,
        "contenders": [{**asdict(c), "rows_per_s": round(c.rows_per_s)} for c in contenders],
        "ratios": ratios, "pins": pins, "notes": notes,
    }
    table = markdown(result)
    say("\n" + table)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2, default=str))
    output.with_suffix(".md").write_text(table + "\n")
    say(f"\nbench total {result['bench_seconds']:.0f} s; written {output} and {output.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
