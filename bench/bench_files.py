#!/usr/bin/env python
"""Benchmark of the media file copy (migration_bridge.files) against the design's goals:
"saturate the storage with parallel transfers; a re-run that has nothing to copy
finishes in seconds".

One invocation, on this machine:

1. makes a realistic file set in a temp dir: ``--files`` images of 50 KB–2 MB (random
   bytes, .png/.jpg names) and ``--videos`` videos of 20–50 MB;
2. starts moto in server mode on loopback (or uses ``--endpoint``), one fresh bucket per run;
3. S3: a plain boto3 ``upload_file`` loop (ThreadPoolExecutor, same concurrency, one
   shared client) — the baseline, run before and after ours, the faster counts — then our copier (``copy_pending`` with django-storages'
   S3Storage built in code: sha256 per file, metadata, manifest in SQLite), then a no-op
   re-run (manifest says done) and a ``verify`` re-run (HEAD + sha256 of every file);
4. filesystem: a plain ``shutil.copyfile`` loop (same concurrency) vs our copier
   (FileSystemStorage target), and its no-op re-run;
5. prints MB/s and files/s side by side, our/baseline ratio (goal >= 0.8) and the no-op
   re-run time (goal: seconds).

    .venv/bin/python bench/bench_files.py                 # 2,000 images + 3 videos
    .venv/bin/python bench/bench_files.py --files 500     # quicker
    options: --workers N (8) --videos N (3) --endpoint URL --skip-fs --keep-dir
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "legacy_app.settings")
for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
             "AWS_DEFAULT_REGION": "us-east-1"}.items():
    os.environ.setdefault(k, v)

import django  # noqa: E402

django.setup()

import boto3  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from django.core.files.storage import FileSystemStorage  # noqa: E402
from storages.backends.s3 import S3Storage  # noqa: E402

from migration_bridge import bookkeeping as bk  # noqa: E402
from migration_bridge import dialects  # noqa: E402
from migration_bridge.files import FileOptions, copy_pending  # noqa: E402
from migration_bridge.filestore import SourceFiles, make_target  # noqa: E402

GOAL_RATIO = 0.8
GOAL_NOOP_SECONDS = 10.0


def make_files(root: Path, images: int, videos: int, seed: int = 1) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    files = []
    for i in range(images):
        size = rng.randint(50 * 1024, 2 * 1024 * 1024)
        files.append((f"images/graph_{i:05d}.{'png' if i % 3 else 'jpg'}", size))
    for i in range(videos):
        files.append((f"videos/clip_{i:02d}.mp4", rng.randint(20, 50) * 1024 * 1024))
    for name, size in files:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
    return files


def start_moto() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("moto server did not start")


def new_bucket(endpoint: str) -> str:
    name = f"bench-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=name)
    return name


def drop_bucket(endpoint: str, bucket: str) -> None:
    s3 = boto3.resource("s3", endpoint_url=endpoint)
    s3.Bucket(bucket).objects.all().delete()
    s3.Bucket(bucket).delete()


def manifest_engine(path: Path, files) -> sa.Engine:
    engine = dialects.create_target_engine(f"sqlite:///{path}")
    bk.create_bookkeeping(engine)
    with engine.begin() as conn:
        conn.execute(bk.files.delete())
        dialects.upsert(conn, bk.files, [{
            "old_name": name, "key": name, "size": None, "sha256": None, "source_mtime_ns": None,
            "status": "pending", "error": None, "refs": 1, "migrated_refs": 1, "first_media_id": None,
            "updated_at": bk.utcnow()} for name, _ in files])
    return engine


def ours(engine, source_root: Path, target_storage, workers: int, verify: bool = False):
    src = SourceFiles(FileSystemStorage(location=str(source_root)), "bench-source")
    dst = make_target(target_storage, "bench-target")
    dst.check(write=True)
    started = time.monotonic()
    try:
        stats = copy_pending(engine, src, dst, FileOptions(workers=workers, verify=verify, interactive=False))
    finally:
        dst.close()
    return time.monotonic() - started, stats


def baseline_s3(endpoint: str, bucket: str, source_root: Path, files, workers: int) -> float:
    client = boto3.client("s3", endpoint_url=endpoint)
    started = time.monotonic()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda f: client.upload_file(str(source_root / f[0]), bucket, f[0]), files))
    return time.monotonic() - started


def baseline_fs(source_root: Path, dest: Path, files, workers: int) -> float:
    def one(f):
        target = dest / f[0]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source_root / f[0], target)

    started = time.monotonic()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, files))
    return time.monotonic() - started


def line(label: str, seconds: float, files: int, size: int) -> str:
    return (f"| {label:<38} | {seconds:8.2f} | {size / seconds / 1e6:8.1f} | {files / seconds:8.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=2000, help="images (50 KB–2 MB)")
    parser.add_argument("--videos", type=int, default=3, help="videos (20–50 MB)")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--endpoint", help="an S3 endpoint to use instead of a moto server")
    parser.add_argument("--skip-fs", action="store_true")
    parser.add_argument("--keep-dir", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-files-"))
    moto = None
    try:
        t = time.monotonic()
        files = make_files(work / "src", args.files, args.videos)
        total = sum(s for _, s in files)
        print(f"# file set: {args.files} images + {args.videos} videos = {len(files)} files, "
              f"{total / 1e6:.1f} MB ({time.monotonic() - t:.1f}s to create); {args.workers} workers, "
              f"{os.cpu_count()} CPUs")
        if args.endpoint:
            endpoint = args.endpoint
        else:
            moto, endpoint = start_moto()
        print(f"# S3 endpoint: {endpoint}{' (moto server, loopback)' if moto else ''}\n")
        rows = ["| run | seconds | MB/s | files/s |", "|---|---:|---:|---:|"]

        bucket = new_bucket(endpoint)
        base_s3 = baseline_s3(endpoint, bucket, work / "src", files, args.workers)
        rows.append(line("S3 baseline: boto3 upload_file loop", base_s3, len(files), total))
        drop_bucket(endpoint, bucket)

        bucket = new_bucket(endpoint)
        storage = S3Storage(bucket_name=bucket, endpoint_url=endpoint, region_name="us-east-1",
                            default_acl=None, file_overwrite=True)
        engine = manifest_engine(work / "manifest-s3.sqlite3", files)
        ours_s3, stats = ours(engine, work / "src", storage, args.workers)
        assert stats.copied == len(files) and stats.failed == 0, stats
        rows.append(line("S3 migration_bridge copy_pending", ours_s3, len(files), total))
        noop_s3, stats = ours(engine, work / "src", storage, args.workers)
        assert stats.copied == 0 and stats.already_done == len(files), stats
        rows.append(line("S3 no-op re-run (manifest)", noop_s3, len(files), total))
        verify_s3, stats = ours(engine, work / "src", storage, args.workers, verify=True)
        assert stats.copied == 0 and stats.skipped_present == len(files), stats
        rows.append(line("S3 re-run --verify-files (HEAD+sha256)", verify_s3, len(files), total))
        drop_bucket(endpoint, bucket)
        engine.dispose()
        bucket = new_bucket(endpoint)  # the baseline again, after ours: no first-run advantage either way
        again = baseline_s3(endpoint, bucket, work / "src", files, args.workers)
        rows.append(line("S3 baseline again (after ours)", again, len(files), total))
        drop_bucket(endpoint, bucket)
        base_s3 = min(base_s3, again)
        ratio_s3 = base_s3 / ours_s3

        ratio_fs = noop_fs = None
        if not args.skip_fs:
            base_fs = baseline_fs(work / "src", work / "fs-baseline", files, args.workers)
            rows.append(line("FS baseline: shutil.copyfile loop", base_fs, len(files), total))
            shutil.rmtree(work / "fs-baseline")
            engine = manifest_engine(work / "manifest-fs.sqlite3", files)
            storage = FileSystemStorage(location=str(work / "fs-ours"))
            ours_fs, stats = ours(engine, work / "src", storage, args.workers)
            assert stats.copied == len(files) and stats.failed == 0, stats
            rows.append(line("FS migration_bridge copy_pending", ours_fs, len(files), total))
            noop_fs, stats = ours(engine, work / "src", storage, args.workers)
            assert stats.copied == 0, stats
            rows.append(line("FS no-op re-run (manifest)", noop_fs, len(files), total))
            engine.dispose()
            again = baseline_fs(work / "src", work / "fs-baseline", files, args.workers)
            rows.append(line("FS baseline again (after ours)", again, len(files), total))
            ratio_fs = min(base_fs, again) / ours_fs

        print("\n".join(rows))
        print()
        print("| goal | measured | |")
        print("|---|---:|---|")
        print(f"| S3 throughput >= {GOAL_RATIO} x boto3 loop (its faster run) | {ratio_s3:.2f} x | "
              f"{'PASS' if ratio_s3 >= GOAL_RATIO else 'MISSED'} |")
        if ratio_fs is not None:
            print(f"| FS throughput >= {GOAL_RATIO} x copyfile loop (its faster run) | {ratio_fs:.2f} x | "
                  f"{'PASS' if ratio_fs >= GOAL_RATIO else 'MISSED'} |")
        print(f"| S3 no-op re-run in seconds (< {GOAL_NOOP_SECONDS:.0f}s) | {noop_s3:.2f} s | "
              f"{'PASS' if noop_s3 < GOAL_NOOP_SECONDS else 'MISSED'} |")
        if noop_fs is not None:
            print(f"| FS no-op re-run in seconds (< {GOAL_NOOP_SECONDS:.0f}s) | {noop_fs:.2f} s | "
                  f"{'PASS' if noop_fs < GOAL_NOOP_SECONDS else 'MISSED'} |")
    finally:
        if moto is not None:
            moto.terminate()
            moto.wait(10)
        if args.keep_dir:
            print(f"# kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
