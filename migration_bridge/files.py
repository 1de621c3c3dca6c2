"""The media files: keys → (rows) → inventory → parallel copy.

Which row values reference files, and what the target holds instead, is the one rule
of ``filerefs.py``, declared per entity (``FileColumn``). Here:

0. **Keys**, before any row is written (``assign_keys``): under ``media-id`` every name
   the source rows reference gets ``images/<id>_<uuid5 of the name>.<ext>``
   (``videos/...`` for videos) with the lowest referencing id, recorded in the manifest
   ``bridge_files``; a name keeps its key once given. Under ``preserve`` the key is the
   name. The row path writes every file column once, with its key (``KeyLookup``).
1. **Inventory**, after the rows, from the *source* rows (``LegacySource.file_references``,
   keyset batches): one manifest row per distinct storage name — a file shared by many
   rows is copied once — with how many source rows reference it and how many of those
   are in the target: only those count when a file is missing.
2. **Copy**: a thread pool streams each file from the source storage to the target
   storage (filestore.py), skipping objects already there with the same size and
   sha256, retrying transient errors with exponential backoff; each outcome is upserted
   in the manifest. A file the manifest records as done, whose source size and mtime
   are unchanged, is not touched again (``verify=True`` re-checks the target too): a
   re-run after a crash copies only what is missing, a no-op re-run takes seconds.
   The target is looked at (HEAD on S3) before each upload except for files the
   manifest has never attempted (``pending``); those are marked ``copying`` before their
   uploads start, so a run killed mid-copy is followed by one that does look.
   ``dry_run``: inventory and existence checks only, nothing written to the storage.
3. **Listing**: the missing and failed files, with the migrated rows referencing them.
   A row referencing a missing file names the key the file would have.
"""
from __future__ import annotations

import logging
import posixpath
import sys
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import sqlalchemy as sa

from . import bookkeeping as bk
from . import dialects
from .conf import BridgeSettings
from .idmap import legacy_ids_query, target_legacy_ids
from .idset import IdSet
from .filestore import (
    RetryPolicy, SourceFiles, Target, make_target, storage_from_settings,
)
from .errors import first_line
from .filerefs import FileRef
from .mapping import Profile
from .progress import Progress
from .rowpath import file_urls
from .source import LegacySource

log = logging.getLogger("migration_bridge")

KEY_SCHEMES = ("preserve", "media-id")
DONE = ("copied", "skipped_present")
MAX_NAME = 500  # bridge_files.old_name / key
NAMES_HELD = 20_000  # file names an inventory counts in memory before adding them to the manifest
REFERRERS_HELD = 50_000  # file names whose referencing rows an inventory keeps for the listing
KEY_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_DNS, "migration-bridge.video-app.media")
_IN_CHUNK = 500  # values per IN (...) list


# --- keys (pure) ------------------------------------------------------------------------

def media_id_key(name: str, media_id: int) -> str:
    """``images/<media_id>_<uuid5(old name)>.<ext>``; ``videos/...`` for files under videos/."""
    ext = posixpath.splitext(name)[1].lower()
    folder = "videos" if name.startswith("videos/") else "images"
    return f"{folder}/{media_id}_{uuid.uuid5(KEY_NAMESPACE, name).hex}{ext}"


def target_key(name: str, first_media_id: int | None, scheme: str) -> str:
    if scheme == "media-id" and first_media_id is not None:
        return media_id_key(name, first_media_id)
    return name


class KeyLookup:
    """Storage names -> target keys, for the row path: the names themselves under
    ``preserve``; under ``media-id``, the keys ``assign_keys`` put in the manifest."""

    def __init__(self, engine: sa.Engine, scheme: str = "preserve"):
        self.engine, self.scheme = engine, scheme

    def __call__(self, names: set[str]) -> dict[str, str]:
        if self.scheme == "preserve":
            return {n: n for n in names}
        with self.engine.connect() as conn:
            return {m.old_name: m.key for m in manifest_rows(conn, names)}


