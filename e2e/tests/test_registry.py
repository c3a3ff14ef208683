"""berth on a real cluster: a Registry serves pushes and pulls, and nodes pull from it."""

from __future__ import annotations

import json
import pathlib
import ssl
import subprocess
import time
from typing import Any

import httpx
import pytest

from conftest import E2E, OPERATOR_NAMESPACE, READY_TIMEOUT, Kubectl, apply_registry, registry_access, tool, trust_registry, wait_for, wait_ready


def _layout(tmp_path: pathlib.Path, tag: str = "1.0") -> tuple[pathlib.Path, str]:
    layout = tmp_path / "layout"
    digest = subprocess.run(
        ["python3", str(E2E / "images" / "multiplatform.py"), "--output", str(layout), "--tag", tag], check=True, capture_output=True, text=True
    ).stdout.strip()
    return layout, digest


def _skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, f"skopeo {' '.join(args)} failed: {result.stderr}"
    return result


def test_registry_ready_in_time(kubectl: Kubectl, namespace: str) -> None:
    started = time.monotonic()
    apply_registry(kubectl, namespace)
    registry = wait_ready(kubectl, namespace)
    elapsed = time.monotonic() - started
    assert elapsed < READY_TIMEOUT
    status = registry["status"]
    assert status["readyReplicas"] == 1
    assert status["endpoint"] == f"e2e.{namespace}.svc:5000"
    pods = kubectl.json("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/instance=e2e")["items"]
    assert [pod["status"]["phase"] for pod in pods] == ["Running"]


def test_push_pull_list_delete(kubectl: Kubectl, namespace: str, tmp_path: pathlib.Path) -> None:
    apply_registry(kubectl, namespace)
    wait_ready(kubectl, namespace)
    layout, index_digest = _layout(tmp_path)
    with registry_access(kubectl, namespace, "e2e", tmp_path) as access:
        # Push two tags of a two-platform index with skopeo over TLS.
        for tag in ["1.0", "latest"]:
            _skopeo("copy", "--all", "--quiet", "--dest-cert-dir", str(access.ca_dir), "--dest-authfile", str(access.auth_file),
                    f"oci:{layout}:1.0", f"docker://{access.host}/team/hello:{tag}")

        # Pull back by digest.
        pulled = tmp_path / "pulled"
        _skopeo("copy", "--all", "--quiet", "--src-cert-dir", str(access.ca_dir), "--src-authfile", str(access.auth_file),
                f"docker://{access.host}/team/hello@{index_digest}", f"oci:{pulled}:pulled")
        assert json.loads((pulled / "index.json").read_text())["manifests"][0]["digest"] == index_digest

        environment = {"SSL_CERT_FILE": str(access.ca_file), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
        crane = tool("crane")
        subprocess.run([crane, "auth", "login", access.host, "-u", access.username, "--password-stdin"], input=access.password,
                       env=environment, check=True, capture_output=True, text=True)
        tags = subprocess.run([crane, "ls", f"{access.host}/team/hello"], env=environment, check=True, capture_output=True, text=True).stdout.split()
        assert sorted(tags) == ["1.0", "latest"]
        assert subprocess.run([crane, "digest", f"{access.host}/team/hello:latest"], env=environment, check=True, capture_output=True, text=True).stdout.strip() == index_digest

        regctl = tool("regctl")
        regctl_environment = {**environment, "HOME": str(tmp_path / "regctl")}
        subprocess.run([regctl, "registry", "login", access.host, "-u", access.username, "--pass-stdin"], input=access.password,
                       env=regctl_environment, check=True, capture_output=True, text=True)
        manifest = json.loads(subprocess.run([regctl, "manifest", "get", "--format", "raw-body", f"{access.host}/team/hello:1.0"],
                                             env=regctl_environment, check=True, capture_output=True, text=True).stdout)
        assert sorted(item["platform"]["architecture"] for item in manifest["manifests"]) == ["amd64", "arm64"]

        with httpx.Client(base_url=f"https://{access.host}", verify=ssl.create_default_context(cafile=str(access.ca_file)), timeout=30) as client:
            assert client.get("/v2/").status_code == 401
            auth = (access.username, access.password)
            assert client.get("/v2/_catalog", auth=auth).json() == {"repositories": ["team/hello"]}
            # Deleting the manifest removes every tag that points at it: both here.
            deleted = client.delete(f"/v2/team/hello/manifests/{index_digest}", auth=auth)
            assert deleted.status_code == 202, deleted.text
            assert client.get(f"/v2/team/hello/manifests/{index_digest}", auth=auth).status_code == 404
            tags_after = client.get("/v2/team/hello/tags/list", auth=auth).json().get("tags") or []
            assert tags_after == []


def test_pod_pulls_from_registry(kubectl: Kubectl, namespace: str, tmp_path: pathlib.Path) -> None:
    apply_registry(kubectl, namespace)
    registry = wait_ready(kubectl, namespace)
    node_endpoint = registry["status"]["nodeEndpoint"]
    layout, index_digest = _layout(tmp_path)
    with registry_access(kubectl, namespace, "e2e", tmp_path) as access:
        _skopeo("copy", "--all", "--quiet", "--dest-cert-dir", str(access.ca_dir), "--dest-authfile", str(access.auth_file),
                f"oci:{layout}:1.0", f"docker://{access.host}/team/hello:1.0")
        trust_registry(node_endpoint, access.ca_file)
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hello"},
        "spec": {
            "restartPolicy": "Never",
            "imagePullSecrets": [{"name": registry["status"]["credentialsSecretName"]}],
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "hello", "image": f"{node_endpoint}/team/hello@{index_digest}",
                "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
            }],
        },
    }
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(pod))
    wait_for(lambda: kubectl.json("get", "-n", namespace, "pod", "hello")["status"].get("phase") == "Succeeded", 120, "pod hello to succeed")
    assert kubectl("logs", "-n", namespace, "hello").stdout.strip() == "hello from a berth registry"


