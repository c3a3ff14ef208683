"""Fixtures for the end-to-end suite: any cluster from KUBECONFIG with berth installed by its Helm chart.

The suite talks to the cluster only through real clients: kubectl, skopeo,
crane, regctl and httpx, which reach registries through their NodePort on
the node's InternalIP (inside the network namespace of the local cluster, or
kind's node container). It expects
berth already installed (make test-e2e does that on the local cluster;
e2e/kind.sh on kind). Node trust for registry CAs is cluster-specific and
comes from the command in BERTH_E2E_TRUST_REGISTRY (default:
e2e/cluster trust-registry).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pathlib
import re
import secrets
import shlex
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

E2E = pathlib.Path(__file__).resolve().parents[1]
ROOT = E2E.parent
if str(E2E) not in sys.path:
    sys.path.insert(0, str(E2E))

from waiting import wait_for  # noqa: E402  (e2e/ is a folder of scripts, not a package)
OPERATOR_NAMESPACE = os.environ.get("BERTH_E2E_OPERATOR_NAMESPACE", "berth-system")
# Time a new Registry gets to become Ready; the local cluster needs about 10 s.
READY_TIMEOUT = float(os.environ.get("BERTH_E2E_READY_TIMEOUT", "120"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test here as e2e."""
    for item in items:
        item.add_marker(pytest.mark.e2e)


def tool(name: str) -> str:
    """Return the path of a Go-built client from e2e/build-tools."""
    return subprocess.run([str(E2E / "build-tools"), name], check=True, capture_output=True, text=True).stdout.strip()


class Kubectl:
    """kubectl against $KUBECONFIG."""

    def __init__(self) -> None:
        self.binary = os.environ.get("BERTH_E2E_KUBECTL") or tool("kubectl")

    def __call__(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([self.binary, *args], input=input, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {shlex.join(args)} failed ({result.returncode}): {result.stderr}")
        return result

    def json(self, *args: str) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self(*args, "-o", "json").stdout)
        return loaded


@pytest.fixture(scope="session")
def kubectl() -> Kubectl:
    """kubectl for the cluster in $KUBECONFIG, after checking that berth runs there."""
    if not os.environ.get("KUBECONFIG"):
        pytest.fail("KUBECONFIG is not set; point it at a cluster where berth is installed (make test-e2e does both)")
    client = Kubectl()
    deployment = client("get", "-n", OPERATOR_NAMESPACE, "deployment", "berth", "-o", "json", check=False)
    if deployment.returncode != 0:
        pytest.fail(f"berth is not installed in namespace {OPERATOR_NAMESPACE}: {deployment.stderr.strip()}")
    return client


@pytest.fixture
def namespace(kubectl: Kubectl, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace that enforces the restricted Pod Security Standard."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].rstrip("-")
    name = f"e2e-{slug}-{secrets.token_hex(3)}"
    kubectl("create", "namespace", name)
    kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted", "berth.dev/test-namespace=true")
    yield name
    kubectl("delete", "registries.berth.dev", "--all", "-n", name, "--wait=true", "--timeout=60s", check=False)
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def apply_registry(kubectl: Kubectl, namespace: str, name: str = "e2e", **spec: Any) -> None:
    """Apply a Registry; storage defaults to emptyDir and the Service to NodePort, which the tests reach it through."""
    spec.setdefault("storage", {"emptyDir": {}})
    spec.setdefault("service", {"type": "NodePort"})
    manifest = {"apiVersion": "berth.dev/v1alpha1", "kind": "Registry", "metadata": {"name": name}, "spec": spec}
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))


def wait_ready(kubectl: Kubectl, namespace: str, name: str = "e2e", timeout: float = READY_TIMEOUT) -> dict[str, Any]:
    """Wait until the Registry's Ready condition is True for its current generation, and return it."""

    def ready() -> dict[str, Any] | None:
        registry = kubectl.json("get", "-n", namespace, "registry", name)
        status = registry.get("status") or {}
        generation = registry["metadata"]["generation"]
        for condition in status.get("conditions") or []:
            if condition["type"] == "Ready" and condition["status"] == "True" and status.get("observedGeneration") == generation:
                return registry
        return None

    found: dict[str, Any] = wait_for(ready, timeout, f"Registry {namespace}/{name} to be Ready")
    return found


