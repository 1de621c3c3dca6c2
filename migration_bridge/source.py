"""Everything read from the legacy database, through the Django ORM only.

Models are found through the app registry by label, so this works unchanged
inside the real legacy project (no import of ``legacy_app``).
"""
from __future__ import annotations

import functools
import operator
from collections import defaultdict
from typing import Iterator, NamedTuple

from django.apps import apps
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.signals import connection_created
from django.db.utils import Error as DjangoDatabaseError

from . import dialects
from .errors import BridgeError
from .transforms import Attribution, infer_author, storage_name_from_url


# --- file references ----------------------------------------------------------------
class FileRef(NamedTuple):
    """One reference from a source row to a file in the source storage."""

    owner: str  # target table of the referencing row: media | users
    owner_id: int
    field: str  # image_file | video_file | project_images[<i>] | profile_picture
    name: str  # storage name relative to the source storage


MEDIA_FILE_FIELDS = ("id", "image_file", "video_file", "project_images")
# keyset pagination starts below every possible id: real tables hold ids <= 0
BEFORE_FIRST_ID = -(2**63)
TEXT_FIELD_TYPES = frozenset({"CharField", "TextField", "FileField", "ImageField", "FilePathField",
                              "EmailField", "SlugField", "URLField"})


def media_file_refs(row: dict, media_url_prefix: str = "/media/") -> list[FileRef]:
    """The file references of one media row (values as ``values_list`` returns them)."""
    refs = []
    for field in ("image_file", "video_file"):
        if row[field]:
            refs.append(FileRef("media", row["id"], field, str(row[field])))
    entries = row["project_images"]
    if isinstance(entries, list):
        for i, entry in enumerate(entries):
            name = storage_name_from_url(entry, media_url_prefix)
            if name:
                refs.append(FileRef("media", row["id"], f"project_images[{i}]", name))
    return refs


