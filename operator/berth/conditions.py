"""Condition types, reasons, and the pure logic that merges and compares them.

Every reason berth writes is a constant here, so this module doubles as the
reference for every reason a condition can carry (docs/reference.md lists them too).
Conditions follow the Kubernetes API conventions: `lastTransitionTime` moves
only when `status` changes.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"

# Ready=True: every desired registry pod is ready and runs the current config.
AVAILABLE = "Available"
# Ready=False / Reconciling=True: children applied, pods not ready yet.
PROGRESSING = "Progressing"
# Ready=False: spec.replicas is 0.
SCALED_TO_ZERO = "ScaledToZero"
# Reconciling=False, Stalled=False: the last pass finished without a problem.
SUCCEEDED = "Succeeded"

# Warning Events that are not conditions.
# berth made a new CA because the stored one was missing or invalid: clients must trust the new ca.crt.
CA_ROTATED = "CARotated"

# Stalled=True reasons (a human must act). Each is also Ready=False's reason.
SECRET_NOT_FOUND = "SecretNotFound"
SECRET_KEY_MISSING = "SecretKeyMissing"
INVALID_SECRET = "InvalidSecret"
STORAGE_CLASS_NOT_FOUND = "StorageClassNotFound"
UNSUPPORTED = "Unsupported"
APPLY_REJECTED = "ApplyRejected"
INVALID_SPEC = "InvalidSpec"
NAME_CONFLICT = "NameConflict"

STALLED_REASONS = frozenset({
    SECRET_NOT_FOUND, SECRET_KEY_MISSING, INVALID_SECRET, STORAGE_CLASS_NOT_FOUND,
    UNSUPPORTED, APPLY_REJECTED, INVALID_SPEC, NAME_CONFLICT,
})


@dataclasses.dataclass(frozen=True)
class Condition:
    """One status condition, before a transition time is attached."""

    type: str
    status: bool
    reason: str
    message: str


def registry_conditions(
    *,
    stalled: tuple[str, str] | None,
    desired_replicas: int,
    ready_replicas: int,
    rolled_out: bool,
    problem: str | None = None,
) -> list[Condition]:
    """Compute Ready, Reconciling and Stalled for one Registry pass.

    `stalled` is (reason, message) when the pass hit a StalledError.
    `rolled_out` is true when the Deployment controller has observed the latest
    template and every replica runs it. `problem` is what the Deployment
    controller reports as failing, appended to the waiting message.
    """
    if stalled is not None:
        reason, message = stalled
        return [
            Condition(READY, False, reason, message),
            Condition(RECONCILING, False, reason, "Waiting for a change to the spec or to the referenced objects."),
            Condition(STALLED, True, reason, message),
        ]
    not_stalled = Condition(STALLED, False, SUCCEEDED, "The last reconcile succeeded.")
    if desired_replicas == 0:
        return [
            Condition(READY, False, SCALED_TO_ZERO, "spec.replicas is 0, so no registry pod runs."),
            Condition(RECONCILING, False, SUCCEEDED, "All children are applied."),
            not_stalled,
        ]
    if rolled_out and ready_replicas >= desired_replicas:
        return [
            Condition(READY, True, AVAILABLE, f"{ready_replicas}/{desired_replicas} registry pods are ready."),
            Condition(RECONCILING, False, SUCCEEDED, "All children are applied and rolled out."),
            not_stalled,
        ]
    if ready_replicas >= desired_replicas:
        waiting = f"{ready_replicas}/{desired_replicas} registry pods are ready; the rollout of the current configuration is still in progress."
    else:
        waiting = f"{ready_replicas}/{desired_replicas} registry pods are ready."
    if problem:
        waiting = f"{waiting} {problem}"
    return [
        Condition(READY, False, PROGRESSING, waiting),
        Condition(RECONCILING, True, PROGRESSING, waiting),
        not_stalled,
    ]


def image_repository_conditions() -> list[Condition]:
    """Compute the conditions of an ImageRepository, which this version stores but does not act on."""
    return [Condition(READY, False, UNSUPPORTED, "This version of berth validates and stores ImageRepository objects but runs no retention or replication for them yet.")]


def merge(
    previous: Sequence[Mapping[str, Any]],
    computed: Iterable[Condition],
    *,
    generation: int,
    now: datetime.datetime,
) -> list[dict[str, Any]]:
    """Render conditions for status, keeping lastTransitionTime when status did not change."""
    old = {item.get("type"): item for item in previous}
    stamp = now.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    result = []
    for condition in computed:
        status = "True" if condition.status else "False"
        before = old.get(condition.type)
        unchanged = before is not None and before.get("status") == status
        result.append({
            "type": condition.type,
            "status": status,
            "reason": condition.reason,
            "message": condition.message,
            "lastTransitionTime": before["lastTransitionTime"] if unchanged and before and before.get("lastTransitionTime") else stamp,
            "observedGeneration": generation,
        })
    return result


def transitions(
    previous: Sequence[Mapping[str, Any]], current: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """Return the conditions whose status or reason differs from before (Events are posted only for these)."""
    old = {item.get("type"): (item.get("status"), item.get("reason")) for item in previous}
    return [item for item in current if old.get(item["type"]) != (item["status"], item["reason"])]
