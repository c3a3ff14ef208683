"""berth's small wrapper over the official Kubernetes client.

Everything berth does to the API goes through `Kube`: get, server-side apply
under one field manager, status patches, Events and deletes. Objects travel
as plain dicts, as the API returns them. Unit tests replace `Kube` with a
fake of this same interface; integration tests use it against a real API
server.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import uuid
from collections.abc import Mapping
from typing import Any

import kubernetes.client
import kubernetes.config
from kubernetes.client.exceptions import ApiException

logger = logging.getLogger(__name__)

# (apiVersion, kind) -> (plural, namespaced)
_RESOURCES: dict[tuple[str, str], tuple[str, bool]] = {
    ("v1", "ConfigMap"): ("configmaps", True),
    ("v1", "Secret"): ("secrets", True),
    ("v1", "Service"): ("services", True),
    ("v1", "PersistentVolumeClaim"): ("persistentvolumeclaims", True),
    ("v1", "Event"): ("events", True),
    ("v1", "Namespace"): ("namespaces", False),
    ("apps/v1", "Deployment"): ("deployments", True),
    ("networking.k8s.io/v1", "Ingress"): ("ingresses", True),
    ("storage.k8s.io/v1", "StorageClass"): ("storageclasses", False),
    ("berth.dev/v1alpha1", "Registry"): ("registries", True),
    ("berth.dev/v1alpha1", "ImageRepository"): ("imagerepositories", True),
}


class KubeError(RuntimeError):
    """An API request failed; `status` is the HTTP status (0 when none was received)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


def resource_path(api_version: str, kind: str, namespace: str | None, name: str | None = None) -> str:
    """Return the REST path of a collection or of one object."""
    try:
        plural, namespaced = _RESOURCES[(api_version, kind)]
    except KeyError:
        raise ValueError(f"berth does not know the resource {api_version} {kind}") from None
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    if namespaced:
        if not namespace:
            raise ValueError(f"{kind} is namespaced, but no namespace was given")
        prefix += f"/namespaces/{namespace}"
    path = f"{prefix}/{plural}"
    return f"{path}/{name}" if name else path


def load_api_client() -> kubernetes.client.ApiClient:
    """Create an API client from the in-cluster service account, or else from $KUBECONFIG or ~/.kube/config."""
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        # The client library reads $KUBECONFIG once at import, so pass it explicitly.
        path = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None
        kubernetes.config.load_kube_config(config_file=path, client_configuration=configuration)  # type: ignore[no-untyped-call]
    return kubernetes.client.ApiClient(configuration)


class Kube:
    """Synchronous access to the API server; safe to share between threads."""

    def __init__(self, api_client: kubernetes.client.ApiClient, field_manager: str = "berth") -> None:
        self._client = api_client
        self.field_manager = field_manager

    def _request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        method, url, headers, body, _ = self._client.param_serialize(
            method, path, query_params=query or [], header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        try:
            response = self._client.call_api(method, url, header_params=headers, body=body, _request_timeout=30)
            response.read()  # type: ignore[no-untyped-call]
        except ApiException as error:
            raise _kube_error(error) from None
        if response.status >= 400:
            raise _kube_error(ApiException(http_resp=response))
        data = response.data
        return json.loads(data) if data else {}

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """Read one object, or None when it does not exist."""
        try:
            return self._request("GET", resource_path(api_version, kind, namespace, name))
        except KubeError as error:
            if error.status == 404:
                return None
            raise

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply `obj` under berth's field manager, taking over conflicting fields."""
        metadata = obj["metadata"]
        path = resource_path(obj["apiVersion"], obj["kind"], metadata.get("namespace"), metadata["name"])
        query = [("fieldManager", self.field_manager), ("force", "true")]
        # JSON is valid YAML, and the string body keeps the client from re-serializing it.
        return self._request("PATCH", path, query=query, body=json.dumps(obj), content_type="application/apply-patch+yaml")

    def patch_status(self, api_version: str, kind: str, namespace: str, name: str, status: Mapping[str, Any]) -> dict[str, Any]:
        """Merge-patch the status subresource."""
        path = resource_path(api_version, kind, namespace, name) + "/status"
        return self._request("PATCH", path, body={"status": dict(status)}, content_type="application/merge-patch+json")

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> bool:
        """Delete one object in the background; return False when it was already gone."""
        try:
            self._request("DELETE", resource_path(api_version, kind, namespace, name), body={"propagationPolicy": "Background"})
        except KubeError as error:
            if error.status == 404:
                return False
            raise
        return True

    def post_event(self, involved: Mapping[str, Any], type: str, reason: str, message: str, now: datetime.datetime) -> None:
        """Record a core/v1 Event about an object. Failing to post is logged, not raised."""
        metadata = involved["metadata"]
        stamp = now.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{metadata['name']}.{uuid.uuid4().hex[:12]}", "namespace": metadata["namespace"]},
            "involvedObject": {
                "apiVersion": involved["apiVersion"],
                "kind": involved["kind"],
                "name": metadata["name"],
                "namespace": metadata["namespace"],
                "uid": metadata["uid"],
            },
            "type": type,
            "reason": reason,
            "message": message[:1024],
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "source": {"component": "berth"},
            "reportingComponent": "berth.dev/operator",
        }
        try:
            self._request("POST", resource_path("v1", "Event", metadata["namespace"]), body=event)
        except KubeError as error:
            # An Event is a courtesy: the condition in status carries the same facts.
            logger.warning("Posting Event %s for %s/%s failed: %s", reason, metadata["namespace"], metadata["name"], error)


def _kube_error(error: ApiException) -> KubeError:
    status = int(error.status or 0)
    reason = str(error.reason or "")
    message = reason
    if error.body:
        try:
            message = json.loads(error.body).get("message", message)
        except (ValueError, AttributeError):
            message = str(error.body)[:500]
    return KubeError(status, reason, message)
