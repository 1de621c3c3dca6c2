"""Each target profile's declarations agree with the legacy models, with its transforms
and with its target schema — without a database. And the engine names no entity: what
an entity is lives in its profile only."""
from __future__ import annotations

import datetime as dt
import re
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from django.apps import apps

from migration_bridge import transforms as t
from migration_bridge.conf import BridgeSettings
from migration_bridge.profiles import get_profile, names

PACKAGE = Path(__file__).resolve().parent.parent / "migration_bridge"
# the engine: everything but the declarations (profiles/) and the pure per-entity transforms
ENGINE = sorted(p for p in PACKAGE.rglob("*.py")
                if "profiles" not in p.parts and "migrations" not in p.parts and "management" not in p.parts
                and p.name not in ("transforms.py",))
PROFILES = [n for n in names()]
UTC = dt.timezone.utc


def legacy_model(entity):
    return apps.get_app_config(BridgeSettings().LEGACY_APP).get_model(entity.source_model)


def sample_value(field):
    """A typical, valid value of a legacy field."""
    if field.choices:
        return field.choices[0][0]
    kind = field.get_internal_type()
    if field.is_relation or kind in ("AutoField", "BigAutoField", "IntegerField", "BigIntegerField",
                                     "PositiveIntegerField", "SmallIntegerField", "PositiveSmallIntegerField"):
        return 1
    if kind == "BooleanField":
        return False
    if kind == "DateTimeField":
        return dt.datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    if kind == "DateField":
        return dt.date(2024, 5, 1)
    if kind == "JSONField":
        return ["/media/images/p.png"]
    if kind == "UUIDField":
        return uuid.UUID(int=5)
    if kind in ("FileField", "ImageField"):
        return "images/a.png"
    if field.name == "password":
        return "pbkdf2_sha256$600000$salt$" + "A" * 43 + "="
    return "x" * min(field.max_length or 8, 8)


def sample_target_value(column):
    if isinstance(column.type, sa.Integer):
        return 1
    if isinstance(column.type, sa.Boolean):
        return True
    if isinstance(column.type, sa.DateTime):
        return dt.datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    return "x" * min(getattr(column.type, "length", None) or 8, 8)


def sample_context(entity) -> t.TransformContext:
    """What the entity's declared contexts give the sample row (id 1)."""
    homes = {1: t.StudentHome(1, 1, dt.datetime(2024, 5, 1, tzinfo=UTC))}
    return t.TransformContext(student_homes=homes) if any(c.field == "student_homes" for c in entity.contexts) \
        else t.TransformContext()


def sample_row(entity) -> dict:
    if entity.source_model is None:  # derived rows: shaped like their target table
        return {name: sample_target_value(entity.target.c[name]) for name in entity.source_fields}
    fields = {f.attname: f for f in legacy_model(entity)._meta.concrete_fields}
    return {name: sample_value(fields[name]) for name in entity.source_fields}


@pytest.fixture(params=PROFILES)
def profile(request):
    return get_profile(request.param)


def test_every_legacy_field_read_exists_on_the_legacy_model(profile):
    for entity in profile.entities:
        if entity.source_model is None:
            assert entity.derived is not None and entity.source_fields[0] == "id", entity.name
            continue
        attnames = {f.attname for f in legacy_model(entity)._meta.concrete_fields}
        assert entity.source_fields[0] == "id"
        assert set(entity.source_fields) <= attnames, (entity.name, set(entity.source_fields) - attnames)
        for column in entity.files:
            assert column.source_field in entity.source_fields
        for rule in entity.by_meaning:
            assert rule.source_field in entity.source_fields
        assert set(entity.secret_fields) <= set(entity.source_fields)
        if entity.hashed_pin:
            assert entity.hashed_pin[1] in entity.source_fields


def test_every_target_column_is_produced_or_defaulted(profile):
    for entity in profile.entities:
        src = sample_row(entity)
        result = entity.transform(src, sample_context(entity))
        assert isinstance(result, t.Transformed), (entity.name, result)
        produced = set(result.row) | {c.target_column for c in entity.files}
        if entity.hashed_pin:
            produced.add(entity.hashed_pin[0])
        columns = {c.name: c for table in entity.tables for c in table.columns}
        assert produced <= set(columns), (entity.name, produced - set(columns))
        unfilled = [name for name, c in columns.items() if name not in produced
                    and not c.nullable and c.default is None and c.server_default is None]
        assert not unfilled, (entity.name, unfilled)


