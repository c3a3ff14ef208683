"""The Helm chart in charts/berth and the plain manifests rendered from it.

The chart's CRDs must be byte-for-byte copies of crds/, manifests/berth.yaml
must match what charts/render-manifests renders now, and the chart must
lint cleanly and render what berth needs in both RBAC modes: cluster-wide
(watchNamespaces empty) and per-namespace. The helm binary comes from
e2e/build-tools (cached after the first build); tests that need it are
skipped only when it cannot be built.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from berth import __version__
from controlplane import ControlPlaneError, build_tools
from helpers import ROOT

CHART = ROOT / "charts" / "berth"
MANIFESTS = ROOT / "manifests" / "berth.yaml"
RELEASE_NAMESPACE = "berth-system"
WATCHED = ["team-a", "team-b"]

# What berth does in each watched namespace, as (apiGroup, resource) -> verbs.
NAMESPACED_RULES = {
    ("berth.dev", "registries"): {"get", "list", "watch", "patch", "update"},
    ("berth.dev", "registries/status"): {"get", "patch", "update"},
    ("berth.dev", "registries/finalizers"): {"update"},
    ("berth.dev", "imagerepositories"): {"get", "list", "watch"},
    ("berth.dev", "imagerepositories/status"): {"get", "patch"},
    ("", "secrets"): {"get", "list", "watch", "create", "patch", "update"},
    ("", "configmaps"): {"get", "list", "watch", "create", "patch", "update"},
    ("", "services"): {"get", "list", "watch", "create", "patch", "update"},
    ("", "persistentvolumeclaims"): {"get", "list", "watch", "create", "patch", "update"},
    ("apps", "deployments"): {"get", "list", "watch", "create", "patch", "update"},
    ("networking.k8s.io", "ingresses"): {"get", "list", "watch", "create", "patch", "update", "delete"},
    ("", "events"): {"create", "patch"},
}
# Cluster-scoped reads, in every mode.
CLUSTER_RULES = {
    ("storage.k8s.io", "storageclasses"): {"get"},
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
}
# Kopf lists and watches namespaces only when given explicit namespaces.
NAMESPACE_OBSERVER_RULES = {("", "namespaces"): {"list", "watch"}}


@pytest.fixture(scope="session")
def helm() -> Path:
    """The helm binary pinned in e2e/versions.env."""
    try:
        return build_tools("helm")["helm"]
    except ControlPlaneError as error:
        pytest.skip(f"helm could not be built by e2e/build-tools (it needs Go and the Go module proxy): {error}")


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=120, check=False)


def render(helm: Path, *values: str) -> list[dict[str, Any]]:
    """Render the chart as release `berth` in berth-system with `--set` values, and parse it."""
    arguments = ["template", "berth", str(CHART), "--namespace", RELEASE_NAMESPACE]
    for value in values:
        arguments += ["--set", value]
    result = run_helm(helm, *arguments)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def watch_values(namespaces: Sequence[str]) -> list[str]:
    return [f"watchNamespaces[{index}]={namespace}" for index, namespace in enumerate(namespaces)]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def rule_table(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    """Flatten a Role's rules into (apiGroup, resource) -> verbs."""
    table: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                table.setdefault((group, resource), set()).update(rule["verbs"])
    return table


