"""python manage.py flask_freeze on|off|status [--message TEXT]"""
import getpass
import socket

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from migration_bridge.freeze import get_freeze_state, set_freeze


class Command(BaseCommand):
    help = "Turn the legacy app's read-only freeze on or off, or show it."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["on", "off", "status"])
        parser.add_argument("--message", default="", help="shown to visitors while frozen")
        parser.add_argument("--by", default="", help="who is changing it (default: user@host)")

    def handle(self, *args, action, message, by, **options):
        try:
            if action == "status":
                state = get_freeze_state(use_cache=False)
            else:
                state = set_freeze(action == "on", message, by=by or f"{getpass.getuser()}@{socket.gethostname()}")
        except DatabaseError as exc:
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CommandError(f"cannot use the freeze table ({first_line}); if it is missing, run "
                               "`python manage.py migrate migration_bridge` once") from None
        self.stdout.write(state.describe() if state.frozen else "live: the legacy app accepts writes")