def assign_keys(engine: sa.Engine, source: LegacySource, profile: Profile, conf: BridgeSettings, scheme: str,
                batch_size: int) -> int:
    """Before any row is written: a key for every file name the source rows reference
    that has none yet (``media-id``: the lowest referencing id, in id order). A file keeps
    its key once given, so rows written once stay right. Returns the keys added."""
    if scheme == "preserve":
        return 0
    added = 0
    for refs in source.file_references(profile, batch_size, file_urls(conf, profile)):
        first: dict[str, int] = {}
        for ref in refs:  # in id order: the first reference of a name is its lowest id
            if ref.names_key and len(ref.name) <= MAX_NAME:
                first.setdefault(ref.name, ref.owner_id)
        if not first:
            continue
        with engine.begin() as conn:
            known = {m.old_name for m in manifest_rows(conn, first)}
            rows = [_new_entry(name, target_key(name, owner, scheme), owner)
                    for name, owner in first.items() if name not in known]
            if rows:
                conn.execute(bk.files.insert(), rows)
                added += len(rows)
    return added


def _new_entry(name: str, key: str, first_id: int | None, refs: int = 0, migrated_refs: int = 0) -> dict:
    """A manifest row for a file never attempted."""
    return {"old_name": name, "key": key, "size": None, "sha256": None, "source_mtime_ns": None,
            "status": "pending", "error": None, "refs": refs, "migrated_refs": migrated_refs,
            "first_media_id": first_id, "updated_at": bk.utcnow()}


# --- options and results --------------------------------------------------------------

@dataclass
class FileOptions:
    workers: int = 8
    key_scheme: str = "preserve"
    dry_run: bool = False
    verify: bool = False  # re-check target objects even when the manifest says done
    batch_size: int = 2000  # source rows per key, inventory and listing batch
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    interactive: bool | None = None
    list_limit: int = 1000  # entries of missing_files / failed_files in the report
    ids_per_file: int = 50  # referencing ids listed per missing file


@dataclass
class Outcome:
    name: str
    status: str  # copied | skipped_present | missing | failed | would_copy
    size: int | None = None
    sha256: str | None = None
    mtime_ns: int | None = None
    error: str | None = None
    retries: int = 0


@dataclass
class CopyStats:
    copied: int = 0
    skipped_present: int = 0  # found in the target with the same size and sha256
    already_done: int = 0  # the manifest said done and the source is unchanged
    missing: int = 0
    failed: int = 0
    would_copy: int = 0
    bytes: int = 0
    retries: int = 0
    seconds: float = 0.0

    def add(self, outcome: Outcome) -> None:
        setattr(self, outcome.status, getattr(self, outcome.status) + 1)
        if outcome.status == "copied":
            self.bytes += outcome.size or 0
        self.retries += outcome.retries


