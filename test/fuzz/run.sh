#!/usr/bin/env bash
# Builds one fuzz target with clang's libFuzzer (ASan + UBSan, the code under test instrumented)
# and runs it on a copy of its corpus for a while:
#   bash test/fuzz/run.sh TARGET [SECONDS] [JOBS]
#     TARGET: frame burst manifest spec_proto node_config
# New inputs go to build-fuzz/corpus/TARGET; a crash leaves build-fuzz/crash-* to add to
# test/fuzz/corpus/TARGET once fixed (CI replays that corpus, test/fuzz/meson.build). Needs
# clang-14 and libclang-rt-14-dev (Debian) and a configured build/ (for the generated protos).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
target=${1:?target}
seconds=${2:-60}
jobs=${3:-1}
out=build-fuzz
mkdir -p "$out/corpus/$target"
CXX="${CXX:-clang++-14}"
flags=(-std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
    -Iinclude -Idataplane -Icontrol -I. -Icni-shim -Ibuild/proto -Iproto -Ibuild -Itest)
dpdk_cflags=$(pkg-config --cflags libdpdk)
case $target in
frame) srcs=(test/fuzz/fuzz_frame.cc dataplane/pkt/parse.cc include/common/net.cc)
    extra=($dpdk_cflags $(pkg-config --libs libdpdk)) ;;
burst) srcs=(test/fuzz/fuzz_burst.cc dataplane/pkt/parse.cc dataplane/core/worker.cc
        dataplane/port/ethdev.cc dataplane/port/tap_keeper.cc dataplane/table/conntrack.cc
        dataplane/api/table_manager.cc dataplane/api/policy_tables.cc dataplane/api/trace.cc
        dataplane/api/trace_path.cc dataplane/table/maglev.cc include/common/net.cc)
    # rte_eth_from_rings lives in the net_ring driver, which pkg-config does not link.
    extra=($dpdk_cflags $(pkg-config --libs libdpdk) -lrte_net_ring -lfmt) ;;
manifest) srcs=(test/fuzz/fuzz_manifest.cc control/model/*.cc control/manifest/manifest.cc
        control/compile/*.cc include/common/net.cc)
    extra=(-lyaml-cpp -lfmt) ;;
spec_proto) srcs=(test/fuzz/fuzz_spec_proto.cc spec/convert.cc include/common/net.cc
        build/proto/kdp/v1/dataplane.pb.cc)
    extra=(-Ibuild/proto/kdp/v1 -lprotobuf -lfmt) ;;
node_config) srcs=(test/fuzz/fuzz_node_config.cc dataplane/config/node_config.cc
        include/common/net.cc)
    extra=(-lyaml-cpp -lfmt) ;;
*) echo "unknown target $target" >&2; exit 2 ;;
esac
"$CXX" "${flags[@]}" "${srcs[@]}" "${extra[@]}" -o "$out/fuzz_$target"
cp -n test/fuzz/corpus/"$target"/* "$out/corpus/$target/" 2>/dev/null || true
cd "$out"
"./fuzz_$target" -max_total_time="$seconds" -jobs="$jobs" -workers="$jobs" -print_final_stats=1 \
    -max_len=4096 "corpus/$target" 2>&1 | tail -n 25
