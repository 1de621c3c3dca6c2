"""Check ``flask_pages`` (with ``--flask-url``): sampled pages of every entity that
declares one (``Entity.page``) answer 200 in the running Flask app."""
from __future__ import annotations

import os
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor

from ..errors import BridgeError
from .state import SHOW_IDS, CheckResult, State, mask_http_url, offending


def page_paths(state: State) -> dict[str, str]:
    """Entity -> page path with ``{id}``, a setting overriding the declared default."""
    return {e.name: state.raw_settings.get(e.page.setting) or e.page.path
            for e in state.profile.entities if e.page}


def check_page_settings(profile, raw_settings: dict) -> None:
    for entity in profile.entities:
        if entity.page:
            value = raw_settings.get(entity.page.setting)
            if value is not None and (not isinstance(value, str) or "{id}" not in value):
                raise BridgeError(f"bad settings: MIGRATION_BRIDGE[{entity.page.setting!r}] must be a path "
                                  "containing {id}")


# where --flask-cookie may come from instead: an option is visible in `ps` and shell history
COOKIE_VARIABLE = "MIGRATION_BRIDGE_FLASK_COOKIE"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not the page: a login page would otherwise pass as 200."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def fetcher(cookie: str | None):
    """``fetch(url) -> (status, body length)``: status an int, or the error's text; a
    redirect as ``"302 -> /login"``."""
    opener = urllib.request.build_opener(_NoRedirect)
    headers = {"Cookie": cookie} if cookie else {}

    def fetch(url: str):
        try:
            with opener.open(urllib.request.Request(url, headers=headers), timeout=15) as response:
                length = 0
                while chunk := response.read(1 << 16):  # a video is counted, not held
                    length += len(chunk)
                return response.status, length
        except urllib.error.HTTPError as exc:
            location = exc.headers.get("Location") if exc.headers else None
            return (f"{exc.code} -> {urllib.parse.urlsplit(location).path}" if location else exc.code), None
        except (urllib.error.URLError, OSError) as exc:
            return f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}", None

    return fetch


def sampled_files(state: State, rng, sample: int) -> list[tuple[str, str, int]]:
    """(label, URL path, size) of ``sample`` of the files the ``files`` check found in the
    target storage, at the URL the Flask app serves them (MEDIA_BASE_URL or the profile's):
    the app must answer each with its bytes."""
    from ..filerefs import url_of
    from ..rowpath import file_urls

    base = file_urls(state.conf, state.profile).target_base
    stored = sorted(state.file_sizes)
    picked = sorted(rng.sample(stored, min(sample, len(stored))))
    return [(state.file_owners.get(k, ""), url_of(k, base), state.file_sizes[k]) for k in picked]


def check_flask_pages(state: State) -> CheckResult:
    if not state.options.flask_url:
        return CheckResult("flask_pages", None, "not run (no --flask-url)")
    base = state.options.flask_url.rstrip("/")
    rng = state.rng("flask-pages")
    paths = page_paths(state)
    requests = []
    for table, template in paths.items():
        ids = list(state.target_ids[table])
        entity = state.profile.entity(table)
        for i in sorted(rng.sample(ids, min(state.options.sample, len(ids)))):
            # listed by legacy id, asked for by the id the Flask app knows the row by
            requests.append((table, i, base + template.format(id=state.idmap.target_id(entity, i)), None))
    for label, path, size in sampled_files(state, rng, state.options.sample):
        requests.append(("files", f"{path} ({label})", base + path, size))
    fetch = fetcher(state.options.flask_cookie or os.environ.get(COOKIE_VARIABLE))

    def get(req):
        table, i, url, size = req
        status, length = fetch(url)
        if status == 200 and size is not None and length != size:
            status = f"200 with {length} bytes, {size} expected"
        return table, i, status

    bad: dict[str, list] = defaultdict(list)
    statuses: dict[str, dict] = defaultdict(dict)
    with ThreadPoolExecutor(max_workers=8) as pool:
        for table, i, status in pool.map(get, requests):
            if status != 200:
                bad[table].append(i)
                statuses[table][str(i)] = status
    kinds = [*paths, "files"]
    figures = {"flask_url": mask_http_url(state.options.flask_url), "paths": paths,
               "logged_in": bool(state.options.flask_cookie or os.environ.get(COOKIE_VARIABLE)),
               "requested": {t: sum(1 for r in requests if r[0] == t) for t in kinds},
               "failed": {t: len(v) for t, v in bad.items()}}
    off = {f"{table} {'not' if table == 'files' else 'pages not'} 200": offending(
        ids, status={k: statuses[table][k] for k in list(statuses[table])[:SHOW_IDS]})
        for table, ids in bad.items()}
    n_bad = sum(len(v) for v in bad.values())
    summary = (f"{len(requests)} sampled pages and files answered 200" if not n_bad else
               f"{n_bad} of {len(requests)} sampled pages and files did not answer 200 ({why_pages_failed(statuses)})")
    if n_bad and not figures["logged_in"] and any("login" in str(v) for by in statuses.values()
                                                         for v in by.values()):
        summary += "; the app asks for a login: pass --flask-cookie with an admin's session cookie"
    return CheckResult("flask_pages", not n_bad, summary, figures, off)


def why_pages_failed(statuses: dict[str, dict]) -> str:
    """The answers instead of 200, most frequent first: '70× 404, 4× URLError: timed out'."""
    counts = Counter(str(status) for by_id in statuses.values() for status in by_id.values())
    return ", ".join(f"{n}× {status}" for status, n in counts.most_common(3)) + (
        f", {len(counts) - 3} other answers" if len(counts) > 3 else "")


def check_http_reachable(url: str, timeout: float = 10.0) -> None:
    """Raise BridgeError (exit 2) when nothing answers at ``url``: before any check runs.
    Any HTTP answer, an error status included, means the app is there."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise BridgeError(f"--flask-url {mask_http_url(url)} unreachable ({reason}): start the Flask app "
                          "or fix the URL, or leave --flask-url out to skip the page check") from None
