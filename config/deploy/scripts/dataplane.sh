#!/bin/bash
# The DaemonSet's dataplane container (and the systemd unit's wrapper): renders the one node
# config for this node, runs kdp-dataplane, and owns the CNI conflist:
#   1. `kdp-control node-config` turns $KDP_CONFIG_TEMPLATE (the ConfigMap's node.yaml, the same
#      for every node) into this node's config: its name from NODE_NAME, its address, pod CIDR
#      and zone from its Node object (read with the pod's service account, or KDP_KUBECONFIG),
#      the uplink's MAC, MTU and subnet from the kernel before DPDK takes it. It waits for the
#      Node's pod CIDR (controller-manager --allocate-node-cidrs) up to KDP_BOOTSTRAP_WAIT s;
#   2. kdp-dataplane starts with the result ($KDP_STATE_DIR/node.yaml);
#   3. once the dataplane answers and a control plane has synced its tables (kdpctl get policy:
#      "synced", which the config's static tables never are), $KDP_CNI_CONFLIST is copied into
#      $KDP_CNI_CONF_DIR, atomically. Only then does the kubelet see the node's network as ready
#      and start pods on it;
#   4. when the dataplane stops (SIGTERM from the kubelet on deletion or update, or a crash)
#      the conflist is removed first, so that no pod is set up against a missing dataplane.
# Environment (defaults for the DaemonSet): NODE_NAME (required), NODE_IP and POD_CIDR
# (explicit values: they must agree with the Node), KDP_CONFIG_TEMPLATE=/etc/kdp/node.yaml,
# KDP_CNI_CONFLIST=/etc/kdp/10-kdp.conflist, KDP_CNI_CONF_DIR=/host/etc/cni/net.d,
# KDP_STATE_DIR=/var/lib/kdp, KDP_DATAPLANE_SOCKET=/run/kdp/dataplane.sock, KDP_KUBECONFIG
# (else the in-cluster service account), KDP_API_SERVER (the API server's real address),
# KDP_BOOTSTRAP_WAIT (300), KDP_DATAPLANE, KDP_CONTROL and KDPCTL (the binaries, default from
# PATH).
set -euo pipefail

say() { printf 'kdp-dataplane-entrypoint: %s\n' "$*" >&2; }
die() {
    say "error: $*"
    exit 1
}

: "${NODE_NAME:?NODE_NAME must name this node (downward API spec.nodeName)}"
template=${KDP_CONFIG_TEMPLATE:-/etc/kdp/node.yaml}
conflist=${KDP_CNI_CONFLIST:-/etc/kdp/10-kdp.conflist}
cni_dir=${KDP_CNI_CONF_DIR:-/host/etc/cni/net.d}
state=${KDP_STATE_DIR:-/var/lib/kdp}
socket=${KDP_DATAPLANE_SOCKET:-/run/kdp/dataplane.sock}
dataplane=${KDP_DATAPLANE:-kdp-dataplane}
control=${KDP_CONTROL:-kdp-control}
kdpctl=${KDPCTL:-kdpctl}
installed="$cni_dir/$(basename "$conflist")"

remove_conflist() {
    if [ -e "$installed" ]; then
        rm -f "$installed"
        say "removed $installed: the node's pod network is down"
    fi
}

# 1. The node config.
[ -r "$template" ] || die "node config template $template not readable"
mkdir -p "$state"
config="$state/node.yaml"
args=(node-config --template "$template" --out "$config" --node "$NODE_NAME"
    --wait-seconds "${KDP_BOOTSTRAP_WAIT:-300}")
if [ -n "${KDP_KUBECONFIG:-}" ]; then args+=(--kubeconfig "$KDP_KUBECONFIG"); else args+=(--in-cluster); fi
[ -z "${KDP_API_SERVER:-}" ] || args+=(--api-server "$KDP_API_SERVER")
[ -z "${NODE_IP:-}" ] || args+=(--node-ip "$NODE_IP")
[ -z "${POD_CIDR:-}" ] || args+=(--pod-cidr "$POD_CIDR")
"$control" "${args[@]}" || die "no node config for $NODE_NAME (see above)"
say "node $NODE_NAME: config $config"

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
