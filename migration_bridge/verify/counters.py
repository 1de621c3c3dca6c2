"""Check ``counters``: every cached counter a profile declares (``Entity.counters``)
equals the total recomputed in the target; ``--fix-counts`` rewrites the wrong ones."""
from __future__ import annotations

import sqlalchemy as sa

from ..errors import BridgeError
from ..forked import Helper
from ..mapping import Profile
from .state import SHOW_IDS, CheckResult, State, offending


def wrong_counters(conn, profile: Profile) -> dict[str, dict[int, dict[str, int]]]:
    """{entity: {id: {counter column: correct value}}} of the rows whose counters differ."""
    wrong: dict[str, dict[int, dict[str, int]]] = {}
    for entity in profile.entities:
        if not entity.counters:
            continue
        table = entity.target
        joined, total_of = table, {}
        # counters of one counted table matched alike are counted in one scan of it
        groups: dict[tuple, list] = {}
        for counter in entity.counters:
            groups.setdefault((counter.counted, tuple(counter.match.items())), []).append(counter)
        for k, ((counted_name, match), counters) in enumerate(groups.items()):
            counted = profile.entity(counted_name).target
            keys = [counted.c[column] for column, _ in match]
            counts = [(sa.func.count(sa.case((counted.c[c.where] == sa.true(), 1))) if c.where else sa.func.count())
                      .label(f"n_{c.column}") for c in counters]
            sub = sa.select(*keys, *counts).where(*[key.isnot(None) for key in keys]) \
                .group_by(*keys).subquery(f"counted_{k}")
            joined = joined.outerjoin(sub, sa.and_(*[sub.c[column] == table.c[this] for column, this in match]))
            total_of.update({c.column: sa.func.coalesce(sub.c[f"n_{c.column}"], 0) for c in counters})
        columns = [c.column for c in entity.counters]
        totals = [total_of[c] for c in columns]
        stmt = (sa.select(table.c.id, *[table.c[c] for c in columns],
                          *[total.label(f"n_{c}") for c, total in zip(columns, totals)])
                .select_from(joined)
                .where(sa.or_(*[table.c[c] != total for c, total in zip(columns, totals)]))
                .order_by(table.c.id))
        found = {}
        for row in conn.execute(stmt).mappings():
            found[row["id"]] = {c: int(row[f"n_{c}"]) for c in columns if row[c] != int(row[f"n_{c}"])}
        if found:
            wrong[entity.name] = found
    return wrong


def fix_counters(conn, wrong: dict[str, dict[int, dict[str, int]]], profile: Profile, batch: int = 1000) -> None:
    for name, rows in wrong.items():
        table = profile.entity(name).target
        for columns in {tuple(sorted(correct)) for correct in rows.values()}:
            # only the counters change: a column's ``onupdate`` (updated_at) keeps its value
            untouched = {c.name: c for c in table.columns if c.onupdate is not None and c.name not in columns}
            update = table.update().where(table.c.id == sa.bindparam("b_id")).values(
                {**untouched, **{c: sa.bindparam(f"b_{c}") for c in columns}})
            params = [{"b_id": i, **{f"b_{c}": v for c, v in correct.items()}}
                      for i, correct in sorted(rows.items()) if tuple(sorted(correct)) == columns]
            for start in range(0, len(params), batch):
                conn.execute(update, params[start:start + batch])


def count_in_background(engine: sa.Engine, profile: Profile) -> Helper:
    """``wrong_counters`` summed by the target in a forked process while verify reads
    both sides' ids; its answer is ``check_counters``'s ``found``."""
    return Helper(_count, (engine, profile), "the process summing the target's counters", engine)


def _count(engine: sa.Engine, profile: Profile, send) -> None:
    with engine.connect() as conn:
        send.send(("done", wrong_counters(conn, profile)))


def check_counters(state: State, found: Helper) -> CheckResult:
    counted = [e for e in state.profile.entities if e.counters]
    try:
        wrong = found.receive()[1]
    except BridgeError as exc:  # the target refused the sums: this check fails, the others run
        return CheckResult("counters", False, f"could not run: {exc}")
    figures = {f"{e.name}_checked": len(state.target_ids[e.name]) for e in counted}
    figures.update({f"{e.name}_wrong": len(wrong.get(e.name, {})) for e in counted})
    off, fixed = {}, None
    if state.options.fix_counts and wrong:
        for name, rows in wrong.items():
            off[f"fixed: {name} counters"] = offending(rows)
        with state.engine.begin() as conn:
            fix_counters(conn, wrong, state.profile)
        fixed = {name: len(rows) for name, rows in wrong.items()}
        figures["fixed"] = fixed
        with state.engine.connect() as conn:
            wrong = wrong_counters(conn, state.profile)
        figures.update({f"{e.name}_wrong_after_fix": len(wrong.get(e.name, {})) for e in counted})
    for name, rows in wrong.items():
        off[f"{name}: counters differ from the recomputed totals"] = offending(
            rows, columns={str(i): sorted(correct) for i, correct in sorted(rows.items())[:SHOW_IDS]})
    declared = ", ".join(f"{e.name}.{c.column}" for e in counted for c in e.counters)
    if not wrong and fixed:
        summary = (f"fixed {', '.join(f'{n} {name} rows' for name, n in fixed.items())}; "
                   "all counters now equal the recomputed totals")
    elif not wrong:
        summary = (", ".join(f"{len(state.target_ids[e.name])} {e.name}" for e in counted)
                   + f": counters equal the recomputed totals ({declared})" if counted else "no cached counters")
    else:
        summary = (", ".join(f"{len(rows)} {name} rows with wrong counters" for name, rows in wrong.items())
                   + ("" if state.options.fix_counts else " (--fix-counts repairs them)"))
    return CheckResult("counters", not wrong, summary, figures, off)
