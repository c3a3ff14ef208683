"""Registry reconciliation against a real API server, with berth running in-process."""

from __future__ import annotations

import base64
import json
import pathlib
import time
from typing import Any

import yaml

from conftest import Cluster, wait_for

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHILD_KINDS = ["deployment", "service", "configmap", "secret"]
# Long enough for two resync passes (BERTH_RESYNC_SECONDS=3 in these tests); used to check that nothing happens.
QUIET_PERIOD = 7


def _registry(name: str = "demo", **spec: Any) -> dict[str, Any]:
    spec.setdefault("storage", {"emptyDir": {}})
    return {"apiVersion": "berth.dev/v1alpha1", "kind": "Registry", "metadata": {"name": name}, "spec": spec}


def _wait_children(cluster: Cluster, name: str = "demo") -> dict[str, Any]:
    return wait_for(lambda: cluster.get("deployment", name), 60, f"Deployment {name}")  # type: ignore[no-any-return]


def _checksum(deployment: dict[str, Any]) -> str:
    return deployment["spec"]["template"]["metadata"]["annotations"]["berth.dev/config-checksum"]  # type: ignore[no-any-return]


def test_reconcile_creates_children_with_owners(cluster: Cluster, operator: Any) -> None:
    cluster.apply(_registry(service={"type": "NodePort"}))
    cluster.wait_condition("demo", "Reconciling", "True", "Progressing")
    registry = cluster.get("registry", "demo")
    assert registry is not None
    uid = registry["metadata"]["uid"]
    names = {(item["kind"], item["metadata"]["name"]) for kind in CHILD_KINDS for item in cluster.list(kind)}
    assert names == {
        ("Deployment", "demo"), ("Service", "demo"), ("ConfigMap", "demo"), ("Secret", "demo-admin"), ("Secret", "demo-htpasswd"),
        ("Secret", "demo-http-secret"), ("Secret", "demo-ca"), ("Secret", "demo-ca-key"), ("Secret", "demo-tls"),
    }
    for kind in CHILD_KINDS:
        for item in cluster.list(kind):
            owners = item["metadata"]["ownerReferences"]
            assert [(owner["kind"], owner["uid"], owner["controller"]) for owner in owners] == [("Registry", uid, True)]
            assert item["metadata"]["labels"]["app.kubernetes.io/instance"] == "demo"
            assert "berth" in {entry["manager"] for entry in item["metadata"]["managedFields"]}

    status = registry["status"]
    assert status["observedGeneration"] == registry["metadata"]["generation"]
    assert status["endpoint"] == f"demo.{cluster.namespace}.svc:5000"
    assert status["nodeEndpoint"].startswith("localhost:3")
    assert status["caSecretName"] == "demo-ca"
    assert status["credentialsSecretName"] == "demo-admin"
    assert status["readyReplicas"] == 0
    assert status["tls"]["notAfter"]
    assert "kopf" not in status

    ready = cluster.condition("demo", "Ready")
    assert ready is not None and ready["reason"] == "Progressing"
    config = cluster.get("configmap", "demo")
    assert config is not None
    assert yaml.safe_load(config["data"]["config.yml"])["storage"]["delete"]["enabled"] is True


def test_printer_columns_and_explain(cluster: Cluster, operator: Any) -> None:
    cluster.apply(_registry())
    cluster.wait_condition("demo", "Reconciling", "True")
    table = cluster.kubectl("get", "-n", cluster.namespace, "reg").stdout
    assert table.split()[:5] == ["NAME", "READY", "REASON", "ENDPOINT", "AGE"]
    assert f"demo.{cluster.namespace}.svc:5000" in table
    explained = cluster.kubectl("explain", "registry.spec.storage.s3").stdout
    assert "credentialsSecretRef" in explained
    assert "S3-compatible bucket" in explained
    # The CRDs share the category "berth", so `kubectl get berth` lists Registries too.
    assert "registry.berth.dev/demo" in cluster.kubectl("get", "-n", cluster.namespace, "berth", "-o", "name").stdout