def operator_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = by_kind(docs, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


# --- files ---------------------------------------------------------------------


def test_chart_crds_match_crds_dir() -> None:
    sources = {path.name: path.read_bytes() for path in (ROOT / "crds").glob("*.yaml")}
    copies = {path.name: path.read_bytes() for path in (CHART / "crds").glob("*.yaml")}
    assert sorted(copies) == sorted(sources), "charts/berth/crds/ lists other files than crds/; run charts/sync-crds"
    stale = [name for name in sources if copies[name] != sources[name]]
    assert stale == [], f"charts/berth/crds/ copies differ from crds/: {stale}; run charts/sync-crds"


def test_chart_app_version_is_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == __version__


def _value_paths(values: dict[str, Any], prefix: str = "") -> list[str]:
    paths = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        paths.append(path)
        # Free-form Kubernetes objects are typed as a whole.
        if isinstance(value, dict) and key not in {"resources", "affinity", "annotations", "podAnnotations", "podLabels", "nodeSelector"}:
            paths += _value_paths(value, f"{path}.")
    return paths


def _schema_at(schema: dict[str, Any], path: str) -> dict[str, Any]:
    node = schema
    for key in path.split("."):
        node = node["properties"][key]
        if "$ref" in node:
            node = schema["definitions"][node["$ref"].rsplit("/", 1)[1]]
    return node


def test_schema_types_every_value() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["additionalProperties"] is False
    untyped = [path for path in _value_paths(values) if "type" not in _schema_at(schema, path)]
    assert untyped == []
    assert sorted(schema["properties"]) == sorted(values)


# --- helm ------------------------------------------------------------------------


@pytest.mark.parametrize("strict", [False, True], ids=["lint", "lint-strict"])
@pytest.mark.parametrize("namespaces", [[], WATCHED], ids=["cluster-wide", "namespaced"])
def test_helm_lint(helm: Path, strict: bool, namespaces: list[str]) -> None:
    arguments = ["lint", str(CHART), *(["--strict"] if strict else [])]
    for value in watch_values(namespaces):
        arguments += ["--set", value]
    result = run_helm(helm, *arguments)
    assert result.returncode == 0, result.stdout + result.stderr


def test_template_cluster_wide(helm: Path) -> None:
    docs = render(helm)
    assert sorted(doc["kind"] for doc in docs) == ["ClusterRole", "ClusterRole", "ClusterRoleBinding", "ClusterRoleBinding", "Deployment", "ServiceAccount"]
    roles = {role["metadata"]["name"]: role for role in by_kind(docs, "ClusterRole")}
    assert rule_table(roles["berth"]) == NAMESPACED_RULES
    assert rule_table(roles["berth-cluster"]) == CLUSTER_RULES
    for binding in by_kind(docs, "ClusterRoleBinding"):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "berth", "namespace": RELEASE_NAMESPACE}]
    assert operator_container(docs)["args"] == ["run", "--log-format=full", "--health-port=8080", "--all-namespaces"]


def test_template_namespaced(helm: Path) -> None:
    docs = render(helm, *watch_values(WATCHED))
    assert not [role for role in by_kind(docs, "ClusterRole") if role["metadata"]["name"] == "berth"]
    (cluster_role,) = by_kind(docs, "ClusterRole")
    assert rule_table(cluster_role) == CLUSTER_RULES | NAMESPACE_OBSERVER_RULES
    roles = by_kind(docs, "Role")
    assert sorted(role["metadata"]["namespace"] for role in roles) == WATCHED
    for role in roles:
        assert rule_table(role) == NAMESPACED_RULES
    bindings = by_kind(docs, "RoleBinding")
    assert sorted(binding["metadata"]["namespace"] for binding in bindings) == WATCHED
    for binding in bindings:
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "berth"}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "berth", "namespace": RELEASE_NAMESPACE}]
    args = operator_container(docs)["args"]
    assert "--all-namespaces" not in args
    assert [arg for arg in args if arg.startswith("--namespace=")] == ["--namespace=team-a", "--namespace=team-b"]


@pytest.mark.parametrize("namespaces", [[], WATCHED], ids=["cluster-wide", "namespaced"])
def test_rbac_has_no_wildcards(helm: Path, namespaces: list[str]) -> None:
    docs = render(helm, *watch_values(namespaces))
    for role in by_kind(docs, "ClusterRole") + by_kind(docs, "Role"):
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], f"{role['metadata']['name']}: {rule}"
            assert "nonResourceURLs" not in rule
            assert "resourceNames" not in rule


