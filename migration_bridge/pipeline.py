"""``export_to_flask``: one run, from the checks before anything is written to the report.

A run composes: the row path (``rowpath``, what each row becomes), the batch store
(``load``, how decided rows reach the target), a mover (``movers.CopyRows``, or
``sync.SyncRows`` with ``--sync``), the target's gatekeeping (``target``) and the file
step (``files``). The profile (``profiles``) says what is migrated; nothing here names
an entity.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from . import bookkeeping as bk
from . import changelog, cli, dialects, ranges, target, waits
from . import files as files_mod
from .cli import check_writable_dir, flag, one_line
from .conf import BridgeSettings
from .errors import BridgeError, first_line
from .fingerprint import fingerprint_key
from .freeze import FreezeState, get_freeze_state
from . import idmap as idmap_mod
from .idmap import KEEPABLE, IdMap
from .idset import EVERY_ID, IdSet
from .load import BatchStore, EntityStats
from .mapping import Entity, Profile
from .movers import CopyRows, Run
from .passwords import check_pin_hash_method
from .pinpool import DEFAULT_PIN_HASH_METHOD, DRY_RUN_PIN_HASH_METHOD, PinPool, estimate_cost
from .profiles import get_profile, selected
from .report import jsonable, reports_base, run_header, stamp, write_report
from .rowpath import RowPath, base_context, file_urls
from .source import LegacySource
from .sync import SyncRows
from .target import drop_bookkeeping

log = logging.getLogger("migration_bridge")

DEFAULT_LOCK_TIMEOUT = 300.0  # seconds a statement may wait for a lock in the target
DUPLICATE_POLICIES = ("archive", "fail")

__all__ = ["DEFAULT_LOCK_TIMEOUT", "DEFAULT_PIN_HASH_METHOD", "DRY_RUN_PIN_HASH_METHOD", "DUPLICATE_POLICIES",
           "EntityStats", "ExportOptions", "ExportResult", "ExportRun", "cleanup", "run_export", "drop_bookkeeping"]



def _names(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


@dataclass
class ExportOptions:
    """What a run does; each ``flag`` field is also ``export_to_flask``'s option."""

    target_url: str
    target_schema: str | None = flag(None, "target profile: plan (default), or package.module:PROFILE "
                                           "(default: MIGRATION_BRIDGE['TARGET_SCHEMA'])")
    create_schema: bool = flag(False, "create the Flask tables if missing")
    only: tuple[str, ...] = flag((), "comma-separated entities to export (default: all)", type=_names)
    exclude: tuple[str, ...] = flag((), "comma-separated entities to leave out", type=_names)
    batch_size: int = flag(2000, "rows per batch and transaction (default: MIGRATION_BRIDGE['BATCH_SIZE'])",
                           type=int, cli_default=None)
    workers: int = flag(os.cpu_count() or 1, "PIN-hashing processes (default: cores)")
    row_workers: int | None = flag(
        None, "processes exporting one entity's id ranges at once (default: one per core, at most "
              f"{ranges.AUTO_MAX_WORKERS}, for an entity with {ranges.AUTO_MIN_ROWS:,} rows or more per process, "
              "else 1; a PostgreSQL or MariaDB target; entities with PINs or allocated ids stay in one)", type=int)
    pin_hash_method: str | None = flag(
        None, f"werkzeug method for student PINs (default: the profile's — datadeckv2: pbkdf2:sha256:200000 — "
              f"else {DEFAULT_PIN_HASH_METHOD}, werkzeug's default; with --dry-run {DRY_RUN_PIN_HASH_METHOD}, "
              "the real cost is estimated)")
    dry_run: bool = flag(False, "extract, transform and validate everything into a scratch database; "
                                "write nothing to the target")
    report_dir: str | None = flag(None, "where report.json and rejects.ndjson go (default var/reports/<timestamp>/)")
    strict: bool = flag(False, "exit 1 when any row was rejected")
    pin_roster: str | None = flag(None, "opt-in: write existing PINs per teacher/session to PATH (mode 0600)",
                                  metavar="PATH")
    restart: bool = flag(False, "ignore checkpoints and read everything again")
    reset: bool = flag(False, "empty the target tables first (needs --yes)")
    yes: bool = flag(False, "confirm --reset or --cleanup")
    on_duplicate_session: str = flag("archive", "archive older duplicate active sessions, or fail before writing",
                                     choices=DUPLICATE_POLICIES)
    allow_live: bool = flag(False, "migrate although the legacy app is not frozen (rehearsals, pre-copies)")
    skip_files: bool = flag(False, "rows only: no file copy")
    files_only: bool = flag(False, "files only, for rows already exported")
    file_workers: int | None = flag(None, "parallel file copies (default: MIGRATION_BRIDGE['FILE_WORKERS'], 8)",
                                    type=int)
    key_scheme: str | None = flag(None, "target keys: preserve the legacy names, or media-id: "
                                        "images/<media_id>_<uuid5>.<ext> (default: MIGRATION_BRIDGE"
                                        "['FILE_KEY_SCHEME'], preserve; fixed by a target's first export)",
                                  choices=files_mod.KEY_SCHEMES)
    verify_files: bool = flag(False, "re-check every target object, even those the manifest records as copied")
    sync: bool = flag(False, "after a complete export: move only rows added, changed or deleted since, "
                             "and new files")
    track_changes: bool = flag(False, "install triggers in the legacy database that log the ids of the rows "
                                      "written from now on, so that a later --sync reads them instead of every "
                                      "row's digest (an export from the start or a --sync; MariaDB, MySQL or "
                                      "SQLite; the right to create triggers)")
    full_scan: bool = flag(False, "--sync: compare every row's digest although a change log is installed")
    lock_timeout: float = flag(DEFAULT_LOCK_TIMEOUT, "give up when a lock in the target is not granted within "
                                                     "this time (default: %(default)ss)", metavar="SECONDS")
    interactive: bool | None = None  # progress bars; None = when stderr is a terminal

    def public(self) -> dict:
        """The options as the report shows them (URL masked)."""
        data = dataclasses.asdict(self)
        data["target_url"] = dialects.mask_url(self.target_url)
        data.pop("interactive")
        return data


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
    change_log: str | None = None  # what the run did with the legacy database's change log

    @property
    def rejected(self) -> int:
        return sum(e.rejected for e in self.entities)


