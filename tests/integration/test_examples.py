"""Every file in examples/ applies to a real API server and reconciles as its comments describe."""

from __future__ import annotations

import base64
import datetime
import pathlib
from typing import Any

import yaml

from berth import certificates
from conftest import Cluster, wait_for

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


def _apply_example(cluster: Cluster, file: str) -> list[dict[str, Any]]:
    cluster.kubectl("apply", "-n", cluster.namespace, "-f", str(EXAMPLES / file))
    return [doc for doc in yaml.safe_load_all((EXAMPLES / file).read_text()) if doc]


def test_every_example_is_covered() -> None:
    covered = {"registry.yaml", "registry-pvc.yaml", "registry-s3.yaml", "registry-secret-tls.yaml", "imagerepository.yaml", "imagerepository-mirror.yaml"}
    assert {path.name for path in EXAMPLES.glob("*.yaml")} == covered


def test_quick_start(cluster: Cluster, operator: Any) -> None:
    _apply_example(cluster, "registry.yaml")
    cluster.wait_condition("demo", "Reconciling", "True", "Progressing")
    service = cluster.get("service", "demo")
    assert service is not None and service["spec"]["type"] == "NodePort"
    volumes = cluster.get("deployment", "demo")["spec"]["template"]["spec"]["volumes"]  # type: ignore[index]
    assert {"name": "data", "emptyDir": {"sizeLimit": "2Gi"}} in volumes


def test_pvc_example(cluster: Cluster, operator: Any) -> None:
    _apply_example(cluster, "registry-pvc.yaml")
    pvc = wait_for(lambda: cluster.get("pvc", "team-data"), 60, "PVC team-data")
    assert pvc["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert "ownerReferences" not in pvc["metadata"]
    assert cluster.get("deployment", "team")["spec"]["strategy"]["type"] == "Recreate"  # type: ignore[index]


def test_s3_example(cluster: Cluster, operator: Any) -> None:
    _apply_example(cluster, "registry-s3.yaml")
    deployment = wait_for(lambda: cluster.get("deployment", "shared"), 60, "Deployment shared")
    assert deployment["spec"]["replicas"] == 2
    config = yaml.safe_load(cluster.get("configmap", "shared")["data"]["config.yml"])  # type: ignore[index]
    assert config["storage"]["s3"]["bucket"] == "registry"
    assert "replace-me" not in yaml.safe_dump(config)


def test_secret_tls_example(cluster: Cluster, operator: Any) -> None:
    _apply_example(cluster, "registry-secret-tls.yaml")
    cluster.wait_condition("corp", "Stalled", "True", "SecretNotFound")
    now = datetime.datetime.now(datetime.timezone.utc)
    ca = certificates.make_ca("corp CA", now)
    serving = certificates.make_serving(ca, ["registry.example.com"], now, datetime.timedelta(days=30))
    cluster.apply({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls", "metadata": {"name": "corp-registry-tls"},
        "data": {"tls.crt": base64.b64encode(serving.cert_pem).decode(), "tls.key": base64.b64encode(serving.key_pem).decode()},
    })
    cluster.wait_condition("corp", "Stalled", "False", timeout=30)
    ingress = wait_for(lambda: cluster.get("ingress", "corp"), 30, "Ingress corp")
    assert ingress["spec"]["rules"][0]["host"] == "registry.example.com"
    assert ingress["spec"]["tls"][0]["secretName"] == "corp-registry-tls"
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"] == "HTTPS"


def test_imagerepository_examples(cluster: Cluster, operator: Any) -> None:
    for file in ["imagerepository.yaml", "imagerepository-mirror.yaml"]:
        for doc in _apply_example(cluster, file):
            stored = cluster.get("imagerepository", doc["metadata"]["name"])
            assert stored is not None
            assert stored["spec"]["repository"] == doc["spec"]["repository"]
    stored = cluster.get("imagerepository", "app")
    assert stored["spec"]["retention"]["protectInUse"] is True  # type: ignore[index]
    mirror = cluster.get("imagerepository", "nginx-mirror")
    assert mirror["spec"]["replication"]["concurrency"] == 2  # type: ignore[index]
    assert mirror["spec"]["suspend"] is False  # type: ignore[index]
    ready = wait_for(
        lambda: [c for c in (cluster.get("imagerepository", "app") or {}).get("status", {}).get("conditions", []) if c["type"] == "Ready"],
        30,
        "the ImageRepository's Ready condition",
    )
    assert ready[0]["status"] == "False"
    assert ready[0]["reason"] == "Unsupported"
