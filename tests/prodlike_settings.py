"""The legacy settings as production has them: a MySQL/MariaDB DATABASES entry without
``OPTIONS={'charset': 'utf8mb4'}`` (Django then connects with "utf8", i.e. utf8mb3)."""
from legacy_app.settings import *  # noqa: F401,F403
from legacy_app.settings import DATABASES

DATABASES["default"] = {**DATABASES["default"]}
DATABASES["default"]["OPTIONS"] = {k: v for k, v in DATABASES["default"].get("OPTIONS", {}).items()
                                   if k != "charset"}