def test_a_typical_row_fits_its_target_table(profile):
    """Nullability and lengths: a valid legacy row passes the target's own rules, and no
    copied text column is narrower than its legacy field (only dirty data is rejected)."""
    for entity in profile.entities:
        src = sample_row(entity)
        row = entity.transform(src, sample_context(entity)).row
        row.update({c.target_column: src[c.source_field] for c in entity.files})
        filled_later = (entity.hashed_pin[0],) if entity.hashed_pin else ()
        for table in entity.tables:
            assert t.validate_row(row, table, entity.choices, filled_later) is None, (entity.name, table.name)
        if entity.source_model is None:
            continue
        legacy = {f.attname: f for f in legacy_model(entity)._meta.concrete_fields}
        for name, column in ((c.name, c) for table in entity.tables for c in table.columns):
            length = getattr(column.type, "length", None)
            field = legacy.get(name)
            if length and field is not None and name in entity.source_fields and field.max_length and not field.choices \
                    and length < field.max_length:
                # narrower than the legacy field: the profile must decide (synthesize,
                # shorten), not let a legal legacy value reject the row
                result = entity.transform({**src, name: "x" * field.max_length}, sample_context(entity))
                assert isinstance(result, t.Transformed), (entity.name, name, result)
                for table in entity.tables:
                    assert t.validate_row(result.row, table, entity.choices, filled_later) is None, \
                        (entity.name, name, length, field.max_length)


def test_declarations_point_at_what_exists(profile):
    seen: set[str] = set()
    assert {e.target.name for e in profile.entities} <= {t.name for t in profile.tables}
    for entity in profile.entities:
        columns = {c.name: c for table in entity.tables for c in table.columns}
        for column, parent in entity.foreign_keys.items():
            assert parent in seen, f"{entity.name}.{column} -> {parent}: parents come first"
            assert column in columns
            assert any(fk.column.table in profile.entity(parent).tables for fk in columns[column].foreign_keys)
        if entity.self_foreign_key:
            assert entity.self_foreign_key in columns
        for context in entity.contexts:
            assert set(context.needs) <= seen | {entity.name}
        for counter in entity.counters:
            counted = profile.entity(counter.counted).target.c
            assert counter.column in columns and set(counter.match) <= set(counted.keys())
            assert set(counter.match.values()) <= set(columns.keys())
            assert counter.where is None or counter.where in counted
        for name in (*entity.secret_columns, *(m.column for m in entity.by_meaning),
                     *(c.target_column for c in entity.files), *entity.choices):
            assert name in columns, (entity.name, name)
        if entity.page:
            assert "{id}" in entity.page.path
        seen.add(entity.name)
    for rule in (profile.checks.observer_scope, profile.checks.teacher_dashboards):
        if rule is not None:
            assert {rule.owner, *rule.seen} <= seen


def test_the_engine_names_no_entity_and_no_legacy_model():
    words = set()
    for name in PROFILES:
        for entity in get_profile(name).entities:
            words |= {entity.name, entity.target.name} | ({entity.source_model} if entity.source_model else set())
    pattern = re.compile(r"""["'](%s)["']""" % "|".join(map(re.escape, sorted(words))))
    found = [f"{path.relative_to(PACKAGE)}:{n}: {line.strip()}"
             for path in ENGINE for n, line in enumerate(path.read_text().splitlines(), 1)
             if pattern.search(line)]
    assert ENGINE and not found, "\n".join(found)


def test_a_table_written_by_a_mapped_entity_is_written_by_mapped_entities_only(profile):
    """The id map allocates from the ids it holds: an unmapped writer would go unseen."""
    writers: dict[str, list] = {}
    for entity in profile.entities:
        for table in entity.tables:
            writers.setdefault(table.name, []).append(entity)
    for table, entities in writers.items():
        if any(e.mapped for e in entities):
            assert all(e.mapped for e in entities), (table, [e.name for e in entities])
