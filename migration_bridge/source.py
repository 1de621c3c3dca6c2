"""Everything read from the legacy database, through the Django ORM only.

Models are found through the app registry by label, so this works unchanged
inside the real legacy project (no import of ``legacy_app``).
"""
from __future__ import annotations

import dataclasses
import functools
import heapq
import operator
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator, Mapping

from django.apps import apps
from django.db import DEFAULT_DB_ALIAS, connections, reset_queries
from django.db.models import BigIntegerField, Count, ExpressionWrapper, F, Max, Min, Q
from django.db.models.functions import Length
from django.db.backends.signals import connection_created
from django.db.utils import Error as DjangoDatabaseError

from . import dialects, filerefs
from .errors import BridgeError
from .fingerprint import ROW_DIGEST


# keyset pagination starts below every possible id: real tables hold ids <= 0
BEFORE_FIRST_ID = -(2**63)
TEXT_FIELD_TYPES = frozenset({"CharField", "TextField", "FileField", "ImageField", "FilePathField",
                              "EmailField", "SlugField", "URLField"})
# types whose values, as text, are digits, signs, dots, dashes, colons and spaces: no
# separator of a row digest can appear in them (any other field is length-prefixed)
PLAIN_FIELD_TYPES = frozenset({"AutoField", "BigAutoField", "SmallAutoField", "IntegerField", "BigIntegerField",
                               "SmallIntegerField", "PositiveIntegerField", "PositiveBigIntegerField",
                               "PositiveSmallIntegerField", "BooleanField", "NullBooleanField", "DateField",
                               "DateTimeField", "TimeField", "DecimalField", "FloatField", "ForeignKey",
                               "OneToOneField"})


# alias -> the parser (a dialects.DATETIME_PARSERS key) its connections read datetimes
# with (the newest LegacySource of the process decides: the connect hook is registered
# once per alias)
_DATETIMES: dict[str, str] = {}


