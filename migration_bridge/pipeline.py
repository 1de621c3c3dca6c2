"""The row export: extract (keyset batches) → transform (pure) → load (upsert + checkpoint).

One transaction per batch holds the batch's rows, its notes and its checkpoint, so a
run killed at any point resumes exactly where the last commit left it.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import logging
import os
import shutil
import tempfile
import time
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import sqlalchemy as sa

import flask_models as fm

from . import bookkeeping as bk
from . import cli, dialects, waits
from . import files as files_mod
from .conf import BridgeSettings
from .cli import check_writable_dir
from .errors import BridgeError, first_line
from .fingerprint import context_of, fingerprint_key, row_fingerprint
from .freeze import FreezeState, get_freeze_state
from .idset import IdSet
from .mapping import ENTITIES, ENTITY_NAMES, Entity
from .passwords import check_pin_hash_method, die_with_parent, hash_pins
from .progress import Progress, format_seconds
from .report import jsonable, run_header, write_report
from .source import BEFORE_FIRST_ID, LegacySource
from .transforms import (Note, Reject, Root, Skip, TransformContext, check_parents, find_superseded_sessions,
                         root_of, validate_row)

log = logging.getLogger("migration_bridge")

DEFAULT_PIN_HASH_METHOD = "scrypt"  # werkzeug's default, what the Flask app uses for new PINs
DRY_RUN_PIN_HASH_METHOD = "pbkdf2:sha256:1"  # --dry-run: checks the path, not the cost
DEFAULT_LOCK_TIMEOUT = 300.0  # seconds a statement may wait for a lock in the target
DUPLICATE_POLICIES = ("archive", "fail")
PIN_CHUNK = 16  # PINs per task of the hashing pool (progress moves per task)


@dataclass
class ExportOptions:
    target_url: str
    create_schema: bool = False
    only: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    batch_size: int = 2000
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    pin_hash_method: str | None = None  # None: DEFAULT_PIN_HASH_METHOD (DRY_RUN_... with dry_run)
    dry_run: bool = False
    report_dir: str | None = None
    strict: bool = False
    pin_roster: str | None = None
    restart: bool = False
    reset: bool = False
    yes: bool = False
    on_duplicate_session: str = "archive"
    allow_live: bool = False
    # files (None: MIGRATION_BRIDGE['FILE_WORKERS'] / ['FILE_KEY_SCHEME'])
    skip_files: bool = False
    files_only: bool = False
    file_workers: int | None = None
    key_scheme: str | None = None  # preserve | media-id
    verify_files: bool = False
    sync: bool = False  # only what changed since a complete export (sync.py)
    interactive: bool | None = None  # progress bars; None = when stderr is a terminal
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT

    def public(self) -> dict:
        """The options as the report shows them (URL masked)."""
        data = dataclasses.asdict(self)
        data["target_url"] = dialects.mask_url(self.target_url)
        data.pop("interactive")
        return data


@dataclass
class EntityStats:
    name: str
    read: int = 0
    written: int = 0
    rejected: int = 0
    skipped: int = 0
    seconds: float = 0.0
    last_id: int = BEFORE_FIRST_ID  # ids <= 0 exist in real data: nothing is "before" them
    done: bool = False

    @property
    def rows_per_s(self) -> float:
        return self.read / self.seconds if self.seconds > 0 else 0.0

    def as_checkpoint(self) -> dict:
        return {
            "entity": self.name, "last_id": self.last_id, "read": self.read,
            "written": self.written, "rejected": self.rejected, "skipped": self.skipped,
            "seconds": self.seconds, "done": self.done, "updated_at": bk.utcnow(),
        }


@dataclass
class ExportResult:
    status: str
    entities: list[EntityStats]
    report: dict
    report_path: Path
    rejects_path: Path
    files: "files_mod.FilesResult | None" = None
    sync: list | None = None  # SyncStats per entity, for --sync
    nothing_to_do: str | None = None  # a re-run that found everything done says so

    @property
    def rejected(self) -> int:
        return sum(e.rejected for e in self.entities)


@dataclass
class BatchOutcome:
    rows: list[dict] = field(default_factory=list)
    notes: list[dict] = field(default_factory=list)
    deferred: list[dict] = field(default_factory=list)
    pins: list[str] = field(default_factory=list)
    fingerprints: list[dict] = field(default_factory=list)
    rejected: int = 0
    skipped: int = 0


class BatchWriter:
    """One background thread writing batches in order, at most one in flight: the next
    batch is read and transformed while the database stores the previous one. A failed
    write surfaces at the next submit or at exit."""

    def __init__(self):
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bridge-writer")
        self._pending: Future | None = None

    def submit(self, job) -> None:
        self.wait()
        self._pending = self._executor.submit(job)

    def wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def __enter__(self) -> "BatchWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.wait()
            elif self._pending is not None:
                self._pending.cancel()
        finally:
            self._executor.shutdown(wait=True)


def select_entities(only: tuple[str, ...], exclude: tuple[str, ...]) -> list[Entity]:
    for name in (*only, *exclude):
        if name not in ENTITY_NAMES:
            raise BridgeError(f"unknown entity {name!r} (choose from: {', '.join(ENTITY_NAMES)})")
    return [e for e in ENTITIES if (not only or e.name in only) and e.name not in exclude]


class Exporter:
    def __init__(self, options: ExportOptions, conf: BridgeSettings, source: LegacySource):
        self.cheap_dry_run_pins = options.pin_hash_method is None and options.dry_run
        if options.pin_hash_method is None:
            options = dataclasses.replace(options, pin_hash_method=(
                DRY_RUN_PIN_HASH_METHOD if options.dry_run else DEFAULT_PIN_HASH_METHOD))
        self.options = options
        self.conf = conf
        self.source = source
        self.entities = select_entities(options.only, options.exclude)
        self.loaded: dict[str, IdSet] = {}
        # rows rejected or skipped, per entity, with the root cause they hand to their children
        self.gone: dict[str, dict[int, Root]] = {}
        self.pending: dict[str, dict[int, int]] = {}
        self.pin_stats = {"method": options.pin_hash_method, "workers": options.workers,
                          "hashed": 0, "seconds": 0.0}
        self._pool: ProcessPoolExecutor | None = None
        self._pin_progress: Progress | None = None
        self.pin_estimate: dict | None = None  # --dry-run: what the real method would cost
        self.report_dir: Path | None = None
        self.started = bk.utcnow()
        self._scratch_dir: str | None = None
        self.file_options, self.file_stores, self.files_result = None, None, None
        self.frozen_at_start: FreezeState | None = None
        self._upsert_only: set[str] = set()  # entities whose fast insert met existing rows
        self.sync_stats: list | None = None  # filled by a --sync run (sync.Syncer)
        from django.conf import settings

        self.fingerprint_key = fingerprint_key(conf.FINGERPRINT_KEY, settings.SECRET_KEY)
        self.ctx = TransformContext(
            static_base_url=conf.STATIC_BASE_URL,
            media_base_url=conf.MEDIA_BASE_URL,
            media_url_prefix=conf.MEDIA_URL_PREFIX,
            encrypt_media_password=_media_password_encryptor(conf.MEDIA_PASSWORD_KEY),
        )

    # --- checks before anything is written ----------------------------------------

    def preflight(self) -> None:
        o = self.options
        dialects.normalize_url(o.target_url)  # a mistyped URL is the first thing to say
        if o.batch_size < 1:
            raise BridgeError("--batch-size must be >= 1")
        if o.workers < 1:
            raise BridgeError("--workers must be >= 1")
        if o.on_duplicate_session not in DUPLICATE_POLICIES:
            raise BridgeError(f"--on-duplicate-session must be one of {', '.join(DUPLICATE_POLICIES)}")
        if o.reset and not o.yes:
            raise BridgeError("--reset empties the target tables: add --yes to confirm")
        if o.reset and o.dry_run:
            raise BridgeError("--reset and --dry-run exclude each other")
        try:
            check_pin_hash_method(o.pin_hash_method)
        except ValueError as exc:
            raise BridgeError(f"--pin-hash-method {o.pin_hash_method!r} is not a werkzeug method: {exc}") from None
        if not self.entities:
            raise BridgeError("--only/--exclude leave no entity to export")
        if not o.lock_timeout > 0:
            raise BridgeError("--lock-timeout must be > 0 seconds")
        # where the report goes, proven writable before any work (not hours later)
        self.report_dir = check_writable_dir(o.report_dir or _default_report_dir(self.conf, self.started),
                                             "report", "--report-dir")
        if o.pin_roster:
            check_writable_dir(Path(o.pin_roster).resolve().parent, "PIN roster", "--pin-roster")
        self.source.check_reachable()
        self.source.require_lossless_text()
        self.frozen_at_start = get_freeze_state(use_cache=False)
        if not (self.frozen_at_start.frozen or o.allow_live or o.dry_run):
            raise BridgeError(
                "the legacy app is live (not frozen): run `manage.py flask_freeze on` first, "
                "or pass --allow-live for a rehearsal or a pre-copy"
            )
        if self.cheap_dry_run_pins and any(e.hashed_pin for e in self.entities):
            self.pin_estimate = self.estimate_pin_cost()
        # file options and storages, checked before any row is written
        self.file_options, self.file_stores = files_mod.export_preflight(o, self.conf)
        if o.on_duplicate_session == "fail" and any(e.name == "sessions" for e in self.entities):
            superseded = find_superseded_sessions(self.source.active_sessions())
            if superseded:
                ids = sorted(superseded)
                raise BridgeError(
                    f"{len(ids)} sessions duplicate an active session of the same teacher and "
                    f"section (ids {ids[:20]}); --on-duplicate-session archive would archive them"
                )

    def open_target(self) -> sa.Engine:
        """The real target, or in --dry-run a scratch SQLite copy of the schema."""
        real = dialects.create_target_engine(self.options.target_url, lock_timeout=self.options.lock_timeout)
        try:
            with real.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
                has_schema = all(sa.inspect(conn).has_table(t.name) for t in fm.TABLES_IN_ORDER)
        except sa.exc.DBAPIError as exc:
            raise BridgeError(dialects.describe_connect_error(exc, real.url)) from None
        if self.options.dry_run:
            real.dispose()
            self._scratch_dir = tempfile.mkdtemp(prefix="bridge-dry-run-")
            engine = dialects.create_target_engine(f"sqlite:///{self._scratch_dir}/scratch.sqlite3")
            fm.create_all(engine)
            bk.create_bookkeeping(engine)
            return engine
        if not has_schema:
            if not self.options.create_schema:
                missing = [t.name for t in fm.TABLES_IN_ORDER if not sa.inspect(real).has_table(t.name)]
                raise BridgeError(
                    f"target {dialects.mask_url(real.url)} has no Flask schema (missing tables: "
                    f"{', '.join(missing)}); run with --create-schema"
                )
            fm.create_all(real)
        bk.create_bookkeeping(real)
        return real

    def prepare_target(self, engine: sa.Engine) -> dict[str, EntityStats]:
        o = self.options
        with engine.begin() as conn:
            if o.reset:
                dialects.empty_tables(conn, fm.TABLES_IN_ORDER)
                for table in bk.ROW_TABLES:
                    conn.execute(table.delete())
            elif o.restart:
                for table in bk.ROW_TABLES:
                    conn.execute(table.delete().where(table.c.entity.in_([e.name for e in self.entities])))
            stats = {
                row.entity: EntityStats(row.entity, row.read, row.written, row.rejected, row.skipped,
                                        row.seconds, row.last_id, row.done)
                for row in conn.execute(sa.select(bk.checkpoints))
            }
            if not stats and not o.restart:
                foreign = [t.name for t in fm.TABLES_IN_ORDER
                           if conn.execute(sa.select(sa.literal(1)).select_from(t).limit(1)).first()]
                if foreign:
                    raise BridgeError(
                        f"target already holds rows this tool did not write (tables: {', '.join(foreign)}); "
                        "use --reset --yes to empty it first"
                    )
            for row in conn.execute(sa.select(bk.deferred)):
                self.pending.setdefault(row.entity, {})[row.source_id] = row.parent_id
        if not o.files_only:
            self.check_parents_exported(stats)
        return stats

    def check_parents_exported(self, stats: dict[str, EntityStats]) -> None:
        """--only/--exclude: every table a selected entity points at is selected too or
        complete in the target; else its rows would be rejected for a parent never tried."""
        selected = {e.name for e in self.entities}
        for entity in self.entities:
            absent = sorted(p for p in set(entity.foreign_keys.values())
                            if p not in selected and not (p in stats and stats[p].done))
            if absent:
                raise BridgeError(
                    f"{entity.name} points at {', '.join(absent)}, which the target does not hold yet: "
                    f"export {', '.join(absent)} first (or in the same run)")

    # --- the run -----------------------------------------------------------------

    run_kind = "export"

    def run(self) -> ExportResult:
        started = self.started = bk.utcnow()
        cli.current["lock_timeout"] = self.options.lock_timeout
        self.preflight()
        engine = self.open_target()
        watch = waits.watch(engine, self.options.lock_timeout)
        run_id = None
        try:
            stats = self.prepare_target(engine)
            self.announce(stats)
            with engine.begin() as conn:
                run_id = conn.execute(bk.runs.insert().values(
                    kind=self.run_kind, status="running", started_at=started,
                    options=jsonable(self.options.public()), report_dir=str(self.report_dir),
                )).inserted_primary_key[0]
        except BaseException:
            watch.stop()
            engine.dispose()
            self._remove_scratch()
            raise
        status = "failed"
        error = None
        try:
            self.move_rows(engine, stats)
            with engine.begin() as conn:
                dialects.reset_sequences(conn, fm.TABLES_IN_ORDER)
            if self.options.pin_roster:
                self.write_pin_roster(self.options.pin_roster)
            if self.file_stores is not None:  # the files, then the URL finalisation
                self.files_result = files_mod.copy_files(
                    engine, self.source, self.conf, self.file_options, self.file_stores)
            status = "complete"
        except BaseException as exc:
            error = exc
            raise
        finally:
            # Nothing here may hide ``error``: each step that fails is logged and skipped.
            self._close_pool(kill=error is not None)
            watch.stop()
            finished = bk.utcnow()
            result = None
            try:
                if error is not None:
                    stats = self.committed_stats(engine, stats)
                with engine.begin() as conn:
                    conn.execute(bk.runs.update().where(bk.runs.c.id == run_id).values(
                        status=status, finished_at=finished))
                result = self.finish(engine, run_id, status, started, finished, stats, error)
            except Exception as exc:  # noqa: BLE001
                if error is None:
                    raise
                log.info("the failed run could not be recorded in the target (%s); "
                         "the report holds what is known", first_line(exc))
                self._write_failure_report(run_id, started, finished, stats, error)
            finally:
                engine.dispose()
                self._remove_scratch()
        if self.nothing_to_do is not None and result is not None:
            result.nothing_to_do = self.nothing_to_do
        return result

    nothing_to_do: str | None = None

    def announce(self, stats: dict[str, EntityStats]) -> None:
        """Say what this run starts from: fresh, resumed (from where), or nothing to do."""
        if self.options.restart or self.options.files_only or self.run_kind != "export":
            return
        selected = [e.name for e in self.entities]
        done = [n for n in selected if n in stats and stats[n].done]
        started = [stats[n] for n in selected if n in stats and not stats[n].done]
        if len(done) == len(selected):
            self.nothing_to_do = (f"rows: nothing to do: all {len(selected)} entities were already complete "
                                  f"({sum(stats[n].written for n in done)} rows in the target; rows rejected "
                                  "before were decided again); --restart reads everything again, --sync moves "
                                  "what changed")
        elif done or started:
            parts = [f"{s.name} from id {s.last_id} ({s.read} rows read before)" for s in started]
            log.info("resuming: %s%s%s", f"complete: {', '.join(done)}" if done else "",
                     "; " if done and parts else "", "; ".join(parts))

    def committed_stats(self, engine: sa.Engine, stats: dict[str, EntityStats]) -> dict[str, EntityStats]:
        """After a failure: the counts as committed (checkpoints), not as read in memory."""
        if self.run_kind != "export":
            return stats
        with engine.connect() as conn:
            committed = {row.entity: EntityStats(row.entity, row.read, row.written, row.rejected, row.skipped,
                                                 row.seconds, row.last_id, row.done)
                         for row in conn.execute(sa.select(bk.checkpoints))}
        return committed

    def _write_failure_report(self, run_id, started, finished, stats, error) -> None:
        """The target is gone: report.json from what this process knows (no notes)."""
        try:
            ordered = [stats[e.name] for e in ENTITIES if e.name in stats]
            report = {
                **run_header("migration_bridge export_to_flask", self.source, self.options, started, finished),
                "run_id": run_id, "status": "failed", "error": _one_line(error),
                "note": "the target could not be read when the run failed: counts are this process's "
                        "(rows read, possibly not all committed); notes and rejects are not listed",
                "entities": {e.name: {"read": e.read, "written": e.written, "rejected": e.rejected,
                                      "skipped": e.skipped, "complete": e.done} for e in ordered},
                "pin_hashing": self.pin_stats,
            }
            (self.report_dir / "report.json").write_text(
                json.dumps(jsonable(report), indent=2, ensure_ascii=False), encoding="utf-8")
        except Exception as exc:  # noqa: BLE001 - the original error is what the user sees
            log.warning("could not write the failure report: %s", first_line(exc))

    def _remove_scratch(self) -> None:
        if self._scratch_dir:
            shutil.rmtree(self._scratch_dir, ignore_errors=True)
            self._scratch_dir = None

    def move_rows(self, engine: sa.Engine, stats: dict[str, EntityStats]) -> None:
        """Every selected entity in dependency order (none with --files-only)."""
        for entity in ([] if self.options.files_only else self.entities):
            stats[entity.name] = self.export_entity(engine, entity, stats.get(entity.name))

    def report_extra(self) -> dict:
        """What a subclass adds to report.json."""
        return {}

    def finish(self, engine, run_id, status, started, finished, stats, error) -> ExportResult:
        report_dir = self.report_dir or Path(self.options.report_dir or _default_report_dir(self.conf, started))
        ordered = [stats[e.name] for e in ENTITIES if e.name in stats]
        report, report_path, rejects_path = write_report(
            engine, report_dir,
            header={
                **run_header("migration_bridge export_to_flask", self.source, self.options, started, finished),
                "run_id": run_id,
                "status": status,
                "error": _one_line(error) if error else None,
                "dry_run": self.options.dry_run,
                "source_frozen": self._frozen_whole_run(),
                "files": self.files_result.as_report() if self.files_result else None,
                "pin_hashing": {**self.pin_stats, "hashes_per_s": round(
                    self.pin_stats["hashed"] / self.pin_stats["seconds"], 1) if self.pin_stats["seconds"] else None,
                    **({"dry_run_estimate": self.pin_estimate} if self.pin_estimate else {})},
            },
            entities=ordered,
            extra=self.report_extra(),
        )
        return ExportResult(status, ordered, report, report_path, rejects_path, files=self.files_result,
                            sync=self.sync_stats)

    def _frozen_whole_run(self) -> dict:
        """Re-checked at the end: frozen at start and end with the same ``since`` means
        nobody could write to the legacy app during the run."""
        end = get_freeze_state(use_cache=False)
        start = self.frozen_at_start
        whole = bool(start and start.frozen and end.frozen and start.since == end.since)
        return {"whole_run": whole, "at_start": start.as_dict() if start else None, "at_end": end.as_dict()}

    def export_entity(self, engine: sa.Engine, entity: Entity, stats: EntityStats | None) -> EntityStats:
        stats = stats or EntityStats(entity.name)
        self.load_parent_ids(engine, entity)
        ctx = self.entity_context(entity)
        self.retry_rejected(engine, entity, ctx, stats)
        if stats.done and not self.options.restart:
            if entity.self_foreign_key:
                self.resolve_deferred(engine, entity, ctx, stats)
            if self.nothing_to_do is None:  # else said once for all
                log.info("%s: already complete (%d rows written), skipped", entity.name, stats.written)
            return stats
        total = self.source.count(entity.source_model)
        progress = Progress(entity.name, total, interactive=self.options.interactive, initial=stats.read)
        fresh = not self.options.restart
        try:
            with BatchWriter() as writer:
                started = time.monotonic()  # consecutive intervals: reading, processing, waiting
                for rows in self.source.extract_rows(entity.source_model, entity.source_fields,
                                                     stats.last_id, self.options.batch_size):
                    batch_ctx = self.batch_context(entity, ctx, rows)
                    outcome = self.process_rows(entity, rows, batch_ctx)
                    stats.read += len(rows)
                    stats.last_id = rows[-1]["id"]
                    started = self.commit_batch(engine, entity, outcome, stats, started, fresh=fresh,
                                                writer=writer)
                    progress.update(len(rows))
            stats.seconds += time.monotonic() - started
            if entity.self_foreign_key:
                self.resolve_deferred(engine, entity, ctx, stats)
            stats.done = True
            with engine.begin() as conn:
                dialects.upsert(conn, bk.checkpoints, [stats.as_checkpoint()])
        finally:
            progress.close()
            if self._pin_progress is not None:
                self._pin_progress.close()
                self._pin_progress = None
        return stats

    def rejected_ids(self, engine: sa.Engine, entity: Entity) -> list[int]:
        """The source ids an earlier run rejected for this entity."""
        with engine.connect() as conn:
            return sorted(conn.execute(sa.select(bk.notes.c.source_id).where(
                bk.notes.c.entity == entity.name, bk.notes.c.kind == "reject")).scalars())

    def retry_rejected(self, engine: sa.Engine, entity: Entity, ctx: TransformContext, stats: EntityStats) -> None:
        """Every run decides again on the rows earlier runs rejected: a parent loaded or
        fixed since brings them in, and entity by entity their subtrees follow."""
        ids = self.rejected_ids(engine, entity)
        for start in range(0, len(ids), self.options.batch_size):
            chunk = ids[start:start + self.options.batch_size]
            started = time.monotonic()
            stats.rejected -= len(chunk)  # decided again below
            rows = self.source.rows_by_id(entity.source_model, entity.source_fields, chunk)
            stats.read -= len(chunk) - len(rows)  # deleted from the source since: their notes go too
            outcome = self.process_rows(entity, rows, self.batch_context(entity, ctx, rows))
            self.commit_batch(engine, entity, outcome, stats, started, replace_notes_for=chunk)

    def commit_batch(self, engine, entity: Entity, outcome: BatchOutcome, stats: EntityStats,
                     started: float, resolved: list[int] = (), replace_notes_for: list[int] = (),
                     checkpoint: bool = True, fresh: bool = False, writer: "BatchWriter | None" = None) -> float:
        """Hash the batch's PINs, count it, and write it in one transaction with its notes,
        fingerprints and checkpoint — in ``writer``'s thread when given, so that the next
        batch is read while this one is written. Returns when the caller's next interval starts."""
        if outcome.pins:
            self._hash_pins(entity, outcome)
        stats.written += len(outcome.rows)
        stats.rejected += outcome.rejected
        stats.skipped += outcome.skipped
        now = time.monotonic()
        stats.seconds += now - started
        job = functools.partial(self._write_batch, engine, entity, outcome,
                                stats.as_checkpoint() if checkpoint else None,  # a snapshot: safe to hand over
                                list(resolved), list(replace_notes_for), fresh)
        if writer is None:
            job()
        else:
            writer.submit(job)
        return now

    def _write_batch(self, engine, entity: Entity, outcome: BatchOutcome, checkpoint_row: dict | None,
                     resolved: list[int], replace_notes_for: list[int], fresh: bool) -> None:
        if fresh and entity.name not in self._upsert_only:
            # Rows past the last checkpoint cannot be in the target (each batch commits with
            # its checkpoint): a plain insert is safe, and on PostgreSQL a COPY straight in.
            try:
                self._write_transaction(engine, entity, outcome, checkpoint_row, resolved,
                                        replace_notes_for, dialects.insert_new)
                return
            except (sa.exc.IntegrityError, engine.dialect.dbapi.IntegrityError):
                # e.g. resuming a killed --restart: the old rows are still there
                self._upsert_only.add(entity.name)
                log.warning("%s: rows past id %s are in the target already; upserting from here on",
                            entity.name, checkpoint_row and checkpoint_row["last_id"])
        self._write_transaction(engine, entity, outcome, checkpoint_row, resolved, replace_notes_for,
                                dialects.upsert)

    @staticmethod
    def _write_transaction(engine, entity, outcome, checkpoint_row, resolved, replace_notes_for, load) -> None:
        with engine.begin() as conn:
            load(conn, entity.target, outcome.rows)
            if replace_notes_for:
                conn.execute(bk.notes.delete().where(
                    bk.notes.c.entity == entity.name, bk.notes.c.source_id.in_(replace_notes_for)))
            load(conn, bk.notes, outcome.notes)
            load(conn, bk.fingerprints, outcome.fingerprints)
            dialects.upsert(conn, bk.deferred, outcome.deferred)
            if resolved:
                dialects.delete_keys(conn, bk.deferred,
                                     [{"entity": entity.name, "source_id": i} for i in resolved])
            if checkpoint_row is not None:
                dialects.upsert(conn, bk.checkpoints, [checkpoint_row])

    # --- transform, validate, check keys -------------------------------------------

    def process_rows(self, entity: Entity, rows: list[dict], ctx: TransformContext) -> BatchOutcome:
        out = BatchOutcome()
        loaded_self = self.loaded.setdefault(entity.name, IdSet())
        gone = self.gone.setdefault(entity.name, {})
        pending = self.pending.setdefault(entity.name, {})
        filled_later = (entity.hashed_pin[0],) if entity.hashed_pin else ()
        for src in rows:
            out.fingerprints.append({"entity": entity.name, "source_id": src["id"],
                                     "fingerprint": self.fingerprint(src, ctx)})
            result = entity.transform(src, ctx)
            if isinstance(result, (Reject, Skip)):
                self._note_rejection(entity, src, result, out)
                continue
            row = result.row
            problem = (validate_row(row, entity.target, entity.choices, filled_later)
                       or self._check_keys(entity, row))
            if problem is None and entity.self_foreign_key:
                parent = row[entity.self_foreign_key]
                if parent is not None and parent not in loaded_self:
                    if parent not in gone and (parent > src["id"] or parent in pending):
                        pending[src["id"]] = parent
                        out.deferred.append({"entity": entity.name, "source_id": src["id"], "parent_id": parent})
                        continue
                    problem = check_parents(row, {entity.self_foreign_key: entity.name}, self.loaded, self.gone)
            if problem is not None:
                self._note_rejection(entity, src, problem, out)
                continue
            gone.pop(row["id"], None)
            loaded_self.add(row["id"])
            out.rows.append(row)
            if entity.hashed_pin:
                out.pins.append(src[entity.hashed_pin[1]])
            out.notes.extend(_note_row(entity, src["id"], n) for n in result.notes)
        return out

    def fingerprint(self, src: dict, ctx: TransformContext) -> str:
        """What ``--sync`` compares: the source row and the context its transform used."""
        return row_fingerprint(self.fingerprint_key, tuple(src.values()), context_of(ctx, src["id"]))

    def _check_keys(self, entity: Entity, row: dict) -> Reject | None:
        return check_parents(row, entity.foreign_keys, self.loaded, self.gone)

    def _note_rejection(self, entity: Entity, src: dict, result, out: BatchOutcome) -> None:
        kind = "skip" if isinstance(result, Skip) else "reject"
        if kind == "skip":
            out.skipped += 1
        else:
            out.rejected += 1
        self.gone.setdefault(entity.name, {})[src["id"]] = root_of(entity.name, src["id"], result)
        row = {f: src[f] for f in entity.secret_free_fields}
        detail = {"reason": result.reason, "row": row}
        if isinstance(result, Reject) and result.root is not None:
            detail["root"] = result.root.as_dict()
        out.notes.append(_note_row(entity, src["id"], Note(kind, detail)))

    def resolve_deferred(self, engine, entity: Entity, ctx: TransformContext, stats: EntityStats) -> None:
        """Rows that waited for a parent later in id order: load them once it is there,
        reject them when it never came (missing, rejected, or a cycle)."""
        pending = self.pending.setdefault(entity.name, {})
        loaded_self = self.loaded[entity.name]
        while pending:
            started = time.monotonic()
            ready = sorted(i for i, parent in pending.items() if parent in loaded_self)
            if not ready:
                dead = sorted(pending)
                outcome = BatchOutcome()
                for src in self.source.rows_by_id(entity.source_model, entity.source_fields, dead):
                    parent = pending[src["id"]]
                    root = self.gone.get(entity.name, {}).get(parent)
                    self._note_rejection(entity, src, Reject(
                        f"{entity.self_foreign_key}: {entity.name} id {parent} was rejected", root=root)
                        if root else Reject(f"{entity.self_foreign_key}: {entity.name} id {parent} never loaded "
                                            "(missing in the source, or a cycle of replies)"), outcome)
                pending.clear()
                self.commit_batch(engine, entity, outcome, stats, started, resolved=dead)
                return
            for chunk_start in range(0, len(ready), self.options.batch_size):
                chunk = ready[chunk_start:chunk_start + self.options.batch_size]
                for i in chunk:
                    del pending[i]
                rows = self.source.rows_by_id(entity.source_model, entity.source_fields, chunk)
                outcome = self.process_rows(entity, rows, ctx)
                started = self.commit_batch(engine, entity, outcome, stats, started, resolved=chunk)
                stats.seconds += time.monotonic() - started
                started = time.monotonic()

    # --- context the pure transforms need ------------------------------------------

    def load_parent_ids(self, engine: sa.Engine, entity: Entity) -> None:
        """The ids already in the target for every table this entity's keys point at."""
        needed = set(entity.foreign_keys.values()) | {entity.name}
        if entity.name == "media":
            needed |= {"students", "users"}  # attribution candidates must exist
        for table_name in needed:
            if table_name not in self.loaded:
                table = fm.metadata.tables[table_name]
                with engine.connect() as conn:
                    result = conn.execution_options(stream_results=True, yield_per=50_000).execute(
                        sa.select(table.c.id))
                    self.loaded[table_name] = IdSet(i for (i,) in result)
                    self.gone[table_name] = bk.gone_rows(conn, table_name)

    def entity_context(self, entity: Entity) -> TransformContext:
        """What this entity's transforms need from other rows, once (archived duplicates)."""
        if entity.name == "sessions":
            loaded_users = self.loaded["users"]
            active = [s for s in self.source.active_sessions() if s[1] in loaded_users]
            return dataclasses.replace(self.ctx, archived_sessions=find_superseded_sessions(active))
        return self.ctx

    def batch_context(self, entity: Entity, ctx: TransformContext, rows: list[dict]) -> TransformContext:
        """What one batch's transforms need from other rows (authors inferred for media)."""
        if entity.name == "media":
            attributions = self.source.media_attributions(rows, self.loaded["students"], self.loaded["users"])
            return dataclasses.replace(ctx, attributions=attributions)
        return ctx

    # --- PIN hashing in a process pool -------------------------------------------

    def _hash_pins(self, entity: Entity, outcome: BatchOutcome) -> None:
        started = time.monotonic()
        pins, method, workers = outcome.pins, self.options.pin_hash_method, self.options.workers
        progress = self._pin_progress_for(entity)
        if workers == 1 or len(pins) < 2:
            hashes = []
            for i in range(0, len(pins), PIN_CHUNK):
                hashes.extend(hash_pins(pins[i:i + PIN_CHUNK], method))
                progress.update(min(PIN_CHUNK, len(pins) - i))
        else:
            if self._pool is None:
                # spawn: workers inherit no database connection from this process; each
                # one ends when this process does, however it ends (kill -9 included)
                self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                                                 initializer=die_with_parent, initargs=(os.getpid(),))
            # small chunks, so that the progress moves and an interrupt waits for little
            size = max(1, min(PIN_CHUNK, -(-len(pins) // workers)))
            chunks = [pins[i:i + size] for i in range(0, len(pins), size)]
            hashes = []
            for part in self._pool.map(hash_pins, chunks, [method] * len(chunks)):
                hashes.extend(part)
                progress.update(len(part))
        column = entity.hashed_pin[0]
        for row, hashed in zip(outcome.rows, hashes):
            row[column] = hashed
        outcome.pins = []
        self.pin_stats["hashed"] += len(hashes)
        self.pin_stats["seconds"] += time.monotonic() - started

    def estimate_pin_cost(self) -> dict:
        """--dry-run hashes PINs cheaply; what the real method would cost, measured here."""
        entity = next(e for e in self.entities if e.hashed_pin)
        count = self.source.count(entity.source_model)
        started = time.monotonic()
        hash_pins(["00000"] * 3, DEFAULT_PIN_HASH_METHOD)
        per_hash = (time.monotonic() - started) / 3
        workers = min(self.options.workers, os.cpu_count() or 1)
        seconds = count * per_hash / workers
        estimate = {"method": DEFAULT_PIN_HASH_METHOD, "pins": count, "workers": workers,
                    "seconds_per_hash": round(per_hash, 4), "estimated_seconds": round(seconds, 1)}
        log.info("dry run: PINs are hashed with %s (cheap) instead of %s; hashing the %d PINs with %s "
                 "would take about %s on %d workers (pass --pin-hash-method to time the real one)",
                 DRY_RUN_PIN_HASH_METHOD, DEFAULT_PIN_HASH_METHOD, count, DEFAULT_PIN_HASH_METHOD,
                 format_seconds(seconds), workers)
        return estimate

    def _pin_progress_for(self, entity: Entity) -> Progress:
        if self._pin_progress is None:
            try:
                total = self.source.count(entity.source_model)
            except Exception:  # noqa: BLE001 - a count is only for the ETA
                total = None
            self._pin_progress = Progress(f"{entity.name}: PIN hashing", total, unit="hashes",
                                          interactive=self.options.interactive)
        return self._pin_progress

    def _close_pool(self, kill: bool = False) -> None:
        """Stop the PIN workers; ``kill`` (a failed or interrupted run): at once, without
        waiting for the chunks they are hashing."""
        if self._pin_progress is not None:
            self._pin_progress.close()
            self._pin_progress = None
        if self._pool is not None:
            pool, self._pool = self._pool, None
            if kill:
                for process in list((getattr(pool, "_processes", None) or {}).values()):
                    try:
                        process.kill()
                    except Exception:  # noqa: BLE001 - already gone
                        pass
                try:
                    pool.shutdown(wait=False, cancel_futures=True)
                except Exception:  # noqa: BLE001 - a broken pool is what we wanted
                    pass
            else:
                pool.shutdown(cancel_futures=True)

    # --- the opt-in PIN roster --------------------------------------------------------

    def write_pin_roster(self, path: str) -> None:
        """The only place plain PINs are ever written: a CSV readable by its owner only."""
        import csv

        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # an existing file keeps its old mode otherwise
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["teacher", "session_code", "session_name", "student_id", "student_name", "pin"])
            migrated = self.loaded.get("students") or IdSet()
            writer.writerows(row for row in self.source.pin_roster() if row[3] in migrated)


def _note_row(entity: Entity, source_id: int, note: Note) -> dict:
    return {"entity": entity.name, "source_id": source_id, "kind": note.kind, "detail": jsonable(note.detail)}


def _media_password_encryptor(key: str):
    if not key:
        return None
    from cryptography.fernet import Fernet

    try:
        fernet = Fernet(key.encode())
    except ValueError:
        raise BridgeError("bad settings: MIGRATION_BRIDGE['MEDIA_PASSWORD_KEY'] is not a Fernet key") from None
    return lambda value: fernet.encrypt(value.encode()).decode()


def _default_report_dir(conf: BridgeSettings, started: dt.datetime) -> str:
    from django.conf import settings

    base = conf.REPORT_DIR or os.path.join(str(getattr(settings, "BASE_DIR", ".")), "var", "reports")
    return os.path.join(base, started.strftime("%Y%m%dT%H%M%S.%fZ"))


def _one_line(exc: BaseException) -> str:
    """What the report says about the error: the line the user saw (no secret)."""
    from .errors import describe

    return describe(exc, cli.current["lock_timeout"])[1]


def run_export(options: ExportOptions, conf: BridgeSettings) -> ExportResult:
    if options.sync:
        from .sync import Syncer

        return Syncer(options, conf, LegacySource(conf.LEGACY_APP)).run()
    return Exporter(options, conf, LegacySource(conf.LEGACY_APP)).run()


def drop_bookkeeping(target_url: str) -> list[str]:
    """After cutover: drop the tool's own tables (checkpoints, notes, fingerprints, manifest)."""
    engine = dialects.create_target_engine(target_url)
    try:
        with engine.connect() as conn:
            present = [t.name for t in bk.bookkeeping_metadata.sorted_tables if sa.inspect(conn).has_table(t.name)]
        bk.bookkeeping_metadata.drop_all(engine)
    except sa.exc.DBAPIError as exc:
        raise BridgeError(dialects.describe_connect_error(exc, engine.url)) from None
    finally:
        engine.dispose()
    return present
