#!/usr/bin/env bash
# Run the same end-to-end suite on a kind cluster, for machines with Docker
# and access to image registries (kind pulls its node image, and the default
# registry image comes from Docker Hub).
#
# usage: e2e/kind.sh up                      create the cluster, load the operator image, helm-install berth
#        e2e/kind.sh test [PYTEST_ARGS...]   run e2e/tests against it
#        e2e/kind.sh trust-registry HOST:PORT CA_FILE
#        e2e/kind.sh down
# Needs docker, kind, and python3 with the repo's test dependencies (make python-deps).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
cluster=${BERTH_KIND_CLUSTER:-berth}
node="$cluster-control-plane"
kubeconfig=${BERTH_KIND_KUBECONFIG:-$HOME/.cache/berth/kind-$cluster.kubeconfig}

die() { printf 'kind.sh: %s\n' "$*" >&2; exit 1; }
command -v docker >/dev/null || die "docker not found"
command -v kind >/dev/null || die "kind not found"

case ${1:-} in
  up)
    mkdir -p "$(dirname "$kubeconfig")"
    kind get clusters | grep -qx "$cluster" || kind create cluster --name "$cluster" --kubeconfig "$kubeconfig" --wait 120s
    kind get kubeconfig --name "$cluster" >"$kubeconfig"
    image=$("$here/images/operator/build" | tail -n 1)
    kind load image-archive "$image" --name "$cluster"
    helm=$(command -v helm || "$here/build-tools" helm)
    KUBECONFIG=$kubeconfig "$helm" upgrade --install berth "$repo/charts/berth" \
      --namespace berth-system --create-namespace --set image.pullPolicy=Never --wait --timeout 5m
    echo "$kubeconfig"
    ;;
  test)
    shift
    export KUBECONFIG=$kubeconfig BERTH_E2E_TRUST_REGISTRY="$here/kind.sh trust-registry"
    cd "$repo"
    "${PYTHON:-$repo/.venv/bin/python}" -m pytest -p no:cacheprovider e2e/tests -q "$@"
    ;;
  trust-registry)
    (($# == 3)) || die "usage: e2e/kind.sh trust-registry HOST:PORT CA_FILE"
    host=$2 ca=$3
    # kind's containerd reads registry hosts from /etc/containerd/certs.d (config_path).
    docker exec "$node" mkdir -p "/etc/containerd/certs.d/$host"
    docker cp "$ca" "$node:/etc/containerd/certs.d/$host/ca.crt"
    printf 'server = "https://%s"\n\n[host."https://%s"]\n  capabilities = ["pull", "resolve"]\n  ca = "/etc/containerd/certs.d/%s/ca.crt"\n' "$host" "$host" "$host" |
      docker exec -i "$node" tee "/etc/containerd/certs.d/$host/hosts.toml" >/dev/null
    ;;
  down)
    kind delete cluster --name "$cluster"
    rm -f "$kubeconfig"
    ;;
  *) sed -n '5,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
