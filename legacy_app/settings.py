"""Settings of the reconstructed legacy project (Django 5.1, app label ``video_app``).

Everything deployment-specific comes from the environment:

- ``LEGACY_DATABASE_URL``  default ``sqlite:///var/legacy.sqlite3`` (relative to the
  project root); ``mysql://root@127.0.0.1:3306/legacy`` goes through mysqlclient, utf8mb4.
- ``LEGACY_MEDIA_ROOT``    default ``var/media``.
- ``FLASK_DATABASE_URL``   the migration target (SQLAlchemy URL), read by migration_bridge.
- ``FLASK_MEDIA_ROOT``     default ``var/flask_media``: the target storage when no S3 bucket is set.
- ``FLASK_S3_BUCKET``, ``FLASK_S3_ENDPOINT_URL``, ``FLASK_S3_REGION``: target storage on S3
  (credentials through the usual ``AWS_*`` variables).
"""
import json
import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"


def _under_base(path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else BASE_DIR / p


def database_from_url(url: str) -> dict:
    config = dj_database_url.parse(url, conn_max_age=0)
    if config["ENGINE"] == "django.db.backends.sqlite3":
        if config["NAME"] and config["NAME"] != ":memory:":
            config["NAME"] = str(_under_base(config["NAME"]))
            Path(config["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    elif config["ENGINE"] == "django.db.backends.mysql":
        config.setdefault("OPTIONS", {}).update({"charset": "utf8mb4"})
        config.setdefault("TEST", {}).update({"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"})
    return config


SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "legacy-dev-secret-key-not-for-production")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "legacy_app.video_app",
    "migration_bridge",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "migration_bridge.middleware.FreezeMiddleware",  # read-only freeze: 503 + admin banner
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "legacy_app.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "legacy_app.wsgi.application"

DATABASES = {
    "default": database_from_url(
        os.environ.get("LEGACY_DATABASE_URL", "sqlite:///var/legacy.sqlite3")
    )
}

AUTH_USER_MODEL = "video_app.CustomAdmin"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Django's default hashers, plus MD5 because old databases still hold such hashes.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
    "django.contrib.auth.hashers.MD5PasswordHasher",
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
MEDIA_URL = "/media/"
MEDIA_ROOT = str(_under_base(os.environ.get("LEGACY_MEDIA_ROOT", "var/media")))
FLASK_MEDIA_ROOT = str(_under_base(os.environ.get("FLASK_MEDIA_ROOT", "var/flask_media")))

if os.environ.get("FLASK_S3_BUCKET"):
    _flask_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": os.environ["FLASK_S3_BUCKET"],
            "endpoint_url": os.environ.get("FLASK_S3_ENDPOINT_URL") or None,
            "region_name": os.environ.get("FLASK_S3_REGION") or None,
            "default_acl": None,  # objects stay private
            "querystring_auth": True,
            "file_overwrite": True,
        },
    }
else:
    _flask_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": FLASK_MEDIA_ROOT, "base_url": "/media/"},
    }

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "flask": _flask_storage,
}

MIGRATION_BRIDGE = {
    "LEGACY_APP": "video_app",
    "TARGET_URL": os.environ.get("FLASK_DATABASE_URL", ""),
    "SOURCE_STORAGE": "default",
    "TARGET_STORAGE": "flask",
    "STATIC_BASE_URL": os.environ.get("FLASK_STATIC_BASE_URL", "/static/"),
    "MEDIA_BASE_URL": os.environ.get("FLASK_MEDIA_BASE_URL", "/media/"),
    "FREEZE_CACHE_SECONDS": 2,  # how stale a worker's view of the freeze flag may be
    "FREEZE_RETRY_AFTER": 300,  # Retry-After of the 503 while frozen
}

# JSON merged into MIGRATION_BRIDGE, e.g. '{"MEDIA_BASE_URL": "https://cdn.example.org/"}'.
MIGRATION_BRIDGE.update(json.loads(os.environ.get("MIGRATION_BRIDGE_OVERRIDES") or "{}"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"migration_bridge": {"handlers": ["console"], "level": "INFO"}},
}
