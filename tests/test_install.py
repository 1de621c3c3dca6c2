"""The package as a user installs it, and the system checks that guide the setup.

The slow part builds the wheel from a copy of the sources (nothing is written into
this tree), installs it into a fresh virtualenv with pip (once per module), and runs
a small Django project written by the test — its own settings and project package, an
app labelled ``video_app`` with its own models (not legacy_app's) — through check,
migrate, seeding with orphan rows, flask_freeze on, export_to_flask and verify_flask,
on SQLite → SQLite and MariaDB → PostgreSQL.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from django.core import checks as django_checks

from .conftest import IN_CI, PROJECT_ROOT, run_manage
from migration_bridge import checks

# --- system checks (settings only, in this process) ----------------------------------


def _ids(messages) -> list[str]:
    return [m.id for m in messages]


def test_checks_pass_on_a_complete_setup():
    assert checks.check_storages() == []
    assert checks.check_middleware() == []
    assert checks.check_mysql_charset() == []


def test_missing_target_storage_alias(settings):
    settings.STORAGES = {k: v for k, v in settings.STORAGES.items() if k != "flask"}
    [error] = checks.check_storages()
    assert error.id == "migration_bridge.E002" and isinstance(error, django_checks.Error)
    assert "STORAGES['flask']" in error.hint


def test_storage_aliases_follow_the_settings(settings):
    settings.MIGRATION_BRIDGE = {**settings.MIGRATION_BRIDGE, "TARGET_STORAGE": "s3", "SOURCE_STORAGE": "uploads"}
    assert _ids(checks.check_storages()) == ["migration_bridge.E002", "migration_bridge.E003"]


def test_middleware_absent_or_misplaced(settings):
    path = checks.MIDDLEWARE_PATH
    without = [m for m in settings.MIDDLEWARE if m != path]
    settings.MIDDLEWARE = without
    [warning] = checks.check_middleware()
    assert warning.id == "migration_bridge.W001" and "AuthenticationMiddleware" in warning.hint
    settings.MIDDLEWARE = [path, *without]  # before AuthenticationMiddleware
    assert _ids(checks.check_middleware()) == ["migration_bridge.W002"]


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
@pytest.mark.parametrize("options, expected", [
    ({"charset": "utf8mb4"}, []),
    ({"charset": "utf8"}, ["migration_bridge.W004"]),
    ({}, ["migration_bridge.W004"]),
])
def test_mysql_connection_charset(settings, options, expected):
    settings.DATABASES = {**settings.DATABASES, "legacy_mysql": {
        "ENGINE": "django.db.backends.mysql", "NAME": "legacy", "OPTIONS": options}}
    messages = checks.check_mysql_charset()
    assert _ids(messages) == expected
    if expected:
        assert 'DATABASES[\'legacy_mysql\']["OPTIONS"]["charset"] = "utf8mb4"' in messages[0].hint


def test_missing_freeze_table_is_a_warning_that_does_not_block_migrate(tmp_path):
    env = {"LEGACY_DATABASE_URL": f"sqlite:///{tmp_path}/fresh.sqlite3"}
    before = run_manage("check", "--database", "default", env=env)
    assert "migration_bridge.W003" in before.stderr + before.stdout
    assert "migrate migration_bridge" in before.stderr + before.stdout
    run_manage("migrate", "-v0", env=env)  # not blocked
    after = run_manage("check", "--database", "default", env=env)
    assert "W003" not in after.stderr + after.stdout


# --- the wheel in a fresh virtualenv ------------------------------------------------

PACKAGE_SOURCES = ("pyproject.toml", "README.md", "migration_bridge", "flask_models")

MODELS = '''
"""The school's own models (a cut-down copy of the legacy schema, written for this test)."""
from django.contrib.auth.models import AbstractUser
from django.db import models


