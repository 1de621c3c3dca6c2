from django.apps import AppConfig


class MigrationBridgeConfig(AppConfig):
    name = "migration_bridge"
    verbose_name = "Migration bridge (Django → Flask)"
    default_auto_field = "django.db.models.BigAutoField"
