"""One reconcile pass against an in-memory fake of berth.kube.Kube."""

from __future__ import annotations

import base64
import datetime
import json
from typing import Any

import pytest

from berth import conditions, credentials, models, reconciling
from berth.settings import Settings
from fakes import FakeKube
from helpers import registry_body

NOW = datetime.datetime(2026, 12, 4, 12, 0, tzinfo=datetime.timezone.utc)
SETTINGS = Settings(registry_image="berth.local/registry:test")


def _run(kube: FakeKube, spec: dict[str, Any], now: datetime.datetime = NOW) -> reconciling.Outcome:
    return reconciling.reconcile_registry(models.parse_registry(registry_body(spec)), kube, SETTINGS, now)


def _secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "ns"}, "data": encoded}


def _decoded(secret: dict[str, Any], key: str) -> str:
    return base64.b64decode(secret["data"][key]).decode()


def test_first_pass_creates_children() -> None:
    kube = FakeKube()
    outcome = _run(kube, {"storage": {"pvc": {}}, "service": {"type": "NodePort"}})
    assert outcome.stalled is None
    kinds = sorted(kind for kind, _, _ in kube.objects)
    assert kinds == ["ConfigMap", "Deployment", "PersistentVolumeClaim", "Secret", "Secret", "Secret", "Secret", "Secret", "Secret", "Service"]
    assert outcome.status["endpoint"] == "demo.ns.svc:5000"
    assert outcome.status["nodeEndpoint"] == "localhost:31234"
    assert outcome.status["caSecretName"] == "demo-ca"
    assert outcome.status["credentialsSecretName"] == "demo-admin"
    assert outcome.status["tls"]["notAfter"].startswith("2027-03-04")
    deployment = kube.child("Deployment", "demo")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "berth.local/registry:test"


def test_second_pass_writes_nothing() -> None:
    kube = FakeKube()
    spec = {"storage": {"emptyDir": {}}, "auth": {"users": [{"username": "ci", "passwordSecretRef": {"name": "ci", "key": "password"}}]}}
    kube.add(_secret("ci", {"password": "s3cret"}))
    _run(kube, spec)
    writes = len(kube.writes)
    _run(kube, spec, NOW + datetime.timedelta(hours=1))
    assert kube.writes[writes:] == []


def test_admin_secret_is_usable() -> None:
    kube = FakeKube()
    _run(kube, {"storage": {"emptyDir": {}}, "service": {"type": "NodePort"}})
    admin = kube.child("Secret", "demo-admin")
    assert admin["type"] == "kubernetes.io/dockerconfigjson"
    password = _decoded(admin, "password")
    assert _decoded(admin, "username") == "admin"
    assert sorted(json.loads(_decoded(admin, ".dockerconfigjson"))["auths"]) == ["demo.ns.svc:5000", "localhost:31234"]
    entries = credentials.parse_htpasswd(_decoded(kube.child("Secret", "demo-htpasswd"), "htpasswd"))
    assert credentials._matches(password, entries["admin"])


def test_spec_change_rolls_once() -> None:
    kube = FakeKube()
    _run(kube, {"storage": {"emptyDir": {}}})
    before = kube.child("Deployment", "demo")["spec"]["template"]["metadata"]["annotations"]["berth.dev/config-checksum"]
    _run(kube, {"storage": {"emptyDir": {}}, "tls": {"mode": "Disabled"}})
    after = kube.child("Deployment", "demo")["spec"]["template"]["metadata"]["annotations"]["berth.dev/config-checksum"]
    assert before != after


def test_ca_kept_across_renewal() -> None:
    kube = FakeKube()
    _run(kube, {"storage": {"emptyDir": {}}})
    ca = kube.child("Secret", "demo-ca")["data"]["ca.crt"]
    serving = kube.child("Secret", "demo-tls")["data"]["tls.crt"]
    _run(kube, {"storage": {"emptyDir": {}}}, NOW + datetime.timedelta(days=61))
    assert kube.child("Secret", "demo-ca")["data"]["ca.crt"] == ca
    assert kube.child("Secret", "demo-tls")["data"]["tls.crt"] != serving