@dataclass
class FilesResult:
    source: str
    target: str
    key_scheme: str
    workers: int
    dry_run: bool
    references: int = 0
    invalid_names: int = 0
    copy: CopyStats = field(default_factory=CopyStats)
    manifest: dict = field(default_factory=dict)  # status -> files (whole migration)
    needed: int = 0  # files referenced by at least one migrated row
    needed_ok: int = 0
    referenced: int = 0
    missing_needed: int = 0
    missing_not_needed: int = 0
    failed_needed: int = 0
    missing_files: list = field(default_factory=list)
    failed_files: list = field(default_factory=list)
    seconds: dict = field(default_factory=dict)
    # whose references were inventoried: every row, or (a sync) the rows it wrote; the
    # totals count the whole manifest either way
    scope: str = "every row"

    @property
    def hit_ratio(self) -> float:
        return self.needed_ok / self.needed if self.needed else 1.0

    def as_report(self) -> dict:
        c = self.copy
        mb_per_s = c.bytes / c.seconds / 1e6 if c.seconds else 0.0
        processed = c.copied + c.skipped_present + c.already_done + c.missing + c.failed + c.would_copy
        return {
            "source_storage": self.source,
            "target_storage": self.target,
            "key_scheme": self.key_scheme,
            "workers": self.workers,
            "dry_run": self.dry_run,
            "scope": self.scope,
            "referenced": self.referenced,
            "references": self.references,
            "needed_by_migrated_rows": self.needed,
            "copied": c.copied,
            "skipped_present": c.skipped_present + c.already_done,
            "skipped_present_checked": c.skipped_present,
            "skipped_done_in_manifest": c.already_done,
            **({"would_copy": c.would_copy} if self.dry_run else {}),
            "missing": self.missing_needed,
            "missing_not_needed": self.missing_not_needed,
            "failed": self.failed_needed,
            "failed_this_run": c.failed,
            "retries": c.retries,
            "bytes": c.bytes,
            "seconds": round(c.seconds, 3),
            "mb_per_s": round(mb_per_s, 2),
            "files_per_s": round(processed / c.seconds, 1) if c.seconds else 0.0,
            "hit_ratio": round(self.hit_ratio, 6),
            "invalid_names": self.invalid_names,
            "manifest": self.manifest,
            "phase_seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "missing_files": self.missing_files,
            "failed_files": self.failed_files,
        }

    def summary(self) -> str:
        """Two lines whose figures add up: every referenced file's outcome in this run, then
        the files the migrated rows use — the ones ``verify_flask``'s files check counts."""
        c = self.copy
        mb_per_s = c.bytes / c.seconds / 1e6 if c.seconds else 0.0
        moved = (f"{c.would_copy} would be copied" if self.dry_run
                 else f"{c.copied} copied ({c.bytes / 1e6:.1f} MB, {mb_per_s:.1f} MB/s)")
        used_ok = self.needed - self.missing_needed - self.failed_needed
        return (f"files: {self.referenced} referenced = {moved} + {c.skipped_present + c.already_done} "
                f"already present + {c.missing} missing in the legacy storage + {c.failed} failed\n"
                f"       used by migrated rows: {self.needed} = {used_ok} in the target storage + "
                f"{self.missing_needed} missing + {self.failed_needed} failed; hit ratio {self.hit_ratio:.4%} "
                f"→ {self.target}")


# --- the run --------------------------------------------------------------------------

def open_stores(conf: BridgeSettings, dry_run: bool = False) -> tuple[SourceFiles, Target]:
    """The source and target storages from settings, checked (raises BridgeError)."""
    source = SourceFiles(storage_from_settings(conf.SOURCE_STORAGE, "SOURCE_STORAGE"), conf.SOURCE_STORAGE)
    target = make_target(storage_from_settings(conf.TARGET_STORAGE, "TARGET_STORAGE"), conf.TARGET_STORAGE)
    target.check(write=not dry_run)
    return source, target


def check_options(options: FileOptions) -> None:
    from .errors import BridgeError

    if options.key_scheme not in KEY_SCHEMES:
        raise BridgeError(f"--key-scheme must be one of {', '.join(KEY_SCHEMES)}")
    if options.workers < 1:
        raise BridgeError("--file-workers must be >= 1")


