"""``manage.py seed_legacy``: fill the (migrated, empty) legacy database with realistic,
deliberately dirty data and write a JSON manifest of what was planted.

The logic lives in ``legacy_app.video_app.seeding``.
"""
import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections

from legacy_app.video_app import seeding


class Command(BaseCommand):
    help = "Seed the legacy database deterministically (demo/small/medium/large) with dirty data."

    def add_arguments(self, parser):
        parser.add_argument("--scale", choices=sorted(seeding.SCALES), default="demo")
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument("--manifest", help="where to write the JSON manifest "
                            "(default: <sqlite file>.seed.json or var/seed_<dbname>.json)")
        parser.add_argument("--flush", action="store_true",
                            help="delete every video_app row first (else a non-empty DB is refused)")
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)

    def handle(self, *args, **opts):
        connection = connections[opts["database"]]
        try:
            manifest, elapsed = seeding.seed_legacy(
                opts["scale"], opts["seed"], connection, do_flush=opts["flush"])
        except seeding.SeedError as exc:
            raise CommandError(str(exc)) from None
        path = Path(opts["manifest"]) if opts["manifest"] else seeding.default_manifest_path(connection)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        total = 0
        for table, count in manifest["counts"].items():
            total += count
            self.stdout.write(f"{table:<24} {count:>10} rows")
        self.stdout.write(f"{'files':<24} {len(manifest['files']['written']):>10} written")
        self.stdout.write(f"seeded {total} rows (scale={opts['scale']}, seed={opts['seed']}, "
                          f"{connection.vendor}) in {elapsed:.2f} s ({total / max(elapsed, 1e-9):,.0f} rows/s); "
                          f"manifest: {path}")
