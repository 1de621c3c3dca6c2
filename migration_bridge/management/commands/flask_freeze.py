"""python manage.py flask_freeze on|off|status [--message TEXT]"""
import getpass
import socket

from django.core.management.base import BaseCommand
from django.db import DatabaseError

from migration_bridge.cli import run_command
from migration_bridge.freeze import freeze_unavailable, get_freeze_state, set_freeze


class Command(BaseCommand):
    help = "Turn the legacy app's read-only freeze on or off, or show it."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["on", "off", "status"])
        parser.add_argument("--message", default="", help="shown to visitors while frozen")
        parser.add_argument("--by", default="", help="who is changing it (default: user@host)")

    def handle(self, *args, action, message, by, **options):
        state = run_command(self, lambda: self.freeze(action, message, by), traceback=options["traceback"])
        self.stdout.write(state.describe() if state.frozen else "live: the legacy app accepts writes")

    def freeze(self, action, message, by):
        try:
            if action == "status":
                return get_freeze_state(use_cache=False)
            return set_freeze(action == "on", message, by=by or f"{getpass.getuser()}@{socket.gethostname()}")
        except DatabaseError as exc:
            raise freeze_unavailable(exc) from None