def test_spec_change_rolls_once(cluster: Cluster, operator: Any) -> None:
    cluster.apply(_registry())
    first = _wait_children(cluster)
    cluster.wait_condition("demo", "Reconciling", "True")
    generation = first["metadata"]["generation"]
    cluster.apply(_registry(tls={"mode": "Disabled"}))
    changed = wait_for(
        lambda: (d := cluster.get("deployment", "demo")) and _checksum(d) != _checksum(first) and d, 60, "a new config checksum"
    )
    assert changed["metadata"]["generation"] == generation + 1
    # Several resyncs later (BERTH_RESYNC_SECONDS=3) nothing has rolled again.
    registry_generation = cluster.get("registry", "demo")["metadata"]["generation"]  # type: ignore[index]
    wait_for(lambda: (cluster.get("registry", "demo") or {}).get("status", {}).get("observedGeneration") == registry_generation, 30, "observedGeneration")
    time.sleep(QUIET_PERIOD)
    settled = cluster.get("deployment", "demo")
    assert settled is not None
    assert settled["metadata"]["generation"] == generation + 1
    assert "tls" not in yaml.safe_load(cluster.get("configmap", "demo")["data"]["config.yml"])["http"]  # type: ignore[index]


def test_unrelated_reconcile_writes_nothing(cluster: Cluster, operator: Any) -> None:
    cluster.apply(_registry())
    cluster.wait_condition("demo", "Reconciling", "True")
    _wait_children(cluster)

    def versions() -> dict[tuple[str, str], str]:
        return {(item["kind"], item["metadata"]["name"]): item["metadata"]["resourceVersion"] for kind in CHILD_KINDS for item in cluster.list(kind)}

    # Let the Deployment controller settle, then take a snapshot.
    wait_for(lambda: (a := versions()) == versions() and a, 30, "children to settle", interval=2)
    before = versions()
    cluster.kubectl("annotate", "-n", cluster.namespace, "registry", "demo", "example.com/touched=yes")
    # Two resync periods and one update event later, no child has been written.
    time.sleep(QUIET_PERIOD)
    assert versions() == before


def test_deleted_child_is_restored(cluster: Cluster, operator: Any) -> None:
    cluster.apply(_registry())
    _wait_children(cluster)
    for kind, name in [("configmap", "demo"), ("service", "demo"), ("secret", "demo-htpasswd"), ("deployment", "demo")]:
        old_uid = cluster.get(kind, name)["metadata"]["uid"]  # type: ignore[index]
        cluster.kubectl("delete", "-n", cluster.namespace, kind, name, "--wait=true")
        restored = wait_for(lambda: (item := cluster.get(kind, name)) and item["metadata"]["uid"] != old_uid and item, 30, f"{kind} {name} restored")
        assert restored["metadata"]["ownerReferences"][0]["kind"] == "Registry"


def test_edited_child_is_repaired(cluster: Cluster, operator: Any) -> None:
    cluster.apply(_registry())
    _wait_children(cluster)
    cluster.kubectl("patch", "-n", cluster.namespace, "configmap", "demo", "--type=merge", "-p", json.dumps({"data": {"config.yml": "version: 0.1\n"}}))
    wait_for(lambda: "delete" in (cluster.get("configmap", "demo") or {}).get("data", {}).get("config.yml", ""), 30, "config.yml repaired")


def test_admin_credentials_stable_and_valid(cluster: Cluster, operator: Any) -> None:
    cluster.apply(_registry())
    _wait_children(cluster)
    admin = cluster.get("secret", "demo-admin")
    assert admin is not None
    assert admin["type"] == "kubernetes.io/dockerconfigjson"
    password = base64.b64decode(admin["data"]["password"]).decode()
    assert len(password) >= 24
    config = json.loads(base64.b64decode(admin["data"][".dockerconfigjson"]))
    assert config["auths"][f"demo.{cluster.namespace}.svc:5000"]["password"] == password
    cluster.apply(_registry(replicas=0))
    cluster.wait_condition("demo", "Ready", "False", "ScaledToZero")
    assert cluster.get("secret", "demo-admin")["data"]["password"] == admin["data"]["password"]  # type: ignore[index]


def test_delete_collects_children(cluster: Cluster, operator: Any) -> None:
    cluster.apply(_registry("owned", storage={"pvc": {"size": "1Gi"}}))
    cluster.apply(_registry("kept", storage={"pvc": {"size": "1Gi", "retainOnDelete": True}}))
    wait_for(lambda: cluster.get("pvc", "owned-data") and cluster.get("pvc", "kept-data"), 60, "both PVCs")
    assert "ownerReferences" not in cluster.get("pvc", "kept-data")["metadata"]  # type: ignore[index]
    cluster.kubectl("delete", "-n", cluster.namespace, "registry", "owned", "kept", "--wait=true", timeout=90)
    for name in ["owned", "kept"]:
        wait_for(lambda: cluster.get("deployment", name) is None and cluster.get("secret", f"{name}-admin") is None, 60, f"{name} children collected")
    wait_for(lambda: cluster.get("pvc", "owned-data") is None or cluster.get("pvc", "owned-data")["metadata"].get("deletionTimestamp"), 60, "owned PVC collected")  # type: ignore[index]
    kept = cluster.get("pvc", "kept-data")
    assert kept is not None and not kept["metadata"].get("deletionTimestamp")


