"""Models against the CRDs: every field the models read is declared, and every declared field is described."""

from __future__ import annotations

from typing import Any

import pytest

from berth import models
from berth.errors import StalledError
from helpers import load_crds, load_examples, registry_body

# CRD fields a model reads under another name, or keeps as a raw mapping.
RAW_FIELDS = {"resources", "tolerations", "affinity", "pullSecrets", "retention"}


def _schema(kind: str) -> dict[str, Any]:
    return load_crds()[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _walk(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, schema)]
    for name, child in (schema.get("properties") or {}).items():
        found += _walk(child, f"{path}.{name}" if path else name)
    items = schema.get("items")
    if isinstance(items, dict):
        found += _walk(items, f"{path}[]")
    return found


@pytest.mark.parametrize("kind", ["Registry", "ImageRepository"])
def test_every_field_has_description(kind: str) -> None:
    # Scalar array items are described by their array.
    undocumented = [
        path for path, node in _walk(_schema(kind))
        if path and path != "metadata" and not node.get("description") and not (path.endswith("[]") and node.get("type") != "object")
    ]
    assert undocumented == []


@pytest.mark.parametrize("kind", ["Registry", "ImageRepository"])
def test_status_declares_conditions_and_generation(kind: str) -> None:
    status = _schema(kind)["properties"]["status"]["properties"]
    assert "conditions" in status
    assert "observedGeneration" in status


def test_model_fields_exist_in_crd() -> None:
    spec = _schema("Registry")["properties"]["spec"]["properties"]
    camel = {
        "storage_class_name": "storageClassName", "access_modes": "accessModes", "retain_on_delete": "retainOnDelete",
        "size_limit": "sizeLimit", "credentials_secret": "credentialsSecretRef", "force_path_style": "forcePathStyle",
        "root_directory": "rootDirectory", "secret_name": "secretName", "issuer_ref": "issuerRef",
        "duration_seconds": "duration", "renew_before_seconds": "renewBefore", "anonymous_pull": "anonymousPull",
        "node_port": "nodePort", "class_name": "className", "tls_secret_name": "tlsSecretName",
        "node_selector": "nodeSelector", "priority_class_name": "priorityClassName", "pod_annotations": "podAnnotations",
        "pod_labels": "podLabels", "node_access_enabled": "nodeAccess", "pull_secrets": "pullSecrets",
        "garbage_collection_enabled": "garbageCollection", "password": "passwordSecretRef",
    }
    sections = {
        models.RegistrySpec: spec,
        models.PvcStorage: spec["storage"]["properties"]["pvc"]["properties"],
        models.EmptyDirStorage: spec["storage"]["properties"]["emptyDir"]["properties"],
        models.S3Storage: spec["storage"]["properties"]["s3"]["properties"],
        models.TlsSpec: spec["tls"]["properties"],
        models.AuthSpec: spec["auth"]["properties"],
        models.User: spec["auth"]["properties"]["users"]["items"]["properties"],
        models.ServiceSpec: spec["service"]["properties"],
        models.IngressSpec: spec["ingress"]["properties"],
    }
    for model, properties in sections.items():
        for field in model.__dataclass_fields__:
            assert camel.get(field, field) in properties, f"{model.__name__}.{field} is not declared in the Registry CRD"


def test_crd_spec_fields_are_read_by_models() -> None:
    spec = _schema("Registry")["properties"]["spec"]["properties"]
    read = {
        "image", "replicas", "resources", "nodeSelector", "tolerations", "affinity", "priorityClassName", "podAnnotations",
        "podLabels", "storage", "tls", "auth", "service", "ingress", "nodeAccess", "pullSecrets", "retention", "garbageCollection",
    }
    assert set(spec) == read


def test_registry_examples_parse() -> None:
    registries = [doc for docs in load_examples().values() for doc in docs if doc["kind"] == "Registry"]
    assert len(registries) >= 4
    for doc in registries:
        parsed = models.parse_registry(registry_body(doc["spec"], name=doc["metadata"]["name"]))
        assert parsed.name == doc["metadata"]["name"]


def test_parse_defaults() -> None:
    registry = models.parse_registry(registry_body({"storage": {"pvc": {}}}))
    assert registry.spec.storage == models.PvcStorage()
    assert registry.spec.tls.mode == "SelfSigned"
    assert registry.spec.tls.duration_seconds == 2160 * 3600
    assert registry.spec.service.port == 5000
    assert registry.spec.replicas == 1


def test_parse_s3() -> None:
    spec = {"storage": {"s3": {"bucket": "b", "credentialsSecretRef": {"name": "creds"}, "endpoint": "http://minio:9000"}}}
    storage = models.parse_registry(registry_body(spec)).spec.storage
    assert isinstance(storage, models.S3Storage)
    assert storage.credentials_secret == "creds"
    assert storage.endpoint == "http://minio:9000"


@pytest.mark.parametrize("storage", [{}, {"pvc": {}, "emptyDir": {}}])
def test_parse_storage_not_exactly_one(storage: dict[str, Any]) -> None:
    with pytest.raises(StalledError) as raised:
        models.parse_registry(registry_body({"storage": storage}))
    assert raised.value.reason == "InvalidSpec"


@pytest.mark.parametrize(("text", "seconds"), [("2160h", 2160 * 3600), ("90m", 5400), ("1h30m", 5400)])
def test_parse_duration_valid(text: str, seconds: int) -> None:
    assert models.parse_duration(text, "spec.tls.duration") == seconds


@pytest.mark.parametrize("text", ["", "10s", "h", "1d"])
def test_parse_duration_invalid(text: str) -> None:
    with pytest.raises(StalledError, match="spec.tls.duration"):
        models.parse_duration(text, "spec.tls.duration")


def test_owner_reference_is_controller() -> None:
    owner = models.parse_registry(registry_body({"storage": {"emptyDir": {}}})).owner_reference()
    assert owner["kind"] == "Registry"
    assert owner["controller"] is True
    assert owner["uid"] == "0b5e2c1a-0000-4000-8000-000000000001"


@pytest.mark.parametrize("tls", [{"duration": "24h"}, {"duration": "1h", "renewBefore": "2h"}, {"duration": "30m", "renewBefore": "10m"}])
def test_tls_renewal_window_must_fit(tls: dict[str, str]) -> None:
    with pytest.raises(StalledError, match="longer than spec.tls.renewBefore"):
        models.parse_registry(registry_body({"storage": {"emptyDir": {}}, "tls": tls}))
