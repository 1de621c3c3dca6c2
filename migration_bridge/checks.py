"""Django system checks: what the bridge needs from the legacy project's settings.

Each message names the setting and the hint says the fix (docs/INSTALL.md has the
whole setup). Registered in ``MigrationBridgeConfig.ready``.

- ``migration_bridge.E001`` ``MIGRATION_BRIDGE["LEGACY_APP"]`` is not an installed app label
  (in freeze.py: the guard needs it).
- ``migration_bridge.E002`` the target storage alias (``MIGRATION_BRIDGE["TARGET_STORAGE"]``,
  default ``flask``) is not in ``STORAGES``.
- ``migration_bridge.E003`` the source storage alias (``MIGRATION_BRIDGE["SOURCE_STORAGE"]``,
  default ``default``) is not in ``STORAGES``.
- ``migration_bridge.W004`` a MySQL/MariaDB connection without ``OPTIONS["charset"] = "utf8mb4"``:
  Django's default (utf8, 3 bytes) turns emoji into ``?`` for the legacy app itself. A warning:
  export_to_flask and verify_flask switch their own connection to utf8mb4 (and check it), and
  an error would stop the production app's own commands.
- ``migration_bridge.W001`` ``FreezeMiddleware`` is not in ``MIDDLEWARE``: while frozen, writes
  are still refused by the database guard, but users get a server error instead of
  the read-only page, and the admin shows no banner.
- ``migration_bridge.W002`` ``FreezeMiddleware`` comes before ``AuthenticationMiddleware``.
- ``migration_bridge.W003`` the freeze flag's table is missing in a database (only with
  database checks: ``manage.py check --database default``, and ``migrate``, which then
  creates it). A warning, so that ``migrate`` itself is never blocked.
"""
from __future__ import annotations

from django.conf import settings
from django.core import checks
from django.db import DatabaseError, connections, router

MIDDLEWARE_PATH = "migration_bridge.middleware.FreezeMiddleware"
AUTH_MIDDLEWARE_PATH = "django.contrib.auth.middleware.AuthenticationMiddleware"


def _bridge(name: str, default: str) -> str:
    value = (getattr(settings, "MIGRATION_BRIDGE", None) or {}).get(name, default)
    return value if isinstance(value, str) else default


def check_storages(app_configs=None, **kwargs) -> list:
    storages = getattr(settings, "STORAGES", None) or {}
    errors = []
    target = _bridge("TARGET_STORAGE", "flask")
    if target not in storages:
        errors.append(checks.Error(
            f"STORAGES has no {target!r} alias: the target file storage of export_to_flask "
            f"(MIGRATION_BRIDGE['TARGET_STORAGE'] = {target!r})",
            hint=(f'add STORAGES[{target!r}] = {{"BACKEND": "django.core.files.storage.FileSystemStorage", '
                  '"OPTIONS": {"location": "/srv/flask_media"}} (or an S3Storage of django-storages), '
                  "or set MIGRATION_BRIDGE['TARGET_STORAGE'] to the alias you have"),
            id="migration_bridge.E002"))
    source = _bridge("SOURCE_STORAGE", "default")
    if source not in storages:
        errors.append(checks.Error(
            f"STORAGES has no {source!r} alias: the legacy uploads export_to_flask copies "
            f"(MIGRATION_BRIDGE['SOURCE_STORAGE'] = {source!r})",
            hint="set MIGRATION_BRIDGE['SOURCE_STORAGE'] to the alias holding the legacy app's uploads",
            id="migration_bridge.E003"))
    return errors


def check_mysql_charset(app_configs=None, **kwargs) -> list:
    errors = []
    for alias, config in settings.DATABASES.items():
        if "mysql" not in config.get("ENGINE", ""):
            continue
        charset = (config.get("OPTIONS") or {}).get("charset")
        if charset != "utf8mb4":
            errors.append(checks.Warning(
                f"DATABASES[{alias!r}] (MySQL/MariaDB) connects with charset {charset or 'utf8 (Django default)'!r}: "
                "the legacy app reads 4-byte characters (emoji) as '?' (export_to_flask and verify_flask "
                "switch their own connection to utf8mb4)",
                hint=f'set DATABASES[{alias!r}]["OPTIONS"]["charset"] = "utf8mb4"',
                id="migration_bridge.W004"))
    return errors


def check_middleware(app_configs=None, **kwargs) -> list:
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    if MIDDLEWARE_PATH not in middleware:
        return [checks.Warning(
            f"{MIDDLEWARE_PATH} is not in MIDDLEWARE: while frozen, refused writes end in a "
            "server error instead of the read-only page, and the admin shows no banner",
            hint=f'add "{MIDDLEWARE_PATH}" to MIDDLEWARE right after "{AUTH_MIDDLEWARE_PATH}"',
            id="migration_bridge.W001")]
    if AUTH_MIDDLEWARE_PATH in middleware and middleware.index(MIDDLEWARE_PATH) < middleware.index(AUTH_MIDDLEWARE_PATH):
        return [checks.Warning(
            f"{MIDDLEWARE_PATH} comes before {AUTH_MIDDLEWARE_PATH}: the admin banner cannot "
            "see who is logged in (no toggle link for superusers)",
            hint=f"move it to right after {AUTH_MIDDLEWARE_PATH}",
            id="migration_bridge.W002")]
    return []


def check_freeze_table(app_configs=None, databases=None, **kwargs) -> list:
    """Database check: runs only when asked for databases (check --database, migrate)."""
    from .models import LegacyFreeze

    warnings = []
    alias = router.db_for_write(LegacyFreeze)
    if not databases or alias not in databases:
        return []
    table = LegacyFreeze._meta.db_table
    try:
        present = table in connections[alias].introspection.table_names()
    except DatabaseError as exc:
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
        warnings.append(checks.Warning(
            f"cannot look for the freeze flag table {table!r} in database {alias!r}: {first_line}",
            hint="check DATABASES; then run `python manage.py migrate migration_bridge`",
            id="migration_bridge.W003"))
        return warnings
    if not present:
        warnings.append(checks.Warning(
            f"the freeze flag table {table!r} is missing in database {alias!r}: "
            "flask_freeze, the admin toggle and the database guard cannot use the flag",
            hint=f"run `python manage.py migrate migration_bridge --database {alias}` once",
            id="migration_bridge.W003"))
    return warnings


def register() -> None:
    checks.register(check_storages)
    checks.register(check_mysql_charset)
    checks.register(check_middleware)
    checks.register(check_freeze_table, checks.Tags.database)