def copy_files(engine: sa.Engine, source: LegacySource, profile: Profile, conf: BridgeSettings,
               options: FileOptions, stores: tuple[SourceFiles, Target] | None = None,
               only: Mapping[str, Iterable[int]] | None = None) -> FilesResult:
    """Inventory and copy (the rows name the keys already); returns what the report
    shows (``.as_report()``). ``only`` (a sync): entity -> the ids of the rows it wrote;
    only their references are inventoried, copied and listed, and the reference counts
    of the other files stay as the last full run left them."""
    check_options(options)
    src, dst = stores or open_stores(conf, options.dry_run)
    bk.create_bookkeeping(engine)
    result = FilesResult(src.describe(), dst.describe(), options.key_scheme, options.workers, options.dry_run)
    if only is not None:
        result.scope = "rows this sync wrote"
    try:
        started = time.monotonic()
        present = MigratedRows(engine, profile, whole=only is None)  # the copy writes no row: read once
        referrers = Referrers(options.ids_per_file)
        result.references, result.invalid_names, names = build_inventory(engine, source, profile, conf,
                                                                          options.batch_size, only, present, referrers)
        result.seconds["inventory"] = time.monotonic() - started
        started = time.monotonic()
        result.copy = copy_pending(engine, src, dst, options, names)
        result.seconds["copy"] = time.monotonic() - started
        started = time.monotonic()
        missing, failed = list_problems(engine, source, profile, conf, options, only, present, referrers)
        result.seconds["listing"] = time.monotonic() - started
    finally:
        dst.close()
    _fill_totals(engine, result, options.dry_run)
    result.missing_files, result.failed_files = missing, failed
    if result.missing_needed > len(missing):
        missing.append({"not_listed": result.missing_needed - len(missing)})
    if result.failed_needed > len(failed):
        failed.append({"not_listed": result.failed_needed - len(failed)})
    log.debug("%s", result.summary())
    return result


# --- 1. inventory ------------------------------------------------------------------------

def build_inventory(engine: sa.Engine, source: LegacySource, profile: Profile, conf: BridgeSettings,
                    batch_size: int, only: Mapping[str, Iterable[int]] | None = None,
                    present: MigratedRows | None = None, referrers: Referrers | None = None,
                    ) -> tuple[int, int, set[str] | None]:
    """Count, per file, the source rows referencing it and those of them in the target;
    add the files no key was assigned to (their key: their name); keep the migrated rows
    referencing each in ``referrers``. Returns (references, invalid names, the names seen
    when ``only`` is given, else None)."""
    table = bk.files
    if only is None:
        with engine.begin() as conn:
            # counts are rebuilt on every run (a killed inventory leaves no stale counts behind)
            conn.execute(table.update().where(table.c.refs != 0).values(refs=0, migrated_refs=0))
    present = present or MigratedRows(engine, profile, whole=only is None)
    references = invalid = 0
    seen: set[str] | None = None if only is None else set()
    counts: dict[str, list[int]] = {}  # name -> [refs, migrated refs] not yet in the manifest
    for refs in source.file_references(profile, batch_size, file_urls(conf, profile), only):
        usable = [r for r in refs if len(r.name) <= MAX_NAME]
        invalid += len(refs) - len(usable)
        references += len(usable)
        migrated = present.among(usable)
        for ref in usable:
            entry = counts.setdefault(ref.name, [0, 0])
            entry[0] += 1
            if (ref.owner, ref.owner_id) in migrated:
                entry[1] += 1
                if referrers is not None:
                    referrers.add(ref)
        if len(counts) >= NAMES_HELD:
            _add_counts(engine, counts, seen)
            counts = {}
    _add_counts(engine, counts, seen)
    if invalid:
        log.warning("files: %d references with a name longer than %d characters ignored", invalid, MAX_NAME)
    return references, invalid, seen


def _add_counts(engine: sa.Engine, counts: Mapping[str, list[int]], seen: set[str] | None) -> None:
    """Add the counts to the manifest (``seen`` given: a sync's, see ``build_inventory``)."""
    if not counts:
        return
    with engine.begin() as conn:
        known = {row.old_name: row for row in manifest_rows(conn, counts)}
        rows = []
        for name, (n, m) in counts.items():
            old = known.get(name)
            if old is None:
                rows.append(_new_entry(name, name, None, refs=n, migrated_refs=m))  # no key assigned: its name
            elif seen is None:  # its key stays: rows name it already
                rows.append({**old._asdict(), "refs": n + old.refs, "migrated_refs": m + old.migrated_refs})
            elif old.refs == 0 or old.migrated_refs == 0:  # a sync: counted in from now on
                rows.append({**old._asdict(), "refs": max(n, old.refs), "migrated_refs": m})
        dialects.upsert(conn, bk.files, rows)
    if seen is not None:
        seen.update(counts)