class District(models.Model):
    name = models.CharField(max_length=100, unique=True)
    code = models.CharField(max_length=20, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    is_active = models.BooleanField(default=True)


class CustomAdmin(AbstractUser):
    first_name = models.CharField(max_length=100, null=True, blank=True)
    last_name = models.CharField(max_length=100, null=True, blank=True)
    school = models.CharField(max_length=100, null=True, blank=True)
    district = models.ForeignKey(District, models.PROTECT, null=True, blank=True)
    media_password = models.CharField(max_length=100, null=True, blank=True)
    profile_picture = models.CharField(max_length=255, null=True, blank=True)


class Observer(models.Model):
    name = models.CharField(max_length=100)
    password = models.CharField(max_length=100)
    district = models.ForeignKey(District, models.PROTECT)
    email = models.EmailField(unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    is_active = models.BooleanField(default=True)
    created_by = models.ForeignKey(CustomAdmin, models.SET_NULL, null=True, blank=True)


class Session(models.Model):
    name = models.CharField(max_length=100)
    original_name = models.CharField(max_length=100, null=True, blank=True)
    session_code = models.CharField(max_length=8, unique=True)
    section = models.IntegerField()
    module = models.CharField(max_length=20, default="4")
    created_at = models.DateTimeField(auto_now_add=True)
    is_paused = models.BooleanField(default=False)
    created_by = models.ForeignKey(CustomAdmin, models.SET_NULL, null=True, blank=True)
    character_set = models.CharField(max_length=50, default="marvel")
    is_archived = models.BooleanField(default=False)
    archived_at = models.DateTimeField(null=True, blank=True)


class Student(models.Model):
    name = models.CharField(max_length=100)
    password = models.CharField(max_length=100)
    section = models.ForeignKey(Session, models.CASCADE)
    admin = models.ForeignKey(CustomAdmin, models.CASCADE)
    device_id = models.CharField(max_length=255, null=True, blank=True)
    character_description = models.TextField(null=True, blank=True)
    avatar_image_path = models.CharField(max_length=255, null=True, blank=True)


class Media(models.Model):
    session = models.ForeignKey(Session, models.CASCADE)
    title = models.CharField(max_length=100)
    description = models.TextField(null=True, blank=True)
    media_type = models.CharField(max_length=10)
    video_file = models.FileField(upload_to="videos", null=True, blank=True)
    image_file = models.FileField(upload_to="images", null=True, blank=True)
    uploaded_at = models.DateTimeField(auto_now_add=True)
    graph_likes = models.PositiveIntegerField(default=0)
    eye_likes = models.PositiveIntegerField(default=0)
    read_likes = models.PositiveIntegerField(default=0)
    graph_tag = models.CharField(max_length=50, null=True, blank=True)
    is_graph = models.BooleanField(default=False)
    variable_tag = models.CharField(max_length=50, null=True, blank=True)
    submitted_password = models.CharField(max_length=100, null=True, blank=True)
    student = models.ForeignKey(Student, models.SET_NULL, null=True, blank=True)
    posted_by_admin = models.ForeignKey(CustomAdmin, models.SET_NULL, null=True, blank=True)
    project_group = models.UUIDField(null=True, blank=True)
    project_images = models.JSONField(null=True, blank=True)
    is_project = models.BooleanField(default=False)


class StudentMediaInteraction(models.Model):
    student = models.ForeignKey(Student, models.CASCADE)
    media = models.ForeignKey(Media, models.CASCADE)
    liked_graph = models.BooleanField(default=False)
    liked_eye = models.BooleanField(default=False)
    liked_read = models.BooleanField(default=False)
    comment_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)


class Comment(models.Model):
    media = models.ForeignKey(Media, models.CASCADE)
    parent = models.ForeignKey("self", models.CASCADE, null=True, blank=True)
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    name = models.CharField(max_length=100)
    device_id = models.CharField(max_length=255, null=True, blank=True)
    is_admin = models.BooleanField(default=False)
    student = models.ForeignKey(Student, models.SET_NULL, null=True, blank=True)
    admin_avatar = models.CharField(max_length=255, null=True, blank=True)
'''

SETTINGS = '''
"""Settings of a school's Django project that installs migration_bridge (INSTALL.md)."""
import json
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "school-test-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [
    "django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes",
    "django.contrib.sessions", "django.contrib.messages", "django.contrib.staticfiles",
    "video_app",
    "migration_bridge",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "migration_bridge.middleware.FreezeMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "schoolsite.urls"
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True,
              "OPTIONS": {"context_processors": ["django.template.context_processors.request",
                                                 "django.contrib.auth.context_processors.auth",
                                                 "django.contrib.messages.context_processors.messages"]}}]
DATABASES = {"default": json.loads(os.environ["SCHOOL_DATABASE"])}
AUTH_USER_MODEL = "video_app.CustomAdmin"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "/static/"
MEDIA_ROOT = os.environ["SCHOOL_MEDIA"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "flask": {"BACKEND": "django.core.files.storage.FileSystemStorage",
              "OPTIONS": {"location": os.environ["SCHOOL_FLASK_MEDIA"], "base_url": "/media/"}},
}
MIGRATION_BRIDGE = {"TARGET_URL": os.environ["SCHOOL_TARGET_URL"], "REPORT_DIR": str(BASE_DIR / "reports")}
'''

URLS = '''
from django.contrib import admin
from django.urls import path

