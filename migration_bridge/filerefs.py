"""The one rule for files: which source values reference files of the source storage,
the storage names they reference, and the value the target holds instead (a key of the
target storage, or its URL). Pure: the row path, the file step and verify all use it.

Declared per entity as ``FileColumn``s (``mapping.py``); the key a name becomes is the
caller's ``key_of`` (the key scheme, ``files.py``).

A *static* path (``source_form="static"``: what ``{% static %}`` takes, e.g. a student's
``avatar_image_path``) names a file of the legacy app's static files, not of its media
storage: it becomes a name in the reserved namespace ``STATIC_NAMESPACE``, which the file
step reads through Django's staticfiles (``filestore.StaticFiles``) and copies like any
other name.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, NamedTuple

from .mapping import Entity, FileColumn


# Storage names under this prefix are static paths of the legacy app, not media names.
STATIC_NAMESPACE = "legacy-static/"


class FileRef(NamedTuple):
    """One reference from a source row to a file in the source storage."""

    owner: str  # entity of the referencing row
    owner_id: int
    field: str  # source field, ``[i]`` appended for an entry of a list
    name: str  # storage name relative to the source storage
    names_key: bool  # the media-id key scheme may put owner_id in this file's key


@dataclass(frozen=True)
class FileUrls:
    """How URLs name files: ``source_prefix`` on the legacy side (``/media/``), and the
    base the target's URLs use (``MEDIA_BASE_URL``)."""

    source_prefix: str = "/media/"
    target_base: str = "/media/"


def storage_name_from_url(url: Any, prefix: str = "/media/") -> str | None:
    """``/media/images/x.png`` -> ``images/x.png``; None when it is not a media URL."""
    if not isinstance(url, str) or not url.startswith(prefix):
        return None
    return url[len(prefix):] or None


def static_name(path: Any) -> str | None:
    """``video_app/images/a.png`` -> ``legacy-static/video_app/images/a.png``; None for an
    empty value or one that is already a URL (``://``, or a path from the site root)."""
    if not isinstance(path, str) or not path or "://" in path or path.startswith("/"):
        return None
    return STATIC_NAMESPACE + path


def static_path(name: str) -> str | None:
    """The static path a storage name stands for; None for a media name."""
    return (name[len(STATIC_NAMESPACE):] or None) if name.startswith(STATIC_NAMESPACE) else None


def url_of(key: str, base: str) -> str:
    return base.rstrip("/") + "/" + key.lstrip("/")


def key_of_url(url: Any, base: str) -> str | None:
    """The storage key a target URL names; None for a URL outside the base (external)."""
    base = base.rstrip("/") + "/"
    if isinstance(url, str) and url.startswith(base) and len(url) > len(base):
        return url[len(base):]
    return None


def _entries(column: FileColumn, value: Any) -> Iterator[tuple[str, Any]]:
    """(field label, single value) for each entry of a source value."""
    if column.source_form == "url_list":
        if isinstance(value, list):
            for i, entry in enumerate(value):
                yield f"{column.source_field}[{i}]", entry
    else:
        yield column.source_field, value


def _name(column: FileColumn, entry: Any, urls: FileUrls) -> str | None:
    if column.source_form == "name":
        return str(entry) if entry else None
    if column.source_form == "static":
        return static_name(entry)
    return storage_name_from_url(entry, urls.source_prefix)


def refs_of(entity: Entity, row: dict, urls: FileUrls) -> list[FileRef]:
    """Every file reference of one source row (values as ``values_list`` returns them)."""
    return [FileRef(entity.name, row["id"], label, name, column.names_key)
            for column in entity.files
            for label, entry in _entries(column, row[column.source_field])
            if (name := _name(column, entry, urls))]


def target_value(column: FileColumn, value: Any, key_of: Callable[[str], str], urls: FileUrls) -> Any:
    """What the target column holds for a source value: each file as its key or URL,
    anything that names no file (empty, an external URL, a static path in a ``url``
    column) as it is."""
    def one(entry):
        name = _name(column, entry, urls)
        if name is None:
            return entry
        key = key_of(name)
        return key if column.target_form == "key" else url_of(key, urls.target_base)

    if column.source_form == "url_list":
        return [one(e) for e in value] if isinstance(value, list) else value
    return one(value)


def file_columns(entity: Entity, src: dict, key_of: Callable[[str], str], urls: FileUrls) -> dict:
    """The target's file columns of one row: written with the row, once."""
    return {c.target_column: target_value(c, src[c.source_field], key_of, urls) for c in entity.files}


def keys_in_target(column: FileColumn, value: Any, urls: FileUrls) -> tuple[list[str], int]:
    """(storage keys a target value references, entries that are not objects of the
    target storage: external URLs)."""
    entries = value if column.source_form == "url_list" and isinstance(value, list) else [value]
    keys, external = [], 0
    for entry in entries:
        if not entry:
            continue
        if column.target_form == "url":
            key = key_of_url(entry, urls.target_base)
        elif column.source_form == "static" and static_name(entry) is None:
            key = None  # a URL the static column kept as it was
        else:
            key = str(entry)
        if key is not None:
            keys.append(key)
        elif column.source_form in ("url_list", "static"):
            external += 1
    return keys, external
