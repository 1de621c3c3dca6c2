"""HTTP side of the read-only freeze (the database guard is in freeze.py).

While frozen:
- unsafe requests (POST, PUT, PATCH, DELETE) answer 503 with a friendly page,
  the message and Retry-After. Only the admin's login, logout and the freeze
  toggle itself get through; every other admin POST gets the same 503 (clearer
  than a database error half-way through a form).
- every admin HTML page carries a banner. It is inserted into the response
  rather than through a base_site.html override, because template overrides
  lose to django.contrib.admin's own (listed first) or to a project's templates.

- a write the database guard refused anyway (a view that writes on GET, or a POST
  in the seconds before this process's cached flag noticed the freeze) gets the
  same 503 page instead of a server error.

Install after AuthenticationMiddleware (the banner's toggle link is for superusers);
the system checks migration_bridge.W001 / W002 say when it is missing or misplaced.
"""
import re

from django.http import JsonResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse

from .freeze import LegacyFrozenError, format_time, get_freeze_state, retry_after_seconds
from .models import LegacyFreeze

SAFE_METHODS = {"GET", "HEAD", "OPTIONS", "TRACE"}
_ADMIN_WRITABLE = {"login", "logout"}
_TOGGLE_PREFIX = f"{LegacyFreeze._meta.app_label}_{LegacyFreeze._meta.model_name}_"
_BODY_TAG = re.compile(rb"<body\b[^>]*>", re.IGNORECASE)


def _admin_url_name(request):
    """The URL name when the request resolved to an admin site, else None."""
    match = getattr(request, "resolver_match", None)
    if match is None or "admin" not in match.app_names:
        return None
    return match.url_name or ""


def _writable_while_frozen(request) -> bool:
    name = _admin_url_name(request)
    return name is not None and (name in _ADMIN_WRITABLE or name.startswith(_TOGGLE_PREFIX))


def frozen_response(request, state):
    retry = retry_after_seconds()
    context = {"state": state, "since": format_time(state.since), "retry_minutes": max(1, round(retry / 60))}
    if not request.accepts("text/html") and request.accepts("application/json"):
        response = JsonResponse({"error": "read_only", "message": state.message,
                                 "since": context["since"]}, status=503)
    else:
        response = render(request, "migration_bridge/frozen.html", context, status=503)
    response["Retry-After"] = str(retry)
    return response


class FreezeMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if _admin_url_name(request) is not None:
            self._add_banner(request, response)
        return response

    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.method in SAFE_METHODS or _writable_while_frozen(request):
            return None
        state = get_freeze_state(use_cache=True)
        return frozen_response(request, state) if state.frozen else None

    def process_exception(self, request, exception):
        if isinstance(exception, LegacyFrozenError):
            return frozen_response(request, exception.state)
        return None

    def _add_banner(self, request, response):
        if (response.streaming or response.has_header("Content-Encoding")
                or "text/html" not in response.get("Content-Type", "")):
            return
        state = get_freeze_state(use_cache=True)
        if not state.frozen:
            return
        try:
            toggle_url = reverse(f"{request.resolver_match.namespace}:{_TOGGLE_PREFIX}changelist")
        except NoReverseMatch:
            toggle_url = None
        user = getattr(request, "user", None)
        banner = render_to_string("migration_bridge/banner.html", {
            "state": state, "since": format_time(state.since),
            "toggle_url": toggle_url if user is not None and user.is_superuser else None,
        }).encode(response.charset)
        content, count = _BODY_TAG.subn(lambda m: m.group(0) + banner, response.content, count=1)
        if count:
            response.content = content
            if response.has_header("Content-Length"):
                response["Content-Length"] = str(len(content))
