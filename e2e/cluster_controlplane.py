#!/usr/bin/env python3
"""Start and stop the control plane of the local e2e cluster (e2e/cluster).

e2e/cluster runs this inside the node's network and mount namespaces, so
etcd, kube-apiserver and kube-controller-manager (from e2e/controlplane.py)
run beside the kubelet, as on a kind node. The apiserver listens on the
node's address, which the host reaches through the veth pair.

Besides the control plane this writes the credentials of the node
components, all signed by the cluster CA:

  node/kubelet.kubeconfig         user system:node:NODE, group system:nodes
  controlplane/pki/kubelet-serving.{crt,key}  the kubelet's serving certificate
  node/kube-proxy.kubeconfig      user system:kube-proxy
  node/kube-scheduler.kubeconfig  user system:kube-scheduler
  kubeconfig                      admin (group system:masters), for the host

usage:
  cluster_controlplane.py start --state DIR --node-name NAME --node-ip IP \\
      --service-cidr CIDR --apiserver-port PORT
  cluster_controlplane.py stop --state DIR
  cluster_controlplane.py healthy --state DIR
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from controlplane import (  # noqa: E402  (the path above makes it importable)
    APISERVER,
    CertificateAuthority,
    ControlPlane,
    ControlPlaneError,
    KeyPair,
    Ports,
    is_healthy,
    stop_recorded,
    write_kubeconfig,
)

log = logging.getLogger("berth.cluster")


def issue_node_credentials(ca: CertificateAuthority, node_name: str, node_ip: str) -> dict[str, KeyPair]:
    """Issue the client and serving certificates of the node components."""
    return {
        # kube-apiserver presents this to the kubelet for logs, exec and
        # port-forward. The kubelet authorizes it with a SubjectAccessReview,
        # which group system:masters passes.
        "apiserver-kubelet-client": ca.issue(
            "apiserver-kubelet-client", "kube-apiserver-kubelet-client",
            organizations=["system:masters"], client=True,
        ),
        # The Node authorizer and RBAC's bootstrap roles recognize these names.
        "kubelet": ca.issue("kubelet", f"system:node:{node_name}", organizations=["system:nodes"], client=True),
        "kubelet-serving": ca.issue("kubelet-serving", node_name, sans=[node_name, node_ip], server=True),
        "kube-proxy": ca.issue("kube-proxy", "system:kube-proxy", client=True),
        "kube-scheduler": ca.issue("kube-scheduler", "system:kube-scheduler", client=True),
    }


def start(args: argparse.Namespace) -> int:
    """Start the control plane and write the node components' credentials."""
    state: Path = args.state.resolve()
    workdir = state / "controlplane"
    node_dir = state / "node"
    node_dir.mkdir(parents=True, exist_ok=True)

    # ControlPlane loads the CA from its pki directory, so creating it here
    # first lets the apiserver's kubelet flags name certificates signed by it.
    ca = CertificateAuthority.load_or_create(workdir / "pki")
    pairs = issue_node_credentials(ca, args.node_name, args.node_ip)
    kubelet_client = pairs["apiserver-kubelet-client"]

    control_plane = ControlPlane(
        workdir,
        bind_address=args.node_ip,
        advertise_address=args.node_ip,
        extra_sans=[args.node_name],
        ports=Ports(apiserver=args.apiserver_port),
        service_cluster_ip_range=args.service_cidr,
        extra_args={
            APISERVER: [
                f"--kubelet-client-certificate={kubelet_client.cert}",
                f"--kubelet-client-key={kubelet_client.key}",
                f"--kubelet-certificate-authority={ca.paths.cert}",
                "--kubelet-preferred-address-types=InternalIP,Hostname",
                # Limits each kubelet to its own Node and the pods bound to it.
                "--enable-admission-plugins=NodeRestriction",
            ],
        },
        detach=True,
    )
    control_plane.start()

    server = control_plane.server_url
    for name, user in (
        ("kubelet", f"system:node:{args.node_name}"),
        ("kube-proxy", "system:kube-proxy"),
        ("kube-scheduler", "system:kube-scheduler"),
    ):
        write_kubeconfig(node_dir / f"{name}.kubeconfig", server, ca.cert_pem, pairs[name], user)
    shutil.copyfile(control_plane.kubeconfig, state / "kubeconfig")
    (state / "kubeconfig").chmod(0o600)
    return 0


def stop(args: argparse.Namespace) -> int:
    """Stop the control plane processes recorded under the state directory."""
    stop_recorded(args.state.resolve() / "controlplane")
    return 0


def healthy(args: argparse.Namespace) -> int:
    """Exit 0 when every control plane process runs and the apiserver is ready."""
    return 0 if is_healthy(args.state.resolve() / "controlplane") else 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    start_parser = commands.add_parser("start", help=start.__doc__)
    start_parser.add_argument("--node-name", required=True)
    start_parser.add_argument("--node-ip", required=True, help="address the apiserver binds and advertises")
    start_parser.add_argument("--service-cidr", required=True, help="Service ClusterIP range, e.g. 10.96.0.0/16")
    start_parser.add_argument("--apiserver-port", type=int, required=True, help="apiserver secure port")
    for name, function in (("stop", stop), ("healthy", healthy)):
        commands.add_parser(name, help=function.__doc__)
    for subparser in commands.choices.values():
        subparser.add_argument("--state", type=Path, required=True, help="e2e/cluster state directory")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="cluster: %(message)s")
    handlers = {"start": start, "stop": stop, "healthy": healthy}
    try:
        return handlers[args.command](args)
    except ControlPlaneError as error:
        log.error("%s", error)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
