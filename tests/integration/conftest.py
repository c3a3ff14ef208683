"""Fixtures for integration tests: berth's CRDs installed, and the operator running in-process.

The operator runs through kopf.testing.KopfRunner against the session's real
control plane and watches only the test's namespace. There is no kubelet, so
registry pods stay Pending: these tests check what berth writes to the API,
not a running registry (the e2e suite does that).
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from waiting import wait_for  # e2e/, put on sys.path by tests/conftest.py

ROOT = pathlib.Path(__file__).resolve().parents[2]
# Read by berth.handlers at import, so it must be set before the first import.
os.environ.setdefault("BERTH_RESYNC_SECONDS", "3")


@pytest.fixture(scope="session")
def crds(kubectl: Any) -> None:
    """Install berth's CRDs and wait until the API server serves them."""
    kubectl("apply", "--server-side", "--field-manager=berth-tests", "-f", str(ROOT / "crds"))
    for crd in ["registries.berth.dev", "imagerepositories.berth.dev"]:
        # `kubectl wait` fails outright while the CRD has no conditions yet, so poll instead.
        wait_for(
            lambda: "True" in kubectl("get", "crd", crd, "-o", "jsonpath={.status.conditions[?(@.type=='Established')].status}", check=False).stdout,
            60,
            f"CRD {crd} to be established",
        )


class Cluster:
    """Small JSON helpers over kubectl for one namespace."""

    def __init__(self, kubectl: Any, namespace: str) -> None:
        self.kubectl = kubectl
        self.namespace = namespace

    def apply(self, manifest: str | dict[str, Any], check: bool = True) -> Any:
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        return self.kubectl("apply", "-n", self.namespace, "-f", "-", input=text, check=check)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        result = self.kubectl("get", "-n", self.namespace, kind, name, "-o", "json", check=False)
        if result.returncode != 0:
            if "NotFound" in result.stderr:
                return None
            raise AssertionError(f"kubectl get {kind} {name} failed: {result.stderr}")
        loaded: dict[str, Any] = json.loads(result.stdout)
        return loaded

    def list(self, kind: str, selector: str = "app.kubernetes.io/managed-by=berth") -> list[dict[str, Any]]:
        result = self.kubectl("get", "-n", self.namespace, kind, "-l", selector, "-o", "json", "--show-managed-fields")
        items: list[dict[str, Any]] = json.loads(result.stdout)["items"]
        return items

    def condition(self, name: str, kind: str) -> dict[str, Any] | None:
        registry = self.get("registry", name) or {}
        for item in (registry.get("status") or {}).get("conditions") or []:
            if item["type"] == kind:
                found: dict[str, Any] = item
                return found
        return None

    def wait_condition(self, name: str, kind: str, status: str, reason: str | None = None, timeout: float = 60) -> dict[str, Any]:
        def matches() -> dict[str, Any] | None:
            item = self.condition(name, kind)
            if item and item["status"] == status and (reason is None or item["reason"] == reason):
                return item
            return None

        found: dict[str, Any] = wait_for(matches, timeout, f"Registry {name} condition {kind}={status} ({reason})")
        return found

    def events(self, name: str) -> list[dict[str, Any]]:
        result = self.kubectl("get", "-n", self.namespace, "events", "--field-selector", f"involvedObject.name={name}", "-o", "json")
        items: list[dict[str, Any]] = json.loads(result.stdout)["items"]
        return items


@pytest.fixture
def cluster(kubectl: Any, namespace: str, crds: None) -> Cluster:
    """kubectl helpers bound to the test's namespace, with the CRDs installed."""
    return Cluster(kubectl, namespace)


@pytest.fixture
def operator_factory(control_plane: Any, namespace: str, crds: None) -> Callable[[], contextlib.AbstractContextManager[Any]]:
    """Return a function that starts berth in-process for the test namespace, as a context manager."""
    from kopf.testing import KopfRunner

    os.environ["KUBECONFIG"] = str(control_plane.kubeconfig)
    os.environ["BERTH_REGISTRY_IMAGE"] = "berth.local/registry:test"

    @contextlib.contextmanager
    def start() -> Iterator[Any]:
        with KopfRunner(["run", "--standalone", "--namespace", namespace, "-m", "berth.handlers"], timeout=60) as runner:
            yield runner
        if runner.exception is not None:
            raise runner.exception

    return start


@pytest.fixture
def operator(operator_factory: Callable[[], contextlib.AbstractContextManager[Any]]) -> Iterator[Any]:
    """berth running for the duration of one test."""
    with operator_factory() as runner:
        yield runner