class MigratedRows:
    """Which referencing rows the target holds: with ``whole`` (an inventory of every
    row) each owner's ids are read once, as ranges; else each batch's are looked up (a
    sync's few rows)."""

    def __init__(self, engine: sa.Engine, profile: Profile, whole: bool):
        self.engine, self.profile, self.whole = engine, profile, whole
        self._ids: dict[str, IdSet] = {}

    def among(self, refs: list[FileRef]) -> set[tuple[str, int]]:
        """(owner, id) of the referencing rows of ``refs`` that are in the target tables."""
        if not refs:  # nothing to look up: no connection taken
            return set()
        if not self.whole:
            return self._looked_up(refs)
        present = set()
        for ref in refs:
            ids = self._ids.get(ref.owner)
            if ids is None:
                with self.engine.connect() as conn:
                    ids = self._ids[ref.owner] = target_legacy_ids(conn, self.profile, self.profile.entity(ref.owner))
            if ref.owner_id in ids:
                present.add((ref.owner, ref.owner_id))
        return present

    def _looked_up(self, refs: list[FileRef]) -> set[tuple[str, int]]:
        by_owner: dict[str, set[int]] = {}
        for ref in refs:
            by_owner.setdefault(ref.owner, set()).add(ref.owner_id)
        present = set()
        with self.engine.connect() as conn:
            for owner, ids in by_owner.items():
                view = legacy_ids_query(self.profile, self.profile.entity(owner), ordered=False).subquery()
                for chunk in _chunks(sorted(ids)):
                    present.update((owner, i) for (i,) in conn.execute(sa.select(view.c.id).where(view.c.id.in_(chunk))))
        return present


class Referrers:
    """Per file name, in the order the inventory first met a migrated row referencing it,
    the ids (the first ``per_file`` of each owner entity) of the migrated rows referencing
    it: what the listing of missing and failed files shows, without reading the
    references again. Kept for at most ``held`` names (None: all); beyond, ``by_name`` is
    None and the listing reads them again."""

    def __init__(self, per_file: int, held: int | None = REFERRERS_HELD):
        self.per_file, self.held = per_file, held
        self.by_name: dict[str, dict[str, list[int]]] | None = {}

    def add(self, ref: FileRef) -> None:
        if self.by_name is None:
            return
        owners = self.by_name.get(ref.name)
        if owners is None:
            if self.held is not None and len(self.by_name) >= self.held:
                self.by_name = None
                return
            owners = self.by_name[ref.name] = {}
        ids = owners.setdefault(ref.owner, [])
        if len(ids) < self.per_file and ref.owner_id not in ids:
            ids.append(ref.owner_id)


def manifest_rows(conn: sa.Connection, names: Iterable[str]) -> list:
    names = sorted(set(names))
    rows = []
    for chunk in _chunks(names):
        rows.extend(conn.execute(sa.select(bk.files).where(bk.files.c.old_name.in_(chunk))))
    return rows


def _chunks(values: list, size: int = _IN_CHUNK):
    for i in range(0, len(values), size):
        yield values[i:i + size]


# --- 2. copy -------------------------------------------------------------------------------

