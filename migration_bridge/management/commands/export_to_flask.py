"""manage.py export_to_flask: parse options, run the export, print the summary."""
import os
import sys

from django.core.management.base import BaseCommand

from migration_bridge.cli import run_command
from migration_bridge.conf import bridge_settings
from migration_bridge.dialects import mask_url
from migration_bridge.errors import BridgeError
from migration_bridge.files import KEY_SCHEMES
from migration_bridge.mapping import ENTITY_NAMES
from migration_bridge.pipeline import (
    DEFAULT_LOCK_TIMEOUT,
    DEFAULT_PIN_HASH_METHOD,
    DRY_RUN_PIN_HASH_METHOD,
    DUPLICATE_POLICIES,
    ExportOptions,
    drop_bookkeeping,
    run_export,
)
from migration_bridge.report import root_cause_lines, summary_table, sync_table


def _entity_list(value):
    return tuple(v.strip() for v in value.split(",") if v.strip())


class Command(BaseCommand):
    # It validates its own configuration and reports it in one line (exit 2).
    requires_system_checks = []
    help = ("Migrate the legacy rows into the Flask app's database, then the media files into the "
            "target storage (resumable, idempotent).")

    def add_arguments(self, parser):
        parser.add_argument("--target", help="SQLAlchemy URL of the Flask database "
                            "(default: MIGRATION_BRIDGE['TARGET_URL'], $FLASK_DATABASE_URL, sqlite:///var/flask.sqlite3)")
        parser.add_argument("--create-schema", action="store_true", help="create the Flask tables if missing")
        parser.add_argument("--only", type=_entity_list, default=(), help=f"comma-separated: {', '.join(ENTITY_NAMES)}")
        parser.add_argument("--exclude", type=_entity_list, default=(), help="comma-separated entities to leave out")
        parser.add_argument("--batch-size", type=int, default=None, help="rows per batch and transaction")
        parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="PIN-hashing processes (default: cores)")
        parser.add_argument("--pin-hash-method", default=None,
                            help=f"werkzeug method for student PINs (default: {DEFAULT_PIN_HASH_METHOD}, werkzeug's "
                                 f"default; with --dry-run {DRY_RUN_PIN_HASH_METHOD}, the real cost is estimated)")
        parser.add_argument("--dry-run", action="store_true",
                            help="extract, transform and validate everything into a scratch database; write nothing to the target")
        parser.add_argument("--lock-timeout", type=float, default=DEFAULT_LOCK_TIMEOUT, metavar="SECONDS",
                            help="give up when a lock in the target is not granted within this time "
                                 "(default: %(default)ss); what it waits for is printed meanwhile")
        parser.add_argument("--report-dir", help="where report.json and rejects.ndjson go (default var/reports/<timestamp>/)")
        parser.add_argument("--strict", action="store_true", help="exit 1 when any row was rejected")
        parser.add_argument("--pin-roster", metavar="PATH",
                            help="opt-in: write existing PINs per teacher/session to PATH (mode 0600)")
        parser.add_argument("--restart", action="store_true", help="ignore checkpoints and read everything again")
        parser.add_argument("--reset", action="store_true", help="empty the target tables first (needs --yes)")
        parser.add_argument("--yes", action="store_true", help="confirm --reset")
        parser.add_argument("--on-duplicate-session", choices=DUPLICATE_POLICIES, default="archive")
        parser.add_argument("--sync", action="store_true",
                            help="after a complete export: move only rows added, changed or deleted since, and new files")
        parser.add_argument("--cleanup", action="store_true",
                            help="after cutover: drop the tool's bookkeeping tables from the target (needs --yes)")
        parser.add_argument("--allow-live", action="store_true",
                            help="migrate although the legacy app is not frozen (rehearsals, pre-copies)")
        # media files
        files = parser.add_mutually_exclusive_group()
        files.add_argument("--skip-files", action="store_true", help="rows only: no file copy, no URL finalisation")
        files.add_argument("--files-only", action="store_true",
                           help="files only (and URL finalisation), for rows already exported")
        parser.add_argument("--file-workers", type=int, default=None,
                            help="parallel file copies (default: MIGRATION_BRIDGE['FILE_WORKERS'], 8)")
        parser.add_argument("--key-scheme", choices=KEY_SCHEMES, default=None,
                            help="target keys: preserve the legacy names, or media-id: "
                                 "images/<media_id>_<uuid5>.<ext> (default: MIGRATION_BRIDGE['FILE_KEY_SCHEME'], preserve)")
        parser.add_argument("--verify-files", action="store_true",
                            help="re-check every target object, even those the manifest records as copied")

    def handle(self, *args, **opts):
        run_command(self, lambda: self.export(opts), traceback=opts["traceback"])

    def export(self, opts):
        conf = bridge_settings()
        if opts["cleanup"]:
            self.cleanup(opts["target"] or conf.target_url, opts["yes"])
            return
        options = ExportOptions(
            target_url=opts["target"] or conf.target_url,
            create_schema=opts["create_schema"],
            only=opts["only"],
            exclude=opts["exclude"],
            batch_size=opts["batch_size"] or conf.BATCH_SIZE,
            workers=opts["workers"],
            pin_hash_method=opts["pin_hash_method"],
            dry_run=opts["dry_run"],
            report_dir=opts["report_dir"],
            strict=opts["strict"],
            pin_roster=opts["pin_roster"],
            restart=opts["restart"],
            reset=opts["reset"],
            yes=opts["yes"],
            on_duplicate_session=opts["on_duplicate_session"],
            allow_live=opts["allow_live"],
            skip_files=opts["skip_files"],
            files_only=opts["files_only"],
            file_workers=opts["file_workers"],
            key_scheme=opts["key_scheme"],
            verify_files=opts["verify_files"],
            sync=opts["sync"],
            lock_timeout=opts["lock_timeout"],
        )
        self.stdout.write(f"export_to_flask → {mask_url(options.target_url)}"
                          + (" (dry run: nothing is written to the target)" if options.dry_run else ""))
        result = run_export(options, conf)
        if result.nothing_to_do:
            self.stdout.write(result.nothing_to_do)
        elif result.sync is not None:
            self.stdout.write(sync_table(result.sync))
        else:
            self.stdout.write(summary_table(result.entities))
        if result.files is not None:
            self.stdout.write(result.files.summary())
        causes = result.report.get("root_causes") or []
        if causes:
            self.stdout.write(f"rejected or skipped rows come from {len(causes)} source rows; fix these first:")
            self.stdout.write("\n".join(f"  {line}" for line in root_cause_lines(causes)))
        self.stdout.write(f"report:  {result.report_path}\nrejects: {result.rejects_path}")
        if options.strict and result.rejected:
            self.stderr.write(f"--strict: {result.rejected} rows rejected (see {result.rejects_path})")
            sys.exit(1)

    def cleanup(self, target_url: str, confirmed: bool) -> None:
        if not confirmed:
            raise BridgeError("--cleanup drops the checkpoints, notes, fingerprints and file manifest "
                              "(no resume or --sync afterwards): add --yes to confirm")
        dropped = drop_bookkeeping(target_url)
        self.stdout.write(f"dropped {len(dropped)} bookkeeping tables from {mask_url(target_url)}: "
                          f"{', '.join(dropped) or '(none present)'}")