def test_deployment_defaults(helm: Path) -> None:
    docs = render(helm)
    (deployment,) = by_kind(docs, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "berth"
    assert pod["automountServiceAccountToken"] is True
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "seccompProfile": {"type": "RuntimeDefault"}}
    container = operator_container(docs)
    assert container["image"] == f"berth.local/operator:{__version__}"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert {item["name"]: item["value"] for item in container["env"]} == {
        "BERTH_REGISTRY_IMAGE": "docker.io/library/registry:3.0.0",
        "BERTH_RESYNC_SECONDS": "60",
        "BERTH_CLUSTER_DOMAIN": "cluster.local",
    }
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["ports"] == [{"name": "health", "containerPort": 8080, "protocol": "TCP"}]
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"][0]["name"] == "tmp"
    assert "emptyDir" in pod["volumes"][0]


def test_deployment_honours_values(helm: Path) -> None:
    docs = render(
        helm,
        "image.repository=registry.example.com/berth",
        "image.tag=9.9.9",
        "image.pullPolicy=Always",
        "imagePullSecrets[0].name=pull",
        "registryImage=mirror.example.com/registry:3.0.0",
        "resyncSeconds=30",
        "clusterDomain=example.internal",
        "logFormat=json",
        "verbose=true",
        "nodeSelector.kubernetes\\.io/os=linux",
        "tolerations[0].key=dedicated",
        "tolerations[0].operator=Exists",
        "priorityClassName=system-cluster-critical",
        "podLabels.team=platform",
        "serviceAccount.name=operator",
    )
    (deployment,) = by_kind(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = operator_container(docs)

    assert container["image"] == "registry.example.com/berth:9.9.9"
    assert container["imagePullPolicy"] == "Always"
    assert pod["imagePullSecrets"] == [{"name": "pull"}]

    assert container["args"] == ["run", "--log-format=json", "--health-port=8080", "--all-namespaces", "--verbose"]
    assert {item["name"]: item["value"] for item in container["env"]} == {
        "BERTH_REGISTRY_IMAGE": "mirror.example.com/registry:3.0.0",
        "BERTH_RESYNC_SECONDS": "30",
        "BERTH_CLUSTER_DOMAIN": "example.internal",
    }

    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert deployment["spec"]["template"]["metadata"]["labels"]["team"] == "platform"

    assert pod["serviceAccountName"] == "operator"
    (account,) = by_kind(docs, "ServiceAccount")
    assert account["metadata"]["name"] == "operator"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("unknownKey=1", "additional properties 'unknownKey' not allowed"),
        ("resyncSeconds=0", "/resyncSeconds"),
        ("logFormat=xml", "/logFormat"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("watchNamespaces[0]=team-*", "/watchNamespaces/0"),
        ("verbose=maybe", "/verbose"),
        ("serviceAccount.create=false", "serviceAccount.name is required"),
    ],
)
def test_invalid_values_rejected(helm: Path, value: str, message: str) -> None:
    result = run_helm(helm, "template", "berth", str(CHART), "--set", value)
    assert result.returncode != 0
    assert message in result.stderr


def test_notes_name_secrets(helm: Path) -> None:
    result = run_helm(helm, "install", "berth", str(CHART), "--namespace", RELEASE_NAMESPACE, "--dry-run=client")
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    for expected in ("kind: Registry", "demo-admin", "demo-ca", "ca.crt", "status.endpoint"):
        assert expected in notes


# --- manifests/berth.yaml ----------------------------------------------------------


def test_manifests_are_current(helm: Path) -> None:
    result = subprocess.run(
        [str(ROOT / "charts" / "render-manifests"), "--stdout"],
        capture_output=True, text=True, timeout=120, check=False, env={**os.environ, "HELM": str(helm)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == MANIFESTS.read_text(), "manifests/berth.yaml is stale; run charts/render-manifests"


def test_manifests_order_and_namespace() -> None:
    docs = [doc for doc in yaml.safe_load_all(MANIFESTS.read_text()) if doc]
    kinds = [doc["kind"] for doc in docs]
    assert kinds[:3] == ["CustomResourceDefinition", "CustomResourceDefinition", "Namespace"]
    assert docs[2]["metadata"]["name"] == RELEASE_NAMESPACE
    for doc in docs[3:]:
        if doc["kind"] in {"ServiceAccount", "Deployment"}:
            assert doc["metadata"]["namespace"] == RELEASE_NAMESPACE
