"""``verify_flask``: prove the Flask database (and storage) holds what the legacy app holds.

The legacy side is read through ``LegacySource`` (the Django ORM), the storages through
``filestore``, the target through the profile's schema; nothing is written, except with
``--fix-counts``. What the target must hold is derived from the source by the row
path's own rules (``rowpath``), replayed against the ids *verify* expects: the export's
bookkeeping only explains differences, it never decides them.

Work that can run beside other work does, in forked processes (``forked.Helper``): the
target's ids and its counter sums are read while the source's ids are, and the content
check replays each large table in id ranges, one process per range (``--workers``).

The checks, one module each, over a shared ``State``:

1. ``source_connection`` the legacy connection reads full UTF-8 (here);
2. ``counters``    declared cached counters equal the recomputed totals (``counters``);
3. ``content``     every source row decided, every row the target must hold equal to
   its source row transformed (checksums over id ranges + a sample; ``content``);
4. ``row_counts``  the target holds exactly the rows the source justifies,
   ``foreign_keys`` every reference in the target points at a row, and ``schema`` the
   indexes and foreign keys the profile declares are in the target (``integrity``);
5. ``observer_scope``, ``teacher_dashboards`` who sees what, by the Flask app's own
   queries, equals the legacy rule (``access``);
6. ``files``       every referenced object is in the target storage with the legacy
   file's size (``files``);
7. ``flask_pages`` (with ``--flask-url``) sampled pages answer 200 (``pages``).
"""
from __future__ import annotations

import datetime as dt
import json
import math
import random
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import sqlalchemy as sa

from .. import bookkeeping as bk
from .. import cli, dialects, waits
from ..cli import check_writable_dir
from ..conf import BridgeSettings
from ..errors import BridgeError
from ..files import open_stores
from ..profiles import get_profile
from ..report import jsonable, reports_base, root_cause_lines, run_header, stamp
from ..source import LegacySource
from .access import check_access
from .content import check_content
from .counters import check_counters, count_in_background, fix_counters, wrong_counters
from .files import check_files
from .integrity import check_foreign_keys, check_row_counts, check_schema, root_causes
from .pages import check_flask_pages, check_http_reachable, check_page_settings
from .state import CHECK_TITLES, CheckResult, State, VerifyOptions, VerifyResult, mask_http_url

CHECK_THREADS = 3  # the checks after content run at once

__all__ = ["VerifyOptions", "VerifyResult", "CheckResult", "run_verify", "summary_table", "mask_http_url",
           "wrong_counters", "fix_counters"]


def check_source_connection(state: State) -> CheckResult:
    facts = state.source.connection_facts()
    summary = (f"{facts['vendor']}: {facts['charset']}"
               + (f", time zone {facts['time_zone']}" if facts["time_zone"] else "")
               + (f", sql_mode {facts['sql_mode'] or '(empty)'}" if facts["vendor"] == "mysql" else ""))
    if not facts["lossless"]:
        summary = ("the legacy DB connection does not return full UTF-8, characters it cannot carry come back "
                   "as '?': set OPTIONS={'charset': 'utf8mb4'} in the legacy DATABASES entry; " + summary)
    return CheckResult("source_connection", facts["lossless"], summary, facts)


