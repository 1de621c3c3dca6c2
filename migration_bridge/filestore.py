"""The two storages of the file copy, each behind a small interface.

Both sides are Django ``STORAGES`` aliases (``MIGRATION_BRIDGE['SOURCE_STORAGE']`` →
``['TARGET_STORAGE']``).

Source: any Django storage. A ``FileSystemStorage`` is read through its paths (``stat``,
kernel copy, uploads straight from the path). Names under ``filerefs.STATIC_NAMESPACE``
are static paths of the legacy app, read through Django's staticfiles (``StaticFiles``).

Target, by backend:

- django-storages' ``S3Storage``: the storage's own configuration is used (credentials,
  endpoint, region, ``location``, object parameters, ACL, Content-Type guess, transfer
  config), plus the object metadata ``sha256`` (``x-amz-meta-sha256``) that lets a re-run
  recognise an object already copied. Uploads go through one s3transfer
  ``TransferManager`` per worker thread — the machinery of ``S3Storage.save()`` — but
  from the file *path* when the source is local, so multipart parts are read from disk
  (``save(key, File(fh))`` would buffer every part of a large video in memory). botocore's
  own retries are configured (standard mode) unless the settings or ``AWS_MAX_ATTEMPTS``
  / ``AWS_RETRY_MODE`` already say how.
- ``FileSystemStorage``: written to a temporary file beside the key, then moved into
  place by ``storage.save()`` with overwrite allowed (an atomic rename: a killed run never
  leaves a half-written file under a key, and ``save()`` never renames on collision).
- any other ``Storage``: ``delete()`` then ``save()``, checked to keep the key.

``RetryPolicy`` retries what is transient (throttling, 5xx, timeouts, connection resets)
with exponential backoff and jitter; everything else fails the file at once.
"""
from __future__ import annotations

import copy
import hashlib
import logging
import os
import random
import stat as stat_module
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Iterable

from django.core.exceptions import ImproperlyConfigured, SuspiciousFileOperation
from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage

from .errors import BridgeError
from .filerefs import static_path

log = logging.getLogger("migration_bridge")

CHUNK = 1 << 20  # read size for hashing and streaming


@dataclass(frozen=True)
class SourceStat:
    size: int
    mtime_ns: int | None  # None when the storage has no cheap modification time


@dataclass(frozen=True)
class ObjectState:
    size: int
    sha256: str | None  # None: the storage cannot tell without reading the object


def sha256_of(fh) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: fh.read(CHUNK), b""):
        digest.update(chunk)
    return digest.hexdigest()


# --- retries ---------------------------------------------------------------------------

TRANSIENT_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
    "RequestThrottledException", "TooManyRequestsException", "RequestLimitExceeded",
    "ProvisionedThroughputExceededException", "BandwidthLimitExceeded", "RequestTimeout",
    "RequestTimeoutException", "PriorRequestNotComplete", "InternalError", "InternalFailure",
    "ServiceUnavailable", "ServiceUnavailableException", "EC2ThrottledException",
    "500", "502", "503", "504",
})


def is_transient(exc: BaseException) -> bool:
    """Whether trying again later may succeed."""
    try:
        from botocore.exceptions import ClientError, ConnectionError as BotoConnectionError, HTTPClientError
    except ImportError:  # pragma: no cover - boto3 is a requirement
        ClientError = BotoConnectionError = HTTPClientError = ()  # noqa: N806
    if ClientError and isinstance(exc, ClientError):
        error = exc.response.get("Error", {}) or {}
        status = (exc.response.get("ResponseMetadata", {}) or {}).get("HTTPStatusCode") or 0
        return str(error.get("Code")) in TRANSIENT_CODES or status >= 500 or status == 429
    if BotoConnectionError and isinstance(exc, (BotoConnectionError, HTTPClientError)):
        return True  # EndpointConnectionError, ConnectionClosedError, Read/ConnectTimeoutError, ...
    if type(exc).__name__ in ("S3UploadFailedError", "RetriesExceededError"):
        text = str(exc)
        return any(f"({code})" in text for code in TRANSIENT_CODES) or "Max retries" in text
    if isinstance(exc, (ConnectionError, TimeoutError)):  # resets, broken pipes, socket timeouts
        return True
    try:
        from urllib3.exceptions import HTTPError as Urllib3Error
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, Urllib3Error)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6  # tries in all, per operation
    base_delay: float = 0.5  # seconds before the first retry, doubled each time (with jitter)
    max_delay: float = 20.0

    def delay(self, attempt: int) -> float:
        return min(self.max_delay, self.base_delay * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)

    def call(self, fn: Callable, *args, on_retry: Callable | None = None):
        for attempt in range(1, self.attempts + 1):
            try:
                return fn(*args)
            except Exception as exc:  # noqa: BLE001 - classified below
                if attempt >= self.attempts or not is_transient(exc):
                    raise
                wait = self.delay(attempt)
                if on_retry is not None:
                    on_retry(exc, attempt, wait)
                time.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover


