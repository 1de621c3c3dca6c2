"""Check ``files``: every object the target's rows reference (``Entity.files``, read
by the one file rule, ``filerefs``) exists in the target storage with the size of the
legacy file it came from, read from the legacy storage itself."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa

from .. import bookkeeping as bk
from .. import filerefs
from ..filestore import SourceFiles, Target
from ..idmap import legacy_view
from ..rowpath import file_urls
from .state import SHOW_IDS, CheckResult, State, offending

FILE_HIT_RATIO = 0.999


def referenced_keys(state: State, conn) -> tuple[dict[str, str], int]:
    """Storage key -> first row referencing it ("media 12"), and how many entries are
    URLs outside the target storage (external)."""
    urls = file_urls(state.conf, state.profile)
    keys: dict[str, str] = {}
    external = 0
    for entity in state.profile.entities:
        if not entity.files:
            continue
        view = legacy_view(state.profile, entity)
        result = conn.execution_options(stream_results=True, yield_per=10_000).execute(
            sa.select(view.c.id, *[view.c[c.target_column] for c in entity.files]).order_by(view.c.id))
        for row in result:
            for column, value in zip(entity.files, row[1:]):
                found, outside = filerefs.keys_in_target(column, value, urls)
                external += outside
                for key in found:
                    keys.setdefault(key, f"{entity.name} {row[0]}")
    return keys, external


def legacy_names(state: State, conn) -> dict[str, str]:
    """Target key -> legacy storage name, where they differ (the media-id key scheme)."""
    if state.key_scheme == "preserve" or not sa.inspect(conn).has_table(bk.files.name):
        return {}
    return dict(conn.execute(sa.select(bk.files.c.key, bk.files.c.old_name)).all())


def _size(store, key: str) -> int | None:
    try:
        found = store.stat(key) if isinstance(store, SourceFiles) else store.state(key)
    except Exception:  # noqa: BLE001 - unreadable counts as absent
        return None
    return found.size if found is not None else None


def check_files(state: State, stores: tuple[SourceFiles, Target]) -> CheckResult:
    source_files, target = stores
    with state.engine.connect() as conn:
        keys, external = referenced_keys(state, conn)
        renamed = legacy_names(state, conn)

    def probe(key: str) -> tuple[str, int | None, int | None]:
        return key, _size(target, key), _size(source_files, renamed.get(key, key))

    hits, not_copied, missing_in_source, size_mismatch = [], [], [], []
    with ThreadPoolExecutor(max_workers=16) as pool:
        for key, got, expected in pool.map(probe, sorted(keys)):
            if got is None:
                (missing_in_source if expected is None else not_copied).append(key)
            elif expected is not None and got != expected:
                size_mismatch.append(key)
            else:
                hits.append(key)
                state.file_sizes[key], state.file_owners[key] = got, keys[key]  # for flask_pages
    total = len(keys)
    ratio_all = len(hits) / total if total else 1.0
    copyable = total - len(missing_in_source)
    ratio_copyable = len(hits) / copyable if copyable else 1.0
    accept = state.options.accept_missing_source_files
    ok = (ratio_copyable if accept else ratio_all) > FILE_HIT_RATIO
    figures = {
        "referenced_keys": total, "present_with_expected_size": len(hits),
        "not_copied": len(not_copied), "size_mismatch": len(size_mismatch),
        "missing_in_source_too": len(missing_in_source), "external_urls": external,
        "hit_ratio": round(ratio_all, 6), "hit_ratio_of_copyable": round(ratio_copyable, 6),
        "threshold": FILE_HIT_RATIO, "missing_source_files_accepted": accept,
        "expected_sizes_from": "legacy storage", "target_storage": state.conf.TARGET_STORAGE,
    }

    def listing(key_list):
        return offending(key_list, referenced_by=[keys[k] for k in sorted(key_list)[:SHOW_IDS]])

    off = {}
    if not_copied:
        off["missing in target storage"] = listing(not_copied)
    if size_mismatch:
        off["size differs from the source"] = listing(size_mismatch)
    if missing_in_source:
        off["missing in the legacy storage too"] = listing(missing_in_source)
    summary = (f"{len(hits)}/{total} referenced files present with the expected size "
               f"(hit ratio {ratio_all:.2%}")
    if missing_in_source:
        summary += (f"; {len(missing_in_source)} missing in the legacy storage too"
                    + (f", accepted: {ratio_copyable:.2%} of the copyable" if accept else ""))
    summary += f"; needs > {FILE_HIT_RATIO:.1%})"
    return CheckResult("files", ok, summary, figures, off)
