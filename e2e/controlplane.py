#!/usr/bin/env python3
"""Run a real Kubernetes control plane on this machine for berth's tests.

The control plane is etcd, kube-apiserver and kube-controller-manager, built
from their Go modules by e2e/build-tools. Everything one instance creates
(PKI, etcd data, kubeconfigs, logs, recorded PIDs) lives under one work
directory, so a test session can throw it away and the CLI can find it again.

Library use::

    with ControlPlane(tmp_path) as control_plane:
        subprocess.run(["kubectl", "--kubeconfig", control_plane.kubeconfig, "get", "ns"])

Command line (the state directory defaults to
${BERTH_CACHE:-~/.cache/berth}/controlplane)::

    python3 e2e/controlplane.py up|down|status|kubeconfig [--dir DIR]

Only the standard library and `cryptography` are imported, so the harness runs
before berth itself is installed.
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import datetime
import fcntl
import ipaddress
import json
import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

log = logging.getLogger("berth.controlplane")

E2E_DIR = Path(__file__).resolve().parent
BUILD_TOOLS = E2E_DIR / "build-tools"

ETCD = "etcd"
APISERVER = "kube-apiserver"
CONTROLLER_MANAGER = "kube-controller-manager"
# Start order. stop() goes the other way, so no component outlives what it needs.
COMPONENTS = (ETCD, APISERVER, CONTROLLER_MANAGER)

STATE_FILE = "state.json"
LOG_TAIL_LINES = 40


class ControlPlaneError(RuntimeError):
    """A control plane component failed to build, start, become ready or stop."""


def default_cache_dir() -> Path:
    """Return the cache directory that e2e/build-tools also uses."""
    return Path(os.environ.get("BERTH_CACHE") or Path.home() / ".cache" / "berth")


def build_tools(*names: str) -> dict[str, Path]:
    """Build (or find in the cache) the named tools with e2e/build-tools.

    Returns a map from tool name to binary path. Build progress goes to stderr.
    """
    result = subprocess.run(
        [str(BUILD_TOOLS), *names], stdout=subprocess.PIPE, text=True, check=False
    )
    paths = result.stdout.split()
    if result.returncode != 0 or len(paths) != len(names):
        raise ControlPlaneError(
            f"{BUILD_TOOLS} {' '.join(names)} failed with exit code {result.returncode}. "
            "Its output above shows which build step failed."
        )
    return {name: Path(path) for name, path in zip(names, paths)}


# --- PKI -------------------------------------------------------------------


@dataclass(frozen=True)
class KeyPair:
    """Paths of a PEM certificate and its PEM private key."""

    cert: Path
    key: Path


def _new_key() -> ec.EllipticCurvePrivateKey:
    # P-256 keys are accepted by every component here and are generated far
    # faster than RSA keys, which matters for a per-session control plane.
    return ec.generate_private_key(ec.SECP256R1())


def _write_private_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.touch(mode=0o600, exist_ok=True)
    path.write_bytes(pem)


def _split_sans(names: Iterable[str]) -> list[x509.GeneralName]:
    """Turn host names and IP addresses into subjectAltName entries, deduplicated."""
    entries: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return entries


def _certificate_builder(
    subject: x509.Name, issuer: x509.Name, public_key: Any, days: int
) -> x509.CertificateBuilder:
    # Back-date a little so a clock that is a few minutes off still accepts it.
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
    )


class CertificateAuthority:
    """A self-signed CA stored as ca.crt and ca.key in a directory."""

    def __init__(self, directory: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey):
        self.directory = directory
        self.certificate = cert
        self.private_key = key

    @property
    def paths(self) -> KeyPair:
        """Paths of the CA certificate and key."""
        return KeyPair(self.directory / "ca.crt", self.directory / "ca.key")

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate in PEM form."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @classmethod
    def load_or_create(cls, directory: Path, common_name: str = "berth-ca") -> Self:
        """Load the CA from directory, or create it there if it is missing.

        Keeping the CA across restarts keeps existing kubeconfigs and
        ServiceAccount tokens valid.
        """
        directory.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = directory / "ca.crt", directory / "ca.key"
        if cert_path.exists() and key_path.exists():
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ControlPlaneError(f"{key_path} is not an ECDSA key. Delete {directory} to create a new CA.")
            return cls(directory, cert, key)

        key = _new_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        cert = (
            _certificate_builder(name, name, key.public_key(), days=3650)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True,
                    content_commitment=False, key_encipherment=False, data_encipherment=False,
                    key_agreement=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        _write_private_key(key_path, key)
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(directory, cert, key)

    def issue(
        self,
        name: str,
        common_name: str,
        *,
        organizations: Sequence[str] = (),
        sans: Iterable[str] = (),
        server: bool = False,
        client: bool = False,
        days: int = 365,
    ) -> KeyPair:
        """Issue a new key and certificate, written as NAME.crt and NAME.key.

        `sans` contains host names and IP addresses in any mix. `server` and
        `client` set the extended key usages.
        """
        key = _new_key()
        attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        usages = [ExtendedKeyUsageOID.SERVER_AUTH] * server + [ExtendedKeyUsageOID.CLIENT_AUTH] * client
        builder = (
            _certificate_builder(x509.Name(attributes), self.certificate.subject, key.public_key(), days)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_encipherment=False, key_cert_sign=False,
                    crl_sign=False, content_commitment=False, data_encipherment=False,
                    key_agreement=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.private_key.public_key()),
                critical=False,
            )
        )
        alt_names = _split_sans(sans)
        if alt_names:
            builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        cert = builder.sign(self.private_key, hashes.SHA256())

        pair = KeyPair(self.directory / f"{name}.crt", self.directory / f"{name}.key")
        _write_private_key(pair.key, key)
        pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return pair


def ensure_signing_key(directory: Path) -> None:
    """Create the ServiceAccount token signing key as sa.key and sa.pub unless both exist.

    kube-apiserver signs tokens with sa.key and verifies them with sa.pub.
    """
    private_path, public_path = directory / "sa.key", directory / "sa.pub"
    if private_path.exists() and public_path.exists():
        return
    key = _new_key()
    _write_private_key(private_path, key)
    public_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def write_kubeconfig(path: Path, server: str, ca_pem: bytes, client: KeyPair, user: str) -> None:
    """Write a self-contained kubeconfig that embeds the CA and client credentials.

    The file is JSON, which every kubeconfig reader accepts as YAML.
    """

    def encode(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": "berth",
            "cluster": {"server": server, "certificate-authority-data": encode(ca_pem)},
        }],
        "users": [{
            "name": user,
            "user": {
                "client-certificate-data": encode(client.cert.read_bytes()),
                "client-key-data": encode(client.key.read_bytes()),
            },
        }],
        "contexts": [{"name": "berth", "context": {"cluster": "berth", "user": user}}],
        "current-context": "berth",
    }
    path.touch(mode=0o600, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


# --- processes ---------------------------------------------------------------


def pick_free_port(host: str) -> int:
    """Return a TCP port on host that is free right now.

    Another process can take it before the component binds it, so callers
    retry with a new port when a component reports "address already in use".
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _child_environment() -> dict[str, str]:
    # The components talk only to loopback and to networks the harness
    # creates, so a proxy from the caller's environment must not reroute them.
    proxy_variables = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
    return {k: v for k, v in os.environ.items() if k.lower() not in proxy_variables}


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    """Build a preexec_fn that makes the child get SIGTERM when its parent dies.

    This keeps a killed test session from leaving etcd and kube-apiserver
    running. NOTE: Linux delivers the signal when the forking *thread* exits,
    so start an attached control plane from a thread that lives as long as it.
    """

    # Resolve prctl before fork: the child should not load libraries.
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)
        if os.getppid() != parent_pid:
            os._exit(1)  # The parent died before prctl took effect.

    return preexec


