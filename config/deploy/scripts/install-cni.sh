#!/bin/sh
# The DaemonSet's init container: installs kdp-cni into the host's CNI plugin directory.
# Atomic (copy beside, then rename), so that a runtime calling the plugin meanwhile runs either
# the old binary or the new one, never half a file.
# Environment: KDP_CNI (the binary to install, default: kdp-cni from PATH),
#              KDP_CNI_BIN_DIR (default /host/opt/cni/bin).
set -eu
src=${KDP_CNI:-$(command -v kdp-cni)}
dir=${KDP_CNI_BIN_DIR:-/host/opt/cni/bin}
[ -x "$src" ] || { echo "install-cni: $src is not an executable" >&2; exit 1; }
mkdir -p "$dir"
tmp="$dir/.kdp-cni.$$"
trap 'rm -f "$tmp"' EXIT
cp "$src" "$tmp"
chmod 0755 "$tmp"
mv -f "$tmp" "$dir/kdp-cni"
echo "install-cni: $("$dir/kdp-cni" --version) installed as $dir/kdp-cni"
