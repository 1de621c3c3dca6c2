from django.apps import AppConfig


class MigrationBridgeConfig(AppConfig):
    name = "migration_bridge"
    verbose_name = "Migration bridge (Django → Flask)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # The read-only freeze's database guard, on every connection (see freeze.py).
        from . import checks, freeze

        freeze.install_guard()
        checks.register()  # what is missing in the project's settings (see checks.py)
