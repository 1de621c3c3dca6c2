#!/usr/bin/env python
"""Benchmark of ``export_to_flask --sync`` (short freeze window) against a full re-export.

One invocation, on this machine (MariaDB → PostgreSQL):

1. seeds ``--scale`` (default medium) into MariaDB ``bench_sync_<scale>`` (always fresh:
   the change workload below mutates it);
2. a full live copy into PostgreSQL ``bench_sync_flask`` (``--allow-live``);
3. a scripted change workload through the legacy ORM (``manage.py shell``), about 1% of
   the rows: new posts, comments and reactions, edited titles, regenerated PINs, deleted
   comments and one deleted session with its cascade;
4. times ``export_to_flask --sync`` on that target, then a full re-export of the same
   changed data into a fresh ``bench_sync_full``, same flags, in the same invocation;
5. runs ``verify_flask --fix-counts`` on the synced target.

Rows are timed with a cheap PIN method (pbkdf2:sha256:1) by default, as in bench_export.py,
and the output says so; ``--pin-hash-method scrypt`` times both runs with the production
method (hours at medium scale: use it with ``--scale small``). Goal: sync ≤ 10% of the
full export's time.

    .venv/bin/python bench/bench_sync.py [--scale small|medium] [--pin-hash-method M] [--keep]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402  (the benches' shared helpers)
    CHEAP_PIN_METHOD,
    SEED,
    VAR,
    check,
    legacy_env,
    manage,
    mysql_recreate,
    mysql_url,
    pg_drop,
    pg_recreate,
    say,
)

GOAL_SYNC_RATIO = 0.10

# ~1% of a seeded database's rows, through the ORM the live app uses.
WORKLOAD = """
import uuid
from django.db import transaction
from legacy_app.video_app.models import *
total = sum(m.objects.count() for m in (Media, Comment, StudentMediaInteraction, Student))
share = lambda n: max(1, int(n * {fraction}))
media_ids = list(Media.objects.filter(session__created_by__isnull=False).order_by("pk").values_list("pk", flat=True)[:share(Media.objects.count())])
with transaction.atomic():
    # deleted comments (chosen among the existing ones, before any is created)
    doomed = list(Comment.objects.filter(parent__isnull=True).order_by("-pk").values_list("pk", flat=True)[:share(Comment.objects.count())])
    Comment.objects.filter(pk__in=doomed).delete()
    # new posts, with a comment and a reaction each (plus more comments)
    sessions = list(Session.objects.filter(created_by__isnull=False, is_archived=False).order_by("pk")[:50])
    students = {{s.pk: list(Student.objects.filter(section=s).order_by("pk")[:5]) for s in sessions}}
    new_media, new_comments, new_reactions = [], [], []
    n_new = share(Media.objects.count())
    for i in range(n_new):
        s = sessions[i % len(sessions)]
        kids = students[s.pk] or [None]
        kid = kids[i % len(kids)]
        new_media.append(Media(session=s, title=f"New post {{i}}", media_type="image",
                               image_file="images/new.png", student=kid))
    Media.objects.bulk_create(new_media, batch_size=2000)
    for j, m in enumerate(new_media):
        for k in range(2):
            new_comments.append(Comment(media=m, text=f"new comment {{k}}", name="Kid", student=m.student))
        if m.student is not None:
            new_reactions.append(StudentMediaInteraction(student=m.student, media=m, liked_graph=True))
    Comment.objects.bulk_create(new_comments, batch_size=2000)
    StudentMediaInteraction.objects.bulk_create(new_reactions, batch_size=2000, ignore_conflicts=True)
    # edited titles
    Media.objects.filter(pk__in=media_ids).update(title="Edited title")
    # regenerated PINs
    for st in Student.objects.order_by("pk")[:{pins}]:
        Student.objects.filter(pk=st.pk).update(password=str(99999 - st.pk % 90000).zfill(5))
    # a deleted session with its cascade (students, media, comments, reactions)
    victim = Session.objects.filter(created_by__isnull=False).order_by("-pk").first()
    victim_id = victim.pk
    victim.delete()
print(f"workload: {{len(new_media)}} new posts, {{len(new_comments)}} new comments, {{len(new_reactions)}} new reactions, "
      f"{{len(media_ids)}} edited titles, {pins} regenerated PINs, {{len(doomed)}} deleted comments, "
      f"1 deleted session (id {{victim_id}}) with its cascade")
