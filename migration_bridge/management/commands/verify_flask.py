"""manage.py verify_flask: run the cutover checklist against the Flask database, print
the table, write verify.json; exit 0 when every check passes, 1 when one fails, 2 on
bad input."""
import sys

from django.core.management.base import BaseCommand

from migration_bridge.cli import run_command
from migration_bridge.conf import bridge_settings
from migration_bridge.dialects import mask_url
from migration_bridge.errors import EXIT_CHECK_FAILED
from migration_bridge.pipeline import DEFAULT_LOCK_TIMEOUT
from migration_bridge.verify import VerifyOptions, mask_http_url, run_verify, summary_table


class Command(BaseCommand):
    # It validates its own configuration and reports it in one line (exit 2).
    requires_system_checks = []
    help = "Verify the migrated Flask database and storage against the legacy app (exit 1 if a check fails)."

    def add_arguments(self, parser):
        parser.add_argument("--target", help="SQLAlchemy URL of the Flask database "
                            "(default: MIGRATION_BRIDGE['TARGET_URL'], $FLASK_DATABASE_URL, sqlite:///var/flask.sqlite3)")
        parser.add_argument("--sample", type=int, default=50,
                            help="rows per table compared field by field, and pages fetched (default: %(default)s)")
        parser.add_argument("--tolerance", type=float, default=0.0,
                            help="allowed row difference per table, as a fraction (default: 0: none; e.g. 0.001 for a rehearsal against a live source)")
        parser.add_argument("--report", metavar="PATH", help="where verify.json goes (default var/reports/verify-<timestamp>.json)")
        parser.add_argument("--flask-url", help="base URL of a running Flask app: fetch sampled session and post pages")
        parser.add_argument("--fix-counts", action="store_true",
                            help="rewrite wrong cached counters (likes, comment_count) in the target")
        parser.add_argument("--chunk-size", type=int, default=1000, help="ids per checksum chunk (default: %(default)s)")
        parser.add_argument("--seed", type=int, default=None, help="seed of the random samples (default: random, in the report)")
        parser.add_argument("--accept-missing-source-files", action="store_true",
                            help="files missing in the legacy storage too are listed but do not count against the hit ratio")
        parser.add_argument("--lock-timeout", type=float, default=DEFAULT_LOCK_TIMEOUT, metavar="SECONDS",
                            help="give up when a lock in the target is not granted within this time (default: %(default)ss)")

    def handle(self, *args, **opts):
        run_command(self, lambda: self.verify(opts), traceback=opts["traceback"])

    def verify(self, opts):
        conf = bridge_settings()
        options = VerifyOptions(
            target_url=opts["target"] or conf.target_url,
            sample=opts["sample"],
            tolerance=opts["tolerance"],
            report_path=opts["report"],
            flask_url=opts["flask_url"],
            fix_counts=opts["fix_counts"],
            chunk_size=opts["chunk_size"],
            seed=opts["seed"],
            accept_missing_source_files=opts["accept_missing_source_files"],
            lock_timeout=opts["lock_timeout"],
        )
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
