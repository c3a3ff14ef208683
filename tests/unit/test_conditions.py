"""Condition computation, merging and transition detection."""

from __future__ import annotations

import datetime

import pytest

from berth import conditions

NOW = datetime.datetime(2026, 12, 4, 12, 0, tzinfo=datetime.timezone.utc)
LATER = NOW + datetime.timedelta(minutes=5)


def _by_type(items: list[conditions.Condition]) -> dict[str, conditions.Condition]:
    return {item.type: item for item in items}


@pytest.mark.parametrize(
    ("stalled", "desired", "ready", "rolled_out", "expected"),
    [
        (None, 1, 1, True, {"Ready": (True, "Available"), "Reconciling": (False, "Succeeded"), "Stalled": (False, "Succeeded")}),
        (None, 2, 1, True, {"Ready": (False, "Progressing"), "Reconciling": (True, "Progressing"), "Stalled": (False, "Succeeded")}),
        (None, 1, 1, False, {"Ready": (False, "Progressing"), "Reconciling": (True, "Progressing"), "Stalled": (False, "Succeeded")}),
        (None, 0, 0, True, {"Ready": (False, "ScaledToZero"), "Reconciling": (False, "Succeeded"), "Stalled": (False, "Succeeded")}),
        (("SecretNotFound", "missing"), 1, 1, True, {"Ready": (False, "SecretNotFound"), "Reconciling": (False, "SecretNotFound"), "Stalled": (True, "SecretNotFound")}),
    ],
)
def test_registry_conditions_table(stalled, desired, ready, rolled_out, expected) -> None:  # type: ignore[no-untyped-def]
    computed = _by_type(conditions.registry_conditions(stalled=stalled, desired_replicas=desired, ready_replicas=ready, rolled_out=rolled_out))
    assert {kind: (item.status, item.reason) for kind, item in computed.items()} == expected


def test_stalled_reasons_documented() -> None:
    assert conditions.SECRET_NOT_FOUND in conditions.STALLED_REASONS
    assert conditions.AVAILABLE not in conditions.STALLED_REASONS


def test_merge_keeps_transition_time_when_status_unchanged() -> None:
    computed = [conditions.Condition("Ready", False, "Progressing", "0/1")]
    first = conditions.merge([], computed, generation=1, now=NOW)
    second = conditions.merge(first, [conditions.Condition("Ready", False, "Progressing", "0/1 still")], generation=2, now=LATER)
    assert second[0]["lastTransitionTime"] == "2026-12-04T12:00:00Z"
    assert second[0]["observedGeneration"] == 2
    assert second[0]["message"] == "0/1 still"


def test_merge_moves_transition_time_on_change() -> None:
    first = conditions.merge([], [conditions.Condition("Ready", False, "Progressing", "")], generation=1, now=NOW)
    second = conditions.merge(first, [conditions.Condition("Ready", True, "Available", "")], generation=1, now=LATER)
    assert second[0]["lastTransitionTime"] == "2026-12-04T12:05:00Z"
    assert second[0]["status"] == "True"


def test_transitions_only_changed() -> None:
    first = conditions.merge([], [conditions.Condition("Ready", False, "Progressing", ""), conditions.Condition("Stalled", False, "Succeeded", "")], generation=1, now=NOW)
    second = conditions.merge(first, [conditions.Condition("Ready", True, "Available", ""), conditions.Condition("Stalled", False, "Succeeded", "x")], generation=1, now=LATER)
    assert [item["type"] for item in conditions.transitions(first, second)] == ["Ready"]
    assert conditions.transitions(second, second) == []


def test_problem_appended_to_waiting_message() -> None:
    computed = _by_type(conditions.registry_conditions(stalled=None, desired_replicas=1, ready_replicas=0, rolled_out=False, problem="Deployment FailedCreate: quota"))
    assert computed["Ready"].message == "0/1 registry pods are ready. Deployment FailedCreate: quota"
