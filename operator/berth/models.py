"""Typed models of the custom resources, parsed once at the edge.

The CRD schemas in crds/ are the source of truth: the API server has already
validated the object and applied schema defaults before berth receives it. The
parsers here still fall back to the same defaults, so a model built from a
partial dict (unit tests, an object stored before a default was added) means
the same thing. tests/unit/test_models.py checks these fields against the CRDs.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from berth import conditions
from berth.errors import StalledError

GROUP = "berth.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?$")


@dataclasses.dataclass(frozen=True)
class SecretKeyRef:
    """A key inside a Secret in the object's namespace."""

    name: str
    key: str


@dataclasses.dataclass(frozen=True)
class PvcStorage:
    """A PersistentVolumeClaim made by berth."""

    size: str = "10Gi"
    storage_class_name: str | None = None
    access_modes: tuple[str, ...] = ("ReadWriteOnce",)
    retain_on_delete: bool = False


@dataclasses.dataclass(frozen=True)
class EmptyDirStorage:
    """Pod-local scratch storage."""

    size_limit: str | None = None


@dataclasses.dataclass(frozen=True)
class S3Storage:
    """An S3-compatible bucket; credentials stay in the referenced Secret."""

    bucket: str
    credentials_secret: str
    region: str = "us-east-1"
    endpoint: str | None = None
    force_path_style: bool = False
    root_directory: str | None = None


Storage = PvcStorage | EmptyDirStorage | S3Storage


@dataclasses.dataclass(frozen=True)
class IssuerRef:
    """A cert-manager issuer."""

    name: str
    kind: str = "Issuer"
    group: str = "cert-manager.io"


@dataclasses.dataclass(frozen=True)
class TlsSpec:
    """Serving-certificate settings. Durations are in seconds."""

    mode: str = "SelfSigned"
    secret_name: str | None = None
    issuer_ref: IssuerRef | None = None
    duration_seconds: int = 2160 * 3600
    renew_before_seconds: int = 720 * 3600


@dataclasses.dataclass(frozen=True)
class User:
    """An extra registry user whose password is read from a Secret."""

    username: str
    password: SecretKeyRef


@dataclasses.dataclass(frozen=True)
class AuthSpec:
    """Registry authentication."""

    anonymous_pull: bool = False
    users: tuple[User, ...] = ()


@dataclasses.dataclass(frozen=True)
class ServiceSpec:
    """The Service in front of the registry pods."""

    type: str = "ClusterIP"
    port: int = 5000
    node_port: int | None = None
    annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class IngressSpec:
    """An optional Ingress."""

    host: str
    class_name: str | None = None
    annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)
    tls_secret_name: str | None = None


@dataclasses.dataclass(frozen=True)
class RegistrySpec:
    """The desired state of a Registry. `image` None means the operator's default."""

    storage: Storage
    image: str | None = None
    replicas: int = 1
    resources: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    node_selector: Mapping[str, str] = dataclasses.field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    affinity: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    priority_class_name: str | None = None
    pod_annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)
    pod_labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    tls: TlsSpec = TlsSpec()
    auth: AuthSpec = AuthSpec()
    service: ServiceSpec = ServiceSpec()
    ingress: IngressSpec | None = None
    node_access_enabled: bool = False
    pull_secrets: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    retention: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    garbage_collection_enabled: bool = False