def preflight(options: VerifyOptions, conf: BridgeSettings, source: LegacySource, started: dt.datetime) -> Path:
    """Bad input, one line, before any check runs; returns where the report goes."""
    if options.sample < 0:
        raise BridgeError("--sample must be >= 0")
    if not (0 <= options.tolerance < 1) or math.isnan(options.tolerance):
        raise BridgeError("--tolerance must be a fraction >= 0 and < 1 (0.001 = 0.1%)")
    if options.chunk_size < 1:
        raise BridgeError("--chunk-size must be >= 1")
    if options.workers < 1:
        raise BridgeError("--workers must be >= 1")
    if options.flask_url:
        parts = urllib.parse.urlsplit(options.flask_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BridgeError(f"--flask-url must be an http(s) URL, not {mask_http_url(options.flask_url)!r}")
        check_http_reachable(options.flask_url)
    if options.lock_timeout is not None and not options.lock_timeout > 0:
        raise BridgeError("--lock-timeout must be > 0 seconds")
    report_path = Path(options.report_path) if options.report_path else default_report_path(conf, started)
    if report_path.is_dir():
        raise BridgeError(f"--report {report_path} is a directory: give a file path (e.g. "
                          f"{report_path / 'verify.json'})")
    check_writable_dir(report_path.parent, "report", "--report")
    source.check_reachable(get_profile(options.target_schema).entities[0].source_model)
    return report_path


def open_target(options: VerifyOptions) -> tuple[sa.Engine, dict[str, str]]:
    """The target engine and what it records it was written with; one line when it is
    not a target the export wrote."""
    engine = dialects.create_target_engine(options.target_url, lock_timeout=options.lock_timeout)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
            inspector = sa.inspect(conn)
            has_bookkeeping = inspector.has_table(bk.checkpoints.name) and inspector.has_table(bk.notes.name)
            recorded = bk.recorded_settings(conn) if has_bookkeeping else {}
    except sa.exc.DBAPIError as exc:
        engine.dispose()
        raise BridgeError(dialects.describe_connect_error(exc, engine.url)) from None
    return engine, (recorded if has_bookkeeping else None)


def check_target(engine: sa.Engine, profile, recorded: dict | None) -> None:
    """The profile's tables, then the export's bookkeeping, are there."""
    with engine.connect() as conn:
        missing = [t.name for t in profile.tables if not sa.inspect(conn).has_table(t.name)]
    if missing:
        raise BridgeError(f"target {dialects.mask_url(engine.url)} has no Flask schema of the {profile.name!r} "
                          f"profile (missing tables: {', '.join(missing)}): run export_to_flask first")
    if recorded is None:
        raise BridgeError(f"target {dialects.mask_url(engine.url)} has no migration bookkeeping "
                          "(bridge_checkpoints): it was not written by export_to_flask")


def run_verify(options: VerifyOptions, conf: BridgeSettings) -> VerifyResult:
    started = bk.utcnow()
    cli.current["lock_timeout"] = options.lock_timeout
    # not the export's datetime parser: one whose every value is checked against the text
    # the server sent (the proof does not rest on the export's parser being right)
    source = LegacySource(conf.LEGACY_APP, datetimes="checked")
    raw_settings = raw_bridge_settings()
    report_path = preflight(options, conf, source, started)
    engine, recorded = open_target(options)
    try:
        profile = get_profile(options.target_schema or (recorded or {}).get("target_schema_ref"))
        check_page_settings(profile, raw_settings)
        for entity in profile.entities:
            if entity.source_model:
                source.model(entity.source_model)
        check_target(engine, profile, recorded)
        stores = open_stores(conf, dry_run=True)
    except BaseException:
        engine.dispose()
        raise
    seed = options.seed if options.seed is not None else random.SystemRandom().randrange(2**31)
    state = State(options, conf, profile, source, engine, raw_settings, seed,
                  key_scheme=recorded.get("key_scheme") or conf.FILE_KEY_SCHEME)
    source_frozen = _freeze_state()
    watch = waits.watch(engine, options.lock_timeout)
    counting = None
    try:
        started_load = time.monotonic()
        counting = count_in_background(engine, profile)
        state.load()
        load_seconds = time.monotonic() - started_load
        checks = [_run_check(name, method) for name, method in (
            ("source_connection", lambda: check_source_connection(state)),
            ("counters", lambda: check_counters(state, counting)),  # before content: fixes are counters only
            ("content", lambda: check_content(state)),  # decides, from the source, what the target must hold
        )]
        # these read what content decided and write nothing another reads: run at once, one
        # works while another waits on a database (one after the other where a side is
        # SQLite: threads sharing an in-memory database's cache lock each other's tables)
        sqlite = "sqlite" in (source.vendor, engine.dialect.name)
        checks += _run_at_once(1 if sqlite else CHECK_THREADS, [
            ("row_counts", lambda: check_row_counts(state)),
            ("foreign_keys", lambda: check_foreign_keys(state)),
            ("schema", lambda: check_schema(state)),
            ("observer_scope", lambda: check_access(state, "observer_scope")),
            ("teacher_dashboards", lambda: check_access(state, "teacher_dashboards")),
            ("files", lambda: check_files(state, stores)),
        ])
        checks.append(_run_check("flask_pages", lambda: check_flask_pages(state)))  # asks for the files found
        order = list(CHECK_TITLES)
        checks.sort(key=lambda c: order.index(c.name))
    finally:
        if counting is not None:
            counting.stop()
        state.close()
        watch.stop()
        stores[1].close()
        engine.dispose()
    finished = bk.utcnow()
    report = {
        **run_header("migration_bridge verify_flask", source, options, started, finished),
        "target_schema": profile.name,
        "source_frozen": source_frozen,
        "sample_seed": seed,
        "load_seconds": round(load_seconds, 3),  # the target's ids and the export's notes, before the checks
        "passed": all(c.passed is not False for c in checks),
        "root_causes": root_causes(state),
        "checks": [c.as_dict() for c in checks],
    }
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(jsonable(report), indent=2, ensure_ascii=False), encoding="utf-8")
    return VerifyResult(checks, report, report_path)


