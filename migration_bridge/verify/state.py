"""What verify's checks share: the options, the results, and the state loaded once (ids
on both sides, what the export said) or decided by the content pass (what the target
must hold, from the source)."""
from __future__ import annotations

import dataclasses
import os
import random
import threading
import urllib.parse
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import sqlalchemy as sa

from .. import bookkeeping as bk
from .. import dialects
from ..cli import flag
from ..conf import BridgeSettings
from ..diff import DEFAULT_CHUNK_SIZE
from ..forked import Helper
from ..idmap import IdMap, legacy_id_ranges_query
from ..idset import IdSet
from ..mapping import Profile
from ..source import LegacySource
from ..transforms import Root

SHOW_IDS = 20

CHECK_TITLES = {
    "source_connection": "source connection",
    "row_counts": "row counts per table",
    "foreign_keys": "foreign keys in the target",
    "schema": "indexes and constraints",
    "content": "content (checksums + sample)",
    "counters": "cached counters",
    "observer_scope": "observer scope",
    "teacher_dashboards": "teacher dashboards",
    "files": "files in target storage",
    "flask_pages": "Flask pages",
}


@dataclass
class VerifyOptions:
    """What verify checks; each ``flag`` field is also ``verify_flask``'s option."""

    target_url: str
    target_schema: str | None = flag(None, "target profile the export wrote (default: what the target records)")
    sample: int = flag(50, "rows per table compared field by field, and pages fetched (default: %(default)s)")
    tolerance: float = flag(0.0, "allowed row difference per table, as a fraction (default: 0: none; "
                                 "e.g. 0.001 for a rehearsal against a live source)")
    report_path: str | None = flag(None, "where verify.json goes (default var/reports/verify-<timestamp>.json)",
                                   flag="report", metavar="PATH")
    flask_url: str | None = flag(None, "base URL of a running Flask app: fetch sampled pages and files")
    flask_cookie: str | None = flag(None, "NAME=VALUE: the session cookie of an admin logged into the Flask app, "
                                          "for pages behind its login (never logged; better: the environment "
                                          "variable MIGRATION_BRIDGE_FLASK_COOKIE)", metavar="NAME=VALUE")
    fix_counts: bool = flag(False, "rewrite wrong cached counters in the target")
    chunk_size: int = flag(DEFAULT_CHUNK_SIZE, "ids per checksum chunk (default: %(default)s)")
    workers: int = flag(os.cpu_count() or 1, "processes the content check replays the source in, each over an "
                                             "id range of a table (default: the machine's cores, %(default)s)")
    seed: int | None = flag(None, "seed of the random samples (default: random, in the report)", type=int)
    accept_missing_source_files: bool = flag(
        False, "files missing in the legacy storage too are listed but do not count against the hit ratio")
    lock_timeout: float | None = flag(None, "give up when a lock in the target is not granted within this "
                                            "time (default: %(default)ss)", metavar="SECONDS", type=float,
                                      cli_default=300.0)

    def public(self) -> dict:
        data = dataclasses.asdict(self)
        data["target_url"] = dialects.mask_url(self.target_url)
        data["flask_url"] = mask_http_url(self.flask_url) if self.flask_url else None
        data["flask_cookie"] = "***" if self.flask_cookie else None
        return data


@dataclass
class CheckResult:
    name: str
    passed: bool | None  # None: not run (skipped)
    summary: str
    figures: dict = field(default_factory=dict)
    offending: dict = field(default_factory=dict)  # label -> {"count", "ids", ...}
    seconds: float | None = None  # how long it ran

    @property
    def status(self) -> str:
        return {True: "PASS", False: "FAIL", None: "SKIP"}[self.passed]

    def as_dict(self) -> dict:
        return {"name": self.name, "title": CHECK_TITLES[self.name], "status": self.status,
                "passed": self.passed, "summary": self.summary, "figures": self.figures,
                "offending": self.offending, "seconds": self.seconds}


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


