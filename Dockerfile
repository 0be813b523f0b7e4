# The kdp image: kdp-dataplane, kdp-control, kdpctl, kdp-cni and the DaemonSet's entrypoints
# (config/deploy/scripts/). Two stages on Debian 12: the build stage has the compilers and -dev
# packages (the same list config/setup.sh installs, less the test tools); the runtime stage has
# only the shared libraries the binaries link and what the entrypoints call.
#   docker build -t kdp:0.1.0 .        (or: podman build / buildah bud)
# The version the binaries report (--version) comes from `git describe` when .git is in the
# build context, else from the project version alone.

FROM debian:bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
        g++ meson ninja-build pkg-config git ca-certificates \
        dpdk-dev libdpdk-dev libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev \
        protobuf-compiler libyaml-cpp-dev nlohmann-json3-dev libfmt-dev libboost-dev \
        libssl-dev libnuma-dev libpcap-dev python3-pyelftools \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN meson setup /build --buildtype=release -Dtests=false -Dbenchmarks=false --prefix=/usr/local \
    && ninja -C /build \
    && DESTDIR=/out meson install -C /build --no-rebuild \
    && install -D -m 0755 -t /out/usr/lib/kdp config/deploy/scripts/*.sh

FROM debian:bookworm AS runtime
# The shared libraries the binaries link (ldd: DPDK's librte-*, gRPC, protobuf, yaml-cpp, fmt,
# OpenSSL, numa); iproute2 for the host interface's routes (the entrypoint reads the Node
# with kdp-control node-config). Then DPDK with its recommends: Debian's `dpdk` only recommends the poll-mode drivers
# (NICs, af_packet, tap, ring, vhost) that EAL loads at start, so it is the one package
# installed with them.
RUN apt-get update && apt-get install -y --no-install-recommends \
        librte-eal23 librte-ethdev23 librte-kvargs23 librte-mbuf23 librte-mempool23 \
        librte-meter23 librte-net23 librte-rcu23 librte-ring23 librte-telemetry23 \
        libgrpc++1.51 libprotobuf32 libyaml-cpp0.7 libfmt9 libssl3 libnuma1 \
        iproute2 ca-certificates kmod \
    && apt-get install -y dpdk \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ /
# DPDK loads its PMDs as shared objects from the driver directory: nothing else to copy.
ENTRYPOINT []
CMD ["kdp-dataplane", "--version"]
