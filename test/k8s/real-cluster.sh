#!/usr/bin/env bash
# Run the Kubernetes scenarios of test/k8s against a real cluster (not part of CI).
#
#   KUBECONFIG=~/.kube/config test/k8s/real-cluster.sh
#
# What it does: installs the Istio CRDs meshgate reads if the cluster has none (deploy/crds.yaml, with
# kubectl when present), builds, and runs test/k8s/scenarios.test.js and leader.test.js with
# MESHGATE_K8S_REAL=1. Each scenario creates its own namespace (mg-test-*), runs the gateway in this
# process against the cluster, and deletes the namespace at the end. Scenarios that need the fake
# server's controls (dropping watches, compaction) are skipped.
#
# The echo backends listen on this machine; EndpointSlices point at MESHGATE_TEST_BACKEND_IP (default:
# this machine's first non-loopback IPv4 address, since the API server rejects loopback endpoints).
# Requests go to the gateway on 127.0.0.1, so the cluster never needs to reach this machine.
# Needs: create/delete of namespaces, and the rights in deploy/rbac.yaml plus create/update/delete of
# the objects the scenarios write, in those namespaces.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -z "${KUBECONFIG:-}" ]; then
  echo "real-cluster.sh: set KUBECONFIG to the cluster to test against" >&2
  exit 2
fi
if command -v kubectl >/dev/null 2>&1 && ! kubectl get crd virtualservices.networking.istio.io >/dev/null 2>&1; then
  kubectl apply -f deploy/crds.yaml
fi
npx tsc -p tsconfig.json
MESHGATE_K8S_REAL=1 node --test --test-concurrency=1 --test-timeout=120000 dist/test/k8s/scenarios.test.js dist/test/k8s/leader.test.js