urlpatterns = [path("admin/", admin.site.urls)]
'''

MANAGE = '''
#!/usr/bin/env python
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "schoolsite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
'''

# Rows with orphans (a comment of a missing post, an interaction of a missing
# student), written with the foreign-key checks off as old databases allowed.
SEED = '''
from django.contrib.auth.hashers import make_password
from django.db import connection
from video_app.models import (Comment, CustomAdmin, District, Media, Observer, Session, Student,
                              StudentMediaInteraction)

north = District.objects.create(name="North", code="N")
teacher = CustomAdmin.objects.create(username="teacher", password=make_password("pw"), district=north,
                                     media_password="shared")
Observer.objects.create(name="Obs", password=make_password("o"), district=north, email="o@example.org")
session = Session.objects.create(name="Period 2", session_code="ABCD1234", section=2, created_by=teacher)
ann = Student.objects.create(name="Ann", password="12345", section=session, admin=teacher)
bob = Student.objects.create(name="Bob", password="54321", section=session, admin=teacher)
post = Media.objects.create(session=session, title="Histogram", media_type="comment", student=ann, eye_likes=1)
StudentMediaInteraction.objects.create(student=bob, media=post, liked_eye=True, comment_count=1)
Comment.objects.create(media=post, text="Nice", name="Bob", student=bob)
with connection.cursor() as cursor:
    cursor.execute("PRAGMA foreign_keys = OFF" if connection.vendor == "sqlite" else "SET FOREIGN_KEY_CHECKS = 0")
Comment.objects.create(media_id=999, text="orphan", name="Ghost")
StudentMediaInteraction.objects.create(student_id=999, media=post)
print("seeded")
'''

WRITE_WHILE_FROZEN = '''
from migration_bridge.freeze import LegacyFrozenError
from video_app.models import District
try:
    District.objects.create(name="South", code="S")
    print("written")
except LegacyFrozenError:
    print("refused")
