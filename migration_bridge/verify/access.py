"""Checks ``observer_scope`` and ``teacher_dashboards``: who sees what in the target,
by the Flask app's own queries, equals who saw what in the legacy app, restricted to
migrated rows. The profile declares both rules (``Checks``)."""
from __future__ import annotations

from ..mapping import AccessRule
from .state import SHOW_IDS, CheckResult, State, offending

WHAT = {
    "observer_scope": ("see exactly the migrated rows they saw in the legacy app",
                       "see other rows than in the legacy app"),
    "teacher_dashboards": ("have the same migrated rows on their dashboards as in the legacy app",
                           "have dashboards that differ from the legacy app"),
}


def check_access(state: State, name: str) -> CheckResult:
    rule: AccessRule | None = getattr(state.profile.checks, name)
    same, differ = WHAT[name]
    if rule is None:
        return CheckResult(name, None, f"not run: the {state.profile.name!r} profile declares no such rule")
    who = rule.owner
    migrated = {seen: state.migrated(seen) for seen in rule.seen}
    legacy = rule.legacy(state.source)
    legacy_owners = state.source_ids[rule.owner]
    bad, details, compared = [], {}, 0
    with state.engine.connect() as conn:
        for owner in state.target_ids[rule.owner]:
            if owner not in legacy_owners:
                continue  # not a legacy row: row_counts lists it
            compared += 1
            # the Flask app's query runs on target ids; its answer is read back in legacy ids
            owner_entity = state.profile.entity(rule.owner)
            target = {seen: state.idmap.legacy_ids(state.profile.entity(seen), ids)
                      for seen, ids in rule.target(conn, state.idmap.target_id(owner_entity, owner)).items()}
            expected = legacy.get(owner, {})
            differences = {}
            for seen, ids in migrated.items():
                got = {i for i in target.get(seen, ()) if i in ids}
                want = {i for i in expected.get(seen, ()) if i in ids}
                if got != want:
                    differences[f"{seen}_missing"] = sorted(want - got)[:SHOW_IDS]
                    differences[f"{seen}_unexpected"] = sorted(got - want)[:SHOW_IDS]
            if differences:
                bad.append(owner)
                if len(details) < SHOW_IDS:
                    details[str(owner)] = differences
    figures = {f"{who}_compared": compared, f"{who}_differing": len(bad),
               **{f"{seen}_migrated": len(ids) for seen, ids in migrated.items()}}
    off = {who: offending(bad, differences=details)} if bad else {}
    summary = f"{compared} {who}: {same}" if not bad else f"{len(bad)} {who}: {differ}"
    return CheckResult(name, not bad, summary, figures, off)
