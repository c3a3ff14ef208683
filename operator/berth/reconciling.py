"""Reconcile one Registry: read what it references, apply its children, compute its status.

`reconcile_registry` is level-triggered and idempotent: it can run after any
event, after an operator restart, or on the periodic resync, and converges to
the same children. Problems a human must fix are raised inside as
StalledError and returned as a Stalled outcome. Other API failures propagate,
so the caller's retry (Kopf's backoff or the next resync) handles them.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from berth import applying, certificates, conditions, credentials, models, rendering
from berth.errors import StalledError
from berth.settings import Settings

logger = logging.getLogger(__name__)


class Kube(applying.Applier, Protocol):
    """The part of berth.kube.Kube that reconciling uses."""

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> bool: ...


@dataclasses.dataclass(frozen=True)
class Outcome:
    """The result of one pass: status fields (without conditions) and the computed conditions."""

    status: dict[str, Any]
    conditions: list[conditions.Condition]
    stalled: tuple[str, str] | None
    # (reason, message) pairs the handlers post as Warning Events.
    warnings: list[tuple[str, str]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class _Tls:
    """TLS material: the Secret the pods mount and the CA Secret clients must trust."""

    secret_name: str | None
    ca_secret_name: str | None
    not_after: datetime.datetime | None
    fingerprint: str


def reconcile_registry(registry: models.Registry, kube: Kube, settings: Settings, now: datetime.datetime) -> Outcome:
    """Run one reconcile pass and return the status to write."""
    try:
        return _reconcile(registry, kube, settings, now)
    except StalledError as error:
        stalled = (error.reason, error.message)
        return Outcome(
            status={"observedGeneration": registry.generation},
            conditions=conditions.registry_conditions(stalled=stalled, desired_replicas=registry.spec.replicas, ready_replicas=0, rolled_out=False),
            stalled=stalled,
        )


def _reconcile(registry: models.Registry, kube: Kube, settings: Settings, now: datetime.datetime) -> Outcome:
    spec = registry.spec
    child_names = rendering.names(registry.name)
    check_supported(spec)

    # Read and check everything the spec references before changing anything.
    s3_secret = _check_storage(registry, kube)
    user_passwords = [(user.username, _read_secret_key(kube, registry.namespace, user.password, f"spec.auth.users[{user.username}]")) for user in spec.auth.users]

    # The Service first: the node port it gets goes into the admin docker config.
    service, _ = applying.ensure(kube, rendering.service(registry))
    endpoint = f"{child_names['workload']}.{registry.namespace}.svc:{spec.service.port}"
    node_endpoint = _node_endpoint(service)

    admin_password = _admin_password(kube, registry)
    hosts = [endpoint]
    if node_endpoint:
        hosts.append(node_endpoint)
    if spec.ingress:
        hosts.append(spec.ingress.host)
    applying.ensure(kube, rendering.secret(
        registry,
        child_names["admin"],
        {
            "username": credentials.ADMIN_USERNAME.encode(),
            "password": admin_password.encode(),
            ".dockerconfigjson": credentials.docker_config_json(hosts, credentials.ADMIN_USERNAME, admin_password).encode(),
        },
        type="kubernetes.io/dockerconfigjson",
    ))
    htpasswd_text = _htpasswd(kube, registry, [(credentials.ADMIN_USERNAME, admin_password), *user_passwords])
    applying.ensure(kube, rendering.secret(registry, child_names["htpasswd"], {"htpasswd": htpasswd_text.encode()}))
    http_secret = _http_secret(kube, registry)
    applying.ensure(kube, rendering.secret(registry, child_names["http_secret"], {"secret": http_secret.encode()}))

    warnings: list[tuple[str, str]] = []
    tls = _ensure_tls(registry, kube, settings, now, warnings)
    config = rendering.registry_config(registry)
    applying.ensure(kube, rendering.config_map(registry, config))
    if isinstance(spec.storage, models.PvcStorage):
        applying.ensure(kube, rendering.persistent_volume_claim(registry, spec.storage))
    _ensure_ingress(registry, kube, tls.secret_name)

    checksum = hashlib.sha256("\0".join([config, htpasswd_text, http_secret, tls.fingerprint]).encode()).hexdigest()
    deployment, _ = applying.ensure(kube, rendering.deployment(
        registry,
        image=spec.image or settings.registry_image,
        checksum=checksum,
        tls_secret_name=tls.secret_name,
        s3_credentials_secret=s3_secret,
    ))

    ready, rolled_out = deployment_progress(deployment)
    status: dict[str, Any] = {
        "observedGeneration": registry.generation,
        "endpoint": endpoint,
        "nodeEndpoint": node_endpoint,
        "caSecretName": tls.ca_secret_name,
        "credentialsSecretName": child_names["admin"],
        "readyReplicas": ready,
        "tls": {"secretName": tls.secret_name, "notAfter": _timestamp(tls.not_after)} if tls.secret_name else None,
    }
    computed = conditions.registry_conditions(
        stalled=None, desired_replicas=spec.replicas, ready_replicas=ready, rolled_out=rolled_out, problem=deployment_problem(deployment)
    )
    return Outcome(status=status, conditions=computed, stalled=None, warnings=warnings)


def check_supported(spec: models.RegistrySpec) -> None:
    """Stall on options whose behaviour berth does not implement yet, rather than silently ignoring them."""
    unsupported = []
    if spec.tls.mode == "CertManager":
        unsupported.append("spec.tls.mode CertManager")
    if spec.auth.anonymous_pull:
        unsupported.append("spec.auth.anonymousPull (Distribution's htpasswd auth cannot allow anonymous pulls)")
    if spec.node_access_enabled:
        unsupported.append("spec.nodeAccess.enabled")
    if spec.pull_secrets:
        unsupported.append("spec.pullSecrets")
    if spec.retention:
        unsupported.append("spec.retention")
    if spec.garbage_collection_enabled:
        unsupported.append("spec.garbageCollection.enabled")
    if unsupported:
        raise StalledError(conditions.UNSUPPORTED, "not supported by this version of berth: " + "; ".join(unsupported) + ". Remove the field(s) to continue.")


def deployment_progress(deployment: Mapping[str, Any]) -> tuple[int, bool]:
    """Return (ready replicas, whether the Deployment controller finished rolling out the current template)."""
    metadata = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    desired = int(spec.get("replicas", 1))
    ready = int(status.get("readyReplicas") or 0)
    observed = int(status.get("observedGeneration") or 0) >= int(metadata.get("generation") or 0)
    updated = int(status.get("updatedReplicas") or 0) >= desired
    old_gone = int(status.get("replicas") or 0) <= desired
    return ready, observed and updated and old_gone


def deployment_problem(deployment: Mapping[str, Any]) -> str | None:
    """Return what the Deployment controller reports as wrong (pods it cannot create, a stuck rollout), if anything."""
    for condition in (deployment.get("status") or {}).get("conditions") or ():
        failing = (condition.get("type") == "ReplicaFailure" and condition.get("status") == "True") or (
            condition.get("type") == "Progressing" and condition.get("status") == "False"
        )
        if failing:
            return f"Deployment {condition.get('reason')}: {condition.get('message')}"
    return None


def _timestamp(moment: datetime.datetime | None) -> str | None:
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def _node_endpoint(service: Mapping[str, Any]) -> str | None:
    for port in (service.get("spec") or {}).get("ports") or ():
        if port.get("name") == "registry" and port.get("nodePort"):
            return f"localhost:{port['nodePort']}"
    return None


def _secret_data(secret: Mapping[str, Any] | None) -> dict[str, bytes]:
    if not secret:
        return {}
    return {key: base64.b64decode(value) for key, value in (secret.get("data") or {}).items()}


def _read_secret(kube: Kube, namespace: str, name: str, field: str) -> dict[str, bytes]:
    secret = kube.get("v1", "Secret", namespace, name)
    if secret is None:
        raise StalledError(conditions.SECRET_NOT_FOUND, f"{field}: Secret {namespace}/{name} not found; create it, berth retries on the next resync")
    return _secret_data(secret)


def _read_secret_key(kube: Kube, namespace: str, ref: models.SecretKeyRef, field: str) -> str:
    data = _read_secret(kube, namespace, ref.name, field)
    value = data.get(ref.key, b"").decode("utf-8", errors="replace").strip()
    if not value:
        raise StalledError(conditions.SECRET_KEY_MISSING, f"{field}: Secret {namespace}/{ref.name} has no non-empty key {ref.key!r}")
    return value


def _check_storage(registry: models.Registry, kube: Kube) -> str | None:
    """Check what the storage spec references; return the S3 credentials Secret name, if any."""
    storage = registry.spec.storage
    if isinstance(storage, models.PvcStorage) and storage.storage_class_name:
        if kube.get("storage.k8s.io/v1", "StorageClass", None, storage.storage_class_name) is None:
            raise StalledError(
                conditions.STORAGE_CLASS_NOT_FOUND,
                f"spec.storage.pvc.storageClassName: StorageClass {storage.storage_class_name!r} not found; create it or pick another class",
            )
    if isinstance(storage, models.S3Storage):
        data = _read_secret(kube, registry.namespace, storage.credentials_secret, "spec.storage.s3.credentialsSecretRef")
        missing = [key for key in ("accessKeyID", "secretAccessKey") if not data.get(key, b"").strip()]
        if missing:
            raise StalledError(
                conditions.SECRET_KEY_MISSING,
                f"spec.storage.s3.credentialsSecretRef: Secret {registry.namespace}/{storage.credentials_secret} is missing the key(s) or they are empty: {', '.join(missing)}",
            )
        return storage.credentials_secret
    return None


def _admin_password(kube: Kube, registry: models.Registry) -> str:
    existing = _secret_data(kube.get("v1", "Secret", registry.namespace, rendering.names(registry.name)["admin"]))
    password = existing.get("password", b"").decode("utf-8", errors="replace")
    return password or credentials.generate_password()


def _htpasswd(kube: Kube, registry: models.Registry, users: list[tuple[str, str]]) -> str:
    existing = _secret_data(kube.get("v1", "Secret", registry.namespace, rendering.names(registry.name)["htpasswd"]))
    return credentials.htpasswd(users, credentials.parse_htpasswd(existing.get("htpasswd", b"").decode("utf-8", errors="replace")))


def _http_secret(kube: Kube, registry: models.Registry) -> str:
    existing = _secret_data(kube.get("v1", "Secret", registry.namespace, rendering.names(registry.name)["http_secret"]))
    return existing.get("secret", b"").decode("ascii", errors="replace") or credentials.generate_http_secret()


def serving_names(registry: models.Registry, settings: Settings) -> list[str]:
    """Return the DNS names and IPs the serving certificate covers."""
    service = rendering.names(registry.name)["workload"]
    namespace = registry.namespace
    result = [
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.{settings.cluster_domain}",
        f"{service}.{namespace}",
        service,
        "localhost",
        "127.0.0.1",
    ]
    if registry.spec.ingress:
        result.append(registry.spec.ingress.host)
    return result


def _ensure_tls(registry: models.Registry, kube: Kube, settings: Settings, now: datetime.datetime, warnings: list[tuple[str, str]]) -> _Tls:
    mode = registry.spec.tls.mode
    if mode == "Disabled":
        return _Tls(None, None, None, "")
    if mode == "Secret":
        return _user_tls(registry, kube)
    return _self_signed_tls(registry, kube, settings, now, warnings)


def _user_tls(registry: models.Registry, kube: Kube) -> _Tls:
    name = registry.spec.tls.secret_name or ""
    data = _read_secret(kube, registry.namespace, name, "spec.tls.secretName")
    missing = [key for key in ("tls.crt", "tls.key") if not data.get(key)]
    if missing:
        raise StalledError(conditions.SECRET_KEY_MISSING, f"spec.tls.secretName: Secret {registry.namespace}/{name} is missing {', '.join(missing)}")
    problem = certificates.check_key_pair(certificates.KeyPair(data["tls.crt"], data["tls.key"]))
    if problem:
        raise StalledError(conditions.INVALID_SECRET, f"spec.tls.secretName: Secret {registry.namespace}/{name}: {problem}")
    expiry = certificates.not_after(data["tls.crt"])
    fingerprint = hashlib.sha256(data["tls.crt"] + data["tls.key"]).hexdigest()
    return _Tls(name, name if data.get("ca.crt") else None, expiry, fingerprint)


def _self_signed_tls(registry: models.Registry, kube: Kube, settings: Settings, now: datetime.datetime, warnings: list[tuple[str, str]]) -> _Tls:
    child_names = rendering.names(registry.name)
    tls_spec = registry.spec.tls

    # The CA is kept for as long as it is valid, so clients keep trusting renewed serving certificates.
    stored_ca = _secret_data(kube.get("v1", "Secret", registry.namespace, child_names["ca_key"]))
    ca = certificates.KeyPair(stored_ca.get("tls.crt", b""), stored_ca.get("tls.key", b""))
    if not certificates.is_valid_ca(ca, now):
        logger.info("Creating a new CA for Registry %s/%s", registry.namespace, registry.name)
        # The public CA Secret outlives a deleted key Secret, so either one shows that clients trust an older CA.
        ca_existed = bool(stored_ca) or kube.get("v1", "Secret", registry.namespace, child_names["ca"]) is not None
        ca = certificates.make_ca(f"berth {registry.namespace}/{registry.name} CA", now)
        if ca_existed:
            warnings.append((
                conditions.CA_ROTATED,
                f"Secret {child_names['ca_key']} was missing or held an invalid CA, so berth created a new CA; "
                f"clients must trust the new ca.crt from Secret {child_names['ca']}",
            ))
    applying.ensure(kube, rendering.secret(registry, child_names["ca_key"], {"tls.crt": ca.cert_pem, "tls.key": ca.key_pem}, type="kubernetes.io/tls"))
    applying.ensure(kube, rendering.secret(registry, child_names["ca"], {"ca.crt": ca.cert_pem}))

    names = serving_names(registry, settings)
    stored = _secret_data(kube.get("v1", "Secret", registry.namespace, child_names["tls"]))
    serving = certificates.KeyPair(stored.get("tls.crt", b""), stored.get("tls.key", b""))
    renew_before = datetime.timedelta(seconds=tls_spec.renew_before_seconds)
    why = certificates.serving_needs_renewal(serving, ca, names, now, renew_before)
    if why is not None:
        logger.info("Issuing a serving certificate for Registry %s/%s: %s", registry.namespace, registry.name, why)
        serving = certificates.make_serving(ca, names, now, datetime.timedelta(seconds=tls_spec.duration_seconds))
        # A certificate that is due again at once (the CA expires within the renewal window) would reissue on every pass.
        still = certificates.serving_needs_renewal(serving, ca, names, now, renew_before)
        if still is not None:
            raise StalledError(conditions.INVALID_SPEC, f"a new serving certificate would need renewal at once ({still}); lower spec.tls.renewBefore")
    applying.ensure(kube, rendering.secret(
        registry, child_names["tls"], {"tls.crt": serving.cert_pem, "tls.key": serving.key_pem, "ca.crt": ca.cert_pem}, type="kubernetes.io/tls"
    ))
    fingerprint = hashlib.sha256(serving.cert_pem + serving.key_pem).hexdigest()
    return _Tls(child_names["tls"], child_names["ca"], certificates.not_after(serving.cert_pem), fingerprint)


def _ensure_ingress(registry: models.Registry, kube: Kube, tls_secret_name: str | None) -> None:
    name = rendering.names(registry.name)["workload"]
    if registry.spec.ingress is not None:
        applying.ensure(kube, rendering.ingress(registry, registry.spec.ingress, tls_secret_name))
        return
    live = kube.get("networking.k8s.io/v1", "Ingress", registry.namespace, name)
    owners = (live or {}).get("metadata", {}).get("ownerReferences") or []
    if any(owner.get("uid") == registry.uid for owner in owners):
        kube.delete("networking.k8s.io/v1", "Ingress", registry.namespace, name)