def test_scale_to_zero_and_back(kubectl: Kubectl, namespace: str) -> None:
    apply_registry(kubectl, namespace)
    wait_ready(kubectl, namespace)
    apply_registry(kubectl, namespace, replicas=0)

    def scaled_down() -> bool:
        registry = kubectl.json("get", "-n", namespace, "registry", "e2e")
        reasons = {c["type"]: c["reason"] for c in registry["status"].get("conditions") or []}
        pods = kubectl.json("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/instance=e2e")["items"]
        return reasons.get("Ready") == "ScaledToZero" and not pods

    wait_for(scaled_down, 120, "the registry to scale to zero")
    apply_registry(kubectl, namespace, replicas=1)
    assert wait_ready(kubectl, namespace)["status"]["readyReplicas"] == 1


def test_storage_size_change_rolls_out(kubectl: Kubectl, namespace: str) -> None:
    apply_registry(kubectl, namespace, storage={"emptyDir": {"sizeLimit": "1Gi"}})
    wait_ready(kubectl, namespace)
    apply_registry(kubectl, namespace, storage={"emptyDir": {"sizeLimit": "2Gi"}})
    wait_ready(kubectl, namespace)

    def rolled() -> bool:
        pods = kubectl.json("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/instance=e2e")["items"]
        limits = [v["emptyDir"].get("sizeLimit") for p in pods for v in p["spec"]["volumes"] if v["name"] == "data"]
        return limits == ["2Gi"] and all(p["status"]["phase"] == "Running" for p in pods)

    wait_for(rolled, 120, "one running pod with the new size limit")


def test_delete_removes_workload(kubectl: Kubectl, namespace: str) -> None:
    apply_registry(kubectl, namespace)
    wait_ready(kubectl, namespace)
    kubectl("delete", "-n", namespace, "registry", "e2e", "--wait=true", "--timeout=60s")

    def gone() -> bool:
        left = [kubectl.json("get", "-n", namespace, kind, "-l", "app.kubernetes.io/instance=e2e")["items"] for kind in ["deployments", "pods", "secrets", "services", "configmaps"]]
        return not any(left)

    wait_for(gone, 120, "every child of the deleted Registry to be gone")


def test_operator_restart_mid_reconcile(kubectl: Kubectl, namespace: str) -> None:
    apply_registry(kubectl, namespace)
    # Kill the operator while it handles the new Registry.
    kubectl("delete", "pods", "-n", OPERATOR_NAMESPACE, "-l", "app.kubernetes.io/name=berth", "--wait=false")
    wait_ready(kubectl, namespace, timeout=READY_TIMEOUT + 60)
    deployments = kubectl.json("get", "deployments", "-n", namespace)["items"]
    assert [item["metadata"]["name"] for item in deployments] == ["e2e"]
    replica_sets = [rs for rs in kubectl.json("get", "replicasets", "-n", namespace)["items"] if rs["spec"]["replicas"]]
    assert len(replica_sets) == 1
    kubectl("rollout", "status", "-n", OPERATOR_NAMESPACE, "deployment/berth", "--timeout=120s")


@pytest.mark.parametrize(
    ("verb", "resource", "allowed"),
    [
        ("patch", "registries.berth.dev/status", True),
        ("create", "deployments.apps", True),
        ("delete", "secrets", False),
        ("delete", "deployments.apps", False),
        ("delete", "persistentvolumeclaims", False),
        ("create", "pods", False),
        ("create", "clusterrolebindings.rbac.authorization.k8s.io", False),
        ("get", "nodes", False),
        ("*", "*", False),
    ],
)
def test_operator_rbac_least_privilege(kubectl: Kubectl, verb: str, resource: str, allowed: bool) -> None:
    account = kubectl.json("get", "-n", OPERATOR_NAMESPACE, "deployment", "berth")["spec"]["template"]["spec"]["serviceAccountName"]
    result = kubectl("auth", "can-i", verb, resource, "-n", "default", f"--as=system:serviceaccount:{OPERATOR_NAMESPACE}:{account}", check=False)
    assert result.stdout.strip() == ("yes" if allowed else "no")


def test_operator_not_cluster_admin(kubectl: Kubectl) -> None:
    account = kubectl.json("get", "-n", OPERATOR_NAMESPACE, "deployment", "berth")["spec"]["template"]["spec"]["serviceAccountName"]
    bindings = kubectl.json("get", "clusterrolebindings")["items"]
    roles = {b["roleRef"]["name"] for b in bindings for s in b.get("subjects") or [] if s.get("kind") == "ServiceAccount" and s.get("name") == account and s.get("namespace") == OPERATOR_NAMESPACE}
    assert "cluster-admin" not in roles
    for role in roles:
        rules: list[dict[str, Any]] = kubectl.json("get", "clusterrole", role)["rules"]
        for rule in rules:
            assert "*" not in rule.get("verbs", []), rule
            assert "*" not in rule.get("resources", []), rule
