"""Checks ``observer_scope`` and ``teacher_dashboards``: who sees what in the target,
by the Flask app's own queries, equals who saw what in the legacy app, restricted to
migrated rows. The profile declares both rules (``Checks``)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from ..mapping import AccessRule
from .state import SHOW_IDS, CheckResult, State, offending

OWNER_THREADS = 2  # the owners' queries wait on the target most of the time

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
    owners = [o for o in state.target_ids[rule.owner] if o in legacy_owners]  # the others: row_counts lists them
    for entity in map(state.profile.entity, (rule.owner, *rule.seen)):
        state.idmap.legacy_ids(entity, ())  # the id maps, loaded once before the threads read them
    # the owners in parts at once (one after the other on SQLite, whose threads lock each other out)
    threads = 1 if state.engine.dialect.name == "sqlite" else OWNER_THREADS
    parts = [owners[k * len(owners) // threads:(k + 1) * len(owners) // threads] for k in range(threads)]
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bridge-verify-access") as pool:
        found = list(pool.map(lambda part: _compare_owners(state, rule, migrated, legacy, part), parts))
    bad = [owner for part in found for owner in part]
    details = {str(owner): differences for part in found for owner, differences in part.items()}
    details = dict(list(details.items())[:SHOW_IDS])
    figures = {f"{who}_compared": len(owners), f"{who}_differing": len(bad),
               **{f"{seen}_migrated": len(ids) for seen, ids in migrated.items()}}
    off = {who: offending(bad, differences=details)} if bad else {}
    summary = f"{len(owners)} {who}: {same}" if not bad else f"{len(bad)} {who}: {differ}"
    return CheckResult(name, not bad, summary, figures, off)


def _compare_owners(state: State, rule: AccessRule, migrated: dict, legacy: dict, owners: list[int]) -> dict:
    """Owner -> what differs, for the owners (ascending) whose view differs."""
    owner_entity = state.profile.entity(rule.owner)
    bad: dict[int, dict] = {}
    with state.engine.connect() as conn:
        for owner in owners:
            # the Flask app's query runs on target ids; its answer is read back in legacy ids
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
                bad[owner] = differences
    return bad
