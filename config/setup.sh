#!/usr/bin/env bash
# One idempotent set-up path for kdp, shared by `config/demo.sh` and `test/run.sh`:
#   1. installs the Debian packages kdp needs, only those missing (apt-get update only then);
#   2. reserves 1 GiB of 2 MiB hugepages with DPDK's tool, only if fewer than 512 are reserved;
#   3. configures (once) and builds the tree with meson/ninja.
# Environment: KDP_BUILD_DIR (default: build), KDP_JOBS (default: nproc),
#              KDP_SKIP_PACKAGES=1 / KDP_SKIP_HUGEPAGES=1 / KDP_SKIP_BUILD=1 to skip a step.
# Run as root (packages and hugepages); safe to run again and again.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${KDP_BUILD_DIR:-build}"
JOBS="${KDP_JOBS:-$(nproc)}"
# ccache (found by meson at setup) keeps compiled objects between runs and between clones: paths
# are hashed relative to the tree, so a fresh clone elsewhere (as CI makes) hits the same cache.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$ROOT}" CCACHE_NOHASHDIR=1

say() { printf 'setup: %s\n' "$*"; }
die() {
    printf 'setup: ERROR: %s\n' "$*" >&2
    exit 1
}
trap 'rc=$?; [ $rc -eq 0 ] || printf "setup: FAILED (exit %s): %s\n" "$rc" "$BASH_COMMAND" >&2' ERR

PACKAGES=(
    dpdk dpdk-dev libdpdk-dev meson ninja-build pkg-config g++ ccache
    libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
    libyaml-cpp-dev nlohmann-json3-dev libfmt-dev libgtest-dev libgmock-dev libbenchmark-dev
    libboost-dev libssl-dev libnuma-dev libpcap-dev python3-pyelftools
    tshark python3-scapy python3-yaml iproute2 iperf3 netcat-openbsd socat tcpdump clang-format
    clang-14
    procps psmisc kmod ethtool iputils-ping openssl python3 curl containernetworking-plugins
    golang-go golang-github-appc-cni-dev
)

install_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$p")
        fi
    done
    if [ ${#missing[@]} -eq 0 ]; then
        say "packages: all ${#PACKAGES[@]} present"
        return
    fi
    [ "$(id -u)" -eq 0 ] || die "packages missing (${missing[*]}); run as root (sudo) to install them"
    say "packages: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # tshark asks whether non-root users may capture; answer no, without a prompt.
    echo 'wireshark-common wireshark-common/install-setuid boolean false' | debconf-set-selections
    apt-get update -qq || die "apt-get update failed (is the Debian archive reachable?)"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null \
        || die "apt-get install ${missing[*]} failed"
    say "packages: installed ${#missing[@]}"
}

# 2 MiB hugepages: the kernel's count of reserved pages (free or in use by other DPDK processes).
hugepages_2m_total() { cat /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages 2>/dev/null || echo 0; }
hugepages_2m_free() { cat /sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages 2>/dev/null || echo 0; }
hugetlbfs_mounted() { awk '$3 == "hugetlbfs" { found = 1 } END { exit !found }' /proc/mounts; }

setup_hugepages() {
    local total free
    total=$(hugepages_2m_total)
    free=$(hugepages_2m_free)
    if [ "$total" -ge 512 ] && hugetlbfs_mounted; then
        say "hugepages: $total x 2M reserved ($free free), hugetlbfs mounted"
        return
    fi
    [ "$(id -u)" -eq 0 ] || die "hugepages: only $total x 2M reserved; run as root (sudo) to reserve 1G"
    command -v dpdk-hugepages.py >/dev/null || die "dpdk-hugepages.py not found (package dpdk)"
    # dpdk-hugepages.py mounts on /dev/hugepages and only warns when that directory is missing
    # (as on some minimal images), leaving EAL without hugetlbfs: make it, and check the mount.
    mkdir -p /dev/hugepages
    if [ "$total" -gt "$free" ]; then
        # Pages in use by running DPDK processes: --setup would clear and unmount under them, so
        # only raise the reservation and mount.
        dpdk-hugepages.py -p 2M --reserve 1G || die "dpdk-hugepages.py -p 2M --reserve 1G failed"
        hugetlbfs_mounted || dpdk-hugepages.py --mount || die "dpdk-hugepages.py --mount failed"
    else
        dpdk-hugepages.py -p 2M --setup 1G || die "dpdk-hugepages.py -p 2M --setup 1G failed"
    fi
    hugetlbfs_mounted || mount -t hugetlbfs -o pagesize=2M nodev /dev/hugepages \
        || die "hugepages: could not mount hugetlbfs on /dev/hugepages"
    total=$(hugepages_2m_total)
    [ "$total" -ge 512 ] || die "hugepages: asked for 512 x 2M, the kernel gave $total (memory fragmented?)"
    say "hugepages: reserved $total x 2M ($(hugepages_2m_free) free)"
}

build() {
    cd "$ROOT"
    if [ -f "$BUILD_DIR/build.ninja" ]; then
        say "build: $BUILD_DIR already configured"
    elif [ -d "$BUILD_DIR/meson-private" ]; then
        say "build: reconfiguring $BUILD_DIR"
        meson setup --reconfigure "$BUILD_DIR" >"$BUILD_DIR.setup.log" 2>&1 \
            || { tail -n 40 "$BUILD_DIR.setup.log" >&2; die "meson setup --reconfigure $BUILD_DIR failed"; }
    else
        say "build: meson setup $BUILD_DIR"
        meson setup "$BUILD_DIR" >"$BUILD_DIR.setup.log" 2>&1 \
            || { tail -n 40 "$BUILD_DIR.setup.log" >&2; die "meson setup $BUILD_DIR failed"; }
    fi
    local t0=$SECONDS
    ninja -C "$BUILD_DIR" -j"$JOBS" >"$BUILD_DIR.ninja.log" 2>&1 \
        || { grep -E -m 40 -A 5 'error|FAILED' "$BUILD_DIR.ninja.log" >&2 || tail -n 40 "$BUILD_DIR.ninja.log" >&2
             die "ninja -C $BUILD_DIR failed (full log: $ROOT/$BUILD_DIR.ninja.log)"; }
    say "build: ninja -C $BUILD_DIR -j$JOBS ok in $((SECONDS - t0))s"
}

[ "${KDP_SKIP_PACKAGES:-0}" = 1 ] || install_packages
[ "${KDP_SKIP_HUGEPAGES:-0}" = 1 ] || setup_hugepages
[ "${KDP_SKIP_BUILD:-0}" = 1 ] || build
