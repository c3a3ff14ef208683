"""Rendering of a Registry's children: snapshots per example, security settings, and escaping."""

from __future__ import annotations

import os
import pathlib
from typing import Any

import pytest
import yaml

from berth import models, rendering
from helpers import load_examples, registry_body

SNAPSHOTS = pathlib.Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("BERTH_UPDATE_SNAPSHOTS") == "1"


def _registry(spec: dict[str, Any], name: str = "demo") -> models.Registry:
    return models.parse_registry(registry_body(spec, name=name))


def _children(registry: models.Registry) -> list[dict[str, Any]]:
    s3 = registry.spec.storage.credentials_secret if isinstance(registry.spec.storage, models.S3Storage) else None
    tls = None if registry.spec.tls.mode == "Disabled" else (registry.spec.tls.secret_name or f"{registry.name}-tls")
    children = [
        rendering.config_map(registry, rendering.registry_config(registry)),
        rendering.service(registry),
        rendering.deployment(registry, image="registry.test/registry:3", checksum="0" * 64, tls_secret_name=tls, s3_credentials_secret=s3),
    ]
    if isinstance(registry.spec.storage, models.PvcStorage):
        children.append(rendering.persistent_volume_claim(registry, registry.spec.storage))
    if registry.spec.ingress:
        children.append(rendering.ingress(registry, registry.spec.ingress, tls))
    return children


EXAMPLE_REGISTRIES = [
    (file, doc) for file, docs in load_examples().items() for doc in docs if doc["kind"] == "Registry"
]


@pytest.mark.parametrize(("file", "doc"), EXAMPLE_REGISTRIES, ids=[file for file, _ in EXAMPLE_REGISTRIES])
def test_example_snapshot(file: str, doc: dict[str, Any]) -> None:
    rendered = yaml.safe_dump_all(_children(_registry(doc["spec"], doc["metadata"]["name"])), sort_keys=True)
    snapshot = SNAPSHOTS / file
    if UPDATE or not snapshot.exists():
        SNAPSHOTS.mkdir(exist_ok=True)
        snapshot.write_text(rendered)
        if not UPDATE:
            pytest.fail(f"wrote missing snapshot {snapshot}; review and commit it")
    assert rendered == snapshot.read_text(), f"rendering of {file} changed; rerun with BERTH_UPDATE_SNAPSHOTS=1 after review"


def test_deployment_is_restricted() -> None:
    deployment = _children(_registry({"storage": {"emptyDir": {}}}))[2]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["readinessProbe"]["httpGet"]["path"] == "/debug/health"
    assert container["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert container["resources"] == rendering.DEFAULT_RESOURCES


def test_config_enables_delete() -> None:
    config = yaml.safe_load(rendering.registry_config(_registry({"storage": {"emptyDir": {}}})))
    assert config["storage"]["delete"] == {"enabled": True}
    assert config["http"]["tls"]["certificate"] == "/etc/registry/tls/tls.crt"


def test_config_without_tls() -> None:
    registry = _registry({"storage": {"emptyDir": {}}, "tls": {"mode": "Disabled"}})
    config = yaml.safe_load(rendering.registry_config(registry))
    assert "tls" not in config["http"]
    deployment = _children(registry)[2]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["scheme"] == "HTTP"


def test_s3_credentials_never_in_config() -> None:
    registry = _registry({"storage": {"s3": {"bucket": "images", "credentialsSecretRef": {"name": "creds"}, "endpoint": "http://minio:9000", "forcePathStyle": True}}})
    config_map, _, deployment = _children(registry)[:3]
    config = yaml.safe_load(config_map["data"]["config.yml"])
    assert config["storage"]["s3"] == {"bucket": "images", "region": "us-east-1", "regionendpoint": "http://minio:9000", "forcepathstyle": True}
    env = {item["name"]: item for item in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["REGISTRY_STORAGE_S3_ACCESSKEY"]["valueFrom"]["secretKeyRef"] == {"name": "creds", "key": "accessKeyID"}
    assert "accessKeyID" not in config_map["data"]["config.yml"]


def test_hostile_values_stay_values() -> None:
    registry = _registry({"storage": {"emptyDir": {}}, "podAnnotations": {"a": "x\"\n  injected: true\nb: '{{ 7*7 }}'"}})
    deployment = _children(registry)[2]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["a"] == "x\"\n  injected: true\nb: '{{ 7*7 }}'"
    assert "injected" not in deployment["spec"]["template"]["metadata"]


def test_pod_labels_cannot_override_selector() -> None:
    registry = _registry({"storage": {"emptyDir": {}}, "podLabels": {"app.kubernetes.io/instance": "other", "team": "a"}})
    labels = _children(registry)[2]["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/instance"] == "demo"
    assert labels["team"] == "a"


def test_pvc_owner_depends_on_retain() -> None:
    owned = rendering.persistent_volume_claim(_registry({"storage": {"pvc": {}}}), models.PvcStorage())
    kept = rendering.persistent_volume_claim(_registry({"storage": {"pvc": {}}}), models.PvcStorage(retain_on_delete=True))
    assert owned["metadata"]["ownerReferences"][0]["kind"] == "Registry"
    assert "ownerReferences" not in kept["metadata"]


def test_rwo_pvc_uses_recreate() -> None:
    rwo = _children(_registry({"storage": {"pvc": {}}}))[2]
    rwx = _children(_registry({"storage": {"pvc": {"accessModes": ["ReadWriteMany"]}}, "replicas": 2}))[2]
    assert rwo["spec"]["strategy"] == {"type": "Recreate"}
    assert rwx["spec"]["strategy"]["type"] == "RollingUpdate"


def test_render_checks_identity() -> None:
    with pytest.raises(rendering.RenderError):
        rendering.render("service.yaml.j2", {
            "name": "x", "namespace": "ns", "labels": {}, "owner": {}, "selector": {}, "service": models.ServiceSpec(),
        }, kind="Service", name="y", namespace="ns")


def test_strict_undefined() -> None:
    with pytest.raises(Exception, match="undefined"):
        rendering.render_text("service.yaml.j2", {"name": "x"})
