"""manage.py export_to_flask: parse options, run the export, print the summary."""
import sys

from django.core.management.base import BaseCommand

from migration_bridge.cli import add_options, options_from, run_command
from migration_bridge.conf import bridge_settings
from migration_bridge.dialects import mask_url
from migration_bridge.errors import BridgeError
from migration_bridge.pipeline import ExportOptions, cleanup, run_export
from migration_bridge.report import root_cause_lines, summary_table, sync_table


class Command(BaseCommand):
    # It validates its own configuration and reports it in one line (exit 2).
    requires_system_checks = []
    help = ("Migrate the legacy rows into the Flask app's database, then the media files into the "
            "target storage (resumable, idempotent).")

    def add_arguments(self, parser):
        parser.add_argument("--target", help="SQLAlchemy URL of the Flask database (default: "
                            "MIGRATION_BRIDGE['TARGET_URL'], $FLASK_DATABASE_URL, sqlite:///var/flask.sqlite3)")
        parser.add_argument("--cleanup", action="store_true",
                            help="after cutover: drop the tool's bookkeeping tables from the target, and its change log "
                                 "from the legacy database (needs --yes)")
        add_options(parser, ExportOptions)

    def handle(self, *args, **opts):
        run_command(self, lambda: self.export(opts), traceback=opts["traceback"])

    def export(self, opts):
        conf = bridge_settings()
        target_url = opts["target"] or conf.target_url
        if opts["cleanup"]:
            if not opts["yes"]:
                raise BridgeError("--cleanup drops the checkpoints, notes, fingerprints and file manifest, and the "
                                  "legacy database's change log (no resume or --sync afterwards): add --yes to confirm")
            dropped, triggers = cleanup(target_url, conf)
            self.stdout.write(f"dropped {len(dropped)} bookkeeping tables from {mask_url(target_url)}: "
                              f"{', '.join(dropped) or '(none present)'}")
            if triggers:
                self.stdout.write(f"dropped the change log and its {triggers} triggers from the legacy database")
            return
        options = options_from(ExportOptions, opts, target_url=target_url,
                               batch_size=opts["batch_size"] or conf.BATCH_SIZE)
        self.stdout.write(f"export_to_flask → {mask_url(target_url)}"
                          + (" (dry run: nothing is written to the target)" if options.dry_run else ""))
        result = run_export(options, conf)
        if result.change_log:
            self.stdout.write(result.change_log)
        if result.nothing_to_do:
            self.stdout.write(result.nothing_to_do)
        else:
            self.stdout.write(sync_table(result.sync) if result.sync is not None else summary_table(result.entities))
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
