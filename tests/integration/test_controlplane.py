"""Integration tests proving that the session control plane is a working cluster.

They check the apiserver version, the namespace and kubectl fixtures, CEL
validation of a CRD, and that kube-controller-manager runs the garbage
collector, the namespace controller and the ServiceAccount token controller.
The last tests check that ControlPlane.start() reports failures clearly.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import kubernetes.client
import pytest
import yaml
from kubernetes.client.exceptions import ApiException

# tests/conftest.py puts e2e/ on sys.path.
import controlplane
from controlplane import E2E_DIR, ControlPlane, ControlPlaneError, process_identity

if TYPE_CHECKING:
    from conftest import Kubectl, SessionCluster

pytestmark = pytest.mark.integration

# Upper bound for any controller to act. In local runs they acted within 6
# seconds, so reaching this means the controller is not running.
CONTROLLER_DEADLINE = 60.0


def wait_until(condition: Callable[[], bool], description: str, timeout: float = CONTROLLER_DEADLINE) -> None:
    """Poll condition until it returns True, and fail the test after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting until {description}")
        time.sleep(0.25)


def is_not_found(read: Callable[[], object]) -> bool:
    """Tell whether read() raises HTTP 404."""
    try:
        read()
    except ApiException as error:
        if error.status == 404:
            return True
        raise
    return False


def pinned_kubernetes_version() -> str:
    """Return KUBERNETES_VERSION from e2e/versions.env."""
    for line in (E2E_DIR / "versions.env").read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "KUBERNETES_VERSION":
            return value.strip()
    raise AssertionError("KUBERNETES_VERSION is missing from e2e/versions.env")


def test_server_version_matches_pin(control_plane: SessionCluster, kube_api: kubernetes.client.ApiClient) -> None:
    if control_plane.local is None:
        pytest.skip("the cluster from BERTH_TEST_KUBECONFIG may run any version")

    version = kubernetes.client.VersionApi(kube_api).get_code()

    assert version.git_version == pinned_kubernetes_version()


def test_namespace_fixture_creates_namespace(kube_api: kubernetes.client.ApiClient, namespace: str) -> None:
    found = kubernetes.client.CoreV1Api(kube_api).read_namespace(namespace)

    assert found.status.phase == "Active"
    assert found.metadata.labels["berth.dev/test-namespace"] == "true"


def test_kubectl_fixture_reaches_cluster(kubectl: Kubectl, namespace: str) -> None:
    result = kubectl("get", "namespace", namespace, "--output=name")

    assert result.stdout.strip() == f"namespace/{namespace}"


def test_kubectl_fixture_raises_with_output(kubectl: Kubectl) -> None:
    with pytest.raises(subprocess.CalledProcessError) as raised:
        kubectl("get", "namespace", "no-such-namespace-for-berth")

    assert "NotFound" in str(raised.value)


def widget_crd(group: str) -> dict[str, object]:
    """Build a namespaced CRD whose spec has a CEL rule across two fields."""
    spec_schema = {
        "type": "object",
        "required": ["minReplicas", "maxReplicas"],
        "properties": {
            "minReplicas": {"type": "integer"},
            "maxReplicas": {"type": "integer"},
        },
        "x-kubernetes-validations": [{
            "rule": "self.minReplicas <= self.maxReplicas",
            "message": "minReplicas must not exceed maxReplicas",
        }],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [{
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": spec_schema}}},
            }],
        },
    }


