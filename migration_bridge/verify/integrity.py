"""Checks ``row_counts`` (the target holds exactly the rows the source justifies),
``foreign_keys`` (every reference in the target points at a row) and ``schema`` (the
indexes and foreign keys the Flask app declares are in the target)."""
from __future__ import annotations

import math

import sqlalchemy as sa

from .. import bookkeeping as bk
from ..idmap import unmapped_rows
from ..report import RootCauses
from .state import SHOW_IDS, CheckResult, State, offending


def root_causes(state: State) -> list[dict]:
    causes = RootCauses()
    for name, gone in state.gone.items():
        for root in gone.values():
            causes.add(name, root)
    return causes.as_list(state.profile.entity_names)


def check_row_counts(state: State) -> CheckResult:
    if not state.audited:
        return CheckResult("row_counts", False, "not decided: the content pass, which derives the expected "
                                                "rows from the source, did not finish")
    figures, bad, off = {}, [], {}
    total_expected = total_target = total_gone = 0
    for entity in state.profile.entities:
        name = entity.name
        expected, target = state.expected[name], state.target_ids[name]
        missing, extra = expected.members.difference(target.members), target.members.difference(expected.members)
        allowed = math.floor(state.options.tolerance * len(expected))
        checkpoint = state.checkpoints.get(name)
        complete = bool(checkpoint and checkpoint.done)
        gone, notes = state.gone[name], state.export_notes[name]
        ok = complete and len(missing) + len(extra) <= allowed
        figures[name] = {
            "source": len(state.source_ids[name]), "expected": len(expected), "target": len(target),
            "rejected_or_skipped_by_source_rules": len(gone), "missing": len(missing), "extra": len(extra),
            "allowed_difference": allowed, "export_complete": complete,
            "export_read": checkpoint.read if checkpoint else None,
            "export_rejected_or_skipped": len(notes),
        }
        if missing:
            shown = sorted(missing)[:SHOW_IDS]
            off[f"{name}: missing in target"] = offending(missing, export_said={
                str(i): f"{notes[i][0]}: {notes[i][1]}" if i in notes else "nothing (lost)" for i in shown})
        if extra:
            shown = sorted(extra)[:SHOW_IDS]
            off[f"{name}: in target, must not be"] = offending(extra, why={
                str(i): state.gone_reason[name].get(i, "not in the source") for i in shown})
        if not ok:
            why = "export not complete" if not complete else (
                f"{len(target)} rows, {len(expected)} expected ({len(missing)} missing, {len(extra)} extra)")
            bad.append(f"{name}: {why}")
        total_expected += len(expected)
        total_target += len(target)
        total_gone += len(gone)
    with state.engine.connect() as conn:
        for table, (count, ids) in unmapped_rows(conn, state.profile, SHOW_IDS).items():
            off[f"{table}: rows no legacy row maps to"] = {"count": count, "ids": ids}
            bad.append(f"{table}: {count} rows outside the id map")
    if bad:
        summary = "; ".join(bad)
    else:
        summary = (f"{len(state.profile.entities)} tables, {total_target} rows for {total_expected} expected; "
                   f"{total_gone} rows rejected or skipped for faults in the source, from "
                   f"{len(root_causes(state))} root causes")
        if off:
            summary += f"; within the tolerance of {state.options.tolerance:.3%}: " + ", ".join(off)
    return CheckResult("row_counts", not bad, summary, figures, off)


def check_foreign_keys(state: State) -> CheckResult:
    figures, off = {}, {}
    self_references = {(e.target.name, e.self_foreign_key) for e in state.profile.entities if e.self_foreign_key}
    with state.engine.connect() as conn:
        for table in state.profile.tables:
            for fk in sorted(table.foreign_keys, key=lambda f: f.parent.name):
                column, parent = fk.parent, fk.column
                p = parent.table.alias("p")
                dangling = (
                    sa.select(table.c.id)
                    .select_from(table.outerjoin(p, column == p.c[parent.name]))
                    .where(column.isnot(None), p.c[parent.name].is_(None))
                )
                count = conn.execute(sa.select(sa.func.count()).select_from(dangling.subquery())).scalar_one()
                label = f"{table.name}.{column.name} -> {parent.table.name}"
                figures[label] = count
                if count:
                    ids = list(conn.execute(dangling.order_by(table.c.id).limit(SHOW_IDS)).scalars())
                    kind = ("replies without their parent" if (table.name, column.name) in self_references
                            else "dangling")
                    off[label] = {"count": count, "ids": ids, "kind": kind}
    total = sum(figures.values())
    summary = (f"{len(figures)} foreign key columns, no dangling reference" if not total else
               "; ".join(f"{label}: {o['count']} {o['kind']}" for label, o in off.items()))
    return CheckResult("foreign_keys", not total, summary, figures, off)


def check_schema(state: State) -> CheckResult:
    """Every foreign key and index the profile declares is in the target, as the database's
    catalog shows it (an export drops them while it loads, and builds them after); and the
    export has none left waiting to be built, as it records them."""
    figures = {"foreign keys": 0, "indexes": 0}
    off = {}
    with state.engine.connect() as conn:
        inspector = sa.inspect(conn)
        for table in state.profile.tables:
            missing = []
            keys = {(tuple(fk["constrained_columns"]), fk["referred_table"])
                    for fk in inspector.get_foreign_keys(table.name)}
            for fk in table.foreign_key_constraints:
                figures["foreign keys"] += 1
                columns = tuple(fk.column_keys)
                if (columns, fk.referred_table.name) not in keys:
                    missing.append(f"foreign key ({', '.join(columns)}) -> {fk.referred_table.name}")
            indexed = ({tuple(ix["column_names"]) for ix in inspector.get_indexes(table.name)}
                       | {tuple(u["column_names"]) for u in inspector.get_unique_constraints(table.name)}
                       | {tuple(inspector.get_pk_constraint(table.name)["constrained_columns"])})
            for index in table.indexes:
                columns = tuple(c.name for c in index.columns)
                if not columns:  # an expression index: the catalog names no columns to compare
                    continue
                figures["indexes"] += 1
                if columns not in indexed:
                    missing.append(f"index ({', '.join(columns)})")
            if missing:
                off[f"{table.name}: missing"] = {"count": len(missing), "ids": missing}
        waiting = (conn.execute(sa.select(bk.deferred_schema.c.table_name, bk.deferred_schema.c.name)
                                .order_by(bk.deferred_schema.c.table_name, bk.deferred_schema.c.name)).all()
                   if inspector.has_table(bk.deferred_schema.name) else [])
    if waiting:
        off["dropped while loading, not built again (run export_to_flask again)"] = {
            "count": len(waiting), "ids": [f"{t}.{n}" for t, n in waiting[:SHOW_IDS]]}
    figures["waiting to be built"] = len(waiting)
    summary = (f"{figures['foreign keys']} foreign keys and {figures['indexes']} indexes in place" if not off
               else "; ".join(f"{label}: {o['count']}" for label, o in off.items()))
    return CheckResult("schema", not off, summary, figures, off)