'''


class Installed:
    """The fresh virtualenv with the wheel installed."""

    def __init__(self, root: Path, python: Path, wheel: Path):
        self.root, self.python, self.wheel = root, python, wheel

    def run(self, *args, cwd: Path, env: dict, check: bool = True, timeout: int = 600):
        clean = {"PATH": f"{self.python.parent}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"),
                 "LANG": "C.UTF-8", **env}
        proc = subprocess.run([str(self.python), *args], cwd=cwd, env=clean, capture_output=True, text=True,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(map(str, args))} exited {proc.returncode}\n--- stdout\n"
                                 f"{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}")
        return proc


def _pip(python, *args) -> None:
    proc = subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", "-q", *args],
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        message = f"pip {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        if not IN_CI and ("NewConnectionError" in proc.stderr or "Could not find a version" in proc.stderr):
            pytest.skip(f"package index unreachable: {message[-500:]}")
        raise AssertionError(message)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    root = tmp_path_factory.mktemp("install")
    source = root / "source"
    source.mkdir()
    for name in PACKAGE_SOURCES:  # a copy: the build's own files stay out of this tree
        src = PROJECT_ROOT / name
        if src.is_dir():
            shutil.copytree(src, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, source / name)
    _pip(sys.executable, "wheel", "--no-deps", "-w", str(root / "dist"), str(source))
    [wheel] = (root / "dist").glob("migration_bridge-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, timeout=300)
    python = root / "venv" / "bin" / "python"
    # What a user types, with the wheel in place of the checkout: the target driver
    # (postgresql) and the legacy project's own MySQL driver (mysql).
    _pip(python, "install", f"{wheel}[postgresql,mysql]")
    return Installed(root, python, wheel)


def _write_project(root: Path) -> Path:
    project = root / "school"
    files = {
        "manage.py": MANAGE, "schoolsite/__init__.py": "", "schoolsite/settings.py": SETTINGS,
        "schoolsite/urls.py": URLS, "video_app/__init__.py": "", "video_app/models.py": MODELS,
        "video_app/migrations/__init__.py": "",
    }
    for name, text in files.items():
        path = project / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return project


@pytest.mark.slow
def test_the_wheel_holds_the_package_and_not_the_development_tree(installed):
    import zipfile

    names = zipfile.ZipFile(installed.wheel).namelist()
    assert "migration_bridge/templates/migration_bridge/frozen.html" in names
    assert "migration_bridge/templates/migration_bridge/banner.html" in names
    assert "migration_bridge/migrations/0001_initial.py" in names
    assert "migration_bridge/migrations/_scoped_fk_check.py" in names
    assert "flask_models/models.py" in names
    assert not [n for n in names if n.startswith(("legacy_app/", "tests/", "bench/", "scripts/"))]
    metadata = next(n for n in names if n.endswith("METADATA"))
    requires = [line for line in zipfile.ZipFile(installed.wheel).read(metadata).decode().splitlines()
                if line.startswith("Requires-Dist:")]
    assert requires and not [line for line in requires if "==" in line.split(";")[0]]  # ranges, not pins
    # Building left nothing in this tree.
    assert not list(PROJECT_ROOT.glob("*.egg-info")) and not (PROJECT_ROOT / "build").exists()
    probe = installed.run("-c", "import migration_bridge, flask_models; print(migration_bridge.__file__)\n"
                                "import importlib.util; print(importlib.util.find_spec('legacy_app'))",
                          cwd=installed.root, env={})
    location, legacy = probe.stdout.split()
    assert location.startswith(str(installed.root / "venv")) and legacy == "None"


@pytest.mark.slow
@pytest.mark.parametrize("source_kind, target_kind", [("sqlite", "sqlite"), ("mariadb", "postgresql")])
def test_a_school_project_migrates_with_the_installed_package(installed, make_database, tmp_path,
                                                               source_kind, target_kind):
    project = _write_project(tmp_path)
    source = make_database(source_kind)
    if source_kind == "sqlite":
        database = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "school.sqlite3")}
    else:
        database = {"ENGINE": "django.db.backends.mysql", "NAME": source.name, "USER": "root",
                    "HOST": "127.0.0.1", "PORT": "3306", "OPTIONS": {"charset": "utf8mb4"}}
    target_url = (f"sqlite:///{tmp_path / 'flask.sqlite3'}" if target_kind == "sqlite"
                  else make_database(target_kind).url)
    env = {"SCHOOL_DATABASE": json.dumps(database), "SCHOOL_MEDIA": str(tmp_path / "media"),
           "SCHOOL_FLASK_MEDIA": str(tmp_path / "flask_media"), "SCHOOL_TARGET_URL": target_url}

    def manage(*args, check=True):
        return installed.run("manage.py", *args, cwd=project, env=env, check=check)

    manage("makemigrations", "video_app", "-v0")
    manage("check")
    assert "No changes detected" in manage("makemigrations", "--check", "--dry-run", "migration_bridge").stdout
    # The project's own tables first, then rows with orphans, then the freeze flag:
    # it installs on the dirty database (SQLite's schema editor checks every FK).
    for app in ("video_app", "sessions", "admin"):
        manage("migrate", app, "-v0")
    assert "seeded" in manage("shell", "-c", SEED).stdout
    assert "CREATE TABLE" in manage("sqlmigrate", "migration_bridge", "0001").stdout
    manage("migrate", "-v0")
    checked = manage("check", "--database", "default")
    assert "migration_bridge" not in checked.stdout + checked.stderr

    manage("flask_freeze", "on", "--message", "Moving to the new site")
    assert manage("shell", "-c", WRITE_WHILE_FROZEN).stdout.strip() == "refused"
    export = manage("export_to_flask", "--create-schema", "--workers", "1", "--report-dir", str(tmp_path / "r"),
                    check=False)
    assert export.returncode == 0, export.stdout[-3000:] + export.stderr[-3000:]
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["source_frozen"]["whole_run"] is True
    assert report["totals"]["rejected"] == 2  # the two orphans, with their reasons
    verify = manage("verify_flask", "--report", str(tmp_path / "verify.json"), check=False)
    assert verify.returncode == 0, verify.stdout[-3000:] + verify.stderr[-3000:]
    # the databases' own digests of this project's rows find nothing changed since
    sync = manage("export_to_flask", "--sync", "--workers", "1", "--report-dir", str(tmp_path / "s"), check=False)
    assert sync.returncode == 0, sync.stdout[-3000:] + sync.stderr[-3000:]
    synced = json.loads((tmp_path / "s" / "report.json").read_text())["sync"]
    assert all(s["inserted"] == s["updated"] == s["deleted"] == 0 for s in synced.values()), synced
    manage("flask_freeze", "off")
    assert manage("shell", "-c", WRITE_WHILE_FROZEN).stdout.strip() == "written"
