"""A third target profile, declared here and nowhere else: a few columns renamed and one
table fewer than ``plan``. It exports and verifies end to end, which proves that a new
target needs nothing outside its own declarations (``--target-schema module:PROFILE``)."""
from __future__ import annotations

import dataclasses

import sqlalchemy as sa

from migration_bridge import transforms as t
from migration_bridge.mapping import Checks, Profile
from migration_bridge.profiles import get_profile

from .conftest import run_manage, seed_legacy

RENAMED = {
    "districts": {"name": "title"},
    "users": {"first_name": "given_name", "last_name": "family_name"},
    "media": {"title": "headline"},
    "comments": {"text": "body"},
}
DROPPED = "student_media_interactions"
metadata = sa.MetaData()


def _table(table: sa.Table) -> sa.Table:
    renames = RENAMED.get(table.name, {})
    columns = []
    for column in table.columns:
        copy = column._copy()
        copy.name = copy.key = renames.get(column.name, column.name)
        columns.append(copy)
    return sa.Table(table.name, metadata, *columns)


def _renamed(transform, renames):
    def apply(row, ctx):
        result = transform(row, ctx)
        if isinstance(result, t.Transformed):
            result.row = {renames.get(k, k): v for k, v in result.row.items()}
        return result
    return apply


def _entity(entity):
    renames = RENAMED.get(entity.name, {})
    return dataclasses.replace(
        entity, target=_table(entity.target), transform=_renamed(entity.transform, renames),
        counters=tuple(c for c in entity.counters if c.counted != DROPPED),
        choices={renames.get(k, k): v for k, v in entity.choices.items()})


PROFILE = Profile(
    name="toy",
    description="plan with a few columns renamed and no interactions table",
    metadata=metadata,
    entities=tuple(_entity(e) for e in get_profile("plan").entities if e.name != DROPPED),
    checks=Checks(),  # declares no access rule: those checks say they did not run
)


def test_a_profile_declared_in_test_code_exports_and_verifies(make_database, tmp_path):
    legacy = seed_legacy(make_database, "sqlite", "demo")
    target = make_database("sqlite")
    schema = ("--target-schema", f"{__name__}:PROFILE")
    env = {**legacy.env, "FLASK_MEDIA_ROOT": str(tmp_path / "flask_media")}
    run_manage("export_to_flask", "--target", target.url, *schema, "--create-schema", "--allow-live",
               "--pin-hash-method", "pbkdf2:sha256:1000", "--report-dir", str(tmp_path / "export"), env=env)
    verified = run_manage("verify_flask", "--target", target.url, "--accept-missing-source-files", "--fix-counts",
                          "--report", str(tmp_path / "verify.json"), env=env, check=False)
    assert verified.returncode == 0, verified.stdout[-3000:]
    assert "all 7 checks passed" in verified.stdout  # the two access checks: not declared, not run

    engine = target.engine()
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        assert not inspector.has_table(DROPPED)
        assert {"title"} <= {c["name"] for c in inspector.get_columns("districts")}
        assert "name" not in {c["name"] for c in inspector.get_columns("districts")}
        titles = conn.execute(sa.text("SELECT title FROM districts")).scalars().all()
        headlines = conn.execute(sa.text("SELECT count(*) FROM media WHERE headline IS NOT NULL")).scalar()
    engine.dispose()
    assert titles and all(titles) and headlines > 0

    # the target records its profile: verify read it from there, and another profile is refused
    wrong = run_manage("export_to_flask", "--target", target.url, "--allow-live", "--skip-files",
                       "--report-dir", str(tmp_path / "again"), env=env, check=False)
    assert wrong.returncode == 2 and "holds the 'toy' schema" in wrong.stderr