@dataclasses.dataclass(frozen=True)
class Registry:
    """A Registry object: identity plus parsed spec."""

    name: str
    namespace: str
    uid: str
    generation: int
    spec: RegistrySpec

    def owner_reference(self) -> dict[str, Any]:
        """Return the ownerReference that makes children garbage-collected with this Registry."""
        return {
            "apiVersion": API_VERSION,
            "kind": "Registry",
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def parse_duration(text: str, field: str) -> int:
    """Parse an "<hours>h<minutes>m" duration into seconds."""
    match = _DURATION.match(text)
    if not text or match is None:
        raise StalledError(conditions.INVALID_SPEC, f"{field}: invalid duration {text!r}, expected hours and minutes such as 2160h or 90m")
    hours, minutes = match.groups()
    return int(hours or 0) * 3600 + int(minutes or 0) * 60


def parse_registry(body: Mapping[str, Any]) -> Registry:
    """Build a Registry model from an API object (a dict or a Kopf body)."""
    metadata = body["metadata"]
    spec = body.get("spec") or {}
    return Registry(
        name=metadata["name"],
        namespace=metadata["namespace"],
        uid=metadata["uid"],
        generation=int(metadata.get("generation") or 0),
        spec=_parse_spec(spec),
    )


def _parse_spec(spec: Mapping[str, Any]) -> RegistrySpec:
    return RegistrySpec(
        storage=_parse_storage(spec.get("storage") or {}),
        image=spec.get("image"),
        replicas=int(spec.get("replicas", 1)),
        resources=dict(spec.get("resources") or {}),
        node_selector=dict(spec.get("nodeSelector") or {}),
        tolerations=tuple(spec.get("tolerations") or ()),
        affinity=dict(spec.get("affinity") or {}),
        priority_class_name=spec.get("priorityClassName"),
        pod_annotations=dict(spec.get("podAnnotations") or {}),
        pod_labels=dict(spec.get("podLabels") or {}),
        tls=_parse_tls(spec.get("tls") or {}),
        auth=_parse_auth(spec.get("auth") or {}),
        service=_parse_service(spec.get("service") or {}),
        ingress=_parse_ingress(spec["ingress"]) if spec.get("ingress") else None,
        node_access_enabled=bool((spec.get("nodeAccess") or {}).get("enabled", False)),
        pull_secrets=dict(spec.get("pullSecrets") or {}),
        retention=dict(spec.get("retention") or {}),
        garbage_collection_enabled=bool((spec.get("garbageCollection") or {}).get("enabled", False)),
    )


def _parse_storage(storage: Mapping[str, Any]) -> Storage:
    kinds = [kind for kind in ("pvc", "emptyDir", "s3") if kind in storage]
    if len(kinds) != 1:
        raise StalledError(conditions.INVALID_SPEC, "spec.storage: exactly one of pvc, emptyDir or s3 must be set")
    if "pvc" in storage:
        pvc = storage["pvc"] or {}
        return PvcStorage(
            size=str(pvc.get("size", "10Gi")),
            storage_class_name=pvc.get("storageClassName"),
            access_modes=tuple(pvc.get("accessModes") or ("ReadWriteOnce",)),
            retain_on_delete=bool(pvc.get("retainOnDelete", False)),
        )
    if "emptyDir" in storage:
        return EmptyDirStorage(size_limit=(storage["emptyDir"] or {}).get("sizeLimit"))
    s3 = storage["s3"]
    return S3Storage(
        bucket=s3["bucket"],
        credentials_secret=s3["credentialsSecretRef"]["name"],
        region=s3.get("region", "us-east-1"),
        endpoint=s3.get("endpoint"),
        force_path_style=bool(s3.get("forcePathStyle", False)),
        root_directory=s3.get("rootDirectory"),
    )


MIN_CERTIFICATE_SECONDS = 3600


def _parse_tls(tls: Mapping[str, Any]) -> TlsSpec:
    issuer = tls.get("issuerRef")
    duration = parse_duration(tls.get("duration", "2160h"), "spec.tls.duration")
    renew_before = parse_duration(tls.get("renewBefore", "720h"), "spec.tls.renewBefore")
    # The CRD rejects these too; objects stored before that rule would otherwise reissue certificates in a loop.
    if duration < MIN_CERTIFICATE_SECONDS or renew_before >= duration:
        raise StalledError(
            conditions.INVALID_SPEC,
            "spec.tls.duration must be at least 1h and longer than spec.tls.renewBefore, "
            "or every certificate would be due for renewal as soon as it is issued",
        )
    return TlsSpec(
        mode=tls.get("mode", "SelfSigned"),
        secret_name=tls.get("secretName"),
        issuer_ref=IssuerRef(issuer["name"], issuer.get("kind", "Issuer"), issuer.get("group", "cert-manager.io")) if issuer else None,
        duration_seconds=duration,
        renew_before_seconds=renew_before,
    )


def _parse_auth(auth: Mapping[str, Any]) -> AuthSpec:
    users = tuple(
        User(item["username"], SecretKeyRef(item["passwordSecretRef"]["name"], item["passwordSecretRef"].get("key", "password")))
        for item in auth.get("users") or ()
    )
    return AuthSpec(anonymous_pull=bool(auth.get("anonymousPull", False)), users=users)


def _parse_service(service: Mapping[str, Any]) -> ServiceSpec:
    return ServiceSpec(
        type=service.get("type", "ClusterIP"),
        port=int(service.get("port", 5000)),
        node_port=service.get("nodePort"),
        annotations=dict(service.get("annotations") or {}),
    )


def _parse_ingress(ingress: Mapping[str, Any]) -> IngressSpec:
    return IngressSpec(
        host=ingress["host"],
        class_name=ingress.get("className"),
        annotations=dict(ingress.get("annotations") or {}),
        tls_secret_name=ingress.get("tlsSecretName"),
    )