def test_operator_restart_converges(cluster: Cluster, operator_factory: Any) -> None:
    cluster.apply(_registry("one"))
    cluster.apply(_registry("two", storage={"pvc": {}}))
    with operator_factory():
        wait_for(lambda: cluster.get("deployment", "one") or cluster.get("secret", "two-admin"), 60, "a first child")
    # Stopped mid-way or not, a restart converges without duplicates.
    with operator_factory():
        for name in ["one", "two"]:
            cluster.wait_condition(name, "Reconciling", "True")
        deployments = sorted(item["metadata"]["name"] for item in cluster.list("deployment"))
        assert deployments == ["one", "two"]
        secrets = [item["metadata"]["name"] for item in cluster.list("secret")]
        assert len(secrets) == len(set(secrets)) == 12


def test_missing_secret_stalls_then_recovers(cluster: Cluster, operator: Any) -> None:
    cluster.apply(_registry(storage={"s3": {"bucket": "images", "credentialsSecretRef": {"name": "s3"}}}))
    stalled = cluster.wait_condition("demo", "Stalled", "True", "SecretNotFound")
    assert "s3" in stalled["message"]
    assert cluster.condition("demo", "Ready")["reason"] == "SecretNotFound"  # type: ignore[index]
    events = wait_for(lambda: [e for e in cluster.events("demo") if e["reason"] == "SecretNotFound"], 30, "a SecretNotFound Event")
    assert events[0]["type"] == "Warning"
    assert cluster.get("deployment", "demo") is None

    cluster.kubectl("create", "secret", "generic", "-n", cluster.namespace, "s3", "--from-literal=accessKeyID=AKIAEXAMPLE")
    cluster.wait_condition("demo", "Stalled", "True", "SecretKeyMissing")
    cluster.kubectl("patch", "-n", cluster.namespace, "secret", "s3", "--type=merge", "-p", json.dumps({"stringData": {"secretAccessKey": "wJalrXUtnFEMI"}}))
    cluster.wait_condition("demo", "Stalled", "False")
    deployment = _wait_children(cluster)
    text = json.dumps(deployment) + json.dumps(cluster.get("configmap", "demo")) + json.dumps(cluster.get("registry", "demo")) + json.dumps(cluster.events("demo"))
    assert "wJalrXUtnFEMI" not in text
    assert "AKIAEXAMPLE" not in text
    # Only one SecretNotFound Event was posted although resyncs ran every 3 seconds.
    assert len([e for e in cluster.events("demo") if e["reason"] == "SecretNotFound"]) == 1


def test_unknown_storage_class_stalls(cluster: Cluster, operator: Any) -> None:
    cluster.apply(_registry(storage={"pvc": {"storageClassName": "no-such-class"}}))
    stalled = cluster.wait_condition("demo", "Stalled", "True", "StorageClassNotFound")
    assert "no-such-class" in stalled["message"]


def test_pvc_shrink_is_rejected_clearly(cluster: Cluster, operator: Any) -> None:
    cluster.apply(_registry(storage={"pvc": {"size": "2Gi"}}))
    wait_for(lambda: cluster.get("pvc", "demo-data"), 60, "the PVC")
    cluster.apply(_registry(storage={"pvc": {"size": "1Gi"}}))
    stalled = cluster.wait_condition("demo", "Stalled", "True", "ApplyRejected")
    assert "demo-data" in stalled["message"]


def test_foreign_object_is_not_overwritten(cluster: Cluster, operator: Any) -> None:
    cluster.kubectl("create", "configmap", "-n", cluster.namespace, "demo", "--from-literal=owner=someone-else")
    cluster.apply(_registry())
    stalled = cluster.wait_condition("demo", "Stalled", "True", "NameConflict")
    assert "ConfigMap demo already exists" in stalled["message"]
    assert cluster.get("configmap", "demo")["data"] == {"owner": "someone-else"}  # type: ignore[index]
    cluster.kubectl("delete", "configmap", "-n", cluster.namespace, "demo")
    cluster.wait_condition("demo", "Stalled", "False")
    assert "config.yml" in cluster.get("configmap", "demo")["data"]  # type: ignore[index]