def select_entities(profile: Profile, only: tuple[str, ...], exclude: tuple[str, ...]) -> list[Entity]:
    for name in (*only, *exclude):
        if name not in profile.entity_names:
            raise BridgeError(f"unknown entity {name!r} (choose from: {', '.join(profile.entity_names)})")
    return [e for e in profile.entities if (not only or e.name in only) and e.name not in exclude]


class ExportRun:
    def __init__(self, options: ExportOptions, conf: BridgeSettings, source: LegacySource, mover=None):
        self.profile = get_profile(options.target_schema)
        # the profile's method when its PIN column is too narrow for werkzeug's default
        self.real_pin_method = options.pin_hash_method or self.profile.pin_hash_method or DEFAULT_PIN_HASH_METHOD
        self.cheap_dry_run_pins = options.pin_hash_method is None and options.dry_run
        if options.pin_hash_method is None:
            options = dataclasses.replace(options, pin_hash_method=(
                DRY_RUN_PIN_HASH_METHOD if options.dry_run else self.real_pin_method))
        self.options = options
        self.conf = conf
        self.source = source
        source.row_digests = True  # what --sync will compare is recorded with every row
        self.mover = mover or CopyRows()
        self.entities = select_entities(self.profile, options.only, options.exclude)
        self.pins = PinPool(options.pin_hash_method, options.workers, options.interactive)
        self.pin_estimate: dict | None = None  # --dry-run: what the real method would cost
        self.report_dir: Path | None = None
        self.started = bk.utcnow()
        self._scratch_dir: str | None = None
        self.file_options, self.file_stores, self.files_result = None, None, None
        self.frozen_at_start: FreezeState | None = None
        self.recorded_on_target: dict[str, str] = {}  # what the target says it was written with
        self.tracking = changelog.Tracking()
        from django.conf import settings

        self.fingerprint_key = fingerprint_key(conf.FINGERPRINT_KEY, settings.SECRET_KEY)

    # --- checks before anything is written ----------------------------------------

    def preflight(self) -> None:
        o = self.options
        dialects.normalize_url(o.target_url)  # a mistyped URL is the first thing to say
        self.mover.check(o)
        if o.batch_size < 1:
            raise BridgeError("--batch-size must be >= 1")
        if o.workers < 1:
            raise BridgeError("--workers must be >= 1")
        if o.row_workers is not None and o.row_workers < 1:
            raise BridgeError("--row-workers must be >= 1")
        if o.on_duplicate_session not in DUPLICATE_POLICIES:
            raise BridgeError(f"--on-duplicate-session must be one of {', '.join(DUPLICATE_POLICIES)}")
        if o.reset and not o.yes:
            raise BridgeError("--reset empties the target tables: add --yes to confirm")
        if o.reset and o.dry_run:
            raise BridgeError("--reset and --dry-run exclude each other")
        if o.track_changes and (o.dry_run or o.files_only):
            raise BridgeError("--track-changes goes with an export or a --sync that writes rows, "
                              "not with --dry-run or --files-only")
        if o.full_scan and not o.sync:
            raise BridgeError("--full-scan goes with --sync")
        for method in {o.pin_hash_method, self.real_pin_method}:
            try:
                check_pin_hash_method(method, self.pin_column_length())
            except ValueError as exc:
                raise BridgeError(f"--pin-hash-method {method!r}: {exc}") from None
        if not self.entities:
            raise BridgeError("--only/--exclude leave no entity to export")
        if not o.lock_timeout > 0:
            raise BridgeError("--lock-timeout must be > 0 seconds")
        # where the report goes, proven writable before any work (not hours later)
        self.report_dir = check_writable_dir(o.report_dir or default_report_dir(self.conf, self.started),
                                             "report", "--report-dir")
        if o.pin_roster:
            if self.profile.pin_roster is None:
                raise BridgeError(f"--pin-roster: the {self.profile.name!r} profile declares no PIN roster")
            check_writable_dir(Path(o.pin_roster).resolve().parent, "PIN roster", "--pin-roster")
        self.source.check_reachable(next(e.source_model for e in self.profile.entities if e.source_model))
        self.source.require_lossless_text()
        self.frozen_at_start = get_freeze_state(use_cache=False)
        if not (self.frozen_at_start.frozen or o.allow_live or o.dry_run):
            raise BridgeError(
                "the legacy app is live (not frozen): run `manage.py flask_freeze on` first, "
                "or pass --allow-live for a rehearsal or a pre-copy"
            )
        hashed = [e for e in self.entities if e.hashed_pin]
        if self.cheap_dry_run_pins and hashed:
            self.pin_estimate = estimate_cost(self.source.count(hashed[0]), o.workers, self.real_pin_method)
        # file options and storages, checked before any row is written
        self.file_options, self.file_stores = files_mod.export_preflight(o, self.conf)
        if o.on_duplicate_session == "fail":
            self.refuse_context_changes()

    def pin_column_length(self) -> int | None:
        """The narrowest target column a PIN hash goes into (None: unbounded)."""
        lengths = [getattr(table.c[e.hashed_pin[0]].type, "length", None)
                   for e in self.entities if e.hashed_pin for table in e.tables if e.hashed_pin[0] in table.c]
        return min((n for n in lengths if n), default=None)

    def refuse_context_changes(self) -> None:
        """``--on-duplicate-session fail``: stop before writing when a declared context
        (e.g. archiving duplicates) would change any row."""
        for entity in self.entities:
            for context in entity.contexts:
                if context.refusal and not context.per_batch:
                    changed = sorted(context.query(self.source, entity, EVERY_ID, None))
                    if changed:
                        raise BridgeError(f"{len(changed)} {entity.name} {context.refusal} (ids {changed[:20]})")

    def prepare_target(self, engine: sa.Engine) -> tuple[dict[str, EntityStats], dict[str, dict[int, int]]]:
        """The checkpoints and the replies still waiting, once the target is settled."""
        o = self.options
        with engine.begin() as conn:
            stats = target.start(conn, o, self.profile, self.entities, self.mover.check_target)
            pending = target.waiting_replies(conn)
            # a dry run is judged by what the real target records, not by its scratch copy
            recorded = self.recorded_on_target if o.dry_run and not o.reset else bk.recorded_settings(conn)
            self.key_scheme = target.settle(conn, self.profile, selected(o.target_schema), recorded,
                                            o.key_scheme, self.conf.FILE_KEY_SCHEME)
        if self.file_options is not None:
            self.file_options = dataclasses.replace(self.file_options, key_scheme=self.key_scheme)
        if not o.files_only:
            target.check_parents_exported(self.entities, stats)
        return stats, pending

    # --- the run -----------------------------------------------------------------

    def compose(self, engine: sa.Engine, pending: dict[str, dict[int, int]]) -> Run:
        keys = files_mod.KeyLookup(engine, self.key_scheme)
        path = RowPath(self.source, base_context(self.conf), file_urls(self.conf, self.profile), self.fingerprint_key, keys)
        path.pending = pending
        idmap = IdMap(self.profile, engine, lambda entity: self.source.highest_keepable_id(entity, KEEPABLE.stop))
        store = BatchStore(engine, self.pins, self.source.count, idmap, self.fingerprint_key,
                           **self.mover.store_options)
        return Run(self.options, self.profile, self.entities, self.source, engine, path, store)

    def run(self) -> ExportResult:
        started = self.started = bk.utcnow()
        cli.current["lock_timeout"] = self.options.lock_timeout
        self.preflight()
        opened = target.open_target(self.options, self.profile)
        engine, self.recorded_on_target, self._scratch_dir = opened.engine, opened.recorded, opened.scratch_dir
        watch = waits.watch(engine, self.options.lock_timeout)
        run_id = None
        try:
            stats, pending = self.prepare_target(engine)
            run = self.compose(engine, pending)
            # before a row is read: what is written from now on is logged
            self.tracking = changelog.start(self.source, list(self.profile.entities), self.entities, engine,
                                            self.options, reads_every_row=not stats)
            run.changes = self.tracking.log
            self.mover.prepare(run, stats)
            with engine.begin() as conn:
                run_id = conn.execute(bk.runs.insert().values(
                    kind=self.mover.kind, status="running", started_at=started,
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
            # keys are decided before any row names one, with or without the file step
            files_mod.assign_keys(engine, self.source, self.profile, self.conf, self.key_scheme, self.options.batch_size)
            with self.loading(engine, stats):
                if not self.options.files_only:
                    self.mover.move(run, stats)
            with engine.begin() as conn:
                dialects.reset_sequences(conn, self.profile.tables)
                if self.mover.loaded_tables and not self.options.files_only:
                    dialects.refresh_statistics(conn, [*self.profile.tables, bk.fingerprints])
            if self.options.pin_roster:
                self.write_pin_roster(self.options.pin_roster, run.path.loaded, run.store.idmap)
            if self.file_stores is not None:
                self.files_result = files_mod.copy_files(
                    engine, self.source, self.profile, self.conf, self.file_options, self.file_stores,
                    only=self.mover.file_rows(run))
            changelog.finish(self.source, engine, list(self.profile.entities), self.tracking)
            status = "complete"
        except BaseException as exc:
            error = exc
            raise
        finally:
            # Nothing here may hide ``error``: each step that fails is logged and skipped.
            self.pins.close(kill=error is not None)
            watch.stop()
            finished = bk.utcnow()
            result = None
            try:
                if error is not None:
                    stats = self.mover.committed_stats(engine, stats)
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
        if result is not None:
            result.nothing_to_do = self.mover.nothing_to_do
        return result

    def loading(self, engine: sa.Engine, stats: dict[str, EntityStats]) -> contextlib.ExitStack:
        """While whole tables load: room left in their pages, their indexes and foreign keys
        built once after (dialects). A run that loads none builds what a stopped export left
        dropped, before anything else."""
        with contextlib.ExitStack() as stack:
            if self.mover.loaded_tables and not (self.options.dry_run or self.options.files_only):
                stack.enter_context(dialects.room_while_loading(engine, self.profile.tables))
                to_load = [table for e in self.entities if not (e.name in stats and stats[e.name].done)
                           for table in e.tables]
                stack.enter_context(dialects.built_after_loading(engine, to_load, bk.deferred_schema))
            else:
                dialects.build_deferred_schema(engine, bk.deferred_schema)
            return stack.pop_all()

    def _header(self, run_id, status, started, finished, error) -> dict:
        return {**run_header("migration_bridge export_to_flask", self.source, self.options, started, finished),
                "target_schema": self.profile.name, "run_id": run_id, "status": status,
                "error": one_line(error) if error else None}

    def _write_failure_report(self, run_id, started, finished, stats, error) -> None:
        """The target is gone: report.json from what this process knows (no notes)."""
        try:
            ordered = [stats[e.name] for e in self.profile.entities if e.name in stats]
            report = {
                **self._header(run_id, "failed", started, finished, error),
                "note": "the target could not be read when the run failed: counts are this process's "
                        "(rows read, possibly not all committed); notes and rejects are not listed",
                "entities": {e.name: {"read": e.read, "written": e.written, "rejected": e.rejected,
                                      "skipped": e.skipped, "complete": e.done} for e in ordered},
                "pin_hashing": self.pins.stats,
            }
            (self.report_dir / "report.json").write_text(
                json.dumps(jsonable(report), indent=2, ensure_ascii=False), encoding="utf-8")
        except Exception as exc:  # noqa: BLE001 - the original error is what the user sees
            log.warning("could not write the failure report: %s", first_line(exc))

    def _remove_scratch(self) -> None:
        if self._scratch_dir:
            shutil.rmtree(self._scratch_dir, ignore_errors=True)
            self._scratch_dir = None

    def finish(self, engine, run_id, status, started, finished, stats, error) -> ExportResult:
        report_dir = self.report_dir or Path(self.options.report_dir or default_report_dir(self.conf, started))
        ordered = [stats[e.name] for e in self.profile.entities if e.name in stats]
        id_map_file = None
        if self.profile.maps_ids and not self.options.dry_run:
            id_map_file = {"file": str(report_dir / "id_map.csv"), "entries": None}
            try:
                report_dir.mkdir(parents=True, exist_ok=True)
                id_map_file["entries"] = idmap_mod.write_csv(engine, report_dir / "id_map.csv")
            except (OSError, sa.exc.DBAPIError) as exc:  # the table in the target is the map; the CSV a copy
                log.warning("id map: the CSV copy could not be written (%s)", first_line(exc))
        report, report_path, rejects_path = write_report(
            engine, report_dir,
            header={
                **self._header(run_id, status, started, finished, error),
                "dry_run": self.options.dry_run,
                "source_frozen": self._frozen_whole_run(),
                "change_log": self.tracking.note,
                "files": self.files_result.as_report() if self.files_result else None,
                "id_map": id_map_file,
                "pin_hashing": {**self.pins.as_report(),
                                **({"dry_run_estimate": self.pin_estimate} if self.pin_estimate else {})},
            },
            entities=ordered,
            order=self.profile.entity_names,
            extra=self.mover.report_extra(),
        )
        return ExportResult(status, ordered, report, report_path, rejects_path, files=self.files_result,
                            sync=self.mover.sync_stats, change_log=self.tracking.note)

    def _frozen_whole_run(self) -> dict:
        """Re-checked at the end: frozen at start and end with the same ``since`` means
        nobody could write to the legacy app during the run."""
        end = get_freeze_state(use_cache=False)
        start = self.frozen_at_start
        whole = bool(start and start.frozen and end.frozen and start.since == end.since)
        return {"whole_run": whole, "at_start": start.as_dict() if start else None, "at_end": end.as_dict()}

    def write_pin_roster(self, path: str, loaded: dict, idmap: IdMap) -> None:
        """The only place plain PINs are ever written: a CSV readable by its owner only. The
        student id is the one the Flask app knows (the legacy one where the profile keeps it)."""
        import csv

        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # an existing file keeps its old mode otherwise
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["teacher", "session_code", "session_name", "student_id", "student_name", "pin"])
            entity = self.profile.entity(self.profile.roster_entity)
            migrated = loaded.get(entity.name) or IdSet()
            writer.writerows((*row[:3], idmap.target_id(entity, row[3]), *row[4:])
                             for row in self.profile.pin_roster(self.source) if row[3] in migrated)


def default_report_dir(conf: BridgeSettings, started: dt.datetime) -> str:
    return str(reports_base(conf) / stamp(started))


def cleanup(target_url: str, conf: BridgeSettings) -> tuple[list[str], int]:
    """After cutover: the tool's tables in the target (``drop_bookkeeping``), then its
    change log in the legacy database; returns the tables and the triggers dropped."""
    dropped = drop_bookkeeping(target_url)
    return dropped, changelog.remove(LegacySource(conf.LEGACY_APP))


def run_export(options: ExportOptions, conf: BridgeSettings) -> ExportResult:
    mover = SyncRows(conf.SYNC_PART_ROWS) if options.sync else CopyRows()
    return ExportRun(options, conf, LegacySource(conf.LEGACY_APP), mover).run()
