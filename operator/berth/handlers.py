"""Kopf glue: translate events into reconcile passes and write the status they return.

Handlers hold no logic of their own. Every Registry event, child event and
periodic resync ends in `reconcile_and_report`, which reads the Registry
fresh, runs `reconciling.reconcile_registry`, writes status once if it
changed, and reports condition transitions once: an Event on the Registry
and one log line. Stalled registries are retried by the resync timer, never
in a hot loop; unexpected errors are left to Kopf's backoff.

Kopf's own bookkeeping goes into `berth.dev/` annotations, not into status.
"""

from __future__ import annotations

import datetime
import logging
import random
import threading
from collections.abc import Mapping
from typing import Any

import kopf

from berth import conditions, masking, models, reconciling, settings as settings_module
from berth.errors import StalledError
from berth.kube import Kube, load_api_client

# Transitions are logged here, named by Registry, because a child event's Kopf logger names the child.
log = logging.getLogger(__name__)

CHILD_LABELS = {"app.kubernetes.io/managed-by": "berth", "app.kubernetes.io/name": "registry"}
CHILD_RESOURCES: list[tuple[str, str] | tuple[str, str, str]] = [
    ("apps", "v1", "deployments"),
    ("v1", "services"),
    ("v1", "configmaps"),
    ("v1", "secrets"),
    ("v1", "persistentvolumeclaims"),
    ("networking.k8s.io", "v1", "ingresses"),
]
RESYNC_SECONDS = settings_module.from_environment().resync_seconds