def test_missing_user_secret_stalls() -> None:
    kube = FakeKube()
    outcome = _run(kube, {"storage": {"emptyDir": {}}, "auth": {"users": [{"username": "ci", "passwordSecretRef": {"name": "ci", "key": "password"}}]}})
    assert outcome.stalled is not None
    assert outcome.stalled[0] == conditions.SECRET_NOT_FOUND
    assert "ns/ci" in outcome.stalled[1]
    assert kube.writes == []


@pytest.mark.parametrize(
    ("data", "missing"),
    [({"accessKeyID": "a"}, "secretAccessKey"), ({"secretAccessKey": "b"}, "accessKeyID"), ({"accessKeyID": " ", "secretAccessKey": "b"}, "accessKeyID")],
)
def test_s3_secret_missing_key_stalls(data: dict[str, str], missing: str) -> None:
    kube = FakeKube()
    kube.add(_secret("creds", data))
    outcome = _run(kube, {"storage": {"s3": {"bucket": "b", "credentialsSecretRef": {"name": "creds"}}}})
    assert outcome.stalled is not None
    assert outcome.stalled[0] == conditions.SECRET_KEY_MISSING
    assert missing in outcome.stalled[1]


def test_unknown_storage_class_stalls() -> None:
    outcome = _run(FakeKube(), {"storage": {"pvc": {"storageClassName": "fast"}}})
    assert outcome.stalled is not None
    assert outcome.stalled[0] == conditions.STORAGE_CLASS_NOT_FOUND
    assert "'fast'" in outcome.stalled[1]


def test_known_storage_class_passes() -> None:
    kube = FakeKube()
    kube.add({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "fast"}})
    assert _run(kube, {"storage": {"pvc": {"storageClassName": "fast"}}}).stalled is None


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"tls": {"mode": "CertManager", "issuerRef": {"name": "ca"}}}, "CertManager"),
        ({"auth": {"anonymousPull": True}}, "anonymousPull"),
        ({"nodeAccess": {"enabled": True}}, "nodeAccess"),
        ({"pullSecrets": {"namespaces": ["a"]}}, "pullSecrets"),
        ({"retention": {"mode": "DryRun"}}, "retention"),
        ({"garbageCollection": {"enabled": True}}, "garbageCollection"),
    ],
)
def test_unsupported_options_stall(extra: dict[str, Any], needle: str) -> None:
    outcome = _run(FakeKube(), {"storage": {"emptyDir": {}}, **extra})
    assert outcome.stalled is not None
    assert outcome.stalled[0] == conditions.UNSUPPORTED
    assert needle in outcome.stalled[1]


def test_user_tls_secret() -> None:
    from berth import certificates

    ca = certificates.make_ca("corp", NOW)
    serving = certificates.make_serving(ca, ["corp.ns.svc"], NOW, datetime.timedelta(days=30))
    kube = FakeKube()
    kube.add(_secret("corp-tls", {"tls.crt": serving.cert_pem.decode(), "tls.key": serving.key_pem.decode()}))
    outcome = _run(kube, {"storage": {"emptyDir": {}}, "tls": {"mode": "Secret", "secretName": "corp-tls"}})
    assert outcome.stalled is None
    assert outcome.status["caSecretName"] is None
    volumes = kube.child("Deployment", "demo")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "tls", "secret": {"secretName": "corp-tls"}} in volumes


def test_user_tls_secret_not_pem() -> None:
    kube = FakeKube()
    kube.add(_secret("corp-tls", {"tls.crt": "nope", "tls.key": "nope"}))
    outcome = _run(kube, {"storage": {"emptyDir": {}}, "tls": {"mode": "Secret", "secretName": "corp-tls"}})
    assert outcome.stalled is not None
    assert outcome.stalled[0] == conditions.INVALID_SECRET


def test_ingress_removed_when_unset() -> None:
    kube = FakeKube()
    _run(kube, {"storage": {"emptyDir": {}}, "ingress": {"host": "registry.example.com"}})
    assert kube.child("Ingress", "demo")["spec"]["rules"][0]["host"] == "registry.example.com"
    _run(kube, {"storage": {"emptyDir": {}}})
    assert ("Ingress", "ns", "demo") not in kube.objects