def process_identity(pid: int) -> str | None:
    """Return "EXE@STARTTIME" for a live process, or None if it is gone or a zombie.

    Comparing this with a recorded value guards against signalling an
    unrelated process that reused a recorded PID.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        exe = os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)")
    except OSError:
        return None
    # Fields after the parenthesised command name: state is first, starttime is 20th.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return f"{exe}@{fields[19]}"


@dataclass
class Process:
    """A started component process and where its output goes."""

    name: str
    argv: list[str]
    log_path: Path
    pid: int
    identity: str
    # Byte offset in log_path where this run's output starts.
    log_offset: int
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    def is_running(self) -> bool:
        """Tell whether the process is still alive, reaping it if it is our child."""
        if self.popen is not None:
            return self.popen.poll() is None
        return process_identity(self.pid) == self.identity

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """Return the last lines this run wrote to its log."""
        try:
            with self.log_path.open("rb") as stream:
                stream.seek(self.log_offset)
                text = stream.read().decode("utf-8", errors="replace")
        except OSError as error:
            return f"(cannot read {self.log_path}: {error})"
        return "\n".join(text.splitlines()[-lines:])

    def to_record(self) -> dict[str, Any]:
        """Return the fields that `down` needs, for the state file."""
        return {"pid": self.pid, "identity": self.identity, "argv": self.argv, "log": str(self.log_path)}

    @classmethod
    def from_record(cls, name: str, record: Mapping[str, Any]) -> Self:
        """Rebuild a Process (without a Popen) from a state file record."""
        return cls(name, list(record["argv"]), Path(record["log"]), int(record["pid"]), str(record["identity"]), 0)


def launch(name: str, argv: list[str], log_path: Path, *, detach: bool) -> Process:
    """Start one component with its stdout and stderr appended to log_path.

    Every component gets its own session, so a Ctrl-C in the caller's terminal
    reaches only the caller, which then stops the components in order. Unless
    `detach` is set, the components also die when the caller dies.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_stream:
        offset = log_stream.tell()
        started = datetime.datetime.now().isoformat(timespec="seconds")
        log_stream.write(f"=== {started} starting: {' '.join(argv)}\n".encode())
        log_stream.flush()
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_stream,
            stderr=subprocess.STDOUT,
            env=_child_environment(),
            start_new_session=True,
            preexec_fn=None if detach else _die_with_parent(os.getpid()),
        )
    identity = process_identity(popen.pid) or ""
    log.info("started %s (pid %d), log %s", name, popen.pid, log_path)
    return Process(name, argv, log_path, popen.pid, identity, offset, popen)