class Access:
    """How a test reaches one registry: a local forwarded port, its CA and the admin login."""

    def __init__(self, host: str, ca_dir: pathlib.Path, username: str, password: str, auth_file: pathlib.Path) -> None:
        self.host = host
        self.ca_dir = ca_dir
        self.ca_file = ca_dir / "ca.crt"
        self.username = username
        self.password = password
        self.auth_file = auth_file


class _Forwarder:
    """A TCP forwarder from 127.0.0.1:<random port> to one address, one thread per connection.

    kubectl port-forward through Debian's containerd 1.6 drops connections
    under load, so the suite reaches a registry through its NodePort on the
    node's InternalIP instead. Clients still connect to localhost, which the
    registry's certificate covers.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass  # the other direction closed the pair
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.server.close()


def _registry_answers(url: str, context: ssl.SSLContext) -> bool:
    """Check that the registry serves its API root (401 without credentials)."""
    try:
        return httpx.get(url, verify=context, timeout=5).status_code == 401
    except httpx.HTTPError:
        return False


def node_address(kubectl: Kubectl) -> str:
    """Return the InternalIP of the first node (on the local cluster, an address inside the node's namespace)."""
    nodes = kubectl.json("get", "nodes")["items"]
    for address in nodes[0]["status"]["addresses"]:
        if address["type"] == "InternalIP":
            found: str = address["address"]
            return found
    pytest.fail("the first node has no InternalIP")


@contextlib.contextmanager
def registry_access(kubectl: Kubectl, namespace: str, name: str, tmp_path: pathlib.Path) -> Iterator[Access]:
    """Forward a local port to the Registry's NodePort and collect its CA and admin credentials."""
    registry = kubectl.json("get", "-n", namespace, "registry", name)
    status = registry["status"]
    node_endpoint = status.get("nodeEndpoint")
    if not node_endpoint:
        pytest.fail(f"Registry {namespace}/{name} has no nodeEndpoint; give it service.type NodePort")
    ca = kubectl.json("get", "-n", namespace, "secret", status["caSecretName"])
    admin = kubectl.json("get", "-n", namespace, "secret", status["credentialsSecretName"])
    ca_dir = tmp_path / "certs"
    ca_dir.mkdir(parents=True, exist_ok=True)
    (ca_dir / "ca.crt").write_bytes(base64.b64decode(ca["data"]["ca.crt"]))
    username = base64.b64decode(admin["data"]["username"]).decode()
    password = base64.b64decode(admin["data"]["password"]).decode()
    forwarder = _Forwarder((node_address(kubectl), int(node_endpoint.rsplit(":", 1)[1])))
    try:
        host = f"localhost:{forwarder.port}"
        auth_file = tmp_path / "auth.json"
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        auth_file.write_text(json.dumps({"auths": {host: {"auth": token}}}))
        auth_file.chmod(0o600)
        # kube-proxy programs a NodePort a moment after the pod turns Ready, so wait until the registry responds through it.
        context = ssl.create_default_context(cafile=str(ca_dir / "ca.crt"))
        wait_for(lambda: _registry_answers(f"https://{host}/v2/", context), 60, f"Registry {namespace}/{name} to answer on its NodePort")
        yield Access(host, ca_dir, username, password, auth_file)
    finally:
        forwarder.close()


def trust_registry(host: str, ca_file: pathlib.Path) -> None:
    """Make the node's container runtime trust a registry CA (cluster-specific command)."""
    command = shlex.split(os.environ.get("BERTH_E2E_TRUST_REGISTRY", f"{E2E / 'cluster'} trust-registry"))
    subprocess.run([*command, host, str(ca_file)], check=True, capture_output=True, text=True)