@pytest.mark.parametrize(
    ("deployment", "expected"),
    [
        ({"metadata": {"generation": 2}, "spec": {"replicas": 1}, "status": {"observedGeneration": 2, "readyReplicas": 1, "updatedReplicas": 1, "replicas": 1}}, (1, True)),
        ({"metadata": {"generation": 3}, "spec": {"replicas": 1}, "status": {"observedGeneration": 2, "readyReplicas": 1, "updatedReplicas": 1, "replicas": 1}}, (1, False)),
        ({"metadata": {"generation": 2}, "spec": {"replicas": 1}, "status": {"observedGeneration": 2, "readyReplicas": 1, "updatedReplicas": 1, "replicas": 2}}, (1, False)),
        ({"metadata": {"generation": 1}, "spec": {"replicas": 2}, "status": {}}, (0, False)),
    ],
)
def test_deployment_progress_table(deployment: dict[str, Any], expected: tuple[int, bool]) -> None:
    assert reconciling.deployment_progress(deployment) == expected


def test_user_object_with_child_name_stalls() -> None:
    kube = FakeKube()
    kube.add(_secret("demo-admin", {"password": "the user's own"}))
    outcome = _run(kube, {"storage": {"emptyDir": {}}})
    assert outcome.stalled is not None
    assert outcome.stalled[0] == conditions.NAME_CONFLICT
    assert "Secret demo-admin already exists" in outcome.stalled[1]
    assert _decoded(kube.child("Secret", "demo-admin"), "password") == "the user's own"


def test_user_tls_key_mismatch_stalls() -> None:
    from berth import certificates

    ca = certificates.make_ca("corp", NOW)
    serving = certificates.make_serving(ca, ["corp.ns.svc"], NOW, datetime.timedelta(days=30))
    kube = FakeKube()
    kube.add(_secret("corp-tls", {"tls.crt": serving.cert_pem.decode(), "tls.key": ca.key_pem.decode()}))
    outcome = _run(kube, {"storage": {"emptyDir": {}}, "tls": {"mode": "Secret", "secretName": "corp-tls"}})
    assert outcome.stalled is not None
    assert outcome.stalled[0] == conditions.INVALID_SECRET
    assert "does not belong" in outcome.stalled[1]


def test_deleted_ca_key_warns() -> None:
    kube = FakeKube()
    assert _run(kube, {"storage": {"emptyDir": {}}}).warnings == []
    del kube.objects[("Secret", "ns", "demo-ca-key")]
    outcome = _run(kube, {"storage": {"emptyDir": {}}})
    assert [reason for reason, _ in outcome.warnings] == [conditions.CA_ROTATED]
    assert "demo-ca" in outcome.warnings[0][1]


def test_many_users_verified_once(monkeypatch: pytest.MonkeyPatch) -> None:
    kube = FakeKube()
    users = [{"username": f"user{i}", "passwordSecretRef": {"name": f"user{i}"}} for i in range(5)]
    for i in range(5):
        kube.add(_secret(f"user{i}", {"password": f"pw{i}"}))
    spec = {"storage": {"emptyDir": {}}, "auth": {"users": users}}
    _run(kube, spec)
    calls = []
    real = credentials.bcrypt.checkpw
    monkeypatch.setattr(credentials.bcrypt, "checkpw", lambda *args: calls.append(1) or real(*args))
    _run(kube, spec)
    assert calls == []


@pytest.mark.parametrize(
    ("deployment_conditions", "expected"),
    [
        ([], None),
        ([{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable", "message": "ok"}], None),
        ([{"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": "no PriorityClass with name x"}], "Deployment FailedCreate: no PriorityClass with name x"),
        ([{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "timed out"}], "Deployment ProgressDeadlineExceeded: timed out"),
    ],
)
def test_deployment_problem_table(deployment_conditions: list[dict[str, str]], expected: str | None) -> None:
    assert reconciling.deployment_problem({"status": {"conditions": deployment_conditions}}) == expected