def test_crd_cel_rule_rejects_invalid_object(
    kubectl: Kubectl, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    # A random group keeps runs on a shared cluster from touching each other's CRD.
    group = f"cel{secrets.token_hex(4)}.test.berth.dev"
    crd_name = f"widgets.{group}"
    kubectl("apply", "--filename=-", input=yaml.safe_dump(widget_crd(group)))
    try:
        kubectl("wait", "--for=condition=Established", "--timeout=60s", f"customresourcedefinition/{crd_name}")
        objects = kubernetes.client.CustomObjectsApi(kube_api)

        def widget(name: str, low: int, high: int) -> dict[str, object]:
            return {
                "apiVersion": f"{group}/v1",
                "kind": "Widget",
                "metadata": {"name": name},
                "spec": {"minReplicas": low, "maxReplicas": high},
            }

        objects.create_namespaced_custom_object(group, "v1", namespace, "widgets", widget("valid", 1, 3))
        with pytest.raises(ApiException) as rejected:
            objects.create_namespaced_custom_object(group, "v1", namespace, "widgets", widget("invalid", 5, 2))

        assert rejected.value.status == 422
        assert "minReplicas must not exceed maxReplicas" in rejected.value.body
        assert is_not_found(lambda: objects.get_namespaced_custom_object(group, "v1", namespace, "widgets", "invalid"))
    finally:
        kubectl("delete", f"customresourcedefinition/{crd_name}", "--wait=false")


def test_garbage_collector_deletes_dependent(kube_api: kubernetes.client.ApiClient, namespace: str) -> None:
    core = kubernetes.client.CoreV1Api(kube_api)
    owner = core.create_namespaced_config_map(
        namespace, kubernetes.client.V1ConfigMap(metadata=kubernetes.client.V1ObjectMeta(name="owner"))
    )
    reference = kubernetes.client.V1OwnerReference(
        api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
    )
    core.create_namespaced_config_map(
        namespace,
        kubernetes.client.V1ConfigMap(
            metadata=kubernetes.client.V1ObjectMeta(name="dependent", owner_references=[reference])
        ),
    )

    # Background propagation removes the owner at once and leaves the
    # dependent to kube-controller-manager's garbage collector.
    core.delete_namespaced_config_map("owner", namespace, propagation_policy="Background")

    wait_until(
        lambda: is_not_found(lambda: core.read_namespaced_config_map("dependent", namespace)),
        "the garbage collector deletes the dependent ConfigMap",
    )


def test_namespace_controller_finishes_deletion(kube_api: kubernetes.client.ApiClient) -> None:
    core = kubernetes.client.CoreV1Api(kube_api)
    name = f"deletion-{secrets.token_hex(4)}"
    core.create_namespace(kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(name=name)))
    core.create_namespaced_config_map(
        name, kubernetes.client.V1ConfigMap(metadata=kubernetes.client.V1ObjectMeta(name="content"))
    )

    core.delete_namespace(name)

    # The namespace stays Terminating until the namespace controller has
    # deleted its content and removed the kubernetes finalizer.
    wait_until(lambda: is_not_found(lambda: core.read_namespace(name)), f"namespace {name} is gone")


def test_token_controller_fills_legacy_token(kube_api: kubernetes.client.ApiClient, namespace: str) -> None:
    core = kubernetes.client.CoreV1Api(kube_api)
    # The token controller deletes token Secrets whose ServiceAccount does not
    # exist, so wait for the ServiceAccount controller to create "default".
    wait_until(
        lambda: not is_not_found(lambda: core.read_namespaced_service_account("default", namespace)),
        "the ServiceAccount controller creates the default ServiceAccount",
    )
    core.create_namespaced_secret(
        namespace,
        kubernetes.client.V1Secret(
            metadata=kubernetes.client.V1ObjectMeta(
                name="default-token", annotations={"kubernetes.io/service-account.name": "default"}
            ),
            type="kubernetes.io/service-account-token",
        ),
    )

    def token_data() -> dict[str, str]:
        return core.read_namespaced_secret("default-token", namespace).data or {}

    wait_until(lambda: "token" in token_data(), "the token controller fills in the token")
    assert "ca.crt" in token_data()
    assert token_data()["namespace"]


def test_start_reports_exited_component(tmp_path: Path) -> None:
    control_plane = ControlPlane(tmp_path, extra_args={"kube-apiserver": ["--no-such-flag"]})

    with pytest.raises(ControlPlaneError) as raised:
        control_plane.start()

    message = str(raised.value)
    assert "kube-apiserver exited with code" in message
    assert str(tmp_path / "logs" / "kube-apiserver.log") in message
    assert "unknown flag: --no-such-flag" in message
    assert control_plane.processes == {}


def test_start_reports_readiness_timeout(tmp_path: Path) -> None:
    control_plane = ControlPlane(tmp_path, startup_timeout=0.0)

    with pytest.raises(ControlPlaneError) as raised:
        control_plane.start()

    message = str(raised.value)
    assert "etcd was not ready after 0s" in message
    assert str(tmp_path / "logs" / "etcd.log") in message
    assert control_plane.processes == {}


def test_stop_ends_every_component(tmp_path: Path) -> None:
    control_plane = ControlPlane(tmp_path)
    control_plane.start()
    started = {name: (process.pid, process.identity) for name, process in control_plane.processes.items()}

    control_plane.stop()

    assert sorted(started) == ["etcd", "kube-apiserver", "kube-controller-manager"]
    for name, (pid, identity) in started.items():
        assert process_identity(pid) != identity, f"{name} (pid {pid}) still runs"
    assert not (tmp_path / "state.json").exists()


def test_start_retries_taken_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Hand out, once, a port that a bound socket already uses, as if another
    # process took the picked port before etcd bound it. The socket does not
    # listen, so the readiness probe gets "connection refused" at once.
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        taken_port = squatter.getsockname()[1]
        real_pick = controlplane.pick_free_port
        handed_out: list[int] = []

        def pick_taken_port_first(host: str) -> int:
            port = taken_port if not handed_out else real_pick(host)
            handed_out.append(port)
            return port

        monkeypatch.setattr(controlplane, "pick_free_port", pick_taken_port_first)

        with ControlPlane(tmp_path) as control_plane:
            assert control_plane.ports.etcd_client != taken_port

    assert handed_out[0] == taken_port
    assert "address already in use" in (tmp_path / "logs" / "etcd.log").read_text()
