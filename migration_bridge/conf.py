"""The bridge's settings: ``settings.MIGRATION_BRIDGE`` with defaults, validated once."""
from __future__ import annotations

import os
from dataclasses import dataclass, fields

from django.conf import settings

from .errors import BridgeError


@dataclass(frozen=True)
class BridgeSettings:
    LEGACY_APP: str = "video_app"
    TARGET_SCHEMA: str = ""  # the target profile: "" = plan
    TARGET_URL: str = ""
    SOURCE_STORAGE: str = "default"
    TARGET_STORAGE: str = "flask"
    STATIC_BASE_URL: str = "/static/"
    MEDIA_BASE_URL: str = "/media/"
    MEDIA_URL_PREFIX: str = "/media/"
    # Fernet key: when set, media_password is stored encrypted in the target.
    MEDIA_PASSWORD_KEY: str = ""
    REPORT_DIR: str = ""
    BATCH_SIZE: int = 2000
    # --sync: rows of one id range searched for changes; a larger table is cut, the ranges
    # searched side by side
    SYNC_PART_ROWS: int = 250_000
    # keys the row fingerprints --sync compares; default: derived from SECRET_KEY
    FINGERPRINT_KEY: str = ""
    DEFAULT_TARGET_URL: str = "sqlite:///var/flask.sqlite3"
    # files: parallel copies and the target key scheme (flags override them)
    FILE_WORKERS: int = 8
    FILE_KEY_SCHEME: str = "preserve"  # preserve | media-id
    FILE_RETRY_ATTEMPTS: int = 6  # tries per storage operation on transient errors
    FILE_RETRY_BASE_DELAY: float = 0.5  # seconds, doubled per retry (with jitter)

    @property
    def target_url(self) -> str:
        return self.TARGET_URL or os.environ.get("FLASK_DATABASE_URL") or self.DEFAULT_TARGET_URL


def bridge_settings() -> BridgeSettings:
    raw = getattr(settings, "MIGRATION_BRIDGE", {}) or {}
    if not isinstance(raw, dict):
        raise BridgeError("bad settings: MIGRATION_BRIDGE must be a dict")
    known = {f.name: f for f in fields(BridgeSettings)}
    values = {}
    for key, value in raw.items():
        if key not in known:
            continue  # other components (e.g. the freeze) read their own keys
        expected = type(known[key].default)
        if not isinstance(value, expected):
            raise BridgeError(
                f"bad settings: MIGRATION_BRIDGE[{key!r}] must be {expected.__name__}, "
                f"not {type(value).__name__}"
            )
        values[key] = value
    conf = BridgeSettings(**values)
    for key in ("BATCH_SIZE", "SYNC_PART_ROWS"):
        if getattr(conf, key) < 1:
            raise BridgeError(f"bad settings: MIGRATION_BRIDGE[{key!r}] must be >= 1")
    return conf
