#!/bin/sh
# The DaemonSet's control container (and the systemd unit's wrapper): kdp-control for this
# node, from the API server (in-cluster service account; KDP_KUBECONFIG instead names a
# kubeconfig, as on a node run by systemd), serving its health and metrics.
# Environment: NODE_NAME (required), KDP_KUBECONFIG, KDP_DATAPLANE_SOCKET
# (/run/kdp/dataplane.sock), KDP_HEALTHZ_BIND_ADDRESS (0.0.0.0:10256),
# KDP_METRICS_BIND_ADDRESS (127.0.0.1:10249), KDP_CONTROL (the binary, default from PATH),
# KDP_API_SERVER (HOST:PORT, the API server's real address, not the kubernetes Service: kdp-control
# reads it from the environment as --api-server).
set -eu
: "${NODE_NAME:?NODE_NAME must name this node (downward API spec.nodeName)}"
if [ -n "${KDP_KUBECONFIG:-}" ]; then
    set -- --kubeconfig "$KDP_KUBECONFIG"
else
    set -- --in-cluster
fi
exec "${KDP_CONTROL:-kdp-control}" --node "$NODE_NAME" "$@" \
    --dataplane "${KDP_DATAPLANE_SOCKET:-/run/kdp/dataplane.sock}" \
    --healthz-bind-address "${KDP_HEALTHZ_BIND_ADDRESS-0.0.0.0:10256}" \
    --metrics-bind-address "${KDP_METRICS_BIND_ADDRESS-127.0.0.1:10249}"