"""


def export(env: dict, target_db: str, tag: str, pin_method: str, *flags: str):
    report_dir = VAR / "sync_report" / tag
    shutil.rmtree(report_dir, ignore_errors=True)
    run = check(manage(
        "export_to_flask", "--target", f"postgresql://postgres@127.0.0.1:5432/{target_db}", "--allow-live",
        "--pin-hash-method", pin_method, "--report-dir", str(report_dir), *flags,
        env=env, log=VAR / "logs" / f"sync_{tag}", measure_memory=True), f"export_to_flask {tag}")
    return run, json.loads((report_dir / "report.json").read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=["small", "medium"], default="medium")
    parser.add_argument("--fraction", type=float, default=0.01, help="share of rows changed (0.01)")
    parser.add_argument("--pins", type=int, default=300, help="regenerated PINs (300)")
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL databases")
    parser.add_argument("--pin-hash-method", default=CHEAP_PIN_METHOD,
                        help=f"PIN method of both runs (default {CHEAP_PIN_METHOD}, cheap; 'scrypt' is production)")
    args = parser.parse_args()

    db = f"bench_sync_{args.scale}"
    media_root = VAR / f"media_{db}"
    env = {**legacy_env(mysql_url(db), media_root), "FLASK_MEDIA_ROOT": str(VAR / "sync_flask_media")}
    env.pop("FLASK_S3_BUCKET", None)
    shutil.rmtree(VAR / "sync_flask_media", ignore_errors=True)

    say(f"[seed] {db}: scale {args.scale}, seed {SEED}")
    mysql_recreate(db)
    shutil.rmtree(media_root, ignore_errors=True)
    check(manage("migrate", "-v0", env=env, log=VAR / "logs" / f"migrate_{db}"), "migrate")
    seed = check(manage("seed_legacy", "--scale", args.scale, "--seed", str(SEED),
                        "--manifest", str(VAR / f"seed_{db}.json"), env=env, log=VAR / "logs" / f"seed_{db}"),
                 "seed_legacy")
    say(f"[seed] {seed.seconds:.1f} s")

    pg_recreate("bench_sync_flask")
    pre, pre_report = export(env, "bench_sync_flask", "precopy", args.pin_hash_method, "--create-schema")
    say(f"[pre-copy] full live copy: {pre.seconds:.1f} s, {pre_report['totals']['read']:,} rows")

    workload = check(manage("shell", "-c", WORKLOAD.format(fraction=args.fraction, pins=args.pins),
                            env=env, log=VAR / "logs" / "sync_workload"), "change workload")
    say(f"[workload] {workload.seconds:.1f} s — {workload.stdout.strip()}")

    sync, sync_report = export(env, "bench_sync_flask", "sync", args.pin_hash_method, "--sync")
    say(f"[sync] {sync.seconds:.1f} s, peak RSS {sync.peak_rss_kb / 1024:.0f} MB")
    say("\n| entity | inserted | updated | deleted | unchanged | rejected | seconds |")
    say("|---|---:|---:|---:|---:|---:|---:|")
    for name, s in sync_report["sync"].items():
        say(f"| {name} | {s['inserted']:,} | {s['updated']:,} | {s['deleted']:,} | {s['unchanged']:,} "
            f"| {s['rejected']:,} | {s['seconds']:.1f} |")

    pg_recreate("bench_sync_full")
    full, full_report = export(env, "bench_sync_full", "full", args.pin_hash_method, "--create-schema")
    say(f"\n[full re-export] {full.seconds:.1f} s, {full_report['totals']['read']:,} rows")

    verify = manage("verify_flask", "--target", "postgresql://postgres@127.0.0.1:5432/bench_sync_flask",
                    "--fix-counts", "--accept-missing-source-files",
                    "--report", str(VAR / "sync_report" / "verify.json"), env=env, log=VAR / "logs" / "sync_verify")
    say(f"[verify_flask --fix-counts] exit {verify.returncode} in {verify.seconds:.1f} s")

    ratio = sync.seconds / full.seconds
    cheap = " (CHEAP, not the production scrypt)" if args.pin_hash_method == CHEAP_PIN_METHOD else ""
    say(f"\n## Sync vs full export, scale {args.scale}, PIN method {args.pin_hash_method}{cheap}\n")
    say("| goal | measured | result |\n|---|---|---|")
    say(f"| sync ≤ {GOAL_SYNC_RATIO:.0%} of a full export | {sync.seconds:.1f} s / {full.seconds:.1f} s = "
        f"{ratio:.1%} | {'PASS' if ratio <= GOAL_SYNC_RATIO else 'MISSED'} |")
    say(f"| verify_flask passes after the sync | exit {verify.returncode} | "
        f"{'PASS' if verify.returncode == 0 else 'MISSED'} |")
    if not args.keep:
        for name in ("bench_sync_flask", "bench_sync_full"):
            pg_drop(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
