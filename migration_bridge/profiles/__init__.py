"""Target profiles: each bundles a target schema, the migration into it, the queries the
checks share with the Flask app and how files are referenced.

Chosen by ``--target-schema`` or ``MIGRATION_BRIDGE['TARGET_SCHEMA']``: a registered name
(``plan``, the default, or ``datadeckv2``) or ``package.module:ATTRIBUTE`` naming a ``Profile`` of your own.
"""
from __future__ import annotations

import importlib

from ..errors import BridgeError
from ..mapping import Profile

DEFAULT = "plan"
_BUILTIN = {"plan": "migration_bridge.profiles.plan:PROFILE",
            "datadeckv2": "migration_bridge.profiles.datadeckv2:PROFILE"}
_registered: dict[str, Profile] = {}


def register(profile: Profile) -> Profile:
    _registered[profile.name] = profile
    return profile


def names() -> tuple[str, ...]:
    return tuple(sorted({*_BUILTIN, *_registered}))


def selected(name: str | None = None) -> str:
    """What names the profile: ``name``, else the setting, else ``plan``."""
    if name:
        return name
    from ..conf import bridge_settings

    return bridge_settings().TARGET_SCHEMA or DEFAULT


def get_profile(name: str | None = None) -> Profile:
    """The profile ``name`` (default: the setting, else ``plan``)."""
    name = selected(name)
    if name in _registered:
        return _registered[name]
    path = _BUILTIN.get(name, name)
    module, _, attribute = path.partition(":")
    if not attribute:
        raise BridgeError(f"unknown target schema {name!r} (choose from: {', '.join(names())}, "
                          "or give package.module:PROFILE)")
    try:
        profile = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as exc:
        raise BridgeError(f"target schema {name!r} cannot be loaded: {exc}") from None
    if not isinstance(profile, Profile):
        raise BridgeError(f"target schema {name!r} is not a migration_bridge.mapping.Profile")
    return profile