def _run_check(name: str, method) -> CheckResult:
    started = time.monotonic()
    result = _check_result(name, method)
    result.seconds = round(time.monotonic() - started, 3)
    return result


def _run_at_once(threads: int, named_checks: list) -> list[CheckResult]:
    from django.db import connections

    if threads == 1:
        return [_run_check(name, method) for name, method in named_checks]

    def run(name, method) -> CheckResult:
        try:
            return _run_check(name, method)
        finally:
            connections.close_all()  # this thread's legacy connection

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bridge-verify-check") as pool:
        futures = [pool.submit(run, name, method) for name, method in named_checks]
        try:
            return [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def _check_result(name: str, method) -> CheckResult:
    try:
        return method()
    except BridgeError:
        raise
    except (sa.exc.DBAPIError, OSError) as exc:
        if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
            raise  # the target is gone: no check can run, one line (cli) says so
        # A check that cannot run is a failure, reported; the other checks still run.
        detail = str(getattr(exc, "orig", exc)).strip().splitlines()
        return CheckResult(name, False, f"could not run: {type(exc).__name__}: {detail[0] if detail else ''}")


def _freeze_state() -> dict | None:
    """The legacy app's freeze flag: while live, rows written since the export show up
    as differences (expected in a rehearsal, not after the final export)."""
    from django.db import DatabaseError

    from ..freeze import get_freeze_state

    try:
        return get_freeze_state(use_cache=False).as_dict()
    except DatabaseError:
        return None


def default_report_path(conf: BridgeSettings, started: dt.datetime) -> Path:
    return reports_base(conf) / f"verify-{stamp(started)}.json"


def raw_bridge_settings() -> dict:
    """MIGRATION_BRIDGE as given (keys BridgeSettings does not know, e.g. FLASK_POST_PATH)."""
    from django.conf import settings

    raw = getattr(settings, "MIGRATION_BRIDGE", {}) or {}
    return raw if isinstance(raw, dict) else {}


def summary_table(result: VerifyResult) -> str:
    """The terminal table: one line per check, each followed by its listed ids (for a failed
    check its offenders; for a passed one what it tolerated or was told to accept)."""
    head = f"{'check':<30}{'result':<8}summary"
    lines = [head, "-" * 100]
    for check in result.checks:
        lines.append(f"{CHECK_TITLES[check.name]:<30}{check.status:<8}{check.summary}")
        for label, item in check.offending.items():
            more = f" (+{item['count'] - len(item['ids'])} more)" if item["count"] > len(item["ids"]) else ""
            lines.append(f"{'':<38}{label}: {item['count']} — {', '.join(map(str, item['ids']))}{more}")
    lines.append("-" * 100)
    causes = result.report.get("root_causes") or []
    if causes:
        lines.append(f"rows the target must not hold come from {len(causes)} source rows (fix these in the legacy app):")
        lines.extend(f"  {line}" for line in root_cause_lines(causes))
        lines.append("-" * 100)
    failed = result.failed
    ran = [c for c in result.checks if c.passed is not None]
    lines.append(f"all {len(ran)} checks passed" if not failed else
                 f"{len(failed)} of {len(ran)} checks FAILED: {', '.join(c.name for c in failed)}")
    return "\n".join(lines)
