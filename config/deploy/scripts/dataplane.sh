#!/bin/bash
# The DaemonSet's dataplane container (and the systemd unit's wrapper): renders the one node
# config for this node, runs kdp-dataplane, and owns the CNI conflist:
#   1. ${NODE_NAME}, ${NODE_IP} and ${POD_CIDR} in $KDP_CONFIG_TEMPLATE are replaced (POD_CIDR,
#      when not in the environment, is this Node's spec.podCIDR, read from the API server with
#      the pod's service account: a list with a field selector, which the role grants);
#   2. kdp-dataplane starts with the result ($KDP_STATE_DIR/node.yaml);
#   3. once the dataplane answers and a control plane has synced its tables (kdpctl get policy:
#      "synced", which the config's static tables never are), $KDP_CNI_CONFLIST is copied into
#      $KDP_CNI_CONF_DIR, atomically. Only then does the kubelet see the node's network as ready
#      and start pods on it;
#   4. when the dataplane stops (SIGTERM from the kubelet on deletion or update, or a crash)
#      the conflist is removed first, so that no pod is set up against a missing dataplane.
# Environment (defaults for the DaemonSet): NODE_NAME, NODE_IP (required), POD_CIDR,
# KDP_CONFIG_TEMPLATE=/etc/kdp/node.yaml, KDP_CNI_CONFLIST=/etc/kdp/10-kdp.conflist,
# KDP_CNI_CONF_DIR=/host/etc/cni/net.d, KDP_STATE_DIR=/var/lib/kdp,
# KDP_DATAPLANE_SOCKET=/run/kdp/dataplane.sock, KDP_SERVICEACCOUNT_DIR (the pod's), KDP_DATAPLANE
# and KDPCTL (the binaries, default from PATH), KUBERNETES_SERVICE_HOST/PORT (the API server).
set -euo pipefail

say() { printf 'kdp-dataplane-entrypoint: %s\n' "$*" >&2; }
die() {
    say "error: $*"
    exit 1
}

: "${NODE_NAME:?NODE_NAME must name this node (downward API spec.nodeName)}"
: "${NODE_IP:?NODE_IP must be the address of this node (downward API status.hostIP)}"
template=${KDP_CONFIG_TEMPLATE:-/etc/kdp/node.yaml}
conflist=${KDP_CNI_CONFLIST:-/etc/kdp/10-kdp.conflist}
cni_dir=${KDP_CNI_CONF_DIR:-/host/etc/cni/net.d}
state=${KDP_STATE_DIR:-/var/lib/kdp}
socket=${KDP_DATAPLANE_SOCKET:-/run/kdp/dataplane.sock}
sa=${KDP_SERVICEACCOUNT_DIR:-/var/run/secrets/kubernetes.io/serviceaccount}
dataplane=${KDP_DATAPLANE:-kdp-dataplane}
kdpctl=${KDPCTL:-kdpctl}
installed="$cni_dir/$(basename "$conflist")"

# This Node's spec.podCIDR, empty while the controller-manager has not allocated one.
node_pod_cidr() {
    local host=${KUBERNETES_SERVICE_HOST:?KUBERNETES_SERVICE_HOST is not set} port=${KUBERNETES_SERVICE_PORT:-443}
    case "$host" in *:*) host="[$host]" ;; esac
    curl -sS --fail --max-time 10 --cacert "$sa/ca.crt" \
        -H "Authorization: Bearer $(cat "$sa/token")" \
        "https://$host:$port/api/v1/nodes?fieldSelector=metadata.name%3D$NODE_NAME" |
        tr -d ' \n' | grep -o '"podCIDR":"[^"]*"' | head -n 1 | cut -d'"' -f4
}

remove_conflist() {
    if [ -e "$installed" ]; then
        rm -f "$installed"
        say "removed $installed: the node's pod network is down"
    fi
}

# 1. The node config.
[ -r "$template" ] || die "node config template $template not readable"
pod_cidr=${POD_CIDR:-}
waited=0
while [ -z "$pod_cidr" ]; do
    pod_cidr=$(node_pod_cidr) || pod_cidr=""
    [ -n "$pod_cidr" ] && break
    [ $((waited % 30)) -ne 0 ] || say "waiting for node $NODE_NAME's spec.podCIDR (controller-manager --allocate-node-cidrs)"
    sleep 2
    waited=$((waited + 2))
done
mkdir -p "$state"
config="$state/node.yaml"
sed -e "s|\${NODE_NAME}|$NODE_NAME|g" -e "s|\${NODE_IP}|$NODE_IP|g" \
    -e "s|\${POD_CIDR}|$pod_cidr|g" "$template" >"$config.tmp"
mv -f "$config.tmp" "$config"
say "node $NODE_NAME, address $NODE_IP, pod CIDR $pod_cidr: config $config"

# 2. The dataplane. A conflist left by a previous run that died hard goes first.
remove_conflist
"$dataplane" --config "$config" &
dp_pid=$!
trap 'say "stopping"; remove_conflist; kill -TERM "$dp_pid" 2>/dev/null || true' TERM INT

# 3. The conflist, once a control plane has synced the dataplane's tables.
synced_generation() {
    local p
    p=$("$kdpctl" --dataplane "$socket" get policy -o json 2>/dev/null | tr -d ' \n') || return 0
    case "$p" in *'"synced":true'*) ;; *) return 0 ;; esac
    printf '%s' "$p" | grep -o '"generation":[0-9]*' | head -n 1 | cut -d: -f2
}
while kill -0 "$dp_pid" 2>/dev/null; do
    g=$(synced_generation) || g=""
    if [ -n "$g" ]; then
        mkdir -p "$cni_dir"
        cp "$conflist" "$cni_dir/.kdp.conflist.tmp"
        mv -f "$cni_dir/.kdp.conflist.tmp" "$installed"
        say "dataplane synced at generation $g: wrote $installed"
        break
    fi
    sleep 0.5
done

# 4. Run until the dataplane stops; the trap's wait returns early, so wait again until it ends.
rc=0
wait "$dp_pid" || rc=$?
while kill -0 "$dp_pid" 2>/dev/null; do
    rc=0
    wait "$dp_pid" || rc=$?
done
remove_conflist
say "kdp-dataplane exited with status $rc"
exit "$rc"