class LegacySource:
    def __init__(self, label: str, alias: str = DEFAULT_DB_ALIAS):
        try:
            self.app = apps.get_app_config(label)
        except LookupError:
            raise BridgeError(
                f"no installed Django app with label {label!r} "
                "(set MIGRATION_BRIDGE['LEGACY_APP'] to the legacy app's label)"
            ) from None
        self.alias = alias
        # Every connection this process opens to the legacy DB speaks full UTF-8, whatever
        # the project's settings say (MySQL's default "utf8" turns emoji into "?").
        connection_created.connect(self._on_connect, weak=False, dispatch_uid=f"migration_bridge.source.{alias}")

    def _on_connect(self, sender, connection, **kwargs) -> None:
        if connection.alias == self.alias:
            dialects.force_source_utf8(connection)

    def model(self, name: str):
        try:
            return self.app.get_model(name)
        except LookupError:
            raise BridgeError(
                f"the app {self.app.label!r} has no model {name!r}: is it the legacy app?"
            ) from None

    def check_reachable(self) -> None:
        try:
            connection = connections[self.alias]
            was_open = connection.connection is not None
            connection.ensure_connection()
            if was_open:  # opened before this object listened for new connections
                dialects.force_source_utf8(connection)
            self.model("District").objects.using(self.alias).exists()
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

    def text_fields(self, model_name: str, fields: tuple[str, ...]) -> tuple[str, ...]:
        """The fields of ``fields`` the database stores as text (JSON excluded: it is parsed)."""
        model = self.model(model_name)
        by_attname = {f.attname: f for f in model._meta.concrete_fields}
        return tuple(f for f in fields if by_attname[f].get_internal_type() in TEXT_FIELD_TYPES)

    def extract_rows_with_text_bytes(
        self, model_name: str, fields: tuple[str, ...], batch_size: int,
    ) -> Iterator[list[tuple[dict, int, int]]]:
        """Batches of (row, UTF-8 bytes of its text fields as the database counts them,
        as this connection decoded them): unequal when the connection lost characters."""
        text = self.text_fields(model_name, fields)
        counted = {"_text_bytes": functools.reduce(operator.add, (dialects.Utf8Bytes(f) for f in text))} if text else {}
        for rows in self.extract_rows(model_name, fields, BEFORE_FIRST_ID, batch_size, counted):
            yield [(row, int(row.pop("_text_bytes", 0) or 0),
                    sum(len(str(row[f]).encode("utf-8", "surrogatepass")) for f in text if row[f] is not None))
                   for row in rows]

    @property
    def vendor(self) -> str:
        return connections[self.alias].vendor

    def count(self, model_name: str) -> int:
        return self.model(model_name).objects.using(self.alias).count()

    def extract_rows(
        self, model_name: str, fields: tuple[str, ...], after_id: int, batch_size: int,
        annotations: dict | None = None,
    ) -> Iterator[list[dict]]:
        """Batches of rows in primary-key order by keyset pagination (no OFFSET), with
        ``annotations`` (name -> expression computed by the database) as extra keys."""
        qs = self.model(model_name).objects.using(self.alias).order_by("pk")
        columns = fields
        if annotations:
            qs, columns = qs.annotate(**annotations), (*fields, *annotations)
        last = after_id
        while True:
            rows = list(qs.filter(pk__gt=last).values_list(*columns)[:batch_size])
            if not rows:
                return
            yield [dict(zip(columns, row)) for row in rows]
            last = rows[-1][0]

    def rows_by_id(self, model_name: str, fields: tuple[str, ...], ids: list[int]) -> list[dict]:
        qs = self.model(model_name).objects.using(self.alias).order_by("pk")
        return [dict(zip(fields, row)) for row in qs.filter(pk__in=ids).values_list(*fields)]

    def active_sessions(self) -> list[tuple]:
        """(id, teacher_id, section, created_at) of every non-archived session with a teacher."""
        qs = self.model("Session").objects.using(self.alias)
        return list(
            qs.filter(is_archived=False, created_by_id__isnull=False)
            .order_by("pk")
            .values_list("id", "created_by_id", "section", "created_at")
        )

    def media_attributions(self, rows: list[dict], loaded_students, loaded_users) -> dict[int, Attribution]:
        """For media rows with no student, who ``submitted_password`` points at.

        Plain PINs are compared here in memory and never leave this function.
        """
        candidates = [r for r in rows if r["student_id"] is None and r["submitted_password"]]
        if not candidates:
            return {}
        session_ids = {r["session_id"] for r in candidates}
        secrets = {r["submitted_password"] for r in candidates}
        by_pin: dict[tuple[int, str], list[int]] = defaultdict(list)
        students = self.model("Student").objects.using(self.alias)
        for sid, section_id, pin in students.filter(
            section_id__in=session_ids, password__in=secrets
        ).order_by("pk").values_list("id", "section_id", "password"):
            if sid in loaded_students:
                by_pin[(section_id, pin)].append(sid)
        teacher_of = dict(
            self.model("Session").objects.using(self.alias)
            .filter(id__in=session_ids).values_list("id", "created_by_id")
        )
        teacher_ids = {tid for tid in teacher_of.values() if tid is not None and tid in loaded_users}
        media_password_of = dict(
            self.model("CustomAdmin").objects.using(self.alias)
            .filter(id__in=teacher_ids).values_list("id", "media_password")
        )
        result = {}
        for r in candidates:
            teacher_id = teacher_of.get(r["session_id"])
            teacher_password = media_password_of.get(teacher_id)
            result[r["id"]] = infer_author(
                by_pin.get((r["session_id"], r["submitted_password"]), []),
                teacher_id if teacher_id in teacher_ids else None,
                bool(teacher_password) and teacher_password == r["submitted_password"],
            )
        return result

    # --- the files the rows reference -------------------------------------------------

    def file_references(self, batch_size: int, media_url_prefix: str = "/media/") -> Iterator[list[FileRef]]:
        """Batches of every media file reference, media first (in id order, so the first
        reference seen of a name is its lowest media id), then teachers' profile pictures
        that are media URLs. Keyset pagination, constant memory."""
        for rows in self.extract_rows("Media", MEDIA_FILE_FIELDS, BEFORE_FIRST_ID, batch_size):
            yield [ref for row in rows for ref in media_file_refs(row, media_url_prefix)]
        for rows in self.profile_pictures(batch_size, media_url_prefix):
            yield [FileRef("users", r["id"], "profile_picture", storage_name_from_url(r["profile_picture"], media_url_prefix))
                   for r in rows]

    def profile_pictures(self, batch_size: int, media_url_prefix: str = "/media/") -> Iterator[list[dict]]:
        """(id, profile_picture) of the teachers whose picture is a media URL, by keyset."""
        qs = (self.model("CustomAdmin").objects.using(self.alias)
              .filter(profile_picture__startswith=media_url_prefix).order_by("pk"))
        last = BEFORE_FIRST_ID
        while True:
            rows = list(qs.filter(pk__gt=last).values_list("id", "profile_picture")[:batch_size])
            if not rows:
                return
            batch = [{"id": i, "profile_picture": p} for i, p in rows
                     if storage_name_from_url(p, media_url_prefix)]
            if batch:
                yield batch
            last = rows[-1][0]


    def pin_roster(self) -> Iterator[tuple]:
        """(teacher username, session code, session name, student id, student name, PIN)."""
        qs = self.model("Student").objects.using(self.alias)
        yield from qs.order_by("admin__username", "section__session_code", "pk").values_list(
            "admin__username", "section__session_code", "section__name", "id", "name", "password"
        ).iterator(chunk_size=2000)
