"""An in-memory stand-in for berth.kube.Kube, for unit tests of reconciling.

It fakes only berth's own thin wrapper: objects are stored as dicts keyed by
(kind, namespace, name), apply merges like a simplified server-side apply,
and every write bumps resourceVersion so tests can count writes.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any


class FakeKube:
    """Keeps objects in a dict and records every write."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str | None, str], dict[str, Any]] = {}
        self.writes: list[tuple[str, str, str]] = []
        self._version = 0

    def add(self, obj: Mapping[str, Any]) -> None:
        """Store an object as if a user had created it."""
        metadata = obj["metadata"]
        self.objects[(obj["kind"], metadata.get("namespace"), metadata["name"])] = copy.deepcopy(dict(obj))

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        found = self.objects.get((kind, namespace, name))
        return copy.deepcopy(found) if found else None

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        metadata = obj["metadata"]
        key = (obj["kind"], metadata.get("namespace"), metadata["name"])
        self._version += 1
        stored = copy.deepcopy(dict(obj))
        stored["metadata"]["resourceVersion"] = str(self._version)
        stored["metadata"]["generation"] = int((self.objects.get(key) or {}).get("metadata", {}).get("generation", 0)) + 1
        if obj["kind"] == "Service":
            for port in stored["spec"]["ports"]:
                if stored["spec"]["type"] != "ClusterIP":
                    port.setdefault("nodePort", 31234)
        self.objects[key] = stored
        self.writes.append(("apply", obj["kind"], metadata["name"]))
        return copy.deepcopy(stored)

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> bool:
        self.writes.append(("delete", kind, name))
        return self.objects.pop((kind, namespace, name), None) is not None

    def child(self, kind: str, name: str, namespace: str = "ns") -> dict[str, Any]:
        """Return a stored object or fail the test."""
        found = self.objects.get((kind, namespace, name))
        if found is None:
            raise AssertionError(f"{kind} {namespace}/{name} was not applied; have {sorted(self.objects)}")
        return found