# --- the source --------------------------------------------------------------------------

def _stat_file(path: str) -> SourceStat | None:
    """Size and mtime of a regular local file, or None."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not stat_module.S_ISREG(st.st_mode):
        return None
    return SourceStat(st.st_size, st.st_mtime_ns)


class StaticFiles:
    """The legacy app's static files, by static path (what ``{% static %}`` takes): first
    the staticfiles finders (STATICFILES_DIRS, the apps' ``static/`` folders: local files,
    as ``runserver`` serves them), else the collected files (``STORAGES["staticfiles"]``:
    STATIC_ROOT, or a remote storage) when one is configured. Not found: None, as for a
    media file missing from its storage."""

    def locate(self, path: str) -> tuple[str | None, Storage | None]:
        """(local file path, None), (None, the remote storage holding it) or (None, None)."""
        from django.contrib.staticfiles import finders
        from django.contrib.staticfiles.storage import staticfiles_storage

        try:
            found = finders.find(path)
            if found:
                return found, None
            if staticfiles_storage.exists(path):
                if isinstance(staticfiles_storage, FileSystemStorage):
                    return staticfiles_storage.path(path), None  # STATIC_ROOT: read as a local file
                return None, staticfiles_storage
        except ImproperlyConfigured:  # no STATIC_ROOT: nothing was collected
            pass
        except SuspiciousFileOperation:  # "../" and the like: no static file of the app
            pass
        return None, None

    def path(self, path: str) -> str | None:
        return self.locate(path)[0]

    def stat(self, path: str) -> SourceStat | None:
        local, storage = self.locate(path)
        if local is not None:
            return _stat_file(local)
        return SourceStat(storage.size(path), None) if storage is not None else None

    def open(self, path: str):
        local, storage = self.locate(path)
        if local is not None:
            return open(local, "rb")
        if storage is not None:
            return storage.open(path, "rb")
        raise FileNotFoundError(f"no static file {path!r}")


class SourceFiles:
    """The legacy files: the source storage's, and the static files (``StaticFiles``) for
    names under ``filerefs.STATIC_NAMESPACE``."""

    def __init__(self, storage: Storage, alias: str = "default", static: StaticFiles | None = None):
        self.storage = storage
        self.alias = alias
        self.local = isinstance(storage, FileSystemStorage)
        self.static = static or StaticFiles()

    def describe(self) -> str:
        return describe_storage(self.alias, self.storage)

    def path(self, name: str) -> str | None:
        """The local path of a file, or None when it is not on this host (or not found)."""
        if (static := static_path(name)) is not None:
            return self.static.path(static)
        return self.storage.path(name) if self.local else None

    def stat(self, name: str) -> SourceStat | None:
        """Size and mtime, or None when there is no such file."""
        if (static := static_path(name)) is not None:
            return self.static.stat(static)
        if self.local:
            return _stat_file(self.storage.path(name))
        if not self.storage.exists(name):
            return None
        return SourceStat(self.storage.size(name), None)

    def open(self, name: str):
        if (static := static_path(name)) is not None:
            return self.static.open(static)
        if self.local:
            return open(self.storage.path(name), "rb")
        return self.storage.open(name, "rb")

    def sha256(self, name: str) -> str:
        with self.open(name) as fh:
            return sha256_of(fh)


# --- targets -------------------------------------------------------------------------------

class Target:
    """Where the files go. Methods are called from worker threads."""

    kind = "storage"
    sha256_before_put = True  # put() needs the checksum first (S3 metadata); else put() returns it

    def __init__(self, storage: Storage, alias: str):
        self.storage = storage
        self.alias = alias

    def describe(self) -> str:
        return describe_storage(self.alias, self.storage)

    def check(self, write: bool) -> None:
        """Raise BridgeError when the storage cannot be used (checked before any copy)."""

    def state(self, key: str) -> ObjectState | None:
        if not self.storage.exists(key):
            return None
        return ObjectState(self.storage.size(key), None)

    def digest(self, key: str) -> str:
        with self.storage.open(key, "rb") as fh:
            return sha256_of(fh)

    def put(self, key: str, source: SourceFiles, name: str, size: int, sha256: str | None) -> str | None:
        if self.storage.exists(key):
            self.storage.delete(key)  # save() would pick another name otherwise
        with source.open(name) as fh:
            saved = self.storage.save(key, File(fh, name=key))
        if saved != key:
            raise RuntimeError(f"the target storage saved {key!r} as {saved!r}")

    def remove_leftover_parts(self, our_keys: Callable[[], Iterable[str]] | None = None) -> int:
        """Delete what an interrupted copy left behind; returns how many. ``our_keys``:
        the keys the migration writes (the manifest), for targets that need them."""
        return 0

    def has_objects(self) -> bool:
        """Whether the storage holds anything (when unsure: True, so files are looked at)."""
        try:
            dirs, files = self.storage.listdir("")
        except FileNotFoundError:
            return False
        except Exception:  # noqa: BLE001 - cannot tell
            return True
        return bool(dirs or files)

    def close(self) -> None:
        pass


PART_SUFFIX = ".bridge-part"


def is_part_file(filename: str) -> bool:
    """``.<name>.<12 hex>.bridge-part``: the temporary name FileSystemTarget.put writes to."""
    return filename.startswith(".") and filename.endswith(PART_SUFFIX)


class _MovableFile(File):
    """A file on disk that FileSystemStorage.save() moves into place (os.rename)."""

    def __init__(self, path: str):
        super().__init__(None, name=os.path.basename(path))
        self._path = path

    def temporary_file_path(self) -> str:
        return self._path


class FileSystemTarget(Target):
    kind = "filesystem"
    sha256_before_put = False  # hashed while copying: the source is read once

    def __init__(self, storage: FileSystemStorage, alias: str):
        super().__init__(copy.copy(storage), alias)
        self.storage._allow_overwrite = True  # Django 5.1: save() replaces instead of renaming

    def check(self, write: bool) -> None:
        location = self.storage.location
        if not write:
            return
        try:
            os.makedirs(location, exist_ok=True)
        except OSError as exc:
            raise BridgeError(f"target storage {self.alias!r}: cannot create {location}: {exc.strerror}") from None
        if not os.access(location, os.W_OK | os.X_OK):
            raise BridgeError(f"target storage {self.alias!r}: {location} is not writable")

    def remove_leftover_parts(self, our_keys: Callable[[], Iterable[str]] | None = None) -> int:
        """A copy killed between writing its temporary file and the rename leaves
        ``.<name>.<id>.bridge-part`` beside the key: found by one walk of the storage
        folder (called once per run, before the copy starts) and deleted."""
        removed = 0
        stack = [self.storage.location]
        while stack:
            try:
                entries = list(os.scandir(stack.pop()))
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                continue
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif is_part_file(entry.name) and entry.is_file(follow_symlinks=False):
                    try:
                        os.unlink(entry.path)
                        removed += 1
                    except FileNotFoundError:
                        pass
        return removed

    def state(self, key: str) -> ObjectState | None:
        try:
            st = os.stat(self.storage.path(key))
        except (FileNotFoundError, NotADirectoryError):
            return None
        return ObjectState(st.st_size, None) if stat_module.S_ISREG(st.st_mode) else None

    def digest(self, key: str) -> str:
        with open(self.storage.path(key), "rb") as fh:
            return sha256_of(fh)

    def put(self, key: str, source: SourceFiles, name: str, size: int, sha256: str | None) -> str:
        """Copy (hashing on the way) to a temporary file beside the key, then let
        ``storage.save()`` move it into place; returns the sha256 of what was written."""
        full_path = self.storage.path(key)
        directory = os.path.dirname(full_path)
        os.makedirs(directory, exist_ok=True)
        tmp = os.path.join(directory, f".{os.path.basename(full_path)}.{uuid.uuid4().hex[:12]}{PART_SUFFIX}")
        digest = hashlib.sha256()
        try:
            with source.open(name) as fh, open(tmp, "wb") as out:
                buffer = bytearray(CHUNK)
                view = memoryview(buffer)
                reader = getattr(fh, "readinto", None)
                while True:
                    if reader is not None:
                        n = reader(buffer)
                        chunk = view[:n]
                    else:
                        chunk = fh.read(CHUNK)
                        n = len(chunk)
                    if not n:
                        break
                    digest.update(chunk)
                    out.write(chunk)
            saved = self.storage.save(key, _MovableFile(tmp))  # atomic rename over the key
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        if saved != key:
            raise RuntimeError(f"the target storage saved {key!r} as {saved!r}")
        return digest.hexdigest()


class S3Target(Target):
    kind = "s3"
    BOTOCORE_RETRIES = {"mode": "standard", "max_attempts": 8}

    def __init__(self, storage, alias: str):
        from botocore.config import Config

        # A copy: its per-thread connections get our client config; settings stay untouched.
        clone = copy.copy(storage)
        config = clone.client_config
        if (getattr(config, "retries", None) is None
                and not (os.environ.get("AWS_MAX_ATTEMPTS") or os.environ.get("AWS_RETRY_MODE"))):
            clone.client_config = config.merge(Config(retries=dict(self.BOTOCORE_RETRIES)))
        super().__init__(clone, alias)
        self._local = threading.local()
        self._managers: list = []
        self._lock = threading.Lock()
        self._session = None

    @property
    def bucket_name(self) -> str:
        return self.storage.bucket_name

    def client(self):
        """One boto3 client per thread, made like ``S3Storage.connection`` does (the storage's
        credentials, region, endpoint, TLS and client config), but from one shared session:
        a session per thread costs ~0.2 s of CPU each."""
        client = getattr(self._local, "client", None)
        if client is None:
            st = self.storage
            with self._lock:
                if self._session is None:
                    self._session = st._create_session()
                client = self._session.client("s3", region_name=st.region_name, use_ssl=st.use_ssl,
                                              endpoint_url=st.endpoint_url, config=st.client_config,
                                              verify=st.verify)
            self._local.client = client
        return client

    def _manager(self):
        manager = getattr(self._local, "manager", None)
        if manager is None:
            from s3transfer.manager import TransferManager

            manager = TransferManager(self.client(), self.storage.transfer_config)
            with self._lock:
                self._managers.append(manager)
            self._local.manager = manager
        return manager

    def object_key(self, key: str) -> str:
        from storages.utils import clean_name

        return self.storage._normalize_name(clean_name(key))  # honours the storage's location

    def check(self, write: bool) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        where = self.describe()
        try:
            self.client().head_bucket(Bucket=self.bucket_name)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code") or "error"
            raise BridgeError(f"target storage {where}: bucket not accessible ({code})") from None
        except BotoCoreError as exc:
            raise BridgeError(f"target storage {where}: {type(exc).__name__}: {exc}") from None

    def remove_leftover_parts(self, our_keys: Callable[[], Iterable[str]] | None = None) -> int:
        """A multipart upload interrupted by a kill stays in the bucket, invisible and
        billed, until aborted: abort those of keys this migration writes (``our_keys``)."""
        if our_keys is None:
            return 0
        client, removed, ours = self.client(), 0, None
        try:
            prefix = self.object_key("x")[:-1]
            pages = client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket_name, Prefix=prefix)
            for page in pages:
                for upload in page.get("Uploads", []) or []:
                    if ours is None:
                        ours = {self.object_key(key) for key in our_keys()}
                    if upload["Key"] in ours:
                        client.abort_multipart_upload(Bucket=self.bucket_name, Key=upload["Key"],
                                                      UploadId=upload["UploadId"])
                        removed += 1
        except Exception as exc:  # noqa: BLE001 - e.g. no s3:ListBucketMultipartUploads: nothing to clean
            log.debug("files: cannot list interrupted multipart uploads: %s", exc)
        return removed

    def has_objects(self) -> bool:
        try:
            prefix = self.object_key("x")[:-1]  # the storage's location, as a key prefix
            found = self.client().list_objects_v2(Bucket=self.bucket_name, Prefix=prefix, MaxKeys=1)
        except Exception:  # noqa: BLE001 - cannot tell: look at every file
            return True
        return bool(found.get("KeyCount") or found.get("Contents"))

    def state(self, key: str) -> ObjectState | None:
        from botocore.exceptions import ClientError

        try:
            head = self.client().head_object(Bucket=self.bucket_name, Key=self.object_key(key))
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 404 or exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return ObjectState(head["ContentLength"], (head.get("Metadata") or {}).get("sha256"))

    def digest(self, key: str) -> str:
        body = self.client().get_object(Bucket=self.bucket_name, Key=self.object_key(key))["Body"]
        try:
            return sha256_of(body)
        finally:
            body.close()

    def put(self, key: str, source: SourceFiles, name: str, size: int, sha256: str | None) -> None:
        object_key = self.object_key(key)
        params = self.storage._get_write_parameters(object_key)  # object parameters, Content-Type, ACL
        params["Metadata"] = {**params.get("Metadata", {}), "sha256": sha256}
        path = source.path(name)
        if path is not None:
            self._manager().upload(path, self.bucket_name, object_key, extra_args=params).result()
        else:
            with source.open(name) as fh:
                self._manager().upload(fh, self.bucket_name, object_key, extra_args=params).result()

    def close(self) -> None:
        with self._lock:
            managers, self._managers = self._managers, []
        for manager in managers:
            manager.shutdown()


def make_target(storage: Storage, alias: str) -> Target:
    if isinstance(storage, FileSystemStorage):
        return FileSystemTarget(storage, alias)
    try:  # only here: importing boto3 costs a local folder's run 0.4 s
        from storages.backends.s3 import S3Storage
    except ImportError:  # pragma: no cover - django-storages is a requirement
        S3Storage = ()  # noqa: N806
    if S3Storage and isinstance(storage, S3Storage):
        return S3Target(storage, alias)
    return Target(storage, alias)


def describe_storage(alias: str, storage: Storage) -> str:
    """The storage for messages and reports: backend and place, never credentials."""
    cls = type(storage).__name__
    if isinstance(storage, FileSystemStorage):
        return f"{alias!r} ({cls} at {storage.location})"
    bucket = getattr(storage, "bucket_name", None)
    if bucket:
        endpoint = getattr(storage, "endpoint_url", None) or "AWS"
        location = getattr(storage, "location", "") or ""
        return f"{alias!r} ({cls} s3://{bucket}/{location} via {endpoint})"
    return f"{alias!r} ({cls})"


def storage_from_settings(alias: str, setting: str) -> Storage:
    from django.core.files.storage import InvalidStorageError, storages

    try:
        return storages[alias]
    except InvalidStorageError:
        raise BridgeError(f"bad settings: MIGRATION_BRIDGE[{setting!r}] = {alias!r} is not a STORAGES alias") from None
    except (ImproperlyConfigured, ImportError) as exc:
        raise BridgeError(f"bad settings: STORAGES[{alias!r}]: {exc}") from None
