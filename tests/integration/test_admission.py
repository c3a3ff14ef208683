"""Invalid objects are rejected at admission by the CRD schema and CEL rules, with a message that names the field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conftest import Cluster


def _registry(spec: dict[str, Any], name: str = "bad") -> dict[str, Any]:
    return {"apiVersion": "berth.dev/v1alpha1", "kind": "Registry", "metadata": {"name": name}, "spec": spec}


def _repository(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "berth.dev/v1alpha1", "kind": "ImageRepository", "metadata": {"name": "bad"}, "spec": spec}


EMPTY = {"emptyDir": {}}
S3 = {"s3": {"bucket": "images", "credentialsSecretRef": {"name": "s3"}}}

INVALID = [
    ("no storage", _registry({}), "spec.storage"),
    ("two storage kinds", _registry({"storage": {"emptyDir": {}, "pvc": {}}}), "exactly one of storage.pvc, storage.emptyDir or storage.s3"),
    ("empty storage", _registry({"storage": {}}), "exactly one of storage.pvc"),
    ("replicas without shared storage", _registry({"storage": EMPTY, "replicas": 2}), "spec.replicas"),
    ("replicas on rwo pvc", _registry({"storage": {"pvc": {"accessModes": ["ReadWriteOnce"]}}, "replicas": 3}), "needs shared storage"),
    ("negative replicas", _registry({"storage": EMPTY, "replicas": -1}), "spec.replicas"),
    ("secret tls without name", _registry({"storage": EMPTY, "tls": {"mode": "Secret"}}), "spec.tls.secretName"),
    ("certmanager without issuer", _registry({"storage": EMPTY, "tls": {"mode": "CertManager"}}), "spec.tls.issuerRef"),
    ("unknown tls mode", _registry({"storage": EMPTY, "tls": {"mode": "Magic"}}), "spec.tls.mode"),
    ("bad pvc size", _registry({"storage": {"pvc": {"size": "ten gigs"}}}), "spec.storage.pvc.size"),
    ("bad access mode", _registry({"storage": {"pvc": {"accessModes": ["ReadManyTimes"]}}}), "spec.storage.pvc.accessModes"),
    ("s3 without bucket", _registry({"storage": {"s3": {"credentialsSecretRef": {"name": "s3"}}}}), "spec.storage.s3.bucket"),
    ("s3 without credentials", _registry({"storage": {"s3": {"bucket": "images"}}}), "spec.storage.s3.credentialsSecretRef"),
    ("s3 endpoint not a url", _registry({"storage": {"s3": {**S3["s3"], "endpoint": "minio:9000"}}}), "spec.storage.s3.endpoint"),
    ("node port on clusterip", _registry({"storage": EMPTY, "service": {"nodePort": 30500}}), "spec.service.nodePort"),
    ("node port out of range", _registry({"storage": EMPTY, "service": {"type": "NodePort", "nodePort": 80}}), "spec.service.nodePort"),
    ("unknown service type", _registry({"storage": EMPTY, "service": {"type": "ExternalName"}}), "spec.service.type"),
    ("ingress without host", _registry({"storage": EMPTY, "ingress": {"className": "nginx"}}), "spec.ingress.host"),
    ("ingress with tls disabled", _registry({"storage": EMPTY, "tls": {"mode": "Disabled"}, "ingress": {"host": "r.example.com"}}), "spec.ingress"),
    ("reserved admin user", _registry({"storage": EMPTY, "auth": {"users": [{"username": "admin", "passwordSecretRef": {"name": "p"}}]}}), "spec.auth.users[0].username"),
    ("duplicate users", _registry({"storage": EMPTY, "auth": {"users": [{"username": "ci", "passwordSecretRef": {"name": "p"}}, {"username": "ci", "passwordSecretRef": {"name": "q"}}]}}), "spec.auth.users[1]"),
    ("bad tls duration", _registry({"storage": EMPTY, "tls": {"duration": "90 days"}}), "spec.tls.duration"),
    ("renewal window longer than validity", _registry({"storage": EMPTY, "tls": {"duration": "24h"}}), "spec.tls.renewBefore"),
    ("certificate shorter than an hour", _registry({"storage": EMPTY, "tls": {"duration": "30m", "renewBefore": "10m"}}), "at least 1h"),
    ("empty tls duration", _registry({"storage": EMPTY, "tls": {"duration": ""}}), "spec.tls.duration"),
    ("bad gc schedule", _registry({"storage": EMPTY, "garbageCollection": {"schedule": "not cron"}}), "spec.garbageCollection.schedule"),
    ("too many pod annotations", _registry({"storage": EMPTY, "podAnnotations": {f"a{i}": "x" for i in range(33)}}), "spec.podAnnotations"),
    ("huge pod annotation", _registry({"storage": EMPTY, "podAnnotations": {"a": "x" * 150000}}), "spec.podAnnotations"),
    ("unknown field", _registry({"storage": EMPTY, "replica": 2}), 'unknown field "spec.replica"'),
    ("name too long", _registry({"storage": EMPTY}, name="r" * 53), "metadata.name"),
    ("name starting with digit", _registry({"storage": EMPTY}, name="1registry"), "metadata.name"),
    ("repository without registry", _repository({"repository": "team/app"}), "exactly one of registryRef or external"),
    ("repository with both registries", _repository({"repository": "team/app", "registryRef": {"name": "r"}, "external": {"url": "https://r.example.com"}}), "exactly one of registryRef or external"),
    ("uppercase repository", _repository({"repository": "Team/App", "registryRef": {"name": "r"}}), "spec.repository"),
    ("repository with double slash", _repository({"repository": "team//app", "registryRef": {"name": "r"}}), "spec.repository"),
    ("repository trailing dash", _repository({"repository": "team/app-", "registryRef": {"name": "r"}}), "spec.repository"),
    ("external url with path", _repository({"repository": "a", "external": {"url": "https://user:pw@r.example.com/v2"}}), "spec.external.url"),
    ("unknown retention mode", _repository({"repository": "a", "registryRef": {"name": "r"}, "retention": {"mode": "Yolo"}}), "spec.retention.mode"),
    ("max delete over 100", _repository({"repository": "a", "registryRef": {"name": "r"}, "retention": {"maxDeletePercent": 150}}), "spec.retention.maxDeletePercent"),
    ("bad younger than", _repository({"repository": "a", "registryRef": {"name": "r"}, "retention": {"keep": {"youngerThan": "1 week"}}}), "spec.retention.keep.youngerThan"),
    ("replication without ends", _repository({"repository": "a", "registryRef": {"name": "r"}, "replication": {"schedule": "@hourly"}}), "replication needs from, to, or both"),
    ("bad platform", _repository({"repository": "a", "registryRef": {"name": "r"}, "replication": {"from": {"registryRef": {"name": "s"}, "repository": "b"}, "platforms": ["amd64"]}}), "spec.replication.platforms[0]"),
    ("concurrency zero", _repository({"repository": "a", "registryRef": {"name": "r"}, "replication": {"from": {"registryRef": {"name": "s"}, "repository": "b"}, "concurrency": 0}}), "spec.replication.concurrency"),
]


@pytest.mark.parametrize(("case", "manifest", "needle"), INVALID, ids=[case for case, _, _ in INVALID])
def test_invalid_object_rejected(cluster: Cluster, case: str, manifest: dict[str, Any], needle: str) -> None:
    result = cluster.kubectl("apply", "-n", cluster.namespace, "--validate=strict", "-f", "-", input=json.dumps(manifest), check=False)
    assert result.returncode != 0, f"{case}: the API server accepted {manifest}"
    assert needle in result.stderr, f"{case}: message does not name {needle!r}: {result.stderr}"


def test_valid_minimal_registry_accepted(cluster: Cluster) -> None:
    result = cluster.kubectl("apply", "-n", cluster.namespace, "-f", "-", input=json.dumps(_registry({"storage": EMPTY}, name="good")))
    assert "created" in result.stdout
    stored = cluster.get("registry", "good")
    assert stored is not None
    assert stored["spec"]["tls"] == {"mode": "SelfSigned", "duration": "2160h", "renewBefore": "720h"}
    assert stored["spec"]["service"] == {"type": "ClusterIP", "port": 5000}
    assert stored["spec"]["replicas"] == 1
