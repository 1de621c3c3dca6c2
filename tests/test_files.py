"""Issue 4: media files copied to the target storage — parallel, resumable, verified.

Real parts: Django's FileSystemStorage, and django-storages' S3 backend talking HTTP to
moto in server mode on loopback (boto3 is not patched). Faults come from a loopback
proxy between the two that answers 503 / drops connections / slows uploads down.
In-process runs use pytest-django's database; the kill test runs manage.py in a subprocess.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dataclasses

import boto3
import pytest
import sqlalchemy as sa

import flask_models as fm
from migration_bridge import bookkeeping as bk
from migration_bridge.conf import bridge_settings
from migration_bridge.errors import BridgeError
from migration_bridge.files import media_id_key, target_key
from migration_bridge.filestore import RetryPolicy, SourceFiles, StaticFiles, is_transient
from migration_bridge.mapping import FileColumn, Profile
from migration_bridge.pipeline import ExportOptions, run_export
from migration_bridge.profiles import get_profile
from migration_bridge.verify import VerifyOptions, run_verify

from .conftest import PROJECT_ROOT, run_manage

CHEAP_PIN = "pbkdf2:sha256:1000"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
CDN = "https://cdn.example.org/media/"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- moto in server mode, and a faulty proxy in front of it ------------------------------

@pytest.fixture(scope="session")
def moto_endpoint():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("moto server did not start")
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


def s3_client(endpoint):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


class FaultProxy:
    """HTTP proxy to moto: forwards every request, except that object requests may get
    a 503 SlowDown (``fail_ratio``) or a dropped connection (``drop_ratio``), and PUTs may
    be delayed (``put_delay``). Records each PUT that stored an object upstream."""

    def __init__(self, upstream: str, seed: int = 1):
        self.upstream = upstream.replace("http://", "")
        self.fail_ratio = self.drop_ratio = self.put_delay = 0.0
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.completed_puts: list[str] = []  # object paths, in order
        self.faults = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return out
                        out += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _handle(self):
                body = self._body()
                path = self.path.split("?")[0]
                is_object = path.count("/") >= 2 and not path.endswith("/")
                with proxy.lock:
                    roll = proxy.rng.random()
                if is_object and roll < proxy.drop_ratio:
                    with proxy.lock:
                        proxy.faults += 1
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if is_object and roll < proxy.drop_ratio + proxy.fail_ratio:
                    with proxy.lock:
                        proxy.faults += 1
                    payload = b"" if self.command == "HEAD" else (
                        b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code>"
                        b"<Message>Please reduce your request rate.</Message></Error>")
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if payload:
                        self.wfile.write(payload)
                    return
                if self.command == "PUT" and proxy.put_delay:
                    time.sleep(proxy.put_delay)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("transfer-encoding", "connection", "content-length")}
                headers["Content-Length"] = str(len(body))
                upstream = http.client.HTTPConnection(proxy.upstream, timeout=60)
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                upstream.close()
                if self.command == "PUT" and is_object and response.status == 200:
                    with proxy.lock:  # stored upstream, whether or not the client hears of it
                        proxy.completed_puts.append(path)
                self.send_response(response.status)
                for k, v in response.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(response.getheader("Content-Length", len(data))
                                                       if self.command == "HEAD" else len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                self.wfile.flush()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda request, address: None  # clients killed mid-request
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def puts(self) -> list[str]:
        with self.lock:
            return list(self.completed_puts)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(moto_endpoint):
    p = FaultProxy(moto_endpoint)
    yield p
    p.close()


# --- targets: the filesystem and S3, one interface for the assertions ---------------------

class FsTarget:
    kind = "filesystem"

    def __init__(self, root: Path):
        self.root = root

    def storage(self) -> dict:
        return {"BACKEND": "django.core.files.storage.FileSystemStorage",
                "OPTIONS": {"location": str(self.root), "base_url": "/media/"}}

    def env(self) -> dict:
        return {"FLASK_MEDIA_ROOT": str(self.root)}

    def objects(self) -> dict[str, bytes]:
        return {p.relative_to(self.root).as_posix(): p.read_bytes() for p in self.root.rglob("*") if p.is_file()}


class S3Target:
    kind = "s3"

    def __init__(self, endpoint: str, moto: str):
        self.endpoint, self.moto = endpoint, moto
        self.bucket = f"bridge-{uuid.uuid4().hex[:12]}"
        s3_client(moto).create_bucket(Bucket=self.bucket)

    def storage(self, **options) -> dict:
        return {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {
            "bucket_name": self.bucket, "endpoint_url": self.endpoint, "region_name": "us-east-1",
            "access_key": "testing", "secret_key": "testing", "default_acl": None, "file_overwrite": True,
            **options}}

    def env(self) -> dict:
        return {**CREDENTIALS, "FLASK_S3_BUCKET": self.bucket, "FLASK_S3_ENDPOINT_URL": self.endpoint,
                "FLASK_S3_REGION": "us-east-1"}

    def objects(self) -> dict[str, bytes]:
        client = s3_client(self.moto)
        keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
                for o in page.get("Contents", [])]
        return {k: client.get_object(Bucket=self.bucket, Key=k)["Body"].read() for k in keys}

    def head(self, key: str) -> dict:
        return s3_client(self.moto).head_object(Bucket=self.bucket, Key=key)


@pytest.fixture(params=["filesystem", "s3"])
def target(request, tmp_path):
    if request.param == "filesystem":
        return FsTarget(tmp_path / "flask_media")
    moto = request.getfixturevalue("moto_endpoint")
    return S3Target(moto, moto)


# --- in-process runs (pytest-django database) ------------------------------------------------

@pytest.fixture
def legacy(db, settings, tmp_path):
    """The seeded legacy rows and files; MEDIA_ROOT under tmp_path."""
    from .files_seed import seed

    media_root = tmp_path / "media"
    media_root.mkdir()
    settings.MEDIA_ROOT = str(media_root)
    expected = seed(str(media_root))
    expected["media_root"] = media_root
    return expected


def use_target(settings, target, media_base_url="/media/", **s3_options):
    storages = {**settings.STORAGES, "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"}}
    storages["flask"] = target.storage(**s3_options) if s3_options else target.storage()
    settings.STORAGES = storages
    settings.MIGRATION_BRIDGE = {**settings.MIGRATION_BRIDGE, "MEDIA_BASE_URL": media_base_url}


def export(tmp_path, target_url=None, **kw):
    options = ExportOptions(
        target_url=target_url or f"sqlite:///{tmp_path}/flask.sqlite3", create_schema=True, workers=1,
        pin_hash_method=CHEAP_PIN, allow_live=True, report_dir=str(tmp_path / f"report-{uuid.uuid4().hex[:6]}"),
        interactive=False, **kw)
    result = run_export(options, bridge_settings())
    return result, result.report["files"]


def target_rows(tmp_path, sql):
    engine = sa.create_engine(f"sqlite:///{tmp_path}/flask.sqlite3")
    with engine.connect() as conn:
        rows = conn.execute(sa.text(sql)).all()
    engine.dispose()
    return rows


def source_bytes(legacy, name) -> bytes:
    return (legacy["media_root"] / name).read_bytes()


def test_keys_are_deterministic():
    key = media_id_key("images/graph one.PNG", 42)
    assert key == media_id_key("images/graph one.PNG", 42)
    assert key.startswith("images/42_") and key.endswith(".png") and len(key) == len("images/42_") + 32 + 4
    assert media_id_key("videos/clip.mp4", 7).startswith("videos/7_")
    assert media_id_key("images/a.png", 1) != media_id_key("images/b.png", 1)
    assert target_key("images/a.png", 3, "preserve") == "images/a.png"
    assert target_key("profiles/t.png", None, "media-id") == "profiles/t.png"


def test_transient_errors():
    from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

    def client_error(code, status):
        return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")

    assert is_transient(client_error("SlowDown", 503))
    assert is_transient(client_error("InternalError", 500))
    assert is_transient(client_error("503", 503))
    assert is_transient(EndpointConnectionError(endpoint_url="http://x"))
    assert is_transient(ConnectionClosedError(endpoint_url="http://x"))
    assert is_transient(ConnectionResetError())
    assert not is_transient(client_error("AccessDenied", 403))
    assert not is_transient(client_error("NoSuchBucket", 404))
    assert not is_transient(FileNotFoundError())
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise client_error("SlowDown", 503)
        return "ok"

    assert RetryPolicy(attempts=3, base_delay=0.001).call(flaky) == "ok"
    with pytest.raises(ClientError):
        RetryPolicy(attempts=5, base_delay=0.001).call(lambda: (_ for _ in ()).throw(client_error("AccessDenied", 403)))


def check_copied(legacy, target, keys_of=lambda name: name):
    """Every present file is in the target under its key, byte for byte; nothing else but
    the file the rejected row references (copied anyway) and nothing missing."""
    objects = target.objects()
    for name in legacy["present"]:
        assert sha(objects[keys_of(name)]) == sha(source_bytes(legacy, name)), name
    assert not any(".bridge-part" in k for k in objects)
    assert len(objects) == len(legacy["present"])
    return objects


def test_export_copies_files_then_reruns_as_noop(legacy, settings, tmp_path, target):
    use_target(settings, target)
    result, files = export(tmp_path)
    assert result.status == "complete"
    objects = check_copied(legacy, target)
    assert files["copied"] == len(legacy["present"]) and files["failed"] == 0
    assert files["referenced"] == len(legacy["present"]) + len(legacy["missing"]) + 1
    # needed: everything but the two files only rejected rows reference
    assert files["needed_by_migrated_rows"] == len(legacy["present"]) - 1 + len(legacy["missing"])
    assert files["missing"] == 3 and files["missing_not_needed"] == 1
    missing = {m["name"]: m for m in files["missing_files"]}
    assert set(missing) == set(legacy["missing"])
    assert missing["images/missing.png"]["media_ids"] == [legacy["missing_id"]]
    assert missing["images/p_missing.png"]["media_ids"] == [legacy["project_id"]]
    assert missing["profiles/gone.png"]["users_ids"] == [2]
    assert files["hit_ratio"] == pytest.approx((files["needed_by_migrated_rows"] - 3) / files["needed_by_migrated_rows"])
    assert files["bytes"] == sum(len(v) for v in objects.values())
    if target.kind == "s3":
        head = target.head("images/img_000.png")
        assert head["Metadata"]["sha256"] == sha(source_bytes(legacy, "images/img_000.png"))
        assert head["ContentType"] == "image/png"
        assert target.head("videos/clip.mp4")["ContentType"] == "video/mp4"
        grants = s3_client(target.moto).get_object_acl(Bucket=target.bucket, Key="images/shared.png")["Grants"]
        assert not [g for g in grants if "AllUsers" in str(g.get("Grantee"))]  # private
    # the manifest in the target database
    manifest = {r.old_name: r for r in target_rows(tmp_path, "SELECT * FROM bridge_files")}
    assert {n for n, r in manifest.items() if r.status == "copied"} == set(legacy["present"])
    assert {n for n, r in manifest.items() if r.status == "missing"} == set(legacy["missing"]) | {
        "images/only_rejected_missing.png"}
    assert manifest["images/shared.png"].refs == 3
    assert manifest["images/img_000.png"].sha256 == sha(source_bytes(legacy, "images/img_000.png"))
    rows_before = target_rows(tmp_path, "SELECT id, image_file, video_file, project_images FROM media ORDER BY id")
    assert (legacy["project_id"], "images/p0.png", "",
            '["/media/images/p1.png", "/media/images/p_missing.png", "https://elsewhere.example/x.png"]') in rows_before

    started = time.monotonic()
    result, again = export(tmp_path)
    assert time.monotonic() - started < 10
    assert again["copied"] == 0 and again["skipped_present"] == len(legacy["present"])
    assert again["skipped_done_in_manifest"] == len(legacy["present"])
    assert target_rows(tmp_path, "SELECT id, image_file, video_file, project_images FROM media ORDER BY id") == rows_before

    # --verify-files re-checks the objects: all found present with the same checksum
    result, verified = export(tmp_path, verify_files=True)
    assert verified["copied"] == 0 and verified["skipped_present_checked"] == len(legacy["present"])


def test_media_id_keys_written_with_the_rows(legacy, settings, tmp_path, target):
    use_target(settings, target, media_base_url=CDN)
    result, files = export(tmp_path, key_scheme="media-id", file_workers=3)
    manifest = {r.old_name: r for r in target_rows(tmp_path, "SELECT * FROM bridge_files")}
    key = {name: r.key for name, r in manifest.items()}
    shared_key = media_id_key("images/shared.png", min(legacy["shared_ids"]))
    assert key["images/shared.png"] == shared_key
    assert key["profiles/teacher1.png"] == "profiles/teacher1.png"  # only a profile picture: kept
    check_copied(legacy, target, keys_of=key.get)
    media = {r.id: r for r in target_rows(tmp_path, "SELECT id, image_file, video_file, project_images FROM media")}
    for media_id in legacy["shared_ids"]:
        assert media[media_id].image_file == shared_key  # one file, one key
    unique_id, unique_name = legacy["unique"][0]
    assert media[unique_id].image_file == media_id_key(unique_name, unique_id)
    assert media[legacy["video_id"]].video_file == media_id_key("videos/clip.mp4", legacy["video_id"])
    # a file missing in the legacy storage: the row names the key it would have (files lists it)
    assert media[legacy["missing_id"]].image_file == media_id_key("images/missing.png", legacy["missing_id"])
    assert json.loads(media[legacy["project_id"]].project_images) == [
        CDN + media_id_key("images/p1.png", legacy["project_id"]),
        CDN + media_id_key("images/p_missing.png", legacy["project_id"]), "https://elsewhere.example/x.png"]
    users = dict(target_rows(tmp_path, "SELECT id, profile_picture FROM users"))
    assert users[legacy["teacher_id"]] == CDN + "profiles/teacher1.png"
    assert users[2] == CDN + "profiles/gone.png"
    assert users[3] == "video_app/images/avatars/avatar3.png"

    # idempotent: a second run finds every key in place and changes no row
    rows_before = target_rows(tmp_path, "SELECT id, image_file, video_file, project_images FROM media ORDER BY id")
    result, again = export(tmp_path, key_scheme="media-id")
    assert again["copied"] == 0
    assert {r.old_name: r.key for r in target_rows(tmp_path, "SELECT * FROM bridge_files")} == key
    assert target_rows(tmp_path, "SELECT id, image_file, video_file, project_images FROM media ORDER BY id") == rows_before


def test_dry_run_writes_nothing_to_the_storage(legacy, settings, tmp_path, target):
    use_target(settings, target)
    result, files = export(tmp_path, dry_run=True)
    assert files["dry_run"] and files["would_copy"] == len(legacy["present"]) and files["copied"] == 0
    assert files["missing"] == 3
    assert target.objects() == {}
    if target.kind == "filesystem":
        assert not target.root.exists()


def test_files_only_and_skip_files(legacy, settings, tmp_path, target):
    use_target(settings, target)
    result, files = export(tmp_path, skip_files=True)
    assert files is None and target.objects() == {}
    assert target_rows(tmp_path, "SELECT count(*) FROM media")[0][0] == 19
    # the rows name files by the scheme of the first run: another one is refused, not mixed in
    with pytest.raises(BridgeError, match="key scheme"):
        export(tmp_path, files_only=True, key_scheme="media-id")
    result, files = export(tmp_path, files_only=True)
    assert files["copied"] == len(legacy["present"])
    assert result.report["entities"]["media"]["written"] == 19  # from the first run's checkpoints
    with pytest.raises(BridgeError, match="exclude each other"):
        export(tmp_path, files_only=True, skip_files=True)


def test_manifest_and_finalisation_on_every_target_dialect(legacy, settings, tmp_path, target_db):
    """bridge_files upserts (PostgreSQL COPY path, MySQL ``key`` column) and the
    finalising UPDATEs on each target database."""
    target = FsTarget(tmp_path / "flask_media")
    use_target(settings, target, media_base_url=CDN)
    result, files = export(tmp_path, target_url=target_db.url, key_scheme="media-id")
    assert files["copied"] == len(legacy["present"]) and files["missing"] == 3
    engine = target_db.engine()
    with engine.connect() as conn:
        manifest = {r.old_name: r for r in conn.execute(sa.select(bk.files))}
        project = conn.execute(sa.select(fm.Media.__table__.c.project_images)
                               .where(fm.Media.__table__.c.id == legacy["project_id"])).scalar()
    engine.dispose()
    assert manifest["images/shared.png"].key == media_id_key("images/shared.png", min(legacy["shared_ids"]))
    assert manifest["images/shared.png"].refs == 3 and manifest["images/shared.png"].migrated_refs == 3
    assert project[0] == CDN + media_id_key("images/p1.png", legacy["project_id"])
    result, again = export(tmp_path, target_url=target_db.url, key_scheme="media-id")
    assert again["copied"] == 0


@pytest.mark.parametrize("names_held", ["at once", "name by name"])
def test_the_inventory_counts_every_reference_and_those_of_the_migrated_rows(
        legacy, settings, tmp_path, target_db, monkeypatch, names_held):
    """Per file: the source rows referencing it, and those of them the target holds (a
    rejected row's file is referenced, not needed); the same when the counts reach the
    manifest one name at a time, and the target's ids read whole or looked up per batch."""
    from migration_bridge import files
    from migration_bridge.rowpath import file_urls
    from migration_bridge.source import LegacySource

    if names_held == "name by name":
        monkeypatch.setattr(files, "NAMES_HELD", 1)
    use_target(settings, FsTarget(tmp_path / "flask_media"))
    export(tmp_path, target_url=target_db.url)
    engine = target_db.engine()
    with engine.connect() as conn:
        counted = {r.old_name: (r.refs, r.migrated_refs) for r in conn.execute(sa.select(bk.files))}
    once = {name: (1, 1) for name in [n for _, n in legacy["unique"]] + [
        "videos/clip.mp4", "images/p0.png", "images/p1.png", "images/p_missing.png", "images/missing.png",
        "profiles/teacher1.png", "profiles/gone.png"]}
    assert counted == {**once, "images/shared.png": (3, 3),
                       "images/only_rejected_missing.png": (1, 0), "images/rejected_only.png": (1, 0)}
    conf, profile = bridge_settings(), get_profile("plan")
    refs = [r for batch in LegacySource(conf.LEGACY_APP).file_references(profile, 5, file_urls(conf, profile))
            for r in batch]
    whole = files.MigratedRows(engine, profile, whole=True).among(refs)
    assert whole == files.MigratedRows(engine, profile, whole=False).among(refs)
    assert len(whole) == len({(r.owner, r.owner_id) for r in refs}) - 2
    engine.dispose()


@pytest.mark.parametrize("limits", [{}, {"list_limit": 1, "ids_per_file": 1}])
def test_the_missing_files_are_listed_from_the_inventory_as_from_a_second_read(legacy, settings, tmp_path, limits):
    """The listing of missing files, with the migrated rows referencing each: the same
    from what the inventory kept as from the references read again (too many names to keep)."""
    from migration_bridge import files
    from migration_bridge.source import LegacySource

    use_target(settings, FsTarget(tmp_path / "flask_media"))
    export(tmp_path)
    engine = sa.create_engine(f"sqlite:///{tmp_path}/flask.sqlite3")
    conf, profile = bridge_settings(), get_profile("plan")
    source, options = LegacySource(conf.LEGACY_APP), files.FileOptions(batch_size=5, **limits)
    listings = []
    for held in (files.REFERRERS_HELD, 0):
        referrers = files.Referrers(options.ids_per_file, held=held)
        files.build_inventory(engine, source, profile, conf, options.batch_size, referrers=referrers)
        assert (referrers.by_name is None) == (held == 0)
        listings.append(files.list_problems(engine, source, profile, conf, options, referrers=referrers))
    engine.dispose()
    assert listings[0] == listings[1]
    missing, failed = listings[0]
    assert not failed
    # in the order first referenced: entity by entity (users before media), then by id
    first = [{"name": "profiles/gone.png", "users_ids": [legacy["teacher_id"] + 1]},
             {"name": "images/p_missing.png", "media_ids": [legacy["project_id"]]},
             {"name": "images/missing.png", "media_ids": [legacy["missing_id"]]}]
    assert missing == (first[:1] if limits else first)


def test_filesystem_target_overwrites_a_stale_object(legacy, settings, tmp_path):
    """A file already at the key with other bytes (same size) is replaced, never renamed."""
    target = FsTarget(tmp_path / "flask_media")
    stale = target.root / "images/img_001.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"x" * len(source_bytes(legacy, "images/img_001.png")))
    use_target(settings, target)
    result, files = export(tmp_path)
    check_copied(legacy, target)
    assert files["copied"] == len(legacy["present"])


@pytest.mark.parametrize("botocore_retries", ["standard", "off"])
def test_s3_faults_are_retried(legacy, settings, tmp_path, moto_endpoint, proxy, botocore_retries):
    """A third of the object requests answer 503 SlowDown or drop the connection; with
    botocore's retries on, or off (our backoff alone), every file arrives intact."""
    from botocore.config import Config

    target = S3Target(proxy.url, moto_endpoint)
    options = {}
    if botocore_retries == "off":
        options["client_config"] = Config(retries={"mode": "standard", "max_attempts": 1})
    use_target(settings, target, **options)
    settings.MIGRATION_BRIDGE = {**settings.MIGRATION_BRIDGE, "FILE_RETRY_ATTEMPTS": 12,
                                 "FILE_RETRY_BASE_DELAY": 0.01}
    proxy.fail_ratio, proxy.drop_ratio = 0.2, 0.1
    result, files = export(tmp_path, file_workers=4)
    assert proxy.faults > 0
    assert files["failed"] == 0 and files["copied"] == len(legacy["present"])
    if botocore_retries == "off":
        assert files["retries"] > 0
    proxy.fail_ratio = proxy.drop_ratio = 0.0
    objects = check_copied(legacy, target)
    client = s3_client(moto_endpoint)
    for key, data in objects.items():
        assert client.head_object(Bucket=target.bucket, Key=key)["Metadata"]["sha256"] == sha(data)


def test_bad_target_storage_is_one_clear_error(legacy, settings, tmp_path, moto_endpoint):
    target = S3Target(moto_endpoint, moto_endpoint)
    target.bucket = "bridge-no-such-bucket"
    use_target(settings, target)
    with pytest.raises(BridgeError, match="bucket not accessible") as info:
        export(tmp_path)
    assert "testing" not in str(info.value)  # no credentials in messages
    settings.MIGRATION_BRIDGE = {**settings.MIGRATION_BRIDGE, "TARGET_STORAGE": "nope"}
    with pytest.raises(BridgeError, match="not a STORAGES alias"):
        export(tmp_path)


# --- the way a user runs it: manage.py in a subprocess, killed mid-copy ------------------------

@pytest.fixture
def legacy_files_db(tmp_path):
    env = {"LEGACY_DATABASE_URL": f"sqlite:///{tmp_path}/legacy.sqlite3", "LEGACY_MEDIA_ROOT": str(tmp_path / "media")}
    run_manage("migrate", "-v0", env=env)
    out = run_manage("shell", "-c", f"from tests.files_seed import seed; seed({str(tmp_path / 'media')!r}, images=40)",
                     env=env).stdout
    return env, json.loads(out.strip().splitlines()[-1])


def manage_export(env, tmp_path, *args):
    return [sys.executable, str(PROJECT_ROOT / "manage.py"), "export_to_flask",
            "--target", f"sqlite:///{tmp_path}/flask.sqlite3", "--create-schema", "--allow-live",
            "--pin-hash-method", CHEAP_PIN, "--workers", "1", "--report-dir", str(tmp_path / "report"), *args]


@pytest.mark.slow
def test_s3_copy_killed_then_resumed(legacy_files_db, tmp_path, moto_endpoint, proxy):
    env, expected = legacy_files_db
    target = S3Target(proxy.url, moto_endpoint)
    env = {**os.environ, **env, **target.env()}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    proxy.put_delay = 0.25
    proc = subprocess.Popen(manage_export(env, tmp_path, "--file-workers", "2"), cwd=PROJECT_ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(proxy.puts()) < 8:
        assert proc.poll() is None, "the export finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    time.sleep(1.0)  # PUTs the proxy was still delaying reach moto (or not) by now
    first = set(proxy.puts())
    assert {f"/{target.bucket}/{k}" for k in target.objects()} == first
    assert 8 <= len(first) < len(expected["present"])
    proxy.put_delay = 0.0
    done = len(proxy.puts())

    rerun = subprocess.run(manage_export(env, tmp_path), cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    second = proxy.puts()[done:]
    assert not first & set(second), "objects uploaded completely before the kill were uploaded again"
    assert len(second) == len(expected["present"]) - len(first)
    media_root = Path(env["LEGACY_MEDIA_ROOT"])
    objects = target.objects()
    assert {k: sha(v) for k, v in objects.items()} == {
        n: sha((media_root / n).read_bytes()) for n in expected["present"]}
    engine = sa.create_engine(f"sqlite:///{tmp_path}/flask.sqlite3")
    with engine.connect() as conn:
        manifest = {r.old_name: r for r in conn.execute(sa.select(bk.files))}
        assert conn.execute(sa.select(sa.func.count()).select_from(fm.Media.__table__)).scalar() == 19 + 28
    engine.dispose()
    for name in expected["present"]:
        assert manifest[name].status in ("copied", "skipped_present"), name
        assert manifest[name].sha256 == sha((media_root / name).read_bytes())
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["files"]["failed"] == 0 and report["files"]["missing"] == 3
    assert report["files"]["copied"] == len(second)
    assert report["files"]["skipped_present"] == len(first)


def test_interrupted_s3_multipart_upload_is_aborted_by_the_next_run(legacy, settings, tmp_path, moto_endpoint):
    # the S3 counterpart of a leftover *.bridge-part file: a multipart upload a kill cut off
    target = S3Target(moto_endpoint, moto_endpoint)
    use_target(settings, target)
    export(tmp_path)
    client = s3_client(moto_endpoint)
    ours = client.create_multipart_upload(Bucket=target.bucket, Key="videos/clip.mp4")
    client.upload_part(Bucket=target.bucket, Key="videos/clip.mp4", UploadId=ours["UploadId"],
                       PartNumber=1, Body=b"x" * 1024)
    client.create_multipart_upload(Bucket=target.bucket, Key="not-ours/other.bin")
    result, files = export(tmp_path)
    assert result.status == "complete" and files["copied"] == 0
    uploads = client.list_multipart_uploads(Bucket=target.bucket).get("Uploads", [])
    assert [u["Key"] for u in uploads] == ["not-ours/other.bin"]  # someone else's stays


# --- static files (FileColumn source_form="static"): the legacy app's static avatars ------------

STATIC_ROOT = PROJECT_ROOT / "legacy_app/video_app/static"  # the reconstruction's app static folder
AVATAR = FileColumn("avatar_image_path", "avatar_image_path", "static", "url", names_key=False)
# plan, but students' avatars copied as files and served from the target storage
STATIC_PROFILE = Profile(
    name="plan-static-avatars", description="plan with students' static avatars copied",
    metadata=get_profile("plan").metadata, checks=get_profile("plan").checks,
    entities=tuple(dataclasses.replace(e, files=(AVATAR,)) if e.name == "students" else e
                   for e in get_profile("plan").entities))


def test_the_reconstruction_ships_every_static_avatar_the_seeder_writes():
    from legacy_app.video_app.seeding import CHARACTERS

    paths = [f"video_app/images/avatars/{kind}{i}.png" for kind, n in (("avatar", 12), ("teacher", 4))
             for i in range(1, n + 1)]
    for charset, names in CHARACTERS.items():  # the seeder's slugs
        paths += [f"video_app/images/characters/{charset}/{re.sub(r'[ .-]', '', ch.lower())}.png" for ch in names]
    static = StaticFiles()
    for path in paths:
        assert static.path(path) == str(STATIC_ROOT / path), path
        with static.open(path) as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_static_files_found_by_the_finders_else_in_the_collected_storage(settings, tmp_path):
    from django.core.files.base import ContentFile
    from django.core.files.storage import storages

    source = SourceFiles(storages["default"])
    shipped = "video_app/images/avatars/avatar1.png"
    assert source.stat("legacy-static/" + shipped).size == (STATIC_ROOT / shipped).stat().st_size
    assert source.stat("legacy-static/video_app/images/none.png") is None  # no STATIC_ROOT: nothing more
    assert source.stat("legacy-static/../settings.py") is None  # outside every static folder: not a static file
    with pytest.raises(FileNotFoundError):
        source.open("legacy-static/video_app/images/none.png")
    # collected under STATIC_ROOT only: a local file
    settings.STATIC_ROOT = str(tmp_path / "collected")
    (tmp_path / "collected/video_app").mkdir(parents=True)
    (tmp_path / "collected/video_app/only_collected.png").write_bytes(b"collected")
    collected = "legacy-static/video_app/only_collected.png"
    assert source.path(collected) == str(tmp_path / "collected/video_app/only_collected.png")
    assert source.stat(collected).size == 9
    # a remote staticfiles storage (here in memory): read through the storage
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {
        "BACKEND": "django.core.files.storage.InMemoryStorage"}}
    from django.contrib.staticfiles.storage import staticfiles_storage

    staticfiles_storage.save("video_app/remote.png", ContentFile(b"remote!"))
    assert source.path("legacy-static/video_app/remote.png") is None
    assert source.stat("legacy-static/video_app/remote.png").size == 7
    assert source.sha256("legacy-static/video_app/remote.png") == sha(b"remote!")
    assert source.stat("legacy-static/" + shipped).mtime_ns is not None  # the finders still come first


def test_static_avatars_are_copied_and_verified(legacy, settings, tmp_path):
    from .files_seed import legacy as legacy_model

    Session, Student = (legacy_model(n) for n in ("Session", "Student"))
    session, admin = Session.objects.first(), Student.objects.first().admin
    present = ["video_app/images/characters/marvel/ironman.png", "video_app/images/avatars/avatar3.png"]
    avatars = present + ["video_app/images/avatars/avatar3.png", "video_app/images/avatars/avatar99.png",
                         "https://elsewhere.example/a.png", ""]
    ids = [Student.objects.create(name=f"S{i}", password=f"{i:05d}", section=session, admin=admin,
                                  avatar_image_path=avatar).id for i, avatar in enumerate(avatars)]
    target = FsTarget(tmp_path / "flask_static_uploads")
    use_target(settings, target, media_base_url="/static/uploads/")
    result, files = export(tmp_path, target_schema=f"{__name__}:STATIC_PROFILE")
    assert result.status == "complete"

    objects = target.objects()
    for path in present:  # copied once each, byte for byte, under the namespace
        assert objects["legacy-static/" + path] == (STATIC_ROOT / path).read_bytes()
    assert len(objects) == len(legacy["present"]) + len(present)
    missing = {m["name"]: m for m in files["missing_files"]}
    assert missing["legacy-static/video_app/images/avatars/avatar99.png"]["students_ids"] == [ids[3]]
    assert files["missing"] == len(legacy["missing"]) + 1
    rows = dict(target_rows(tmp_path, "SELECT id, avatar_image_path FROM students"))
    assert [rows[i] for i in ids] == [
        "/static/uploads/legacy-static/video_app/images/characters/marvel/ironman.png",
        "/static/uploads/legacy-static/video_app/images/avatars/avatar3.png",
        "/static/uploads/legacy-static/video_app/images/avatars/avatar3.png",
        "/static/uploads/legacy-static/video_app/images/avatars/avatar99.png",  # the key it would have
        "https://elsewhere.example/a.png", ""]

    def verify_files():
        verified = run_verify(VerifyOptions(target_url=f"sqlite:///{tmp_path}/flask.sqlite3", sample=5,
                                            accept_missing_source_files=True,
                                            report_path=str(tmp_path / "verify.json")), bridge_settings())
        return verified, {c.name: c for c in verified.checks}["files"]

    verified, check = verify_files()
    assert not verified.failed and check.passed, check.summary
    assert check.figures["not_copied"] == check.figures["size_mismatch"] == 0
    assert check.figures["present_with_expected_size"] == len(objects) - 1  # the file only a rejected row uses
    assert check.figures["external_urls"] == 2  # the student's and the project's
    assert "legacy-static/video_app/images/avatars/avatar99.png" in check.offending[
        "missing in the legacy storage too"]["ids"]
    # the expected sizes come from the static files themselves: a truncated copy is caught
    (target.root / "legacy-static" / present[0]).write_bytes(b"short")
    verified, check = verify_files()
    assert not check.passed
    assert check.offending["size differs from the source"]["ids"] == ["legacy-static/" + present[0]]