class LegacySource:
    def __init__(self, label: str, alias: str = DEFAULT_DB_ALIAS, datetimes: str = "fast"):
        try:
            self.app = apps.get_app_config(label)
        except LookupError:
            raise BridgeError(
                f"no installed Django app with label {label!r} "
                "(set MIGRATION_BRIDGE['LEGACY_APP'] to the legacy app's label)"
            ) from None
        self.alias = alias
        _DATETIMES[alias] = datetimes
        self._derived: dict[str, list[dict]] = {}
        # export and sync: every model row read carries its database digest (ROW_DIGEST)
        self.row_digests = False
        # Every connection this process opens to the legacy DB speaks full UTF-8, whatever
        # the project's settings say (MySQL's default "utf8" turns emoji into "?").
        connection_created.connect(self._on_connect, weak=False, dispatch_uid=f"migration_bridge.source.{alias}")

    def _on_connect(self, sender, connection, **kwargs) -> None:
        if connection.alias == self.alias:
            dialects.prepare_source_connection(connection, _DATETIMES[self.alias])

    def model(self, name: str):
        try:
            return self.app.get_model(name)
        except LookupError:
            raise BridgeError(
                f"the app {self.app.label!r} has no model {name!r}: is it the legacy app?"
            ) from None

    def check_reachable(self, model_name: str) -> None:
        try:
            connection = connections[self.alias]
            was_open = connection.connection is not None
            connection.ensure_connection()
            if was_open:  # opened before this object listened for new connections
                dialects.prepare_source_connection(connection, _DATETIMES[self.alias])
            self.objects(model_name).exists()
        except DjangoDatabaseError as exc:
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise BridgeError(f"legacy database unreachable or not migrated: {first_line}") from None

    def require_lossless_text(self) -> None:
        """The export reads nothing through a connection that would change characters."""
        facts = self.connection_facts()
        if not facts["lossless"]:
            raise BridgeError(f"the legacy DB connection does not read full UTF-8 ({facts['charset']}): "
                              "set OPTIONS={'charset': 'utf8mb4'} in the legacy DATABASES entry")

    def connection_facts(self) -> dict:
        """Charset, time zone and SQL mode of the connection the rows are read through."""
        return dialects.source_connection_facts(connections[self.alias])

    def field_types(self, model_name: str, fields: tuple[str, ...]) -> dict[str, str]:
        """Attname -> Django internal type (``CharField``, ``ForeignKey``…) of ``fields``."""
        by_attname = {f.attname: f for f in self.model(model_name)._meta.concrete_fields}
        return {f: by_attname[f].get_internal_type() for f in fields}

    def text_fields(self, model_name: str, fields: tuple[str, ...]) -> tuple[str, ...]:
        """The fields of ``fields`` the database stores as text (JSON excluded: it is parsed)."""
        return tuple(f for f, kind in self.field_types(model_name, fields).items() if kind in TEXT_FIELD_TYPES)

    def extract_rows_with_text_bytes(self, entity, batch_size: int, after_id: int = BEFORE_FIRST_ID,
                                     before_id: int | None = None) -> Iterator[list[tuple[dict, int, int]]]:
        """Batches of (row, UTF-8 bytes of its text fields as the database counts them,
        as this connection decoded them), ids after ``after_id`` (and before ``before_id``):
        unequal when the connection lost characters. Derived rows were made in Python
        from rows read: they count as read losslessly."""
        text = self.text_fields(entity.source_model, entity.source_fields) if entity.source_model else ()
        counted = {"_text_bytes": functools.reduce(operator.add, (dialects.Utf8Bytes(f) for f in text))} if text else {}

        def decoded(row) -> int:
            total = 0
            for f in text:
                if (value := row[f]) is not None:
                    value = value if type(value) is str else str(value)
                    total += len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))
            return total

        for rows in self.entity_rows(entity, after_id, batch_size, counted, digests=False, before_id=before_id):
            out = []
            for row in rows:
                in_python = decoded(row)
                in_db = row.pop("_text_bytes", None)
                out.append((row, in_python if in_db is None else int(in_db), in_python))
            yield out

    @property
    def vendor(self) -> str:
        return connections[self.alias].vendor

    # --- an entity's rows: its model's rows and its derived rows, in id order ----------

    def derived_rows(self, entity) -> list[dict]:
        """The entity's derived rows, made once per source object (a run, a verify)."""
        if entity.derived is None:
            return []
        if entity.name not in self._derived:
            self._derived[entity.name] = sorted(entity.derived(self), key=operator.itemgetter("id"))
        return self._derived[entity.name]

    def count(self, entity) -> int:
        model = self.objects(entity.source_model).count() if entity.source_model else 0
        return model + len(self.derived_rows(entity))

    def highest_keepable_id(self, entity, limit: int) -> int | None:
        """The highest id of the entity's model below ``limit`` (derived ids are synthetic)."""
        if not entity.source_model:
            return None
        return self.objects(entity.source_model).filter(pk__lt=limit).aggregate(m=Max("pk"))["m"]

    def ids(self, entity) -> Iterator[int]:
        """Every id, ascending."""
        model = self.values(entity.source_model, ("pk",), flat=True) if entity.source_model else iter(())
        derived = self.derived_rows(entity)
        return heapq.merge(model, (r["id"] for r in derived)) if derived else model

    def split_points(self, entity, after_id: int, parts: int) -> list[int]:
        """Ids cutting the model's rows after ``after_id`` into ``parts`` ranges of about
        the same size, each point the last id of its range (fewer when rows are few)."""
        ids = self.objects(entity.source_model).filter(pk__gt=after_id).order_by("pk").values_list("pk", flat=True)
        total = ids.count()
        return sorted({ids[total * k // parts - 1] for k in range(1, parts) if total * k // parts > 0})

    def entity_rows(self, entity, after_id: int, batch_size: int, annotations: dict | None = None,
                    digests: bool = True, before_id: int | None = None) -> Iterator[list[dict]]:
        """Batches of the entity's rows after ``after_id`` (and before ``before_id``), in id
        order (with ``digests`` and ``row_digests``, model rows carry ROW_DIGEST)."""
        derived = [r for r in self.derived_rows(entity)
                   if r["id"] > after_id and (before_id is None or r["id"] < before_id)]
        if entity.source_model is None:
            for start in range(0, len(derived), batch_size):
                yield [dict(r) for r in derived[start:start + batch_size]]
            return
        annotations = {**(self._digest_annotation(entity) if digests else {}), **(annotations or {})}
        for rows in self.extract_rows(entity.source_model, entity.source_fields, after_id, batch_size, annotations,
                                      before_id=before_id):
            last = rows[-1]["id"]
            if derived and derived[0]["id"] < last:
                early = [dict(r) for r in derived if r["id"] < last]
                derived = derived[len(early):]
                rows = sorted(rows + early, key=operator.itemgetter("id"))
            yield rows
        if derived:
            yield [dict(r) for r in derived]

    def rows_by_id(self, entity, ids: list[int], digests: bool = True) -> list[dict]:
        rows = []
        if entity.source_model:
            annotations = self._digest_annotation(entity) if digests else {}
            qs = self.objects(entity.source_model).order_by("pk").annotate(**annotations)
            columns = (*entity.source_fields, *annotations)
            rows = [dict(zip(columns, row)) for row in qs.filter(pk__in=ids).values_list(*columns)]
            reset_queries()  # see extract_rows
        wanted = set(ids)
        derived = [dict(r) for r in self.derived_rows(entity) if r["id"] in wanted]
        return sorted(rows + derived, key=operator.itemgetter("id")) if derived else rows

    def rows_by_id_ahead(self, entity, ids: list[int], batch_size: int, digests: bool = True,
                         ) -> Iterator[tuple[list[int], list[dict]]]:
        """``(batch of ids, rows_by_id)`` a batch at a time, the next batch read in a thread
        while the caller works on this one: a sync's changed rows are spread over the
        tables, each on a page of its own, and reading them waits on the database's disk."""
        batches = [ids[start:start + batch_size] for start in range(0, len(ids), batch_size)]
        if len(batches) < 2:
            for batch in batches:
                yield batch, self.rows_by_id(entity, batch, digests)
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bridge-read-ahead") as reader:
            ahead = reader.submit(self.rows_by_id, entity, batches[0], digests)
            try:
                for k, batch in enumerate(batches):
                    rows = ahead.result()
                    if k + 1 < len(batches):
                        ahead = reader.submit(self.rows_by_id, entity, batches[k + 1], digests)
                    yield batch, rows
            finally:
                ahead.cancel()
                reader.submit(connections.close_all)  # the reader's own legacy connection

    def extract_rows(
        self, model_name: str, fields: tuple[str, ...], after_id: int, batch_size: int,
        annotations: dict | None = None, before_id: int | None = None,
    ) -> Iterator[list[dict]]:
        """Batches of rows in primary-key order by keyset pagination (no OFFSET), with
        ``annotations`` (name -> expression computed by the database) as extra keys;
        ``before_id``: up to that id, excluded."""
        qs = self.objects(model_name).order_by("pk")
        if before_id is not None:
            qs = qs.filter(pk__lt=before_id)
        columns = fields
        if annotations:
            qs, columns = qs.annotate(**annotations), (*fields, *annotations)
        last = after_id
        while True:
            rows = list(qs.filter(pk__gt=last).values_list(*columns)[:batch_size])
            # with DEBUG on, Django keeps each connection's last 9,000 queries: megabytes of
            # SQL held to the end of a run that reads every table
            reset_queries()
            if not rows:
                return
            yield [dict(zip(columns, row)) for row in rows]
            last = rows[-1][0]

    # --- what --sync compares: digests computed by the database ----------------------------

    def row_digest(self, entity, as_hex: bool = False) -> dialects.RowDigest:
        """The database's digest of one of the entity's model rows."""
        fields = entity.secret_free_fields
        kinds = self.field_types(entity.source_model, fields)
        delimited = tuple(f for f in fields if kinds[f] not in PLAIN_FIELD_TYPES)
        return dialects.RowDigest(fields, entity.secret_fields, delimited, as_hex=as_hex)

    def _digest_annotation(self, entity) -> dict:
        if not (self.row_digests and entity.source_model):
            return {}
        return {ROW_DIGEST: self.row_digest(entity)}

    def chunk_digests(self, entity, width: int, lo: int | None = None, hi: int | None = None,
                      ) -> Iterator[tuple[int, int, str]]:
        """(chunk start, rows, their digests as ``dialects.ChunkRowDigests`` gathers them)
        of the entity's model rows with lo <= id < hi (None: no bound), chunks ``width`` ids
        wide: one GROUP BY the database computes, each row digested once."""
        if not entity.source_model:
            return iter(())
        digest = self.row_digest(entity, as_hex=True)
        return (_id_range(self.objects(entity.source_model), lo, hi).order_by()
                .annotate(_chunk=self._chunk(width)).values("_chunk")
                .annotate(_rows=Count("pk"), _digests=dialects.ChunkRowDigests(F("pk"), width, digest))
                .values_list("_chunk", "_rows", "_digests").iterator(chunk_size=20_000))

    def id_bounds(self, entity) -> tuple[int, int] | None:
        """The lowest and the highest id of the entity's model rows (None: it has none)."""
        if not entity.source_model:
            return None
        bounds = self.objects(entity.source_model).aggregate(lo=Min("pk"), hi=Max("pk"))
        return None if bounds["lo"] is None else (bounds["lo"], bounds["hi"])

    @staticmethod
    def _chunk(width: int):
        return ExpressionWrapper(dialects.chunk_start(F("pk"), width), output_field=BigIntegerField())

    def secret_values(self, entity, lo: int | None = None, hi: int | None = None) -> Iterator[tuple]:
        """(id, *secret fields) of the model rows with lo <= id < hi (None: no bound) and
        any secret set (not NULL, not empty)."""
        if not (entity.source_model and entity.secret_fields):
            return iter(())
        lengths = {f"_length_{f}": Length(f) for f in entity.secret_fields}
        qs = (_id_range(self.objects(entity.source_model), lo, hi).alias(**lengths)
              .filter(functools.reduce(operator.or_, (Q(**{f"{name}__gt": 0}) for name in lengths))))
        return qs.order_by("pk").values_list("id", *entity.secret_fields).iterator(chunk_size=20_000)

    def ids_where(self, entity, **lookups) -> list[int]:
        """Ids of the entity's model rows matching Django ``lookups`` (a profile's recheck)."""
        if not entity.source_model:
            return []
        return list(self.objects(entity.source_model).filter(**lookups).order_by("pk").values_list("pk", flat=True))

    def objects(self, model_name: str):
        """The model's manager on the legacy alias (for the profile's declared queries)."""
        return self.model(model_name).objects.using(self.alias)

    def values(self, model_name: str, fields: tuple[str, ...], flat: bool = False) -> Iterator:
        """Every row's ``fields`` in id order, streamed (``flat``: the one field's values)."""
        return self.objects(model_name).order_by("pk").values_list(*fields, flat=flat).iterator(chunk_size=20_000)

    def file_references(self, profile, batch_size: int, urls, only: Mapping[str, Iterable[int]] | None = None,
                        ) -> Iterator[list]:
        """Batches of every file reference of the source rows (of the rows in ``only``,
        entity -> ids, when given), entity by entity and in id order within one (the first
        reference seen of a name is its lowest id there). Keyset pagination, constant memory."""
        for entity in profile.entities:
            if not entity.files or (only is not None and not only.get(entity.name)):
                continue
            narrow = dataclasses.replace(entity, source_fields=("id", *(c.source_field for c in entity.files)))
            read = narrow if entity.derived is None else entity
            if only is None:
                batches = self.entity_rows(read, BEFORE_FIRST_ID, batch_size, digests=False)
            else:
                ids = sorted(only[entity.name])
                batches = (self.rows_by_id(read, ids[start:start + batch_size], digests=False)
                           for start in range(0, len(ids), batch_size))
            for rows in batches:
                yield [ref for row in rows for ref in filerefs.refs_of(entity, row, urls)]


def _id_range(qs, lo: int | None, hi: int | None):
    """``qs`` narrowed to lo <= id < hi (None: no bound)."""
    if lo is not None:
        qs = qs.filter(pk__gte=lo)
    return qs if hi is None else qs.filter(pk__lt=hi)
