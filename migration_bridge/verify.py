"""``verify_flask``: prove the Flask database (and storage) holds what the legacy app holds.

Reads the legacy side through the Django ORM (``LegacySource``, models by app label)
and the target through ``flask_models``; writes nothing to either, except with
``fix_counts``, which rewrites wrong cached counters in the target.

The checks, in order (each passes or fails with figures and the offending ids,
first 20 with the count):

1. ``row_counts``  per table: target ids vs the source ids the export meant to load
   (source minus the rows ``bridge_notes`` records as rejected/skipped); the export
   must be complete (``bridge_checkpoints``) and missing + extra ids must stay within
   the tolerance (default 0.1% of the expected count). Ids are listed even within it.
2. ``foreign_keys`` every FK column of every flask_models table points at an
   existing row (replies: ``comments.parent_id``).
3. ``content``     every row present on both sides equals its source row passed
   through the export's own transforms and context (``pipeline.Exporter``): chunked
   checksums over primary-key ranges, descending into differing chunks down to the
   ids (``diff``), then a field-by-field comparison of N random rows per table.
   Not in the checksum: salted columns (``students.pin_hash``; ``users.media_password``
   when encrypted), compared by meaning in the sample (the PIN verifies, the token
   decrypts to the legacy value); cached counters (check 4 owns them, so that
   ``--fix-counts`` does not turn into content differences).
4. ``counters``    media graph/eye/read likes = interactions' flags, interaction
   comment_count = that student's comments on that media, recomputed in the target;
   ``fix_counts`` rewrites the wrong ones (and the check then re-reads them).
5. ``observer_scope`` per observer: ``flask_models.observer_visible_session_ids``
   equals the legacy rule (session's teacher's district == observer's district),
   restricted to migrated sessions, and no visible session lies outside the
   observer's legacy district.
6. ``teacher_dashboards`` per teacher: ``flask_models.teacher_dashboard`` sessions and
   students equal legacy ``Session.created_by`` / ``Student.admin``, restricted to
   migrated ids.
7. ``files``       every key the target references (media image/video, project image
   URLs under MEDIA_BASE_URL) exists in the target storage with the expected size
   (``bridge_files`` manifest when the export's file step ran, else the source
   storage's size under the same name); media-URL profile pictures included;
   hit ratio > 99.9%. Files missing in the legacy storage too count as missing and
   are listed apart; ``accept_missing_source_files`` lets only those not count.
8. ``flask_pages`` (with a Flask URL) N sampled session and media pages answer 200.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import random
import urllib.error
import urllib.parse
import urllib.request
from array import array
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import sqlalchemy as sa

import flask_models as fm

from . import bookkeeping as bk
from . import cli, dialects, waits
from .cli import check_writable_dir
from .conf import BridgeSettings
from .diff import DEFAULT_CHUNK_SIZE, canonical, canonical_row, compare_range, keyset_ranges, row_hash
from .errors import BridgeError
from .idset import IdSet
from .mapping import ENTITIES, Entity
from .report import RootCauses, jsonable, root_cause_lines, run_header
from .source import LegacySource
from .transforms import (Reject, Root, Skip, TransformContext, check_parents, media_url, root_of,
                         storage_name_from_url, validate_row)

SHOW_IDS = 20
FILE_HIT_RATIO = 0.999
DEFAULT_SESSION_PATH = "/sessions/{id}"
DEFAULT_POST_PATH = "/post/{id}"

# Cached counters: compared against recomputed totals by check 4, not against the
# source by check 3 (the source's counters drift; --fix-counts corrects the target).
COUNTER_COLUMNS = {
    "media": ("graph_likes", "eye_likes", "read_likes"),
    "student_media_interactions": ("comment_count",),
}
# Secrets: no value of these ever reaches the terminal or the report.
SECRET_COLUMNS = {
    "users": ("password_hash", "legacy_password_hash", "media_password"),
    "observers": ("password_hash", "legacy_password_hash"),
    "students": ("pin_hash",),
}

CHECK_TITLES = {
    "source_connection": "source connection",
    "row_counts": "row counts per table",
    "foreign_keys": "foreign keys in the target",
    "content": "content (checksums + sample)",
    "counters": "cached counters",
    "observer_scope": "observer scope",
    "teacher_dashboards": "teacher dashboards",
    "files": "files in target storage",
    "flask_pages": "Flask pages",
}


@dataclass
class VerifyOptions:
    target_url: str
    sample: int = 50
    tolerance: float = 0.0
    report_path: str | None = None
    flask_url: str | None = None
    fix_counts: bool = False
    chunk_size: int = DEFAULT_CHUNK_SIZE
    seed: int | None = None
    accept_missing_source_files: bool = False
    lock_timeout: float | None = None  # seconds a statement may wait for a lock in the target

    def public(self) -> dict:
        data = dataclasses.asdict(self)
        data["target_url"] = dialects.mask_url(self.target_url)
        data["flask_url"] = mask_http_url(self.flask_url) if self.flask_url else None
        return data


@dataclass
class CheckResult:
    name: str
    passed: bool | None  # None: not run (skipped)
    summary: str
    figures: dict = field(default_factory=dict)
    offending: dict = field(default_factory=dict)  # label -> {"count", "ids", ...}

    @property
    def status(self) -> str:
        return "SKIP" if self.passed is None else ("PASS" if self.passed else "FAIL")

    def as_dict(self) -> dict:
        return {"name": self.name, "title": CHECK_TITLES[self.name], "status": self.status,
                "passed": self.passed, "summary": self.summary, "figures": self.figures,
                "offending": self.offending}


@dataclass
class VerifyResult:
    checks: list[CheckResult]
    report: dict
    report_path: Path

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if c.passed is False]

    @property
    def passed(self) -> bool:
        return not self.failed


def offending(ids: Iterable, **extra) -> dict:
    """The first SHOW_IDS of ``ids`` (sorted when they sort) with the count."""
    ids = list(ids)
    try:
        ids.sort()
    except TypeError:
        pass
    return {"count": len(ids), "ids": ids[:SHOW_IDS], **extra}


def mask_http_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _ratio(num: int, den: int) -> float:
    return num / den if den else 1.0


class IdList:
    """Ids in ascending order (compact) with a bitmap for membership."""

    def __init__(self, ids: Iterable[int] = ()):
        self.items = array("q")
        self.members = IdSet()
        for i in ids:
            self.add(i)

    def add(self, i: int) -> None:
        self.items.append(i)
        self.members.add(i)

    def __contains__(self, i) -> bool:
        return i in self.members

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


# --- the source rows as the export writes them ------------------------------------

class TransformReplay:
    """The export's transforms with the export's context-building code.

    Uses ``pipeline.Exporter`` itself (its base context, the sessions' archived
    duplicates, the media attributions from ``LegacySource.media_attributions``),
    with the ids the verifier expects in the target standing in for the ids the
    export had loaded, so the rows come out exactly as the export made them.

    When the export's file step ran (``bridge_files`` has entries), the file columns
    are then finalised the way ``files.finalise`` does it: a name whose copy is done
    becomes its manifest key (``media.image_file``/``video_file``, the keys inside
    ``project_images`` URLs, media-URL ``users.profile_picture``); others keep it.
    """

    def __init__(self, conf: BridgeSettings, source: LegacySource, target_url: str,
                 expected: dict[str, IdList], files_finalised: bool):
        from .pipeline import ExportOptions, Exporter

        self.conf = conf
        self.exporter = Exporter(ExportOptions(target_url=target_url, workers=1), conf, source)
        self.expected = expected  # filled entity by entity as the verifier decides
        self.files_finalised = files_finalised

    def entity_context(self, entity: Entity) -> TransformContext:
        self.exporter.loaded = {name: ids.members for name, ids in self.expected.items()}
        return self.exporter.entity_context(entity)

    def transform(self, entity: Entity, ctx: TransformContext, rows: list[dict], conn) -> list[tuple[dict, Any]]:
        batch_ctx = self.exporter.batch_context(entity, ctx, rows)
        results = [(src, entity.transform(src, batch_ctx)) for src in rows]
        if self.files_finalised and entity.name in ("media", "users"):
            self._finalise_files(entity, results, conn)
        return results

    def _finalise_files(self, entity: Entity, results: list, conn) -> None:
        from .files import DONE, finalised_media_files, manifest_rows

        prefix = self.conf.MEDIA_URL_PREFIX
        done = [(src, r.row) for src, r in results if not isinstance(r, (Reject, Skip))]
        names = set()
        for src, _row in done:
            if entity.name == "media":
                names.update(str(src[f]) for f in ("image_file", "video_file") if src[f])
                if isinstance(src["project_images"], list):
                    names.update(n for n in (storage_name_from_url(e, prefix) for e in src["project_images"]) if n)
            else:
                name = storage_name_from_url(src["profile_picture"], prefix)
                if name:
                    names.add(name)
        if not names:
            return
        keys = {m.old_name: m.key for m in manifest_rows(conn, names) if m.status in DONE}

        def final(name: str) -> str:
            return keys.get(name, name)

        for src, row in done:
            if entity.name == "media":
                row.update(finalised_media_files(src, final, self.exporter.ctx))
            else:
                name = storage_name_from_url(src["profile_picture"], prefix)
                if name:
                    row["profile_picture"] = media_url(final(name), self.conf.MEDIA_BASE_URL)


# --- the verifier ------------------------------------------------------------------

class Verifier:
    def __init__(self, options: VerifyOptions, conf: BridgeSettings, source: LegacySource,
                 raw_settings: dict | None = None):
        self.options = options
        self.conf = conf
        self.source = source
        self.raw_settings = raw_settings or {}
        self.seed = options.seed if options.seed is not None else random.SystemRandom().randrange(2**31)
        self.started = bk.utcnow()
        self.report_path: Path | None = None
        self.engine: sa.Engine | None = None
        self.source_frozen: dict | None = None  # the legacy freeze flag while verifying
        # filled by load_state()
        self.source_ids: dict[str, IdList] = {}
        self.target_ids: dict[str, IdList] = {}
        self.export_notes: dict[str, dict[int, tuple[str, str]]] = {}  # what the export said: (kind, reason)
        self.checkpoints: dict[str, Any] = {}
        # decided by the content pass, from the source alone: rows the target must hold,
        # and the rows it must not hold, each with the root cause (a source row) and reason
        self.expected: dict[str, IdList] = {}
        self.gone: dict[str, dict[int, Root]] = {}
        self.gone_reason: dict[str, dict[int, str]] = {}
        self.audited = False
        self.has_manifest = False  # a bridge_files table exists
        self.files_finalised = False  # ... and has entries: the export's file step ran

    def rng(self, purpose: str) -> random.Random:
        return random.Random(f"{self.seed}:{purpose}")

    # --- preflight ------------------------------------------------------------------

    def preflight(self) -> None:
        o = self.options
        if o.sample < 0:
            raise BridgeError("--sample must be >= 0")
        if not (0 <= o.tolerance < 1) or math.isnan(o.tolerance):
            raise BridgeError("--tolerance must be a fraction >= 0 and < 1 (0.001 = 0.1%)")
        if o.chunk_size < 1:
            raise BridgeError("--chunk-size must be >= 1")
        if o.flask_url:
            parts = urllib.parse.urlsplit(o.flask_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise BridgeError(f"--flask-url must be an http(s) URL, not {mask_http_url(o.flask_url)!r}")
            check_http_reachable(o.flask_url)
        for key in ("FLASK_SESSION_PATH", "FLASK_POST_PATH"):
            value = self.raw_settings.get(key)
            if value is not None and (not isinstance(value, str) or "{id}" not in value):
                raise BridgeError(f"bad settings: MIGRATION_BRIDGE[{key!r}] must be a path containing {{id}}")
        if o.lock_timeout is not None and not o.lock_timeout > 0:
            raise BridgeError("--lock-timeout must be > 0 seconds")
        # where the report goes, proven writable before any check runs
        self.report_path = (Path(o.report_path) if o.report_path
                            else default_report_path(self.conf, self.started))
        if self.report_path.is_dir():
            raise BridgeError(f"--report {self.report_path} is a directory: give a file path (e.g. "
                              f"{self.report_path / 'verify.json'})")
        check_writable_dir(self.report_path.parent, "report", "--report")
        self._storage(self.conf.TARGET_STORAGE, "TARGET_STORAGE")
        self._storage(self.conf.SOURCE_STORAGE, "SOURCE_STORAGE")
        self.source.check_reachable()
        for entity in ENTITIES:
            self.source.model(entity.source_model)

    def _storage(self, alias: str, setting: str):
        from django.core.files.storage import InvalidStorageError, storages

        try:
            return storages[alias]
        except InvalidStorageError:
            raise BridgeError(f"bad settings: MIGRATION_BRIDGE[{setting!r}] = {alias!r} is not a STORAGES alias") from None

    def open_target(self) -> sa.Engine:
        engine = dialects.create_target_engine(self.options.target_url, lock_timeout=self.options.lock_timeout)
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
                inspector = sa.inspect(conn)
                missing = [t.name for t in fm.TABLES_IN_ORDER if not inspector.has_table(t.name)]
                has_bookkeeping = inspector.has_table(bk.checkpoints.name) and inspector.has_table(bk.notes.name)
                self.has_manifest = inspector.has_table("bridge_files")
        except sa.exc.DBAPIError as exc:
            engine.dispose()
            raise BridgeError(dialects.describe_connect_error(exc, engine.url)) from None
        if missing:
            engine.dispose()
            raise BridgeError(f"target {dialects.mask_url(engine.url)} has no Flask schema "
                              f"(missing tables: {', '.join(missing)}): run export_to_flask first")
        if not has_bookkeeping:
            engine.dispose()
            raise BridgeError(f"target {dialects.mask_url(engine.url)} has no migration bookkeeping "
                              "(bridge_checkpoints): it was not written by export_to_flask")
        return engine

    # --- state shared by the checks ---------------------------------------------------

    def load_state(self) -> None:
        for entity in ENTITIES:
            qs = self.source.model(entity.source_model).objects.using(self.source.alias)
            self.source_ids[entity.name] = IdList(
                qs.order_by("pk").values_list("pk", flat=True).iterator(chunk_size=20_000))
        with self.engine.connect() as conn:
            for entity in ENTITIES:
                table = entity.target
                result = conn.execution_options(stream_results=True, yield_per=50_000).execute(
                    sa.select(table.c.id).order_by(table.c.id))
                self.target_ids[entity.name] = IdList(i for (i,) in result)
            self.checkpoints = {row.entity: row for row in conn.execute(sa.select(bk.checkpoints))}
            if self.has_manifest:
                self.files_finalised = conn.execute(
                    sa.select(sa.literal(1)).select_from(sa.table("bridge_files")).limit(1)).first() is not None
            # only to explain differences: the expected state never comes from here
            self.export_notes = {entity.name: {} for entity in ENTITIES}
            result = conn.execution_options(stream_results=True, yield_per=50_000).execute(
                sa.select(bk.notes.c.entity, bk.notes.c.source_id, bk.notes.c.kind, bk.notes.c.detail)
                .where(bk.notes.c.kind.in_(("reject", "skip"))))
            for entity_name, source_id, kind, detail in result:
                if entity_name in self.export_notes:
                    self.export_notes[entity_name][source_id] = (kind, (detail or {}).get("reason", ""))

    def migrated(self, name: str) -> IdSet:
        """Ids both expected from the source and present in the target."""
        target = self.target_ids[name]
        return IdSet(i for i in self.expected[name] if i in target)

    # --- the run ----------------------------------------------------------------------

    def run(self) -> VerifyResult:
        started = self.started = bk.utcnow()
        cli.current["lock_timeout"] = self.options.lock_timeout
        self.preflight()
        self.engine = self.open_target()
        self.source_frozen = _freeze_state()
        watch = waits.watch(self.engine, self.options.lock_timeout)
        try:
            self.load_state()
            checks = []
            for name, method in (
                ("source_connection", self.check_source_connection),
                ("counters", self.check_counters),  # before content: fixes are counters only
                ("content", self.check_content),  # decides, from the source, what the target must hold
                ("row_counts", self.check_row_counts),
                ("foreign_keys", self.check_foreign_keys),
                ("observer_scope", self.check_observer_scope),
                ("teacher_dashboards", self.check_teacher_dashboards),
                ("files", self.check_files),
                ("flask_pages", self.check_flask_pages),
            ):
                checks.append(self._run_check(name, method))
            order = list(CHECK_TITLES)
            checks.sort(key=lambda c: order.index(c.name))
        finally:
            watch.stop()
            self.engine.dispose()
        finished = bk.utcnow()
        report = {
            **run_header("migration_bridge verify_flask", self.source, self.options, started, finished),
            "source_frozen": self.source_frozen,
            "sample_seed": self.seed,
            "passed": all(c.passed is not False for c in checks),
            "root_causes": self.root_causes(),
            "checks": [c.as_dict() for c in checks],
        }
        path = self.report_path or default_report_path(self.conf, started)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(jsonable(report), indent=2, ensure_ascii=False), encoding="utf-8")
        return VerifyResult(checks, report, path)

    def _run_check(self, name: str, method: Callable[[], CheckResult]) -> CheckResult:
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

    # --- 0. the source connection ------------------------------------------------------

    def check_source_connection(self) -> CheckResult:
        facts = self.source.connection_facts()
        summary = (f"{facts['vendor']}: {facts['charset']}"
                   + (f", time zone {facts['time_zone']}" if facts["time_zone"] else "")
                   + (f", sql_mode {facts['sql_mode'] or '(empty)'}" if facts["vendor"] == "mysql" else ""))
        if not facts["lossless"]:
            summary = ("the legacy DB connection does not return full UTF-8, characters it cannot carry come back "
                       "as '?': set OPTIONS={'charset': 'utf8mb4'} in the legacy DATABASES entry; " + summary)
        return CheckResult("source_connection", facts["lossless"], summary, facts)

    # --- 1. row counts ------------------------------------------------------------------

    def root_causes(self) -> list[dict]:
        causes = RootCauses()
        for name, gone in self.gone.items():
            for root in gone.values():
                causes.add(name, root)
        return causes.as_list([e.name for e in ENTITIES])

    def check_row_counts(self) -> CheckResult:
        if not self.audited:
            return CheckResult("row_counts", False, "not decided: the content pass, which derives the expected "
                                                    "rows from the source, did not finish")
        figures, bad, off = {}, [], {}
        total_expected = total_target = total_gone = 0
        for entity in ENTITIES:
            name = entity.name
            expected, target = self.expected[name], self.target_ids[name]
            missing = [i for i in expected if i not in target]
            extra = [i for i in target if i not in expected]
            allowed = math.floor(self.options.tolerance * len(expected))
            checkpoint = self.checkpoints.get(name)
            complete = bool(checkpoint and checkpoint.done)
            gone, notes = self.gone[name], self.export_notes[name]
            ok = complete and len(missing) + len(extra) <= allowed
            figures[name] = {
                "source": len(self.source_ids[name]), "expected": len(expected), "target": len(target),
                "rejected_or_skipped_by_source_rules": len(gone), "missing": len(missing), "extra": len(extra),
                "allowed_difference": allowed, "export_complete": complete,
                "export_read": checkpoint.read if checkpoint else None,
                "export_rejected_or_skipped": len(notes),
            }
            if missing:
                shown = sorted(missing)[:SHOW_IDS]
                off[f"{name}: missing in target"] = offending(missing, export_said={
                    str(i): f"{notes[i][0]}: {notes[i][1]}" if i in notes else "nothing (lost)" for i in shown})
            if extra:
                shown = sorted(extra)[:SHOW_IDS]
                off[f"{name}: in target, must not be"] = offending(extra, why={
                    str(i): self.gone_reason[name].get(i, "not in the source") for i in shown})
            if not ok:
                why = "export not complete" if not complete else (
                    f"{len(target)} rows, {len(expected)} expected ({len(missing)} missing, {len(extra)} extra)")
                bad.append(f"{name}: {why}")
            total_expected += len(expected)
            total_target += len(target)
            total_gone += len(gone)
        roots = len(self.root_causes())
        if bad:
            summary = "; ".join(bad)
        else:
            summary = (f"{len(ENTITIES)} tables, {total_target} rows for {total_expected} expected; "
                       f"{total_gone} rows rejected or skipped for faults in the source, from {roots} root causes")
            if off:
                summary += f"; within the tolerance of {self.options.tolerance:.3%}: " + ", ".join(off)
        return CheckResult("row_counts", not bad, summary, figures, off)

    # --- 2. foreign keys ----------------------------------------------------------------

    def check_foreign_keys(self) -> CheckResult:
        figures, off = {}, {}
        with self.engine.connect() as conn:
            for table in fm.TABLES_IN_ORDER:
                for fk in sorted(table.foreign_keys, key=lambda f: f.parent.name):
                    column, parent = fk.parent, fk.column
                    p = parent.table.alias("p")
                    dangling = (
                        sa.select(table.c.id)
                        .select_from(table.outerjoin(p, column == p.c[parent.name]))
                        .where(column.isnot(None), p.c[parent.name].is_(None))
                    )
                    count = conn.execute(sa.select(sa.func.count()).select_from(dangling.subquery())).scalar_one()
                    label = f"{table.name}.{column.name} -> {parent.table.name}"
                    figures[label] = count
                    if count:
                        ids = list(conn.execute(dangling.order_by(table.c.id).limit(SHOW_IDS)).scalars())
                        kind = "replies without their parent" if (
                            table.name == "comments" and column.name == "parent_id") else "dangling"
                        off[label] = {"count": count, "ids": ids, "kind": kind}
        total = sum(figures.values())
        summary = (f"{len(figures)} foreign key columns, no dangling reference" if not total else
                   "; ".join(f"{label}: {o['count']} {o['kind']}" for label, o in off.items()))
        return CheckResult("foreign_keys", not total, summary, figures, off)

    # --- 3. content -------------------------------------------------------------------

    def compared_columns(self, entity: Entity) -> tuple[list[str], list[str]]:
        """(columns in the checksum, columns compared by meaning in the sample)."""
        excluded = set(COUNTER_COLUMNS.get(entity.name, ()))
        by_meaning = []
        if entity.hashed_pin:
            by_meaning.append(entity.hashed_pin[0])
        if entity.name == "users" and self.conf.MEDIA_PASSWORD_KEY:
            by_meaning.append("media_password")
        excluded |= set(by_meaning)
        return [c.name for c in entity.target.columns if c.name not in excluded], by_meaning

    def check_content(self) -> CheckResult:
        replay = TransformReplay(self.conf, self.source, self.options.target_url, self.expected,
                                 files_finalised=self.files_finalised)
        figures, off = {}, {}
        problems = 0
        sample_rng = self.rng("content-sample")
        with self.engine.connect() as conn:
            for entity in ENTITIES:
                columns, by_meaning = self.compared_columns(entity)
                stats, changed, changed_columns, misread, sampled = self._audit_table(
                    conn, replay, entity, columns, sample_rng)
                sample_diffs, meaning_failures = self._sample_table(conn, replay, entity, columns, by_meaning, sampled)
                stats.update({
                    "excluded_from_checksum": sorted(set(c.name for c in entity.target.columns) - set(columns)),
                    "sampled": len(sampled), "sample_ids": sorted(sampled),
                    "sample_differences": len(sample_diffs), "compared_by_meaning": by_meaning,
                    "meaning_failures": len(meaning_failures),
                })
                figures[entity.name] = stats
                if changed:
                    first = sorted(changed)[:SHOW_IDS]
                    off[f"{entity.name}: rows differ"] = offending(
                        changed, columns={str(i): changed_columns[i] for i in first})
                if misread:
                    off[f"{entity.name}: text read differs from the bytes the legacy DB holds (lossy connection)"] = \
                        offending(misread)
                if sample_diffs:
                    off[f"{entity.name}: sample, fields differ"] = offending(
                        sample_diffs, columns={str(i): sample_diffs[i] for i in sorted(sample_diffs)[:SHOW_IDS]})
                if meaning_failures:
                    off[f"{entity.name}: sample, {'/'.join(by_meaning)} does not match the legacy value"] = offending(
                        meaning_failures)
                problems += len(changed) + len(misread) + len(sample_diffs) + len(meaning_failures)
        self.audited = True
        rows = sum(f["rows_compared"] for f in figures.values())
        sampled = sum(f["sampled"] for f in figures.values())
        if problems:
            summary = "; ".join(f"{label}: {o['count']}" for label, o in off.items())
        else:
            summary = (f"{rows} rows equal by checksum in {sum(f['chunks'] for f in figures.values())} chunks, "
                       f"source text checked byte for byte; {sampled} sampled rows equal field by field "
                       "(PINs verified)")
        return CheckResult("content", not problems, summary, figures, off)

    def _decide(self, entity: Entity, src: dict, result, waiting: dict[int, int]) -> Reject | Skip | None:
        """Whether the target must hold this source row, from the source and the mapping's
        rules alone: None (it must), or why not. A reply whose parent comes later waits."""
        if isinstance(result, (Reject, Skip)):
            return result
        row = result.row
        filled_later = (entity.hashed_pin[0],) if entity.hashed_pin else ()
        problem = (validate_row(row, entity.target, entity.choices, filled_later)
                   or check_parents(row, entity.foreign_keys, self.expected, self.gone))
        column = entity.self_foreign_key
        if problem is None and column and row[column] is not None and row[column] not in self.expected[entity.name]:
            parent = row[column]
            if parent in waiting or (parent > src["id"] and parent not in self.gone[entity.name]):
                waiting[src["id"]] = parent
                return None
            problem = check_parents(row, {column: entity.name}, self.expected, self.gone)
        return problem

    def _audit_table(self, conn, replay: TransformReplay, entity: Entity, columns: list[str],
                     sample_rng: random.Random):
        """One pass over the source table: decide every row, check its text was read
        losslessly, and compare the rows the target must hold with the target, chunk by chunk."""
        name = entity.name
        expected = self.expected[name] = IdList()
        gone = self.gone[name] = {}
        reasons = self.gone_reason[name] = {}
        waiting: dict[int, int] = {}
        misread: list[int] = []
        ctx = replay.entity_context(entity)

        def rule_out(source_id: int, result) -> None:
            gone[source_id] = root_of(name, source_id, result)
            reasons[source_id] = result.reason

        def source_batches():
            # every id read is kept (None = the target must not hold it) so the ranges
            # follow the source; the rest carry (row hash, canonical values)
            for batch in self.source.extract_rows_with_text_bytes(entity.source_model, entity.source_fields,
                                                                  self.options.chunk_size):
                rows = [row for row, _, _ in batch]
                misread.extend(row["id"] for row, in_db, decoded in batch if in_db != decoded)
                hashes: dict[int, tuple | None] = {r["id"]: None for r in rows}
                for src, result in replay.transform(entity, ctx, rows, conn):
                    problem = self._decide(entity, src, result, waiting)
                    if problem is not None:
                        rule_out(src["id"], problem)
                        continue
                    if src["id"] not in waiting:
                        expected.add(src["id"])
                    values = canonical_row(result.row, columns)
                    hashes[src["id"]] = (row_hash(values), values)
                yield hashes

        select_cols = [entity.target.c[c] for c in columns]
        chunks = differing_chunks = rows_compared = seen = 0
        changed: list[int] = []
        changed_columns: dict[int, list[str]] = {}
        sampled: list[int] = []
        for lo, hi, batch in keyset_ranges(source_batches()):
            source_hashes = {i: v[0] for i, v in batch.items() if v is not None}
            stmt = sa.select(*select_cols).order_by(entity.target.c.id)
            if lo is not None:
                stmt = stmt.where(entity.target.c.id >= lo)
            if hi is not None:
                stmt = stmt.where(entity.target.c.id < hi)
            canon_tgt: dict[int, tuple] = {}
            target_hashes: dict[int, bytes] = {}
            for row in conn.execute(stmt).mappings():
                if row["id"] not in source_hashes:
                    continue  # a row the target must not hold: check 1 lists it
                values = canonical_row(row, columns)
                canon_tgt[row["id"]] = values
                target_hashes[row["id"]] = row_hash(values)
            diff = compare_range(lo, hi, source_hashes, target_hashes)
            chunks += 1
            if diff:
                differing_chunks += 1
            for i in diff.changed:
                changed.append(i)
                if len(changed_columns) < SHOW_IDS:
                    changed_columns[i] = [c for c, a, b in zip(columns, batch[i][1], canon_tgt[i]) if a != b]
            # reservoir sample over the rows present on both sides
            for i in source_hashes:
                if i in target_hashes:
                    rows_compared += 1
                    seen += 1
                    if len(sampled) < self.options.sample:
                        sampled.append(i)
                    else:
                        j = sample_rng.randrange(seen)
                        if j < self.options.sample:
                            sampled[j] = i
        self._settle_waiting(entity, waiting, rule_out)
        stats = {"rows_compared": rows_compared, "chunks": chunks, "chunks_differing": differing_chunks,
                 "rows_differing": len(changed), "rows_misread": len(misread)}
        return stats, changed, changed_columns, misread, sampled

    def _settle_waiting(self, entity: Entity, waiting: dict[int, int], rule_out) -> None:
        """Replies that waited for a later parent: in once it is, out with its root when it
        is out, and out on their own when it never came (missing, or a cycle)."""
        expected, gone, column = self.expected[entity.name], self.gone[entity.name], entity.self_foreign_key
        progress = True
        while waiting and progress:
            progress = False
            for i, parent in sorted(waiting.items()):
                if parent in expected:
                    expected.add(i)
                elif parent in gone:
                    rule_out(i, Reject(f"{column}: {entity.name} id {parent} was rejected", root=gone[parent]))
                else:
                    continue
                del waiting[i]
                progress = True
        for i, parent in sorted(waiting.items()):
            rule_out(i, Reject(f"{column}: {entity.name} id {parent} was rejected", root=gone[parent])
                     if parent in gone else
                     Reject(f"{column}: {entity.name} id {parent} never loaded (missing in the source, "
                            "or a cycle of replies)"))

    def _sample_table(self, conn, replay: TransformReplay, entity: Entity, columns: list[str],
                      by_meaning: list[str], sampled: list[int]):
        """Field by field, every column but the counters; salted ones by meaning."""
        diffs: dict[int, list[str]] = {}
        meaning_failures: list[int] = []
        if not sampled:
            return diffs, meaning_failures
        table = entity.target
        ctx = replay.entity_context(entity)
        rows = self.source.rows_by_id(entity.source_model, entity.source_fields, sorted(sampled))
        source_rows = {src["id"]: (src, result) for src, result in replay.transform(entity, ctx, rows, conn)}
        target_rows = {r["id"]: r for r in conn.execute(
            sa.select(table).where(table.c.id.in_(sorted(sampled)))).mappings()}
        decrypt = _media_password_decryptor(self.conf.MEDIA_PASSWORD_KEY)
        for i in sorted(sampled):
            src, result = source_rows.get(i, (None, None))
            target = target_rows.get(i)
            if src is None or target is None or isinstance(result, (Reject, Skip)):
                diffs[i] = ["<row>"]
                continue
            bad = [c for c in columns if canonical(result.row.get(c)) != canonical(target[c])]
            if bad:
                diffs[i] = bad
            for column in by_meaning:
                if column == "pin_hash":
                    ok = _pin_matches(target["pin_hash"], src[entity.hashed_pin[1]])
                else:  # encrypted media_password
                    ok = decrypt(target["media_password"]) == src["media_password"]
                if not ok:
                    meaning_failures.append(i)
        return diffs, meaning_failures

    # --- 4. counters ------------------------------------------------------------------

    def check_counters(self) -> CheckResult:
        with self.engine.connect() as conn:
            media_wrong, comments_wrong = wrong_counters(conn)
        figures = {"media_checked": len(self.target_ids["media"]),
                   "interactions_checked": len(self.target_ids["student_media_interactions"]),
                   "media_wrong": len(media_wrong), "interactions_wrong": len(comments_wrong)}
        fixed = None
        off = {}
        if self.options.fix_counts and (media_wrong or comments_wrong):
            if media_wrong:
                off["fixed: media like counters"] = offending(media_wrong)
            if comments_wrong:
                off["fixed: interaction comment_count"] = offending(comments_wrong)
            with self.engine.begin() as conn:
                fix_counters(conn, media_wrong, comments_wrong)
            fixed = {"media": len(media_wrong), "interactions": len(comments_wrong)}
            figures["fixed"] = fixed
            with self.engine.connect() as conn:
                media_wrong, comments_wrong = wrong_counters(conn)
            figures["media_wrong_after_fix"] = len(media_wrong)
            figures["interactions_wrong_after_fix"] = len(comments_wrong)
        if media_wrong:
            off["media: likes differ from the interactions"] = offending(
                media_wrong, columns={str(i): cols for i, (cols, _) in sorted(media_wrong.items())[:SHOW_IDS]})
        if comments_wrong:
            off["student_media_interactions: comment_count differs from the comments"] = offending(comments_wrong)
        ok = not media_wrong and not comments_wrong
        if ok and fixed:
            summary = (f"fixed {fixed['media']} media like counters and {fixed['interactions']} interaction "
                       f"comment counts; all counters now equal the recomputed totals")
        elif ok:
            summary = (f"{figures['media_checked']} media and {figures['interactions_checked']} interactions: "
                       "counters equal the recomputed totals")
        else:
            summary = (f"{len(media_wrong)} media with wrong like counters, {len(comments_wrong)} interactions "
                       "with a wrong comment_count" + ("" if self.options.fix_counts else " (--fix-counts repairs them)"))
        return CheckResult("counters", ok, summary, figures, off)

    # --- 5. observers -------------------------------------------------------------------

    def _legacy_sessions(self) -> list[tuple[int, int | None, int | None]]:
        """(session id, teacher id, teacher's district id), through the ORM."""
        qs = self.source.model("Session").objects.using(self.source.alias)
        return list(qs.order_by("pk").values_list("id", "created_by_id", "created_by__district_id")
                    .iterator(chunk_size=20_000))

    def check_observer_scope(self) -> CheckResult:
        migrated_sessions = self.migrated("sessions")
        sessions_by_district: dict[int, set[int]] = defaultdict(set)
        district_of_session: dict[int, int | None] = {}
        for sid, _teacher, district in self._legacy_sessions():
            if sid in migrated_sessions:
                district_of_session[sid] = district
                if district is not None:
                    sessions_by_district[district].add(sid)
        legacy_district = dict(self.source.model("Observer").objects.using(self.source.alias)
                               .values_list("id", "district_id"))
        mismatched, outside_observers = [], []
        details = {}
        outside_total = compared = 0
        with self.engine.connect() as conn:
            for oid in self.target_ids["observers"]:
                if oid not in legacy_district:
                    continue  # not a legacy observer: check 1 lists it
                compared += 1
                district = legacy_district[oid]
                visible = {s for s in fm.observer_visible_session_ids(conn, oid) if s in migrated_sessions}
                legacy = sessions_by_district.get(district, set())
                outside = {s for s in visible if district_of_session.get(s) != district}
                if visible != legacy or outside:
                    mismatched.append(oid)
                    if outside:
                        outside_observers.append(oid)
                        outside_total += len(outside)
                    if len(details) < SHOW_IDS:
                        details[str(oid)] = {
                            "not_visible_in_target": sorted(legacy - visible)[:SHOW_IDS],
                            "visible_in_target_only": sorted(visible - legacy)[:SHOW_IDS],
                            "outside_district": sorted(outside)[:SHOW_IDS],
                        }
        figures = {"observers_compared": compared, "sessions_migrated": len(migrated_sessions),
                   "observers_differing": len(mismatched), "observers_seeing_outside_district": len(outside_observers),
                   "sessions_outside_district": outside_total}
        off = {"observers": offending(mismatched, sessions=details)} if mismatched else {}
        summary = (f"{compared} observers see exactly their district's {len(migrated_sessions)} migrated sessions"
                   if not mismatched else
                   f"{len(mismatched)} observers see other sessions than in the legacy app "
                   f"({len(outside_observers)} of them sessions outside their district)")
        return CheckResult("observer_scope", not mismatched, summary, figures, off)

    # --- 6. teachers ------------------------------------------------------------------

    def check_teacher_dashboards(self) -> CheckResult:
        migrated_sessions = self.migrated("sessions")
        migrated_students = self.migrated("students")
        sessions_of: dict[int, set[int]] = defaultdict(set)
        for sid, teacher, _district in self._legacy_sessions():
            if teacher is not None and sid in migrated_sessions:
                sessions_of[teacher].add(sid)
        students_of: dict[int, set[int]] = defaultdict(set)
        qs = self.source.model("Student").objects.using(self.source.alias)
        for sid, admin in qs.order_by("pk").values_list("id", "admin_id").iterator(chunk_size=20_000):
            if sid in migrated_students:
                students_of[admin].add(sid)
        legacy_users = self.source_ids["users"]
        bad, details = [], {}
        compared = 0
        with self.engine.connect() as conn:
            for uid in self.target_ids["users"]:
                if uid not in legacy_users:
                    continue
                compared += 1
                dash = fm.teacher_dashboard(conn, uid)
                sessions = {s for s in dash.session_ids if s in migrated_sessions}
                students = {s for s in dash.student_ids if s in migrated_students}
                legacy_sessions, legacy_students = sessions_of.get(uid, set()), students_of.get(uid, set())
                if sessions != legacy_sessions or students != legacy_students:
                    bad.append(uid)
                    if len(details) < SHOW_IDS:
                        details[str(uid)] = {
                            "sessions_missing": sorted(legacy_sessions - sessions)[:SHOW_IDS],
                            "sessions_unexpected": sorted(sessions - legacy_sessions)[:SHOW_IDS],
                            "students_missing": sorted(legacy_students - students)[:SHOW_IDS],
                            "students_unexpected": sorted(students - legacy_students)[:SHOW_IDS],
                        }
        figures = {"teachers_compared": compared, "teachers_differing": len(bad)}
        off = {"teachers": offending(bad, differences=details)} if bad else {}
        summary = (f"{compared} teachers: same sessions and students on both sides" if not bad else
                   f"{len(bad)} teachers' dashboards differ from the legacy app")
        return CheckResult("teacher_dashboards", not bad, summary, figures, off)

    # --- 7. files ---------------------------------------------------------------------

    def referenced_keys(self, conn) -> tuple[dict[str, str], int]:
        """Storage key -> first row referencing it ("media 12", "users 3"), and how many
        project image URLs are not under MEDIA_BASE_URL (not objects of the storage)."""
        base = self.conf.MEDIA_BASE_URL.rstrip("/") + "/"

        def key_of(url) -> str | None:
            if isinstance(url, str) and url.startswith(base) and len(url) > len(base):
                return url[len(base):]
            return None

        m, u = fm.Media.__table__, fm.User.__table__
        keys: dict[str, str] = {}
        external = 0
        result = conn.execution_options(stream_results=True, yield_per=10_000).execute(
            sa.select(m.c.id, m.c.image_file, m.c.video_file, m.c.project_images).order_by(m.c.id))
        for media_id, image, video, project in result:
            for key in (image, video):
                if key:
                    keys.setdefault(key, f"media {media_id}")
            if isinstance(project, list):
                for url in project:
                    key = key_of(url)
                    if key is None:
                        external += 1
                    else:
                        keys.setdefault(key, f"media {media_id}")
        for user_id, picture in conn.execute(sa.select(u.c.id, u.c.profile_picture)
                                             .where(u.c.profile_picture.isnot(None)).order_by(u.c.id)):
            key = key_of(picture)
            if key is not None:
                keys.setdefault(key, f"users {user_id}")
        return keys, external

    def manifest_entries(self, conn) -> dict[str, tuple[int | None, str]]:
        """Target key -> (size copied, legacy storage name), from ``bridge_files``."""
        if not self.files_finalised:
            return {}
        t = bk.files
        return {key: (size, old_name) for key, size, old_name, status in conn.execute(
            sa.select(t.c.key, t.c.size, t.c.old_name, t.c.status))}

    def check_files(self) -> CheckResult:
        target_storage = self._storage(self.conf.TARGET_STORAGE, "TARGET_STORAGE")
        source_storage = self._storage(self.conf.SOURCE_STORAGE, "SOURCE_STORAGE")
        with self.engine.connect() as conn:
            keys, external = self.referenced_keys(conn)
            manifest = self.manifest_entries(conn)

        def probe(key: str) -> tuple[str, int | None, int | None]:
            size, old_name = manifest.get(key, (None, key))  # no manifest entry: same name
            expected = size if size is not None else _size_or_none(source_storage, old_name)
            return key, _size_or_none(target_storage, key), expected

        hits, not_copied, missing_in_source, size_mismatch = [], [], [], []
        with ThreadPoolExecutor(max_workers=16) as pool:
            for key, got, expected in pool.map(probe, sorted(keys)):
                if got is None:
                    (missing_in_source if expected is None else not_copied).append(key)
                elif expected is not None and got != expected:
                    size_mismatch.append(key)
                else:
                    hits.append(key)
        total = len(keys)
        ratio_all = _ratio(len(hits), total)
        ratio_copyable = _ratio(len(hits), total - len(missing_in_source))
        ratio = ratio_copyable if self.options.accept_missing_source_files else ratio_all
        ok = ratio > FILE_HIT_RATIO
        figures = {
            "referenced_keys": total, "present_with_expected_size": len(hits),
            "not_copied": len(not_copied), "size_mismatch": len(size_mismatch),
            "missing_in_source_too": len(missing_in_source), "external_urls": external,
            "hit_ratio": round(ratio_all, 6), "hit_ratio_of_copyable": round(ratio_copyable, 6),
            "threshold": FILE_HIT_RATIO, "missing_source_files_accepted": self.options.accept_missing_source_files,
            "expected_sizes_from": "bridge_files manifest" if manifest else "source storage",
            "target_storage": self.conf.TARGET_STORAGE,
        }

        def listing(key_list):
            return offending(key_list, referenced_by=[keys[k] for k in sorted(key_list)[:SHOW_IDS]])

        off = {}
        if not_copied:
            off["missing in target storage"] = listing(not_copied)
        if size_mismatch:
            off["size differs from the source"] = listing(size_mismatch)
        if missing_in_source:
            off["missing in the legacy storage too"] = listing(missing_in_source)
        summary = (f"{len(hits)}/{total} referenced files present with the expected size "
                   f"(hit ratio {ratio_all:.2%}")
        if missing_in_source:
            summary += (f"; {len(missing_in_source)} missing in the legacy storage too"
                        + (f", accepted: {ratio_copyable:.2%} of the copyable" if self.options.accept_missing_source_files else ""))
        summary += f"; needs > {FILE_HIT_RATIO:.1%})"
        return CheckResult("files", ok, summary, figures, off)

    # --- 8. Flask pages -----------------------------------------------------------------

    def check_flask_pages(self) -> CheckResult:
        if not self.options.flask_url:
            return CheckResult("flask_pages", None, "not run (no --flask-url)")
        base = self.options.flask_url.rstrip("/")
        rng = self.rng("flask-pages")
        paths = {
            "sessions": self.raw_settings.get("FLASK_SESSION_PATH") or DEFAULT_SESSION_PATH,
            "media": self.raw_settings.get("FLASK_POST_PATH") or DEFAULT_POST_PATH,
        }
        requests = []
        for table, template in paths.items():
            ids = list(self.target_ids[table])
            for i in sorted(rng.sample(ids, min(self.options.sample, len(ids)))):
                requests.append((table, i, base + template.format(id=i)))

        def fetch(req):
            table, i, url = req
            try:
                with urllib.request.urlopen(url, timeout=15) as response:
                    return table, i, response.status
            except urllib.error.HTTPError as exc:
                return table, i, exc.code
            except (urllib.error.URLError, OSError) as exc:
                return table, i, f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"

        bad: dict[str, list] = defaultdict(list)
        statuses: dict[str, dict] = defaultdict(dict)
        with ThreadPoolExecutor(max_workers=8) as pool:
            for table, i, status in pool.map(fetch, requests):
                if status != 200:
                    bad[table].append(i)
                    statuses[table][str(i)] = status
        figures = {"flask_url": mask_http_url(self.options.flask_url), "paths": paths,
                   "requested": {t: sum(1 for r in requests if r[0] == t) for t in paths},
                   "failed": {t: len(v) for t, v in bad.items()}}
        off = {f"{table} pages not 200": offending(ids, status={k: statuses[table][k] for k in
                                                               list(statuses[table])[:SHOW_IDS]})
               for table, ids in bad.items()}
        n_bad = sum(len(v) for v in bad.values())
        summary = (f"{len(requests)} sampled pages answered 200" if not n_bad else
                   f"{n_bad} of {len(requests)} sampled pages did not answer 200 ({why_pages_failed(statuses)})")
        return CheckResult("flask_pages", not n_bad, summary, figures, off)


def why_pages_failed(statuses: dict[str, dict]) -> str:
    """The answers instead of 200, most frequent first: '70× 404, 4× URLError: timed out'."""
    from collections import Counter

    counts = Counter(str(status) for by_id in statuses.values() for status in by_id.values())
    return ", ".join(f"{n}× {status}" for status, n in counts.most_common(3)) + (
        f", {len(counts) - 3} other answers" if len(counts) > 3 else "")


def check_http_reachable(url: str, timeout: float = 10.0) -> None:
    """Raise BridgeError (exit 2) when nothing answers at ``url``: before any check runs.
    Any HTTP answer, an error status included, means the app is there."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise BridgeError(f"--flask-url {mask_http_url(url)} unreachable ({reason}): start the Flask app "
                          "or fix the URL, or leave --flask-url out to skip the page check") from None


# --- counters (shared with --fix-counts) ---------------------------------------------

_MEDIA_FLAGS = (("graph_likes", "liked_graph"), ("eye_likes", "liked_eye"), ("read_likes", "liked_read"))


def wrong_counters(conn) -> tuple[dict[int, tuple[list[str], dict]], dict[int, int]]:
    """Media whose like counters differ from the interactions' flags
    ({id: (columns, correct values)}), and interactions whose comment_count differs
    from that student's comments on that media ({id: correct count})."""
    m = fm.Media.__table__
    i = fm.StudentMediaInteraction.__table__
    c = fm.Comment.__table__
    flags = sa.select(
        i.c.media_id,
        *[sa.func.sum(sa.case((i.c[flag] == sa.true(), 1), else_=0)).label(counter)
          for counter, flag in _MEDIA_FLAGS],
    ).group_by(i.c.media_id).subquery()
    totals = [sa.func.coalesce(flags.c[counter], 0).label(f"n_{counter}") for counter, _ in _MEDIA_FLAGS]
    stmt = (
        sa.select(m.c.id, *[m.c[counter] for counter, _ in _MEDIA_FLAGS], *totals)
        .select_from(m.outerjoin(flags, flags.c.media_id == m.c.id))
        .where(sa.or_(*[m.c[counter] != total for (counter, _), total in zip(_MEDIA_FLAGS, totals)]))
        .order_by(m.c.id)
    )
    media_wrong = {}
    for row in conn.execute(stmt).mappings():
        correct = {counter: int(row[f"n_{counter}"]) for counter, _ in _MEDIA_FLAGS}
        columns = [counter for counter, _ in _MEDIA_FLAGS if row[counter] != correct[counter]]
        media_wrong[row["id"]] = (columns, correct)
    by_student = (
        sa.select(c.c.media_id, c.c.student_id, sa.func.count().label("n"))
        .where(c.c.student_id.isnot(None))
        .group_by(c.c.media_id, c.c.student_id)
        .subquery()
    )
    n = sa.func.coalesce(by_student.c.n, 0)
    stmt = (
        sa.select(i.c.id, n.label("n"))
        .select_from(i.outerjoin(by_student, sa.and_(by_student.c.media_id == i.c.media_id,
                                                     by_student.c.student_id == i.c.student_id)))
        .where(i.c.comment_count != n)
        .order_by(i.c.id)
    )
    comments_wrong = {row.id: int(row.n) for row in conn.execute(stmt)}
    return media_wrong, comments_wrong


def fix_counters(conn, media_wrong: dict, comments_wrong: dict, batch: int = 1000) -> None:
    m = fm.Media.__table__
    i = fm.StudentMediaInteraction.__table__
    update_media = m.update().where(m.c.id == sa.bindparam("b_id")).values(
        {counter: sa.bindparam(f"b_{counter}") for counter, _ in _MEDIA_FLAGS})
    params = [{"b_id": mid, **{f"b_{k}": v for k, v in correct.items()}}
              for mid, (_, correct) in sorted(media_wrong.items())]
    for start in range(0, len(params), batch):
        conn.execute(update_media, params[start:start + batch])
    update_interactions = i.update().where(i.c.id == sa.bindparam("b_id")).values(
        comment_count=sa.bindparam("b_n"))
    params = [{"b_id": iid, "b_n": n} for iid, n in sorted(comments_wrong.items())]
    for start in range(0, len(params), batch):
        conn.execute(update_interactions, params[start:start + batch])


# --- helpers -------------------------------------------------------------------------

def _freeze_state() -> dict | None:
    """The legacy app's freeze flag: while live, rows written since the export show up
    as differences (expected in a rehearsal, not after the final export)."""
    from django.db import DatabaseError

    from .freeze import get_freeze_state

    try:
        return get_freeze_state(use_cache=False).as_dict()
    except DatabaseError:
        return None


def _size_or_none(storage, key: str) -> int | None:
    try:
        return storage.size(key)
    except Exception:  # noqa: BLE001 - absent (FileNotFoundError, S3 404...) or unreadable
        return None


def _pin_matches(pin_hash: str | None, pin: str | None) -> bool:
    from werkzeug.security import check_password_hash

    if not pin_hash or pin is None:
        return False
    try:
        return check_password_hash(pin_hash, pin)
    except (ValueError, TypeError):
        return False


def _media_password_decryptor(key: str) -> Callable[[str | None], str | None]:
    if not key:
        return lambda value: value
    from cryptography.fernet import Fernet, InvalidToken

    fernet = Fernet(key.encode())

    def decrypt(value):
        if not value:
            return value
        try:
            return fernet.decrypt(value.encode()).decode()
        except InvalidToken:
            return None

    return decrypt


def default_report_path(conf: BridgeSettings, started: dt.datetime) -> Path:
    from django.conf import settings

    base = conf.REPORT_DIR or os.path.join(str(getattr(settings, "BASE_DIR", ".")), "var", "reports")
    return Path(base) / f"verify-{started.strftime('%Y%m%dT%H%M%S.%fZ')}.json"


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


def run_verify(options: VerifyOptions, conf: BridgeSettings) -> VerifyResult:
    return Verifier(options, conf, LegacySource(conf.LEGACY_APP), raw_bridge_settings()).run()