class IdList:
    """Ids in ascending order (compact) with a bitmap for membership."""

    def __init__(self, ids: Iterable[int] = ()):
        self.items = array("q", ids)
        self.members = IdSet(self.items)

    @classmethod
    def from_ranges(cls, ranges: Iterable[tuple[int, int]]) -> IdList:
        """The ids of ascending ``(first, last)`` ranges (both included)."""
        ids = cls()
        for first, last in ranges:
            ids.items.extend(range(first, last + 1))
            ids.members.add_range(first, last)
        return ids

    def add(self, i: int) -> None:
        self.items.append(i)
        self.members.add(i)

    def extend(self, ids: Iterable[int]) -> None:
        """Ids above the last one, ascending."""
        start = len(self.items)
        self.items.extend(ids)
        self.members.update(self.items[start:])

    update = extend  # as ``IdSet.update`` (``RowPath.accept_all``)

    def __contains__(self, i) -> bool:
        return i in self.members

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class State:
    options: VerifyOptions
    conf: BridgeSettings
    profile: Profile
    source: LegacySource
    engine: sa.Engine
    raw_settings: dict
    seed: int
    key_scheme: str = "preserve"
    # loaded once (load())
    source_ids: Mapping[str, IdList] = field(default_factory=dict)  # an ArrivingIds once loaded
    target_ids: dict[str, IdList] = field(default_factory=dict)
    checkpoints: dict[str, Any] = field(default_factory=dict)
    # what the export said of the rows it left out: only to explain differences
    export_notes: dict[str, dict[int, tuple[str, str]]] = field(default_factory=dict)
    # decided by the content pass, from the source alone: rows the target must hold,
    # and the rows it must not hold, each with the root cause (a source row) and reason
    expected: dict[str, IdList] = field(default_factory=dict)
    gone: dict[str, dict[int, Root]] = field(default_factory=dict)
    gone_reason: dict[str, dict[int, str]] = field(default_factory=dict)
    audited: bool = False
    # what the files check found in the target storage: key -> size, key -> first row using it
    file_sizes: dict[str, int] = field(default_factory=dict)
    file_owners: dict[str, str] = field(default_factory=dict)
    idmap: IdMap | None = None  # legacy ids <-> target ids, for the checks that ask the Flask app's queries

    def rng(self, purpose: str) -> random.Random:
        return random.Random(f"{self.seed}:{purpose}")

    def migrated(self, name: str) -> IdSet:
        """Ids both expected from the source and present in the target."""
        return self.expected[name].members & self.target_ids[name].members

    def load(self) -> None:
        """The target's ids and what the export noted, read by a forked process; the
        source's ids are read by another, each entity's received when a check first asks
        for it (the content check starts with the small tables while the large ones are read)."""
        from django.db import connections

        self.idmap = IdMap(self.profile, self.engine)
        with self.engine.connect() as conn:
            self.checkpoints = {row.entity: row for row in conn.execute(sa.select(bk.checkpoints))}
        connections.close_all()  # the helper opens its own, never shares this process's sockets
        self.source_ids = ArrivingIds(Helper(_read_source, (self.source, self.profile),
                                             "the process reading the legacy ids", self.engine))
        target = Helper(_read_target, (self.engine, self.profile), "the process reading the target's ids",
                        self.engine)
        try:
            self.target_ids, self.export_notes = target.receive()[1]
        finally:
            target.stop()

    def close(self) -> None:
        if isinstance(self.source_ids, ArrivingIds):
            self.source_ids.stop()


class ArrivingIds:
    """Entity name -> its source ``IdList``, as a helper sends them ("ids", (name, ids)),
    each waited for when first asked for."""

    def __init__(self, helper: Helper):
        self._helper = helper
        self._ids: dict[str, IdList] = {}
        self._lock = threading.Lock()  # the checks after content ask from threads

    def __getitem__(self, name: str) -> IdList:
        with self._lock:
            while name not in self._ids:
                if self._helper.finished:
                    raise KeyError(name)
                kind, payload = self._helper.receive()
                if kind == "ids":
                    self._ids[payload[0]] = payload[1]
            return self._ids[name]

    def stop(self) -> None:
        self._helper.stop()


def _read_source(source: LegacySource, profile: Profile, send) -> None:
    """In the forked process: ("ids", (entity name, IdList)) for each entity, in order."""
    for entity in profile.entities:
        send.send(("ids", (entity.name, IdList(source.ids(entity)))))
    send.send(("done", None))


def _read_target(engine: sa.Engine, profile: Profile, send) -> None:
    """In the forked process: ("done", (ids per entity, the export's rejects and skips))."""
    ids: dict[str, IdList] = {}
    notes: dict[str, dict[int, tuple[str, str]]] = {entity.name: {} for entity in profile.entities}
    with engine.connect() as conn:
        for entity in profile.entities:
            ranges = conn.execution_options(stream_results=True, yield_per=50_000).execute(
                legacy_id_ranges_query(profile, entity))
            ids[entity.name] = IdList.from_ranges(ranges)
        result = conn.execution_options(stream_results=True, yield_per=50_000).execute(
            sa.select(bk.notes.c.entity, bk.notes.c.source_id, bk.notes.c.kind, bk.notes.c.detail)
            .where(bk.notes.c.kind.in_(("reject", "skip"))))
        for entity_name, source_id, kind, detail in result:
            if entity_name in notes:
                notes[entity_name][source_id] = (kind, (detail or {}).get("reason", ""))
    send.send(("done", (ids, notes)))
