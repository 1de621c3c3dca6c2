"""The path every row takes, whoever moves it: context → transform → file columns →
validate → key check → deferral. Export and sync call it to decide what they write;
verify replays it against the ids *it* expects, to derive what the target must hold.

Pure but for the declared context queries (``Entity.contexts``) and the file keys
(``keys``), which read the legacy DB and the key manifest.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from . import filerefs
from .errors import BridgeError
from .fingerprint import ROW_DIGEST, context_digest, row_digest
from .idset import IdSet
from .mapping import Entity
from .report import jsonable
from .transforms import Note, Reject, Root, Skip, TransformContext, check_parents, root_of, row_validator

WAIT = "wait"  # decide(): a reply whose parent comes later in id order


@dataclass
class BatchOutcome:
    """What one batch of source rows became."""

    rows: list[dict] = field(default_factory=list)  # target rows to write
    notes: list[dict] = field(default_factory=list)  # bookkeeping notes (rejects, skips, decisions)
    deferred: list[dict] = field(default_factory=list)  # replies waiting for their parent
    pins: list[str] = field(default_factory=list)  # plain PINs of ``rows``, to hash (never written)
    pin_hashes: list[dict] = field(default_factory=list)  # bookkeeping.pin_hashes rows, once hashed
    fingerprints: list[dict] = field(default_factory=list)
    rejected: int = 0
    skipped: int = 0

    @property
    def touched(self) -> set[int]:
        return ({r["id"] for r in self.rows} | {n["source_id"] for n in self.notes}
                | {d["source_id"] for d in self.deferred})


def media_password_cipher(key: str) -> tuple[Callable[[str], str] | None, Callable[[Any], Any]]:
    """(encrypt, decrypt) for MIGRATION_BRIDGE['MEDIA_PASSWORD_KEY']; no key: (None, identity)."""
    if not key:
        return None, lambda value: value
    from cryptography.fernet import Fernet, InvalidToken

    try:
        fernet = Fernet(key.encode())
    except ValueError:
        raise BridgeError("bad settings: MIGRATION_BRIDGE['MEDIA_PASSWORD_KEY'] is not a Fernet key") from None

    def decrypt(value):
        try:
            return fernet.decrypt(value.encode()).decode() if value else value
        except (InvalidToken, ValueError):
            return None

    return (lambda value: fernet.encrypt(value.encode()).decode()), decrypt


def base_context(conf) -> TransformContext:
    return TransformContext(static_base_url=conf.STATIC_BASE_URL,
                            encrypt_media_password=media_password_cipher(conf.MEDIA_PASSWORD_KEY)[0])


def file_urls(conf, profile) -> filerefs.FileUrls:
    """How URLs name files on both sides; a profile whose app fixes where it serves
    uploads says so (``Profile.media_base_url``), else the setting does."""
    return filerefs.FileUrls(conf.MEDIA_URL_PREFIX, profile.media_base_url or conf.MEDIA_BASE_URL)


def _same_name(names) -> dict[str, str]:
    return {n: n for n in names}


class RowPath:
    """Decides, row by row, what the target holds, against ``loaded`` (ids the target
    holds, or for verify the ids it must hold) and ``gone`` (rows rejected or skipped,
    with their root cause). ``keys``: storage names -> target keys (the key scheme)."""

    def __init__(self, source, ctx: TransformContext, urls: filerefs.FileUrls, fingerprint_key: bytes,
                 keys: Callable[[set[str]], Mapping[str, str]] = _same_name):
        self.source = source
        self.ctx = ctx
        self.urls = urls
        self.fingerprint_key = fingerprint_key
        self.keys = keys
        self.loaded: dict[str, Any] = {}
        self.gone: dict[str, dict[int, Root]] = {}
        self.pending: dict[str, dict[int, int]] = {}  # entity -> {reply id: parent id}
        # a row worker (ranges.py) sees the rows of its own id range only: a parent at or
        # below this id may be in another worker's range, so its replies wait for it
        self.range_start: int | None = None
        self._validators: dict[str, tuple[Entity, Callable]] = {}  # name -> (entity, its row_validator)

    # --- context -------------------------------------------------------------------

    def entity_context(self, entity: Entity) -> TransformContext:
        """The context computed once per entity (e.g. archived duplicates)."""
        values = {c.field: c.query(self.source, entity, self.loaded, None)
                  for c in entity.contexts if not c.per_batch}
        return dataclasses.replace(self.ctx, **values) if values else self.ctx

    def batch_context(self, entity: Entity, ctx: TransformContext, rows: list[dict]) -> TransformContext:
        """The context computed per batch (e.g. inferred authors)."""
        values = {c.field: c.query(self.source, entity, self.loaded, rows)
                  for c in entity.contexts if c.per_batch}
        return dataclasses.replace(ctx, **values) if values else ctx

    def context_digest(self, entity: Entity, source_id: int, ctx: TransformContext) -> str | None:
        """What the row's contexts gave it, keyed (None: nothing)."""
        return context_digest(self.fingerprint_key, tuple(getattr(ctx, c.field).get(source_id)
                                                          for c in entity.contexts))

    def fingerprint(self, entity: Entity, src: dict, database_digest: int | None, ctx: TransformContext) -> dict:
        """What ``--sync`` compares (a ``bridge_row_digests`` row): the source row's digest
        and what its contexts gave it."""
        source_id = src["id"]
        # only what the digest reads is gathered: a row's values only when no database
        # digested it, contexts only where the entity has some (once per row of millions)
        secrets = tuple(map(src.__getitem__, entity.secret_fields)) if entity.secret_fields else ()
        digest = row_digest(self.fingerprint_key, source_id, database_digest, secrets,
                            () if database_digest is not None else tuple(src.values()))
        return {"entity": entity.name, "source_id": source_id, "row_digest": digest,
                "context_digest": self.context_digest(entity, source_id, ctx) if entity.contexts else None}

    # --- transform ---------------------------------------------------------------------

    def transform(self, entity: Entity, batch_ctx: TransformContext, rows: list[dict]) -> list[tuple[dict, Any]]:
        """(source row, Transformed | Reject | Skip) per row, file columns included;
        ``batch_ctx``: from ``batch_context``."""
        results = [(src, entity.transform(src, batch_ctx)) for src in rows]
        if entity.files:
            names = {ref.name for src, r in results if not isinstance(r, (Reject, Skip))
                     for ref in filerefs.refs_of(entity, src, self.urls)}
            keys = self.keys(names) if names else {}
            key_of = lambda name: keys.get(name, name)  # noqa: E731
            for src, r in results:
                if not isinstance(r, (Reject, Skip)):
                    r.row.update(filerefs.file_columns(entity, src, key_of, self.urls))
        return results

    # --- decide ------------------------------------------------------------------------

    def decide(self, entity: Entity, src: dict, result) -> Reject | Skip | str | None:
        """None: the row goes in; WAIT: it waits for a parent later in id order; else why not."""
        if isinstance(result, (Reject, Skip)):
            return result
        row = result.row
        written = self._validators.get(entity.name)
        if written is None or written[0] is not entity:
            filled_later = (entity.hashed_pin[0],) if entity.hashed_pin else ()
            written = self._validators[entity.name] = (entity, row_validator(entity.tables, entity.choices,
                                                                             filled_later))
        problem = written[1](row) or check_parents(row, entity.foreign_keys, self.loaded, self.gone)
        column = entity.self_foreign_key
        if problem is None and column and row[column] is not None and row[column] not in self.loaded[entity.name]:
            parent = row[column]
            pending = self.pending.setdefault(entity.name, {})
            unseen = self.range_start is not None and parent <= self.range_start
            if parent not in self.gone.get(entity.name, {}) and (parent > src["id"] or parent in pending or unseen):
                pending[src["id"]] = parent
                return WAIT
            problem = check_parents(row, {column: entity.name}, self.loaded, self.gone)
        return problem

    def accept(self, entity: Entity, source_id: int) -> None:
        self.gone.setdefault(entity.name, {}).pop(source_id, None)
        self.loaded.setdefault(entity.name, IdSet()).add(source_id)

    def accept_all(self, entity: Entity, ids: list[int]) -> None:
        """``accept`` of each of ``ids``: ascending, above every id accepted before."""
        gone = self.gone.get(entity.name)
        if gone:
            for i in ids:
                gone.pop(i, None)
        self.loaded.setdefault(entity.name, IdSet()).update(ids)

    def accepting(self, entity: Entity) -> tuple[Callable[[int], None], Callable[[], None]]:
        """(accept an id, done) for one batch decided in id order. Where no row looks up
        another of its table (no foreign key to it, the self-reference or any other) the
        ids go in at ``done``, all at once: about a microsecond a row less than one by one."""
        if entity.name in entity.all_foreign_keys.values():
            return functools.partial(self.accept, entity), lambda: None
        ids: list[int] = []
        return ids.append, lambda: self.accept_all(entity, ids)

    def rule_out(self, entity: Entity, source_id: int, result: Reject | Skip) -> None:
        self.gone.setdefault(entity.name, {})[source_id] = root_of(entity.name, source_id, result)

    def ready(self, entity: Entity) -> list[int]:
        """Waiting replies whose parent is in now (taken off the waiting list)."""
        pending = self.pending.setdefault(entity.name, {})
        loaded = self.loaded[entity.name]
        ids = sorted(i for i, parent in pending.items() if parent in loaded)
        for i in ids:
            del pending[i]
        return ids

    def never_ready(self, entity: Entity) -> dict[int, Reject]:
        """When none is ready: every waiting reply, with why its parent never came. A reply
        to a reply that is out goes out with that reply's root cause, however long the chain."""
        pending, self.pending[entity.name] = self.pending.get(entity.name, {}), {}
        column, gone = entity.self_foreign_key, self.gone.get(entity.name, {})
        out: dict[int, Reject] = {}

        def cascade() -> None:
            progress = True
            while progress:
                progress = False
                for i, parent in sorted(pending.items()):
                    root = gone.get(parent) or (root_of(entity.name, parent, out[parent]) if parent in out else None)
                    if root is not None:
                        out[i] = Reject(f"{column}: {entity.name} id {parent} was rejected", root=root)
                        del pending[i]
                        progress = True

        def never_loaded(ids) -> None:
            for i in ids:
                out[i] = Reject(f"{column}: {entity.name} id {pending.pop(i)} never loaded (missing in the source, "
                                "or a cycle of replies)")

        cascade()
        never_loaded([i for i, parent in sorted(pending.items()) if parent not in pending])  # parent nowhere
        cascade()
        never_loaded(sorted(pending))  # what is left waits on itself: a cycle
        return dict(sorted(out.items()))

    # --- the whole path, for the writers -------------------------------------------------

    def process(self, entity: Entity, rows: list[dict], ctx: TransformContext) -> BatchOutcome:
        out = BatchOutcome()
        self.loaded.setdefault(entity.name, IdSet())
        database_digests = [src.pop(ROW_DIGEST, None) for src in rows]  # not a field of the row
        batch_ctx = self.batch_context(entity, ctx, rows)
        accept, accepted = self.accepting(entity)
        for (src, result), database_digest in zip(self.transform(entity, batch_ctx, rows), database_digests):
            out.fingerprints.append(self.fingerprint(entity, src, database_digest, batch_ctx))
            problem = self.decide(entity, src, result)
            if problem == WAIT:
                out.deferred.append({"entity": entity.name, "source_id": src["id"],
                                     "parent_id": self.pending[entity.name][src["id"]]})
            elif problem is not None:
                self.note_rejection(entity, src, problem, out)
            else:
                accept(src["id"])
                out.rows.append(result.row)
                if entity.hashed_pin:
                    out.pins.append(src[entity.hashed_pin[1]])
                if result.notes:
                    out.notes.extend(note_row(entity, src["id"], n) for n in result.notes)
        accepted()
        return out

    def outcome_of_rejections(self, entity: Entity, rows: list[dict], why: Mapping[int, Reject]) -> BatchOutcome:
        out = BatchOutcome()
        for src in rows:
            self.note_rejection(entity, src, why[src["id"]], out)
        return out

    def note_rejection(self, entity: Entity, src: dict, result: Reject | Skip, out: BatchOutcome) -> None:
        if isinstance(result, Skip):
            out.skipped += 1
        else:
            out.rejected += 1
        self.rule_out(entity, src["id"], result)
        detail = {"reason": result.reason, "row": {f: src[f] for f in entity.secret_free_fields}}
        if isinstance(result, Reject) and result.root is not None:
            detail["root"] = result.root.as_dict()
        out.notes.append(note_row(entity, src["id"], Note("skip" if isinstance(result, Skip) else "reject", detail)))


def note_row(entity: Entity, source_id: int, note: Note) -> dict:
    return {"entity": entity.name, "source_id": source_id, "kind": note.kind, "detail": jsonable(note.detail)}
