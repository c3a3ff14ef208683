"""Pytest plumbing shared by every test tier.

Registers the `integration` and `e2e` markers, marks every test under
tests/integration as `integration`, and provides fixtures for a real
Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager from
e2e/controlplane.py). Fixtures are lazy, so the control plane starts only
when a selected test requests one of them: `-m "not integration"` never
starts it, and tests under tests/unit are rejected at collection if they
request it.

Set BERTH_TEST_KUBECONFIG to a kubeconfig path to run against that cluster
instead of starting one.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import kubernetes.client
import kubernetes.config
import pytest
from kubernetes.client.exceptions import ApiException

TESTS_DIR = Path(__file__).resolve().parent
E2E_DIR = TESTS_DIR.parent / "e2e"
INTEGRATION_DIR = TESTS_DIR / "integration"
UNIT_DIR = TESTS_DIR / "unit"

# e2e/ is a directory of scripts, not a package. Putting it on sys.path here
# also lets test modules `import controlplane`.
if str(E2E_DIR) not in sys.path:
    sys.path.insert(0, str(E2E_DIR))

from controlplane import ControlPlane, build_tools  # noqa: E402

EXISTING_KUBECONFIG_ENV = "BERTH_TEST_KUBECONFIG"
# Label on every namespace the `namespace` fixture creates, so leftovers on a
# shared cluster can be found with `kubectl get ns -l berth.dev/test-namespace`.
TEST_NAMESPACE_LABEL = "berth.dev/test-namespace"
CLUSTER_FIXTURES = frozenset({"control_plane", "kube_api", "namespace", "kubectl"})

MARKERS = {
    "integration": "needs the real control plane started by the test session",
    "e2e": "needs a real cluster from KUBECONFIG",
}


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers unless pyproject.toml already does."""
    registered = {line.split(":", 1)[0].strip() for line in config.getini("markers")}
    for name, description in MARKERS.items():
        if name not in registered:
            config.addinivalue_line("markers", f"{name}: {description}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark integration tests by location and reject unit tests that need a cluster."""
    offenders = []
    for item in items:
        path = Path(item.path)
        if INTEGRATION_DIR in path.parents:
            item.add_marker(pytest.mark.integration)
        # Only test functions have fixtures; doctest items, for example, do not.
        fixture_names = getattr(item, "fixturenames", ())
        if UNIT_DIR in path.parents and CLUSTER_FIXTURES.intersection(fixture_names):
            offenders.append(item.nodeid)
    if offenders:
        raise pytest.UsageError(
            "unit tests must not use cluster fixtures (" + ", ".join(sorted(CLUSTER_FIXTURES)) + "). "
            "Move these tests to tests/integration: " + ", ".join(offenders)
        )


@dataclass(frozen=True)
class SessionCluster:
    """The cluster that this test session talks to."""

    kubeconfig: Path
    # The control plane this session started, or None when the cluster comes
    # from BERTH_TEST_KUBECONFIG.
    local: ControlPlane | None


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SessionCluster]:
    """Start a control plane for the session, or use the BERTH_TEST_KUBECONFIG cluster."""
    existing = os.environ.get(EXISTING_KUBECONFIG_ENV)
    if existing:
        kubeconfig = Path(existing).expanduser()
        if not kubeconfig.is_file():
            pytest.fail(f"{EXISTING_KUBECONFIG_ENV}={existing} is not a file; unset it to start a local control plane")
        yield SessionCluster(kubeconfig, None)
        return

    # The temporary directory stays after the session (pytest keeps the last
    # three), so the component logs in its logs/ folder can be read afterwards.
    local = ControlPlane(tmp_path_factory.mktemp("controlplane"))
    local.start()
    try:
        yield SessionCluster(local.kubeconfig, local)
    finally:
        local.stop()


@pytest.fixture(scope="session")
def kube_api(control_plane: SessionCluster) -> Iterator[kubernetes.client.ApiClient]:
    """An ApiClient configured from the session cluster's kubeconfig."""
    client = kubernetes.config.new_client_from_config(
        config_file=str(control_plane.kubeconfig), persist_config=False
    )
    try:
        yield client
    finally:
        client.close()


def namespace_name_for(test_name: str) -> str:
    """Build a unique DNS-1123 label (at most 63 characters) from a test name."""
    slug = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")[:48].rstrip("-")
    return f"{slug or 'test'}-{secrets.token_hex(4)}"


@pytest.fixture
def namespace(kube_api: kubernetes.client.ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    """Create a uniquely named namespace for one test and delete it afterwards.

    The deletion is not awaited because the namespace controller finishes it
    in the background and no later test reuses the name.
    """
    core = kubernetes.client.CoreV1Api(kube_api)
    name = namespace_name_for(request.node.name)
    body = kubernetes.client.V1Namespace(
        metadata=kubernetes.client.V1ObjectMeta(name=name, labels={TEST_NAMESPACE_LABEL: "true"})
    )
    core.create_namespace(body)
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name, propagation_policy="Background")
        except ApiException as error:
            if error.status != 404:
                raise


class KubectlError(subprocess.CalledProcessError):
    """Failure of a kubectl command. Unlike its base class, str() includes stdout and stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


class Kubectl:
    """Callable that runs the built kubectl against the session cluster."""

    def __init__(self, binary: Path, kubeconfig: Path) -> None:
        self.binary = binary
        self.kubeconfig = kubeconfig

    def __call__(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run `kubectl --kubeconfig KUBECONFIG ARGS...` and capture its output as text.

        Raises KubectlError on a non-zero exit when check is true, and
        subprocess.TimeoutExpired after timeout seconds.
        """
        argv = [str(self.binary), f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, argv, result.stdout, result.stderr)
        return result


@pytest.fixture(scope="session")
def kubectl(control_plane: SessionCluster) -> Kubectl:
    """A callable that runs the kubectl built by e2e/build-tools against the session cluster."""
    return Kubectl(build_tools("kubectl")["kubectl"], control_plane.kubeconfig)
