"""Decide whether a child needs a server-side apply, and apply it when it does.

An apply whose content equals what is live is a no-op on the API server,
but it still costs a request per child on every event. berth skips it when
the live object already has every field berth sets and carries the hash of
the last applied manifest. A removed field changes the hash, and drift made
by someone else breaks the subset check, so both still trigger an apply.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any, Protocol

from berth import conditions
from berth.errors import StalledError
from berth.kube import KubeError

HASH_ANNOTATION = "berth.dev/applied-hash"


class Applier(Protocol):
    """The part of berth.kube.Kube this module uses."""

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None: ...

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]: ...


def manifest_hash(obj: Mapping[str, Any]) -> str:
    """Return a stable hash of a manifest."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:32]


def with_hash(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of the manifest annotated with its own hash."""
    result = copy.deepcopy(dict(obj))
    annotations = result.setdefault("metadata", {}).setdefault("annotations", {})
    annotations[HASH_ANNOTATION] = manifest_hash(obj)
    return result


def is_subset(desired: Any, live: Any) -> bool:
    """Check that every field in `desired` has the same value in `live`; empty values match missing ones."""
    if isinstance(desired, Mapping):
        if not isinstance(live, Mapping):
            return not desired and live is None
        return all(is_subset(value, live.get(key)) for key, value in desired.items())
    if isinstance(desired, list):
        if not isinstance(live, list):
            return not desired and live is None
        return len(desired) == len(live) and all(is_subset(a, b) for a, b in zip(desired, live))
    if desired is None:
        return True
    return bool(desired == live)


def needs_apply(desired: Mapping[str, Any], live: Mapping[str, Any] | None) -> bool:
    """Decide whether `desired` (already hashed by with_hash) must be applied over `live`."""
    if live is None:
        return True
    expected_hash = desired["metadata"]["annotations"][HASH_ANNOTATION]
    if (live.get("metadata", {}).get("annotations") or {}).get(HASH_ANNOTATION) != expected_hash:
        return True
    return not is_subset(desired, live)


def foreign_owner(desired: Mapping[str, Any], live: Mapping[str, Any]) -> str | None:
    """Describe why `live` is not berth's to change, or return None when it is.

    An object belongs to berth when it carries berth's labels for the same
    instance and no other controller owns it. Anything else (a user's own
    Secret with the same name, another Registry's child) is left untouched.
    """
    expected_labels = desired["metadata"].get("labels") or {}
    live_metadata = live.get("metadata") or {}
    live_labels = live_metadata.get("labels") or {}
    expected_owners = {owner.get("uid") for owner in desired["metadata"].get("ownerReferences") or []}
    for owner in live_metadata.get("ownerReferences") or []:
        if owner.get("controller") and owner.get("uid") not in expected_owners:
            return f"it is controlled by {owner.get('kind')} {owner.get('name')}"
    for key in ("app.kubernetes.io/managed-by", "app.kubernetes.io/instance"):
        if live_labels.get(key) != expected_labels.get(key):
            return f"it was not created by berth for this Registry (label {key} is {live_labels.get(key)!r})"
    return None


def ensure(kube: Applier, obj: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """Apply `obj` unless the live object already matches. Return the live object and whether it was applied.

    An existing object that is not berth's (see foreign_owner) stalls instead
    of being overwritten. An API rejection of the manifest (400, 422) is
    something a human must fix, such as shrinking a PVC or changing an
    immutable field, so it stalls too.
    """
    desired = with_hash(obj)
    metadata = desired["metadata"]
    live = kube.get(desired["apiVersion"], desired["kind"], metadata.get("namespace"), metadata["name"])
    if live is not None:
        conflict = foreign_owner(desired, live)
        if conflict:
            raise StalledError(
                conditions.NAME_CONFLICT,
                f"{desired['kind']} {metadata['name']} already exists and {conflict}; berth will not overwrite it. "
                "Rename or delete that object, or give the Registry another name",
            )
    if live is not None and not needs_apply(desired, live):
        return live, False
    try:
        return kube.apply(desired), True
    except KubeError as error:
        if error.status in (400, 422):
            raise StalledError(
                conditions.APPLY_REJECTED,
                f"the API server rejected {desired['kind']} {metadata['name']}: {error.message}",
            ) from error
        raise
