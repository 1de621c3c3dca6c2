"""manage.py verify_flask: run the cutover checklist against the Flask database, print
the table, write verify.json; exit 0 when every check passes, 1 when one fails, 2 on
bad input."""
import sys

from django.core.management.base import BaseCommand

from migration_bridge.cli import add_options, options_from, run_command
from migration_bridge.conf import bridge_settings
from migration_bridge.dialects import mask_url
from migration_bridge.errors import EXIT_CHECK_FAILED
from migration_bridge.verify import VerifyOptions, mask_http_url, run_verify, summary_table


class Command(BaseCommand):
    # It validates its own configuration and reports it in one line (exit 2).
    requires_system_checks = []
    help = "Verify the migrated Flask database and storage against the legacy app (exit 1 if a check fails)."

    def add_arguments(self, parser):
        parser.add_argument("--target", help="SQLAlchemy URL of the Flask database (default: "
                            "MIGRATION_BRIDGE['TARGET_URL'], $FLASK_DATABASE_URL, sqlite:///var/flask.sqlite3)")
        add_options(parser, VerifyOptions)

    def handle(self, *args, **opts):
        run_command(self, lambda: self.verify(opts), traceback=opts["traceback"])

    def verify(self, opts):
        conf = bridge_settings()
        options = options_from(VerifyOptions, opts, target_url=opts["target"] or conf.target_url)
        self.stdout.write(f"verify_flask → {mask_url(options.target_url)}"
                          + (f" (pages: {mask_http_url(options.flask_url)})" if options.flask_url else ""))
        result = run_verify(options, conf)
        self.stdout.write(summary_table(result))
        frozen = result.report.get("source_frozen")
        if frozen is not None and not frozen["frozen"]:
            self.stdout.write("note: the legacy app is live (not frozen): rows written since the export "
                              "show up as differences; verify again after `flask_freeze on` and the final export")
        self.stdout.write(f"report: {result.report_path}")
        if not result.passed:
            sys.exit(EXIT_CHECK_FAILED)