def transfer_one(src: SourceFiles, dst: Target, name: str, key: str, retry: RetryPolicy,
                 dry_run: bool = False, check_target: bool = True) -> Outcome:
    """Copy one file unless the target already holds the same bytes (runs in a worker).

    ``check_target=False``: the manifest knows no earlier attempt at this key (status
    ``pending``), so the existence check (a HEAD request on S3) is skipped."""
    retries = 0

    def on_retry(exc, attempt, delay):
        nonlocal retries
        retries += 1
        log.debug("files: %s: %s, retry %d in %.1fs", key, _storage_error(exc), attempt, delay)

    try:
        before = src.stat(name)
        if before is None:
            return Outcome(name, "missing", error="not in the source storage")
        sha = None
        there = retry.call(dst.state, key, on_retry=on_retry) if check_target or dry_run else None
        if there is not None and there.size == before.size:
            sha = src.sha256(name)
            theirs = there.sha256 or retry.call(dst.digest, key, on_retry=on_retry)
            if theirs == sha:
                return Outcome(name, "skipped_present", before.size, sha, before.mtime_ns, retries=retries)
        if dry_run:
            return Outcome(name, "would_copy", before.size, sha, before.mtime_ns, retries=retries)
        if sha is None and dst.sha256_before_put:
            sha = src.sha256(name)
        written = retry.call(dst.put, key, src, name, before.size, sha, on_retry=on_retry)
        if src.stat(name) != before or (written and sha and written != sha):
            raise RuntimeError("the source file changed during the copy")
        sha = written or sha
        return Outcome(name, "copied", before.size, sha, before.mtime_ns, retries=retries)
    except FileNotFoundError:
        return Outcome(name, "missing", error="vanished from the source storage", retries=retries)
    except Exception as exc:  # noqa: BLE001 - one file's failure is reported, the run goes on
        return Outcome(name, "failed", error=_storage_error(exc)[:1000], retries=retries)


def copy_pending(engine: sa.Engine, src: SourceFiles, dst: Target, options: FileOptions,
                 names: set[str] | None = None) -> CopyStats:
    """Copy what the manifest says is not done yet (of ``names`` only, when given)."""
    stats = CopyStats()
    table = bk.files
    with engine.connect() as conn:
        total = (conn.execute(sa.select(sa.func.count()).select_from(table).where(table.c.refs > 0)).scalar()
                 if names is None else len(names))
    if not options.dry_run:
        removed = dst.remove_leftover_parts(lambda: _manifest_keys(engine))
        if removed:
            log.info("files: removed %d temporary file(s) or unfinished upload(s) left by an interrupted copy", removed)
    # A manifest that never attempted a copy skips the existence checks (see below) — unless
    # the storage already holds files (e.g. --reset after --cleanup dropped the manifest):
    # then every file is looked at first, and those already there are not copied again.
    look_first = options.dry_run or options.verify
    if not look_first:
        with engine.connect() as conn:
            attempted = conn.execute(sa.select(sa.literal(1)).select_from(table)
                                     .where(table.c.status != "pending").limit(1)).first()
        if attempted is None and dst.has_objects():
            look_first = True
            log.info("files: new manifest but the target storage holds files already: each file is "
                     "checked there first (same size and sha256: not copied again)")
    progress = Progress("files", total, unit="files", interactive=options.interactive)
    started = time.monotonic()
    updates: list[dict] = []
    last_flush = time.monotonic()
    inflight: dict = {}
    max_inflight = options.workers * 4

    def rate() -> str:
        seconds = max(time.monotonic() - started, 1e-9)
        return f"{stats.bytes / 1e6:.1f} MB copied, {stats.bytes / seconds / 1e6:.1f} MB/s"

    def flush(force: bool = False) -> None:
        nonlocal updates, last_flush
        if updates and (force or len(updates) >= 200 or time.monotonic() - last_flush > 2.0):
            with engine.begin() as conn:
                dialects.upsert(conn, table, updates)
            updates = []
            last_flush = time.monotonic()

    def handle(future, row) -> None:
        outcome = future.result()
        stats.add(outcome)
        if outcome.status == "failed":
            log.warning("files: %s → %s failed: %s", row.old_name, row.key, outcome.error)
        if outcome.status != "would_copy":
            updates.append(_manifest_update(row, outcome))
        progress.update(1, rate())

    pool = ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="bridge-files")
    try:
        for page in _manifest_pages(engine, names):
            todo = []
            for row in page:
                if not options.verify and row.status in DONE and _unchanged(src, row):
                    stats.already_done += 1
                    progress.update(1, rate())
                else:
                    todo.append(row)
            # Never attempted: no need to look in the target first. Marked "copying" before
            # any upload starts, so that after a kill the next run does look.
            fresh = set() if look_first else {r.old_name for r in todo if r.status == "pending"}
            if fresh:
                with engine.begin() as conn:
                    for chunk in _chunks(sorted(fresh)):
                        conn.execute(table.update().where(table.c.old_name.in_(chunk)).values(status="copying"))
            for row in todo:
                future = pool.submit(transfer_one, src, dst, row.old_name, row.key, options.retry,
                                     options.dry_run, row.old_name not in fresh)
                inflight[future] = row
                if len(inflight) >= max_inflight:
                    done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                    for future in done:
                        handle(future, inflight.pop(future))
                    flush()
        while inflight:
            done, _ = wait(inflight, return_when=FIRST_COMPLETED)
            for future in done:
                handle(future, inflight.pop(future))
            flush()
    finally:
        # failing or interrupted: no wait for the uploads in flight (their temporary files
        # are removed by the next run); cli ends the process without joining them
        pool.shutdown(wait=sys.exc_info()[0] is None, cancel_futures=True)
        stats.seconds = time.monotonic() - started
        progress.close()
        flush(force=True)
    return stats


