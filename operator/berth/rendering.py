"""Render a Registry's children from the Jinja2 templates shipped in berth/templates.

Templates run in strict mode (an undefined variable is an error) and every
`{{ value }}` is emitted as a JSON literal, which is also valid YAML, so no
user input can change the structure of a manifest. Each rendered document is
parsed and its kind and identity checked before anything is applied.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import jinja2
import yaml

from berth import models


class RenderError(RuntimeError):
    """A template produced something other than the expected object (a bug in berth)."""


def _to_json(value: Any) -> str:
    if isinstance(value, jinja2.Undefined):
        # StrictUndefined raises UndefinedError when converted to text.
        return str(value)
    if isinstance(value, tuple):
        value = list(value)
    return json.dumps(value, sort_keys=True)


_environment = jinja2.Environment(
    loader=jinja2.PackageLoader("berth", "templates"),
    undefined=jinja2.StrictUndefined,
    finalize=_to_json,
    autoescape=False,
    keep_trailing_newline=True,
)
# Jinja2's globals (namespace, range, dict, ...) would shadow a missing value
# such as `namespace` instead of failing; templates need none of them.
_environment.globals.clear()


def render_text(template: str, values: Mapping[str, Any]) -> str:
    """Render one template to text."""
    return _environment.get_template(template).render(**values)


def render(template: str, values: Mapping[str, Any], *, kind: str, name: str, namespace: str) -> dict[str, Any]:
    """Render one manifest template, parse it and check its kind and identity."""
    text = render_text(template, values)
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise RenderError(f"{template} rendered invalid YAML: {error}") from error
    if not isinstance(document, dict):
        raise RenderError(f"{template} rendered {type(document).__name__}, expected a mapping")
    metadata = document.get("metadata") or {}
    found = (document.get("kind"), metadata.get("name"), metadata.get("namespace"))
    if found != (kind, name, namespace):
        raise RenderError(f"{template} rendered {found}, expected {(kind, name, namespace)}")
    if not isinstance(document.get("apiVersion"), str):
        raise RenderError(f"{template} rendered no apiVersion")
    return document


def names(registry_name: str) -> dict[str, str]:
    """Return the names of every child of a Registry, by role."""
    return {
        "workload": registry_name,
        "admin": f"{registry_name}-admin",
        "htpasswd": f"{registry_name}-htpasswd",
        "http_secret": f"{registry_name}-http-secret",
        "ca": f"{registry_name}-ca",
        "ca_key": f"{registry_name}-ca-key",
        "tls": f"{registry_name}-tls",
        "data": f"{registry_name}-data",
    }


def labels(registry_name: str) -> dict[str, str]:
    """Return the stable label set of every child."""
    return {
        "app.kubernetes.io/name": "registry",
        "app.kubernetes.io/instance": registry_name,
        "app.kubernetes.io/component": "registry",
        "app.kubernetes.io/part-of": "berth",
        "app.kubernetes.io/managed-by": "berth",
    }


def selector(registry_name: str) -> dict[str, str]:
    """Return the pod selector, a subset of the labels that never changes."""
    return {"app.kubernetes.io/name": "registry", "app.kubernetes.io/instance": registry_name}


def _base(registry: models.Registry) -> dict[str, Any]:
    return {
        "namespace": registry.namespace,
        "labels": labels(registry.name),
        "owner": registry.owner_reference(),
    }


def registry_config(registry: models.Registry) -> str:
    """Render Distribution's config.yml and check that it parses."""
    storage = registry.spec.storage
    storage_values: dict[str, Any] = {"kind": "filesystem"}
    if isinstance(storage, models.S3Storage):
        storage_values = {"kind": "s3", **dataclasses.asdict(storage)}
        del storage_values["credentials_secret"]
    text = render_text("registry-config.yml.j2", {
        "storage": storage_values,
        "tls_enabled": registry.spec.tls.mode != "Disabled",
        "listen_address": ":5000",
        "debug_address": ":5001",
        "realm": f"{registry.namespace}/{registry.name}",
    })
    parsed = yaml.safe_load(text)
    if not isinstance(parsed, dict) or parsed.get("version") != 0.1 or not parsed.get("storage", {}).get("delete", {}).get("enabled"):
        raise RenderError("registry-config.yml.j2 rendered an invalid registry configuration")
    return text


def config_map(registry: models.Registry, config: str) -> dict[str, Any]:
    """Render the ConfigMap that contains config.yml."""
    name = names(registry.name)["workload"]
    values = {**_base(registry), "name": name, "config": config}
    return render("configmap.yaml.j2", values, kind="ConfigMap", name=name, namespace=registry.namespace)


