"""Shared fixtures: real databases on loopback, created fresh for each test.

Tests that need PostgreSQL or MariaDB skip with the reason when the server is
unreachable, except under CI=true, where they fail instead.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

PROJECT_ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI") == "true"

SERVER_URLS = {
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
    "mariadb": "mysql+mysqldb://root@127.0.0.1:3306/mysql?charset=utf8mb4",
}
_server_errors: dict[str, str | None] = {}


def server_error(kind: str) -> str | None:
    """None when the server answers, else why not (memoised per session)."""
    if kind not in _server_errors:
        try:
            engine = sa.create_engine(SERVER_URLS[kind], connect_args={"connect_timeout": 3})
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            engine.dispose()
            _server_errors[kind] = None
        except Exception as exc:  # noqa: BLE001 - any failure means unreachable
            _server_errors[kind] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return _server_errors[kind]


def require_server(kind: str) -> None:
    error = server_error(kind)
    if error is None:
        return
    message = f"{kind} server on 127.0.0.1 unreachable ({error})"
    if IN_CI:
        pytest.fail(f"{message}; under CI=true it must run")
    pytest.skip(message)


@dataclass
class Database:
    """An empty database created for one test."""

    kind: str  # sqlite | postgresql | mariadb
    name: str
    url: str  # SQLAlchemy URL
    django_url: str  # dj-database-url URL (LEGACY_DATABASE_URL)

    def engine(self, **kwargs) -> sa.Engine:
        return sa.create_engine(self.url, **kwargs)


class DatabaseFactory:
    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.created: list[Database] = []

    def __call__(self, kind: str, template: Database | None = None) -> Database:
        """A new empty database, or with ``template`` a copy of that database (of the same kind)."""
        name = f"mbtest_{uuid.uuid4().hex[:12]}"
        if kind == "sqlite":
            path = self.tmp_path / f"{name}.sqlite3"
            if template is not None:
                shutil.copy(template.url.removeprefix("sqlite:///"), path)
            db = Database(kind, name, f"sqlite:///{path}", f"sqlite:///{path}")
        else:
            require_server(kind)
            admin = sa.create_engine(SERVER_URLS[kind], isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                if kind == "postgresql" and template is not None:
                    # a template must have no other session; the golden's engines may linger in a pool
                    conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                         "WHERE datname = :t AND pid != pg_backend_pid()"), {"t": template.name})
                    conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{template.name}"'))
                elif kind == "postgresql":
                    conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
                else:
                    conn.execute(
                        sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
                    )
            admin.dispose()
            if kind == "postgresql":
                db = Database(kind, name, f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
                              f"postgres://postgres@127.0.0.1:5432/{name}")
            else:
                db = Database(kind, name, f"mysql+mysqldb://root@127.0.0.1:3306/{name}?charset=utf8mb4",
                              f"mysql://root@127.0.0.1:3306/{name}")
                if template is not None:
                    _copy_mariadb_tables(template, db)
        self.created.append(db)
        return db

    def clone(self, db: Database) -> Database:
        """A private copy of ``db`` (a file copy, ``CREATE DATABASE ... TEMPLATE``, or MariaDB's
        tables copied with their definitions), dropped with this factory's databases."""
        return self(db.kind, template=db)

    def drop_all(self) -> None:
        for db in self.created:
            if db.kind == "sqlite":
                continue
            admin = sa.create_engine(SERVER_URLS[db.kind], isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                if db.kind == "postgresql":
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)'))
                else:
                    conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{db.name}`"))
            admin.dispose()


def _copy_mariadb_tables(source: Database, db: Database) -> None:
    """MariaDB has no database templates: each table's own definition, then its rows."""
    engine = db.engine()
    with engine.begin() as conn:
        conn.exec_driver_sql("SET foreign_key_checks = 0")
        tables = conn.exec_driver_sql(f"SHOW FULL TABLES FROM `{source.name}` WHERE Table_type = 'BASE TABLE'")
        for (table, _) in tables.all():
            ddl = conn.exec_driver_sql(f"SHOW CREATE TABLE `{source.name}`.`{table}`").one()[1]
            conn.exec_driver_sql(ddl)
            conn.exec_driver_sql(f"INSERT INTO `{table}` SELECT * FROM `{source.name}`.`{table}`")
        conn.exec_driver_sql("SET foreign_key_checks = 1")
    engine.dispose()


@pytest.fixture
def make_database(tmp_path):
    """Factory: ``make_database("sqlite" | "postgresql" | "mariadb") -> Database``."""
    factory = DatabaseFactory(tmp_path)
    yield factory
    factory.drop_all()


@pytest.fixture(scope="module")
def make_module_database(tmp_path_factory):
    """Like make_database, for databases shared by the tests of one module."""
    factory = DatabaseFactory(tmp_path_factory.mktemp("dbs"))
    yield factory
    factory.drop_all()


@dataclass
class SeededLegacy:
    """A migrated legacy database seeded by ``seed_legacy``, with its manifest."""

    db: Database
    media_root: Path
    manifest: dict
    env_override: dict | None = None

    @property
    def env(self) -> dict:
        return self.env_override or {
            "LEGACY_DATABASE_URL": self.db.django_url, "LEGACY_MEDIA_ROOT": str(self.media_root),
            "FLASK_MEDIA_ROOT": str(self.media_root.parent / f"{self.db.name}_flask_media")}


def seed_legacy(factory: DatabaseFactory, kind: str, scale: str = "small", seed: int = 3) -> SeededLegacy:
    import json

    db = factory(kind)
    media_root = factory.tmp_path / f"{db.name}_media"
    manifest_path = factory.tmp_path / f"{db.name}_manifest.json"
    env = {"LEGACY_DATABASE_URL": db.django_url, "LEGACY_MEDIA_ROOT": str(media_root)}
    run_manage("migrate", "-v0", env=env)
    run_manage("seed_legacy", "--scale", scale, "--seed", str(seed), "--manifest", str(manifest_path), env=env)
    return SeededLegacy(db, media_root, json.loads(manifest_path.read_text()))


# Legacy source and target dialects the sync and verify scenarios run on, as "source-target".
SOURCE_TARGET_PAIRS = ["sqlite-sqlite", "mariadb-postgresql"]


@dataclass
class Exported:
    """A seeded legacy database and its full export (files included), for one pair of
    dialects; shared by the session's tests, read only: clone what a test changes."""

    seeded: SeededLegacy  # seeded.env is the export's environment
    target: Database
    report_dir: Path

    @property
    def flask_media(self) -> Path:
        return Path(self.seeded.env["FLASK_MEDIA_ROOT"])


@pytest.fixture(scope="session")
def exported_pair(tmp_path_factory):
    """``exported_pair("sqlite-sqlite" | "mariadb-postgresql", profile="plan") -> Exported``,
    made once per session and profile (seed 3, scale small; cheap PIN hashes)."""
    factory = DatabaseFactory(tmp_path_factory.mktemp("exported"))
    cache: dict[tuple[str, str], Exported] = {}
    legacies: dict[str, SeededLegacy] = {}

    def get(pair: str, profile: str = "plan") -> Exported:
        if (pair, profile) not in cache:
            source_kind, target_kind = pair.split("-")
            for kind in {source_kind, target_kind} - {"sqlite"}:
                require_server(kind)  # before seeding
            if pair not in legacies:
                legacies[pair] = seed_legacy(factory, source_kind, "small")
            seeded = legacies[pair]
            target = factory(target_kind)
            # each profile's files in their own folder
            env = {**seeded.env, "FLASK_MEDIA_ROOT": f"{seeded.env['FLASK_MEDIA_ROOT']}_{profile}"}
            seeded = SeededLegacy(seeded.db, seeded.media_root, seeded.manifest, env)
            report_dir = factory.tmp_path / f"{target.name}_report"
            run_manage("export_to_flask", "--target", target.url, "--target-schema", profile, "--create-schema",
                       "--allow-live", "--pin-hash-method", "pbkdf2:sha256:1000", "--workers", "2",
                       "--report-dir", str(report_dir), env=seeded.env)
            cache[(pair, profile)] = Exported(seeded, target, report_dir)
        return cache[(pair, profile)]

    yield get
    factory.drop_all()


TARGET_DIALECTS = ["sqlite", "postgresql", "mariadb"]
LEGACY_DIALECTS = ["sqlite", "mariadb"]


@pytest.fixture(params=TARGET_DIALECTS)
def target_db(request, make_database) -> Database:
    """A fresh, empty target database, once per dialect."""
    return make_database(request.param)


@pytest.fixture(params=LEGACY_DIALECTS)
def legacy_dialect(request) -> str:
    return request.param


def run_manage(*args: str, env: dict | None = None, check: bool = True, timeout: int = 900,
               cwd: Path = PROJECT_ROOT) -> subprocess.CompletedProcess:
    """Run ``manage.py`` in a subprocess (the way a user runs it)."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("DJANGO_SETTINGS_MODULE", None)
    proc = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "manage.py"), *args],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"manage.py {' '.join(args)} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
        )
    return proc


def schema_snapshot(engine: sa.Engine, tables) -> dict:
    """Per table, its indexes and foreign keys as the database's catalog shows them, and the
    definitions an export dropped while loading and has not built again."""
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        snapshot = {t.name: (sorted((ix["name"], tuple(ix["column_names"]), bool(ix["unique"]))
                                    for ix in inspector.get_indexes(t.name)),
                             sorted((fk["name"] or "", tuple(fk["constrained_columns"]), fk["referred_table"],
                                     tuple(fk["referred_columns"]), tuple(sorted(fk["options"].items())))
                                    for fk in inspector.get_foreign_keys(t.name)))
                    for t in tables}
        if inspector.has_table("bridge_deferred_schema"):
            snapshot["bridge_deferred_schema"] = conn.execute(
                sa.text("SELECT table_name, name FROM bridge_deferred_schema ORDER BY 1, 2")).all()
    engine.dispose()
    return snapshot
