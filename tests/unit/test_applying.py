"""The skip-or-apply decision for children."""

from __future__ import annotations

from typing import Any

import pytest

from berth import applying


def _desired() -> dict[str, Any]:
    return applying.with_hash({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "ns", "labels": {}}, "data": {"a": "1"}})


@pytest.mark.parametrize(
    ("desired", "live", "expected"),
    [
        ({"a": 1}, {"a": 1, "b": 2}, True),
        ({"a": 1}, {"a": 2}, False),
        ({"a": {}}, {}, True),
        ({"a": []}, {}, True),
        ({"a": [1, 2]}, {"a": [1]}, False),
        ({"a": [{"x": 1}]}, {"a": [{"x": 1, "y": 2}]}, True),
        ({"a": None}, {}, True),
        ({"a": {"b": 1}}, {"a": "s"}, False),
    ],
)
def test_is_subset_table(desired: Any, live: Any, expected: bool) -> None:
    assert applying.is_subset(desired, live) is expected


def test_needs_apply_when_missing() -> None:
    assert applying.needs_apply(_desired(), None)


def test_skip_when_live_matches() -> None:
    live = _desired()
    live["metadata"]["resourceVersion"] = "7"
    assert not applying.needs_apply(_desired(), live)


def test_apply_when_hash_differs() -> None:
    live = _desired()
    live["metadata"]["annotations"][applying.HASH_ANNOTATION] = "old"
    assert applying.needs_apply(_desired(), live)


def test_apply_when_drifted() -> None:
    live = _desired()
    live["data"]["a"] = "edited"
    assert applying.needs_apply(_desired(), live)


def _child(labels: dict[str, str], owners: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "demo", "namespace": "ns", "labels": labels}
    if owners is not None:
        metadata["ownerReferences"] = owners
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata}


BERTH_LABELS = {"app.kubernetes.io/managed-by": "berth", "app.kubernetes.io/instance": "demo"}
OURS = {"kind": "Registry", "name": "demo", "uid": "ours", "controller": True}
THEIRS = {"kind": "Registry", "name": "other", "uid": "theirs", "controller": True}


@pytest.mark.parametrize(
    ("live", "conflict"),
    [
        (_child(BERTH_LABELS, [OURS]), None),
        (_child(BERTH_LABELS), None),
        (_child(BERTH_LABELS, [THEIRS]), "controlled by Registry other"),
        (_child({}), "not created by berth"),
        (_child({**BERTH_LABELS, "app.kubernetes.io/instance": "other"}), "not created by berth"),
    ],
)
def test_foreign_owner_table(live: dict[str, Any], conflict: str | None) -> None:
    found = applying.foreign_owner(_child(BERTH_LABELS, [OURS]), live)
    if conflict is None:
        assert found is None
    else:
        assert found is not None and conflict in found