def _manifest_keys(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return [key for (key,) in conn.execute(sa.select(bk.files.c.key))]


def _manifest_pages(engine: sa.Engine, names: set[str] | None = None, page: int = 1000):
    """Pages of the manifest rows still referenced (of ``names`` only, when given), by
    keyset on old_name (no long-lived cursor)."""
    table = bk.files
    if names is not None:
        for chunk in _chunks(sorted(names), page):
            with engine.connect() as conn:
                yield [row for row in manifest_rows(conn, chunk) if row.refs > 0]
        return
    last = None
    while True:
        query = sa.select(table).where(table.c.refs > 0).order_by(table.c.old_name).limit(page)
        if last is not None:
            query = query.where(table.c.old_name > last)
        with engine.connect() as conn:
            rows = conn.execute(query).all()
        if not rows:
            return
        yield rows
        last = rows[-1].old_name


def _unchanged(src: SourceFiles, row) -> bool:
    """A done file whose source still has the recorded size and mtime needs nothing."""
    if not src.local:
        return True
    st = src.stat(row.old_name)
    return st is not None and st.size == row.size and st.mtime_ns == row.source_mtime_ns


def _manifest_update(row, outcome: Outcome) -> dict:
    present = outcome.status in DONE
    return {
        "old_name": row.old_name, "key": row.key, "refs": row.refs, "migrated_refs": row.migrated_refs,
        "first_media_id": row.first_media_id, "status": outcome.status,
        "size": outcome.size, "sha256": outcome.sha256 if present else None,
        "source_mtime_ns": outcome.mtime_ns if present else None,
        "error": outcome.error, "updated_at": bk.utcnow(),
    }


# --- 3. what is missing or failed, with the rows referencing it ---------------------------

def list_problems(engine: sa.Engine, source: LegacySource, profile: Profile, conf: BridgeSettings,
                  options: FileOptions, only: Mapping[str, Iterable[int]] | None = None,
                  present: MigratedRows | None = None, referrers: Referrers | None = None) -> tuple[list, list]:
    """The missing and failed files, each with (some of) the ids of the migrated rows
    referencing it (of the rows in ``only``, when given), per entity: from what the
    inventory kept (``referrers``), else from the references read again."""
    problems: dict[str, dict] = {}  # name -> entry of missing_files / failed_files
    listed = {"missing": 0, "failed": 0}
    t = bk.files
    with engine.connect() as conn:
        # the references are read again only when a file went wrong, and only theirs are looked up
        wrong = {m.old_name: m for m in conn.execute(sa.select(t.c.old_name, t.c.status, t.c.key, t.c.error)
                                                     .where(t.c.status.in_(("missing", "failed")), t.c.refs > 0))}
    if not wrong:
        return [], []
    if referrers is None or referrers.by_name is None or referrers.per_file != options.ids_per_file:
        referrers = Referrers(options.ids_per_file, held=None)  # the wrong files' only
        present = present or MigratedRows(engine, profile, whole=only is None)
        for refs in source.file_references(profile, options.batch_size, file_urls(conf, profile), only):
            refs = [r for r in refs if r.name in wrong]
            migrated = present.among(refs)
            for ref in refs:
                if (ref.owner, ref.owner_id) in migrated:
                    referrers.add(ref)
    for name, owners in referrers.by_name.items():  # in the order first met
        m = wrong.get(name)
        if m is None:
            continue
        if listed[m.status] >= options.list_limit:
            continue  # counted in the totals, not listed
        listed[m.status] += 1
        entry = problems[name] = {"_status": m.status, "name": name}
        if m.status == "failed":
            entry["key"], entry["error"] = m.key, m.error
        for owner, ids in owners.items():
            entry[f"{owner}_ids"] = list(ids)
    missing, failed = [], []
    for entry in problems.values():
        (missing if entry.pop("_status") == "missing" else failed).append(entry)
    return missing, failed


def _fill_totals(engine: sa.Engine, result: FilesResult, dry_run: bool) -> None:
    t = bk.files
    needed = sa.and_(t.c.refs > 0, t.c.migrated_refs > 0)
    ok_statuses = DONE + (("pending", "copying") if dry_run else ())
    with engine.connect() as conn:
        result.manifest = dict(conn.execute(
            sa.select(t.c.status, sa.func.count()).where(t.c.refs > 0).group_by(t.c.status)).all())

        def count(*where) -> int:
            return conn.execute(sa.select(sa.func.count()).select_from(t).where(*where)).scalar() or 0

        result.referenced = count(t.c.refs > 0)
        result.needed = count(needed)
        result.needed_ok = count(needed, t.c.status.in_(ok_statuses))
        result.missing_needed = count(needed, t.c.status == "missing")
        result.failed_needed = count(needed, t.c.status == "failed")
        result.missing_not_needed = count(t.c.refs > 0, t.c.migrated_refs == 0, t.c.status == "missing")


def _storage_error(exc: BaseException) -> str:
    """A storage error for the manifest and the log: its type and first line."""
    return f"{type(exc).__name__}: {first_line(exc)}"


def export_preflight(options, conf: BridgeSettings) -> tuple[FileOptions | None, tuple | None]:
    """For ExportRun.preflight: the file options and the checked storages, or
    (None, None) with --skip-files. Raises BridgeError on bad flags or storages."""
    from .errors import BridgeError

    if options.skip_files and options.files_only:
        raise BridgeError("--skip-files and --files-only exclude each other")
    if options.files_only and (options.reset or options.restart):
        raise BridgeError("--files-only copies files for rows already exported: no --reset/--restart")
    if options.skip_files:
        return None, None
    file_options = options_from_export(options, conf)
    check_options(file_options)
    return file_options, open_stores(conf, options.dry_run)


def options_from_export(options, conf: BridgeSettings) -> FileOptions:
    """FileOptions from pipeline.ExportOptions (flags win over settings)."""
    return FileOptions(
        workers=options.file_workers or conf.FILE_WORKERS,
        key_scheme=options.key_scheme or conf.FILE_KEY_SCHEME,
        dry_run=options.dry_run,
        verify=options.verify_files,
        batch_size=options.batch_size,
        retry=RetryPolicy(attempts=max(1, conf.FILE_RETRY_ATTEMPTS), base_delay=conf.FILE_RETRY_BASE_DELAY),
        interactive=options.interactive,
    )


__all__ = [
    "KEY_SCHEMES", "FileOptions", "FilesResult", "CopyStats", "Outcome", "copy_files", "open_stores",
    "build_inventory", "copy_pending", "list_problems", "assign_keys", "KeyLookup", "transfer_one", "media_id_key", "target_key",
    "options_from_export", "check_options", "export_preflight",
]