_locks: dict[tuple[str, str], threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock(namespace: str, name: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault((namespace, name), threading.Lock())


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Set Kopf's storage and posting policy, and create the API client shared by all handlers."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=models.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=models.GROUP, key="last-handled-configuration")
    # The resync timer needs a finalizer so Kopf can stop it before the Registry goes away.
    settings.persistence.finalizer = f"{models.GROUP}/finalizer"
    # berth posts its own Events on condition transitions; Kopf's per-handler Events would repeat them.
    settings.posting.enabled = False
    settings.execution.max_workers = 8
    # Filter child watches on the API server, so the operator never receives other Secrets or ConfigMaps.
    selector = ",".join(f"{key}={value}" for key, value in sorted(CHILD_LABELS.items()))
    for resource in CHILD_RESOURCES:
        settings.watching.label_selectors[resource] = selector
    masking.quiet_http_loggers()
    operator_settings = settings_module.from_environment()
    memo.settings = operator_settings
    memo.kube = Kube(load_api_client(), field_manager=operator_settings.field_manager)


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """Log in with the pod's service account, or else with $KUBECONFIG as it is when the operator starts."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.resume(models.GROUP, models.VERSION, "registries")
@kopf.on.create(models.GROUP, models.VERSION, "registries")
@kopf.on.update(models.GROUP, models.VERSION, "registries")
def registry_changed(meta: kopf.Meta, memo: Any, **_: Any) -> None:
    """Reconcile a Registry whose spec changed, that was created, or that existed when berth started."""
    reconcile_and_report(memo, meta["namespace"], meta["name"])


def _resync_delay(**_: Any) -> float:
    # Spread the first resync of many Registries over one interval.
    return random.uniform(RESYNC_SECONDS / 2, RESYNC_SECONDS)


@kopf.timer(models.GROUP, models.VERSION, "registries", interval=RESYNC_SECONDS, initial_delay=_resync_delay)
def registry_resync(meta: kopf.Meta, memo: Any, **_: Any) -> None:
    """Repair drift, renew certificates and retry stalled Registries on a fixed interval (BERTH_RESYNC_SECONDS)."""
    reconcile_and_report(memo, meta["namespace"], meta["name"])


@kopf.on.event(*CHILD_RESOURCES[0], labels=CHILD_LABELS)
@kopf.on.event(*CHILD_RESOURCES[1], labels=CHILD_LABELS)
@kopf.on.event(*CHILD_RESOURCES[2], labels=CHILD_LABELS)
@kopf.on.event(*CHILD_RESOURCES[3], labels=CHILD_LABELS)
@kopf.on.event(*CHILD_RESOURCES[4], labels=CHILD_LABELS)
@kopf.on.event(*CHILD_RESOURCES[5], labels=CHILD_LABELS)
def child_changed(event: Mapping[str, Any], meta: kopf.Meta, memo: Any, **_: Any) -> None:
    """Reconcile the owning Registry when one of its children changes or is deleted.

    This repairs a deleted or edited child within seconds and moves the Ready
    condition as the Deployment's pods become ready. The initial listing at
    startup is skipped, because the resume handler covers it.
    """
    if event.get("type") is None:
        return
    registry_name = (meta.get("labels") or {}).get("app.kubernetes.io/instance")
    if registry_name:
        reconcile_and_report(memo, meta["namespace"], registry_name)


@kopf.on.event(models.GROUP, models.VERSION, "imagerepositories")
def image_repository_seen(event: Mapping[str, Any], body: kopf.Body, memo: Any, **_: Any) -> None:
    """Tell the user in status that berth does not act on ImageRepository objects yet."""
    if event.get("type") == "DELETED":
        return
    kube: Kube = memo.kube
    metadata = body["metadata"]
    generation = int(metadata.get("generation") or 0)
    previous = dict(body.get("status") or {})
    now = datetime.datetime.now(datetime.timezone.utc)
    merged = conditions.merge(previous.get("conditions") or [], conditions.image_repository_conditions(), generation=generation, now=now)
    status = {**previous, "observedGeneration": generation, "conditions": merged}
    if status != previous:
        kube.patch_status(models.API_VERSION, "ImageRepository", metadata["namespace"], metadata["name"], status)


def reconcile_and_report(memo: Any, namespace: str, name: str) -> None:
    """Run one pass for a Registry, write its status if it changed, and report transitions."""
    kube: Kube = memo.kube
    operator_settings: settings_module.Settings = memo.settings
    with _lock(namespace, name):
        body = kube.get(models.API_VERSION, "Registry", namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return
        now = datetime.datetime.now(datetime.timezone.utc)
        try:
            registry = models.parse_registry(body)
        except StalledError as error:
            outcome = _stalled_outcome(body, error)
        else:
            outcome = reconciling.reconcile_registry(registry, kube, operator_settings, now)
        _write_status(kube, body, outcome, now)


def _stalled_outcome(body: Mapping[str, Any], error: StalledError) -> reconciling.Outcome:
    stalled = (error.reason, error.message)
    return reconciling.Outcome(
        status={"observedGeneration": int(body["metadata"].get("generation") or 0)},
        conditions=conditions.registry_conditions(stalled=stalled, desired_replicas=0, ready_replicas=0, rolled_out=False),
        stalled=stalled,
    )


def _write_status(kube: Kube, body: Mapping[str, Any], outcome: reconciling.Outcome, now: datetime.datetime) -> None:
    metadata = body["metadata"]
    previous_status = body.get("status") or {}
    previous_conditions = previous_status.get("conditions") or []
    generation = int(metadata.get("generation") or 0)
    merged = conditions.merge(previous_conditions, outcome.conditions, generation=generation, now=now)
    status = {**outcome.status, "conditions": merged}
    if outcome.stalled:
        # Keep what is known about the endpoint and credentials while stalled; clear nothing.
        status = {**{key: value for key, value in previous_status.items() if key != "conditions"}, **status}
    if _without_nones(status) != _without_nones(previous_status):
        # Fields dropped from the status are sent as null so the merge patch removes them.
        patch = {key: None for key in previous_status if key not in status}
        patch.update(status)
        kube.patch_status(models.API_VERSION, "Registry", metadata["namespace"], metadata["name"], patch)
    for changed in conditions.transitions(previous_conditions, merged):
        _report(kube, body, changed, now)
    for reason, message in outcome.warnings:
        log.warning("Registry %s/%s: %s: %s", metadata["namespace"], metadata["name"], reason, message)
        kube.post_event(body, "Warning", reason, message, now)


def _report(kube: Kube, body: Mapping[str, Any], condition: Mapping[str, Any], now: datetime.datetime) -> None:
    kind, status, reason, message = condition["type"], condition["status"], condition["reason"], condition["message"]
    name = f"{body['metadata']['namespace']}/{body['metadata']['name']}"
    if kind == conditions.STALLED and status == "True":
        log.warning("Registry %s is stalled (%s): %s", name, reason, message)
        kube.post_event(body, "Warning", reason, message, now)
    elif kind == conditions.READY and status == "True":
        log.info("Registry %s is ready: %s", name, message)
        kube.post_event(body, "Normal", reason, message, now)
    elif kind == conditions.RECONCILING and status == "True":
        kube.post_event(body, "Normal", reason, message, now)


def _without_nones(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _without_nones(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nones(item) for item in value]
    return value