def stop_process(process: Process, timeout: float) -> None:
    """Send SIGTERM, wait up to timeout seconds, then SIGKILL and wait again."""
    if not process.is_running():
        return
    log.info("stopping %s (pid %d)", process.name, process.pid)
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        if sig == signal.SIGKILL:
            log.warning("%s (pid %d) ignored SIGTERM for %.0fs; sending SIGKILL", process.name, process.pid, timeout)
        try:
            os.kill(process.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not process.is_running():
                return
            time.sleep(0.1)
    raise ControlPlaneError(f"{process.name} (pid {process.pid}) is still running after SIGKILL")


def http_ok(url: str, context: ssl.SSLContext | None, timeout: float = 2.0) -> bool:
    """Tell whether a GET of url returns HTTP 200, ignoring proxy settings."""
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def api_request(
    server_url: str, context: ssl.SSLContext, method: str, path: str, body: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Send one JSON request to kube-apiserver and return the decoded response.

    Raises urllib.error.HTTPError for error statuses, so callers can check `code`.
    """
    request = urllib.request.Request(
        server_url + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context))
    with opener.open(request, timeout=10.0) as response:
        document: dict[str, Any] = json.loads(response.read())
    return document


def wait_until_ready(process: Process, probe: Callable[[], bool], timeout: float) -> None:
    """Poll probe until it returns True, failing early if the process exits.

    The exit check comes first: a port that the process failed to bind may
    belong to another server, which the probe would then reach.
    """
    deadline = time.monotonic() + timeout
    while True:
        if not process.is_running():
            code = process.popen.returncode if process.popen else "unknown"
            raise ControlPlaneError(
                f"{process.name} exited with code {code} during startup; see {process.log_path}. "
                f"Last lines of its log:\n{process.log_tail()}"
            )
        if probe():
            return
        if time.monotonic() > deadline:
            raise ControlPlaneError(
                f"{process.name} was not ready after {timeout:.0f}s; see {process.log_path}. "
                f"Last lines of its log:\n{process.log_tail()}"
            )
        time.sleep(0.2)


def _url_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


# --- control plane -------------------------------------------------------------


@dataclass
class Ports:
    """TCP ports of the components. A port of 0 is replaced by a free one at start()."""

    etcd_client: int = 0
    etcd_peer: int = 0
    apiserver: int = 0
    controller_manager: int = 0


# Which ports each component binds, to re-pick them after a lost race.
_COMPONENT_PORTS = {
    ETCD: ("etcd_client", "etcd_peer"),
    APISERVER: ("apiserver",),
    CONTROLLER_MANAGER: ("controller_manager",),
}
_PORT_RETRIES = 3


class ControlPlane:
    """etcd, kube-apiserver and kube-controller-manager under one work directory.

    kube-apiserver serves only its secure port, on `bind_address`. etcd and
    kube-controller-manager listen on 127.0.0.1 because only the apiserver
    and the readiness checks talk to them.

    `advertise_address` is the address the apiserver publishes as the
    endpoint of the `kubernetes` Service. Endpoints reject loopback
    addresses, so when it is None and `bind_address` is loopback,
    kube-apiserver v1.34 publishes the host's default interface address,
    where nothing listens. Set it when pods must reach the apiserver.

    `extra_sans` adds host names or IP addresses to the apiserver serving
    certificate. `extra_args` maps a component name to flags appended after
    the defaults. The components use the last value of a repeated flag, so
    these can also override a default. `binaries` maps component names to
    binaries to use instead of building them with e2e/build-tools.
    `startup_timeout` and `stop_timeout` are seconds per component. With
    `detach`, the components keep running when this Python process exits.

    The CA, the ServiceAccount signing key and the etcd data are kept across
    restarts in the same work directory, while leaf certificates, kubeconfigs
    and ports are new on every start.
    """

    def __init__(
        self,
        workdir: Path,
        bind_address: str = "127.0.0.1",
        advertise_address: str | None = None,
        extra_sans: Sequence[str] = (),
        *,
        ports: Ports | None = None,
        service_cluster_ip_range: str = "10.0.0.0/24",
        cluster_domain: str = "cluster.local",
        extra_args: Mapping[str, Sequence[str]] | None = None,
        binaries: Mapping[str, Path] | None = None,
        startup_timeout: float = 120.0,
        stop_timeout: float = 15.0,
        etcd_unsafe_no_fsync: bool = True,
        detach: bool = False,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.bind_address = bind_address
        self.advertise_address = advertise_address
        self.extra_sans = tuple(extra_sans)
        self.requested_ports = ports or Ports()
        self.ports = Ports(**asdict(self.requested_ports))
        self.service_cluster_ip_range = service_cluster_ip_range
        self.cluster_domain = cluster_domain
        self.extra_args = {name: list(args) for name, args in (extra_args or {}).items()}
        self.binaries = dict(binaries or {})
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        # Each control plane is disposable test infrastructure, so skipping
        # fsync trades crash safety of its data for a faster start and tests.
        self.etcd_unsafe_no_fsync = etcd_unsafe_no_fsync
        self.detach = detach
        self.processes: dict[str, Process] = {}
        self.ca: CertificateAuthority | None = None

    # Paths and addresses.

    @property
    def pki_dir(self) -> Path:
        return self.workdir / "pki"

    @property
    def logs_dir(self) -> Path:
        return self.workdir / "logs"

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig (user in group system:masters)."""
        return self.workdir / "kubeconfig"

    @property
    def ca_cert(self) -> Path:
        return self.pki_dir / "ca.crt"

    @property
    def state_file(self) -> Path:
        return self.workdir / STATE_FILE

    def log_path(self, component: str) -> Path:
        """Log file of one component."""
        return self.logs_dir / f"{component}.log"

    @property
    def client_host(self) -> str:
        """Address on which clients on this host reach the apiserver."""
        if ipaddress.ip_address(self.bind_address).is_unspecified:
            return "127.0.0.1"
        return self.bind_address

    @property
    def server_url(self) -> str:
        return f"https://{_url_host(self.client_host)}:{self.ports.apiserver}"

    @property
    def service_ip(self) -> str:
        """ClusterIP of the `kubernetes` Service: the first address of the range."""
        first_range = self.service_cluster_ip_range.split(",")[0]
        return str(ipaddress.ip_network(first_range)[1])

    @property
    def service_account_issuer(self) -> str:
        return f"https://kubernetes.default.svc.{self.cluster_domain}"

    # Lifecycle.

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start all components and return once each one is ready.

        Raises ControlPlaneError naming the failed component and its log
        file. On failure the components already started are stopped again.
        """
        if self.processes:
            raise ControlPlaneError(f"control plane in {self.workdir} is already started")
        began = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._locate_binaries()
        self._prepare_pki()
        try:
            self._start_component(ETCD, self._etcd_args, self._etcd_ready)
            self._start_component(APISERVER, self._apiserver_args, self._apiserver_ready)
            self._write_kubeconfigs()
            self._start_component(CONTROLLER_MANAGER, self._controller_manager_args, self._controller_manager_ready)
            self._wait_for_garbage_collector()
        except BaseException:
            self.stop()
            raise
        self._write_state()
        log.info("control plane ready at %s in %.1fs", self.server_url, time.monotonic() - began)

    def stop(self) -> None:
        """Stop every component, newest first.

        A component that ignores SIGTERM for stop_timeout seconds gets SIGKILL.
        """
        errors = []
        for name in reversed(COMPONENTS):
            process = self.processes.pop(name, None)
            if process is None:
                continue
            try:
                stop_process(process, self.stop_timeout)
            except ControlPlaneError as error:
                errors.append(str(error))
        self.state_file.unlink(missing_ok=True)
        if errors:
            raise ControlPlaneError("; ".join(errors))

    # Startup steps.

    def _locate_binaries(self) -> None:
        missing = [name for name in COMPONENTS if name not in self.binaries]
        if missing:
            self.binaries.update(build_tools(*missing))

    def _prepare_pki(self) -> None:
        self.ca = CertificateAuthority.load_or_create(self.pki_dir)
        ensure_signing_key(self.pki_dir)
        service_names = [
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            f"kubernetes.default.svc.{self.cluster_domain}",
        ]
        addresses = [self.client_host, self.service_ip]
        if self.advertise_address:
            addresses.append(self.advertise_address)
        self.ca.issue(
            APISERVER, APISERVER, server=True,
            sans=["localhost", "127.0.0.1", "::1", *service_names, *addresses, *self.extra_sans],
        )
        self.ca.issue("admin", "berth-admin", organizations=["system:masters"], client=True)
        # kube-controller-manager runs as this user. RBAC's bootstrap policy
        # grants it the system:kube-controller-manager ClusterRole.
        self.ca.issue(CONTROLLER_MANAGER, "system:kube-controller-manager", client=True)

    def _write_kubeconfigs(self) -> None:
        assert self.ca is not None
        write_kubeconfig(self.kubeconfig, self.server_url, self.ca.cert_pem, self._pair("admin"), "berth-admin")
        write_kubeconfig(
            self._controller_manager_kubeconfig, self.server_url, self.ca.cert_pem,
            self._pair(CONTROLLER_MANAGER), "system:kube-controller-manager",
        )

    def _pair(self, name: str) -> KeyPair:
        return KeyPair(self.pki_dir / f"{name}.crt", self.pki_dir / f"{name}.key")

    def _start_component(
        self, name: str, build_args: Callable[[], list[str]], probe: Callable[[], bool]
    ) -> None:
        """Launch a component and wait for it, re-picking ports it lost to a race."""
        for attempt in range(1, _PORT_RETRIES + 1):
            self._pick_ports(name)
            argv = [str(self.binaries[name]), *build_args(), *self.extra_args.get(name, [])]
            process = launch(name, argv, self.log_path(name), detach=self.detach)
            self.processes[name] = process
            try:
                wait_until_ready(process, probe, self.startup_timeout)
                return
            except ControlPlaneError:
                lost_port = "address already in use" in process.log_tail(lines=200)
                if not (lost_port and self._may_repick_ports(name) and attempt < _PORT_RETRIES):
                    raise
                log.warning("%s lost its port to another process; retrying with new ports", name)
                stop_process(self.processes.pop(name), self.stop_timeout)
                for port_name in _COMPONENT_PORTS[name]:
                    setattr(self.ports, port_name, 0)

    def _pick_ports(self, name: str) -> None:
        host = self.bind_address if name == APISERVER else "127.0.0.1"
        for port_name in _COMPONENT_PORTS[name]:
            if getattr(self.ports, port_name) == 0:
                setattr(self.ports, port_name, pick_free_port(host))

    def _may_repick_ports(self, name: str) -> bool:
        """Tell whether the caller left all ports of this component for start() to pick."""
        return all(getattr(self.requested_ports, port) == 0 for port in _COMPONENT_PORTS[name])

    def _write_state(self) -> None:
        state = {
            "server": self.server_url,
            "kubeconfig": str(self.kubeconfig),
            "ports": asdict(self.ports),
            "components": {name: process.to_record() for name, process in self.processes.items()},
        }
        # Write and rename, so `down` never reads a half-written file.
        partial = self.state_file.with_suffix(".tmp")
        partial.write_text(json.dumps(state, indent=2) + "\n")
        partial.replace(self.state_file)

    # Readiness probes.

    def _client_ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_cert))
        admin = self._pair("admin")
        context.load_cert_chain(str(admin.cert), str(admin.key))
        return context

    def _etcd_ready(self) -> bool:
        return http_ok(f"http://127.0.0.1:{self.ports.etcd_client}/readyz", None)

    def _apiserver_ready(self) -> bool:
        # /readyz returns 200 only after the post-start hooks ran, which include
        # creating the bootstrap RBAC roles and the system priority levels.
        return http_ok(f"{self.server_url}/readyz", self._client_ssl_context())

    def _controller_manager_ready(self) -> bool:
        # The controller manager serves a self-signed certificate from
        # --cert-dir. This probe only checks liveness on loopback, so it skips
        # verification.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return http_ok(f"https://127.0.0.1:{self.ports.controller_manager}/healthz", context)

    def _wait_for_garbage_collector(self) -> None:
        """Wait until the garbage collector deletes the dependent of a deleted owner.

        In kube-controller-manager v1.34 the collector does nothing until its
        first cache sync, and if API resources change during that sync (a
        test installing and removing a CRD) it waits 30 seconds before it
        proceeds. Waiting here keeps that stall out of the tests.
        """
        context = self._client_ssl_context()
        configmaps = "/api/v1/namespaces/kube-system/configmaps"

        def create(metadata: dict[str, Any]) -> dict[str, Any]:
            body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata}
            return api_request(self.server_url, context, "POST", configmaps, body)

        # generateName avoids clashes with probes left by an interrupted start.
        owner = create({"generateName": "berth-gc-probe-owner-"})["metadata"]
        reference = {"apiVersion": "v1", "kind": "ConfigMap", "name": owner["name"], "uid": owner["uid"]}
        dependent = create({"generateName": "berth-gc-probe-dependent-", "ownerReferences": [reference]})["metadata"]
        api_request(self.server_url, context, "DELETE", f"{configmaps}/{owner['name']}")

        def dependent_deleted() -> bool:
            try:
                api_request(self.server_url, context, "GET", f"{configmaps}/{dependent['name']}")
            except urllib.error.HTTPError as error:
                return error.code == 404
            return False

        wait_until_ready(self.processes[CONTROLLER_MANAGER], dependent_deleted, self.startup_timeout)

    # Command lines.

    @property
    def _controller_manager_kubeconfig(self) -> Path:
        return self.workdir / f"{CONTROLLER_MANAGER}.kubeconfig"

    def _etcd_args(self) -> list[str]:
        client_url = f"http://127.0.0.1:{self.ports.etcd_client}"
        peer_url = f"http://127.0.0.1:{self.ports.etcd_peer}"
        args = [
            "--name=berth",
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=berth={peer_url}",
        ]
        if self.etcd_unsafe_no_fsync:
            args.append("--unsafe-no-fsync")
        return args

    def _apiserver_args(self) -> list[str]:
        pki, serving = self.pki_dir, self._pair(APISERVER)
        args = [
            f"--etcd-servers=http://127.0.0.1:{self.ports.etcd_client}",
            f"--bind-address={self.bind_address}",
            f"--secure-port={self.ports.apiserver}",
            f"--tls-cert-file={serving.cert}",
            f"--tls-private-key-file={serving.key}",
            f"--client-ca-file={self.ca_cert}",
            f"--service-cluster-ip-range={self.service_cluster_ip_range}",
            "--authorization-mode=Node,RBAC",
            f"--service-account-issuer={self.service_account_issuer}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            # Node agents such as CNI plugins and berth's node-access
            # DaemonSet need privileged containers.
            "--allow-privileged=true",
        ]
        if self.advertise_address:
            args.append(f"--advertise-address={self.advertise_address}")
        return args

    def _controller_manager_args(self) -> list[str]:
        kubeconfig, pki = self._controller_manager_kubeconfig, self.pki_dir
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            # Without a front proxy the apiserver publishes no request-header
            # CA, and looking it up would log an error on every retry.
            "--authentication-skip-lookup=true",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.ports.controller_manager}",
            f"--cert-dir={self.workdir / CONTROLLER_MANAGER}",
            "--leader-elect=false",
            # Each controller then acts as its own ServiceAccount, so RBAC
            # mistakes show up as they would in a real cluster.
            "--use-service-account-credentials=true",
            f"--root-ca-file={self.ca_cert}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--cluster-signing-cert-file={self.ca_cert}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            # With the default client limits (20 QPS, burst 30) fetching a
            # token for each controller's ServiceAccount delayed the start of
            # all controllers by about 5 seconds on a 2-CPU machine.
            "--kube-api-qps=200",
            "--kube-api-burst=400",
        ]


# --- command line ---------------------------------------------------------------


def read_state(workdir: Path) -> dict[str, Any] | None:
    """Return the state recorded by the last start in workdir, or None."""
    try:
        state: dict[str, Any] = json.loads((workdir / STATE_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise ControlPlaneError(
            f"invalid state file {workdir / STATE_FILE}: {error}. Stop the etcd, kube-apiserver and "
            f"kube-controller-manager processes that use {workdir}, delete the file and run `up` again."
        ) from error
    return state


def recorded_processes(state: Mapping[str, Any]) -> list[Process]:
    """Return the recorded processes in start order."""
    components = state.get("components", {})
    return [Process.from_record(name, components[name]) for name in COMPONENTS if name in components]


def stop_recorded(workdir: Path, timeout: float = 15.0) -> None:
    """Stop the processes recorded in workdir's state file, newest first."""
    state = read_state(workdir)
    if state is not None:
        for process in reversed(recorded_processes(state)):
            stop_process(process, timeout)
    (workdir / STATE_FILE).unlink(missing_ok=True)


def is_healthy(workdir: Path) -> bool:
    """Tell whether every recorded process runs and the apiserver is ready."""
    state = read_state(workdir)
    if state is None:
        return False
    processes = recorded_processes(state)
    if len(processes) != len(COMPONENTS) or not all(p.is_running() for p in processes):
        return False
    context = ssl.create_default_context(cafile=str(workdir / "pki" / "ca.crt"))
    context.load_cert_chain(str(workdir / "pki" / "admin.crt"), str(workdir / "pki" / "admin.key"))
    return http_ok(f"{state['server']}/readyz", context)


@contextmanager
def _locked(workdir: Path) -> Iterator[None]:
    # Serialises concurrent `up` and `down` on one state directory.
    workdir.mkdir(parents=True, exist_ok=True)
    with (workdir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def command_up(workdir: Path) -> int:
    """Start a detached control plane unless a healthy one already runs."""
    with _locked(workdir):
        if is_healthy(workdir):
            log.info("control plane in %s is already running", workdir)
        else:
            # A partly running control plane from an earlier `up` is stopped
            # first, so its processes do not hold on to the data directory.
            stop_recorded(workdir)
            began = time.monotonic()
            ControlPlane(workdir, detach=True).start()
            log.info("started in %.1fs; logs in %s", time.monotonic() - began, workdir / "logs")
    print(workdir / "kubeconfig")
    return 0


def command_down(workdir: Path) -> int:
    """Stop the control plane recorded in the state directory.

    The PKI and etcd data stay, so the next `up` brings back the same cluster.
    """
    with _locked(workdir):
        stop_recorded(workdir)
    log.info("control plane in %s is stopped", workdir)
    return 0


def command_status(workdir: Path) -> int:
    """Print each component's PID and whether the apiserver is ready.

    Returns exit code 0 only when all components run and the apiserver is ready.
    """
    state = read_state(workdir)
    if state is None:
        print(f"not running (no {workdir / STATE_FILE})")
        return 1
    for process in recorded_processes(state):
        print(f"{process.name}: pid {process.pid} {'running' if process.is_running() else 'not running'}")
    healthy = is_healthy(workdir)
    print(f"apiserver {state['server']}: {'ready' if healthy else 'not ready'}")
    return 0 if healthy else 1


def command_kubeconfig(workdir: Path) -> int:
    """Print the admin kubeconfig path, for `export KUBECONFIG=$(...)`."""
    path = workdir / "kubeconfig"
    if not path.exists():
        print(f"no kubeconfig in {workdir}; run `up` first", file=sys.stderr)
        return 1
    print(path)
    return 0


COMMANDS: dict[str, Callable[[Path], int]] = {
    "up": command_up,
    "down": command_down,
    "status": command_status,
    "kubeconfig": command_kubeconfig,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line interface."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--dir", type=Path, default=default_cache_dir() / "controlplane",
        help="state directory for PKI, etcd data, logs and PIDs (default: %(default)s)",
    )
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, function in COMMANDS.items():
        commands.add_parser(name, parents=[common], help=(function.__doc__ or "").splitlines()[0])
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="controlplane: %(message)s")
    try:
        return COMMANDS[args.command](args.dir.resolve())
    except ControlPlaneError as error:
        log.error("%s", error)
        return 1


if __name__ == "__main__":
    sys.exit(main())