def secret(
    registry: models.Registry, name: str, data: Mapping[str, bytes], *, type: str = "Opaque", annotations: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Render a Secret owned by the Registry; values are base64-encoded here."""
    encoded = {key: base64.b64encode(value).decode("ascii") for key, value in data.items()}
    values = {**_base(registry), "name": name, "type": type, "data": encoded, "annotations": dict(annotations or {})}
    return render("secret.yaml.j2", values, kind="Secret", name=name, namespace=registry.namespace)


def service(registry: models.Registry) -> dict[str, Any]:
    """Render the Service."""
    name = names(registry.name)["workload"]
    values = {**_base(registry), "name": name, "service": registry.spec.service, "selector": selector(registry.name)}
    return render("service.yaml.j2", values, kind="Service", name=name, namespace=registry.namespace)


def persistent_volume_claim(registry: models.Registry, pvc: models.PvcStorage) -> dict[str, Any]:
    """Render the data PVC; it is not owned by the Registry when retainOnDelete is set."""
    name = names(registry.name)["data"]
    owner = None if pvc.retain_on_delete else registry.owner_reference()
    values = {**_base(registry), "name": name, "pvc": pvc, "owner": owner}
    return render("pvc.yaml.j2", values, kind="PersistentVolumeClaim", name=name, namespace=registry.namespace)


def ingress(registry: models.Registry, ingress_spec: models.IngressSpec, tls_secret_name: str | None) -> dict[str, Any]:
    """Render the Ingress; the registry speaks HTTPS behind it unless TLS is disabled."""
    name = names(registry.name)["workload"]
    annotations = {"nginx.ingress.kubernetes.io/proxy-body-size": "0"}
    if registry.spec.tls.mode != "Disabled":
        annotations["nginx.ingress.kubernetes.io/backend-protocol"] = "HTTPS"
    annotations.update(ingress_spec.annotations)
    values = {
        **_base(registry),
        "name": name,
        "ingress": ingress_spec,
        "annotations": annotations,
        "tls_secret_name": ingress_spec.tls_secret_name or tls_secret_name,
        "service_name": names(registry.name)["workload"],
    }
    return render("ingress.yaml.j2", values, kind="Ingress", name=name, namespace=registry.namespace)


DEFAULT_RESOURCES = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}}


def deployment(
    registry: models.Registry, *, image: str, checksum: str, tls_secret_name: str | None, s3_credentials_secret: str | None
) -> dict[str, Any]:
    """Render the registry Deployment.

    `checksum` covers everything the pods read at start (config, htpasswd,
    TLS, HTTP secret), so a change to any of them rolls the pods once.
    """
    spec = registry.spec
    child_names = names(registry.name)
    pod_labels = {**spec.pod_labels, **labels(registry.name)}
    pod_annotations = {**spec.pod_annotations, "berth.dev/config-checksum": checksum}
    env: list[dict[str, Any]] = [
        {"name": "REGISTRY_HTTP_SECRET", "valueFrom": {"secretKeyRef": {"name": child_names["http_secret"], "key": "secret"}}},
        # Distribution v3 exports OpenTelemetry traces to localhost:4318 by default and logs every failed export.
        {"name": "OTEL_TRACES_EXPORTER", "value": "none"},
    ]
    if s3_credentials_secret:
        env += [
            {"name": "REGISTRY_STORAGE_S3_ACCESSKEY", "valueFrom": {"secretKeyRef": {"name": s3_credentials_secret, "key": "accessKeyID"}}},
            {"name": "REGISTRY_STORAGE_S3_SECRETKEY", "valueFrom": {"secretKeyRef": {"name": s3_credentials_secret, "key": "secretAccessKey"}}},
        ]
    storage_volume: dict[str, Any] | None = None
    strategy: dict[str, Any] = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    if isinstance(spec.storage, models.PvcStorage):
        storage_volume = {"name": "data", "persistentVolumeClaim": {"claimName": child_names["data"]}}
        if "ReadWriteMany" not in spec.storage.access_modes:
            # A ReadWriteOnce volume cannot be mounted by the old and the new pod on different nodes at once.
            strategy = {"type": "Recreate"}
    elif isinstance(spec.storage, models.EmptyDirStorage):
        empty_dir = {"sizeLimit": spec.storage.size_limit} if spec.storage.size_limit else {}
        storage_volume = {"name": "data", "emptyDir": empty_dir}
    values = {
        **_base(registry),
        "name": child_names["workload"],
        "spec": spec,
        "image": image,
        "selector": selector(registry.name),
        "pod_labels": pod_labels,
        "pod_annotations": pod_annotations,
        "strategy": strategy,
        "env": env,
        "resources": dict(spec.resources) or DEFAULT_RESOURCES,
        "probe_scheme": "HTTP" if spec.tls.mode == "Disabled" else "HTTPS",
        "tls_secret_name": tls_secret_name,
        "storage_volume": storage_volume,
        "config_map_name": child_names["workload"],
        "htpasswd_secret_name": child_names["htpasswd"],
    }
    return render("deployment.yaml.j2", values, kind="Deployment", name=child_names["workload"], namespace=registry.namespace)
