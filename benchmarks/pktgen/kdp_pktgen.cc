// kdp-pktgen: a DPDK traffic generator and sink for benchmarking a two-port forwarder
// (dpdk-testpmd io, kdp-dataplane) connected over virtio_user <-> vhost-user.
//
//   kdp-pktgen [EAL args: --vdev net_virtio_user0,... --vdev net_virtio_user1,...] -- [options]
//
// Port A transmits, as fast as the forwarder accepts or at --rate-mpps; port B receives and
// counts. With --open-loop the rate is kept whatever the forwarder does: what its ring refuses
// is dropped and counted as offered and lost, as on a wire. With --bidir both ports do both. Frames
// are built from one prebuilt header template per frame size and patched per packet from a ring of
// --flows precomputed 5-tuples (source port and/or source IP vary), so the hot loop only copies at
// most 92 header bytes and writes three fields. Payload bytes are written once, when the TX mempool
// is created, and stay in the mbufs as they cycle through the pool.
//
// Threads: the main lcore owns the clock (warm-up, measurement window, stop) and transmits. If
// the EAL gives a second lcore, it receives (and answers ARP); otherwise the main lcore does
// both in one loop. Each lcore writes only its own LcoreStats; the main lcore reads them
// (relaxed atomics, one cache line per lcore) to take the two snapshots that bound the window.
//
// Output: one JSON line on stdout; diagnostics on stderr.
#include <getopt.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cinttypes>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <rte_arp.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_tcp.h>
#include <rte_udp.h>

#include "common/net.h"

namespace {

using kdp::Ip4;
using kdp::Mac;

// 32 per burst, like every DPDK forwarder we compare against (testpmd, l3fwd, the kdp worker).
constexpr uint16_t kBurstSize = 32;
// Ethernet FCS: "a 64-byte frame" is 60 bytes in the mbuf, as testpmd and TRex count it.
constexpr uint16_t kFcsLen = 4;
// Outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8.
constexpr uint16_t kVxlanOverhead = 50;
constexpr uint16_t kInnerHdrLen = 14 + 20 + 8;
constexpr uint16_t kMaxFrame = 1518;
// Pools: 1024-entry rings on two ports plus the per-lcore caches and pending bursts fit
// comfortably; 8191 = 2^13 - 1 is the mempool's sweet spot for a ring of 8192.
constexpr unsigned kPoolSize = 8191;
constexpr unsigned kPoolCache = 256;
constexpr uint16_t kDataRoom = RTE_PKTMBUF_HEADROOM + 2048;
constexpr uint16_t kRingSize = 1024;

enum class Workload : uint8_t { kL2, kLocal, kEncap, kDecap, kService, kFull, kSyn };

const char* workload_name(Workload w) {
    switch (w) {
        case Workload::kL2:
            return "l2";
        case Workload::kLocal:
            return "local";
        case Workload::kEncap:
            return "encap";
        case Workload::kDecap:
            return "decap";
        case Workload::kService:
            return "service";
        case Workload::kFull:
            return "full";
        case Workload::kSyn:
            return "syn";
    }
    return "?";
}

// Workloads whose frames arrive VXLAN-encapsulated from the remote node on port A.
bool encapsulated(Workload w) {
    return w == Workload::kDecap || w == Workload::kFull || w == Workload::kSyn;
}

// What differs between flows. kSportSip / kSportDip: --flows-per-ip source ports per address,
// then the next source (remote pods) or destination (Service VIPs) address.
enum class Vary : uint8_t { kSport, kSip, kBoth, kSportSip, kSportDip };

struct Options {
    Workload workload = Workload::kL2;
    std::string size_name = "64";
    std::vector<uint16_t> sizes{64};       // frame sizes incl. FCS, inner frame for VXLAN
    std::vector<uint8_t> size_pattern{0};  // indices into sizes, cycled per packet
    uint32_t flows = 1024;
    bool flows_set = false;
    Vary vary = Vary::kSport;
    bool vary_set = false;
    uint32_t flows_per_ip = 50000;  // service, full: source ports per address before the next
    double seconds = 10;
    double warmup = 2;
    double rate_mpps = 0;    // per transmitting port; 0 = as fast as the forwarder takes them
    bool open_loop = false;  // with rate_mpps: drop what the ring refuses instead of retrying
    uint16_t port_a = 0;
    uint16_t port_b = 1;
    bool bidir = false;
    uint16_t queues = 1;  // queue pairs per port; flows are split over the TX queues
    double link_timeout = 10;

    std::optional<Mac> src_mac, dst_mac;
    std::optional<Ip4> src_ip, dst_ip;
    uint16_t sport = 1024;
    uint16_t dport = 5001;

    std::optional<Mac> outer_src_mac, outer_dst_mac;
    Ip4 outer_src_ip = *Ip4::parse("198.51.100.2");
    Ip4 outer_dst_ip = *Ip4::parse("198.51.100.1");
    uint16_t vxlan_port = 4789;
    uint32_t vni = 1;

    std::optional<Ip4> arp_reply_ip;
    Mac arp_reply_mac = *Mac::parse("02:00:00:00:02:02");

    std::string dump_pcap;  // write the first dump_count frames to this pcap and exit (no EAL)
    uint32_t dump_count = 64;
};

void usage(const char* prog) {
    std::fprintf(stderr,
                 R"(usage: %s [EAL options] -- [options]

Generates UDP traffic on port A and counts what arrives on port B; prints one JSON line.
Ports are the first two ethdevs (normally two --vdev net_virtio_user<N>,path=SOCK,queues=1).
With two EAL lcores the second one receives; with one lcore, one loop does both.

Traffic:
  --workload W        l2 | local | encap | decap | service | full | syn   [l2]
      l2     Ethernet/IPv4/UDP, MACs/IPs as given (for testpmd io).
      local  pod A -> pod B on this node: dst MAC = gateway MAC, both IPs in the pod CIDR.
      encap  pod A -> a pod on a remote node; the forwarder VXLAN-encapsulates to port B.
      decap  VXLAN from a remote VTEP into port A (the uplink), inner packet to pod B.
      service  pod A -> a Service ClusterIP (--dst-ip, default 10.96.0.20:80, UDP); flows
             vary the source port, then the VIP (10.96.0.20, .21, ...: one Service each
             --flows-per-ip flows). The forwarder tracks and DNATs them to pod B.
      full   VXLAN from the remote node into port A: remote pods 10.244.2.10, .11, ... (one
             per --flows-per-ip flows) -> the ClusterIP, UDP; decap, conntrack, DNAT, the
             backend's ingress policy, pod B.
      syn    as full, but TCP SYNs and every packet a new 5-tuple (source port, then remote
             pod address, 64,000 x 250 before one repeats; --flows is ignored): connection
             setups per second. IP total length 40; frames above 64 bytes are zero-padded.
  --size S            64 | 512 | 1500 | imix | any 60..1518: Ethernet frame size incl. FCS,
                      of the pod's packet (VXLAN frames on the uplink are 50 bytes larger).
                      imix = 64:594:1518 in 7:4:1.                      [64]
  --flows N           distinct 5-tuples, sent round-robin                [1024]
  --vary F            sport | sip | both | sport-sip | sport-dip: what differs between
                      flows (both: 256 source ports per source IP)      [sport; service
                                                           sport-dip; full sport-sip]
  --flows-per-ip N    sport-sip, sport-dip: source ports per address     [50000]
  --rate-mpps R       offered rate per transmitting port; 0 = max        [0]
  --open-loop         with --rate-mpps: offer R whatever the forwarder takes; frames its
                      ring refuses are dropped and count as offered and lost (otherwise a
                      full ring holds the generator back and nothing is ever lost). If this
                      process falls more than a ring (1024 frames) behind its schedule it
                      skips ahead: offered_pps then shows it could not offer R
  --seconds S         measurement window                                 [10]
  --warmup S          traffic before the window (ARP, learning, caches)  [2]
  --bidir             also transmit on B (reverse tuple) and count RX on A (l2, local only)
  --port-a N, --port-b N   ethdev port ids                              [0, 1]
  --queues N          queue pairs per port (the vdevs need queues=N): flow i is sent on
                      TX queue i mod N, as RSS would spread it, so that a forwarder with N
                      workers gets disjoint flows per worker; every RX queue is counted.
                      --rate-mpps is then split over the queues; syn: tuple i on queue i mod N [1]
  --link-timeout S    wait this long for both links to come up           [10]

Addresses (defaults match benchmarks/run.sh's node: pod CIDR 10.244.1.0/24, gateway
10.244.1.1 = 0a:58:0a:f4:01:01, node 198.51.100.1, remote node 198.51.100.2 / 10.244.2.0/24):
  --src-mac M         inner source MAC             [02:00:00:00:00:0a; decap 0a:58:c6:33:64:02]
  --dst-mac M         inner destination MAC        [l2 02:00:00:00:00:0b; local, encap the
                                                    gateway 0a:58:0a:f4:01:01; decap the node's
                                                    VTEP MAC 0a:58:c6:33:64:01]
  --src-ip A          inner source IP (base)       [10.244.1.10; decap 10.244.2.10]
  --dst-ip A          inner destination IP         [10.244.1.11; encap 10.244.2.10]
  --sport P           source port (base)           [1024]
  --dport P           destination port             [5001]
  --outer-src-mac M   decap: remote node's MAC     [02:00:00:00:02:02]
  --outer-dst-mac M   decap: this node's MAC       [02:00:00:00:01:01]
  --outer-src-ip A    decap: remote VTEP IP        [198.51.100.2]
  --outer-dst-ip A    decap: this node's IP        [198.51.100.1]
  --vxlan-port P      decap: UDP destination port  [4789]
  --vni N             decap: VNI                   [1]
  --arp-reply-ip A    answer ARP requests for A arriving on a receiving port (encap: the
                      forwarder resolves the remote VTEP on the uplink)
  --arp-reply-mac M   ... with this MAC            [02:00:00:00:02:02]

On stderr, "kdp-pktgen: window start" and "... window end" mark the measurement window.
Output fields: tx_pps, rx_pps (packets counted in the window / its length), loss
(1 - rx/offered; offered = tx plus, with --open-loop, tx_refused), offered_pps, tx_refused,
tx_skipped (open loop: frames this process was too late to build), tx_packets, rx_packets,
arp_replies, per-port ethdev stats, and per lcore:
busy_cycles (loop iterations that moved packets), total_cycles, cycles_per_packet.

  --dump-pcap FILE    write the first --dump-count frames port A would send to FILE (pcap)
                      and exit, without the EAL: for checking other generators' profiles
  --dump-count N      [64]
)",
                 prog);
}

[[noreturn]] void die(const std::string& msg) {
    std::fprintf(stderr, "kdp-pktgen: %s\n", msg.c_str());
    std::exit(2);
}

double parse_double(const char* key, const char* v, double lo, double hi) {
    char* end = nullptr;
    const double d = std::strtod(v, &end);
    if (end == v || *end != '\0' || !(d >= lo && d <= hi)) {
        die(std::string(key) + ": '" + v + "' is not a number in [" + std::to_string(lo) + ", " +
            std::to_string(hi) + "]");
    }
    return d;
}

uint32_t parse_uint(const char* key, const char* v, uint32_t lo, uint32_t hi) {
    char* end = nullptr;
    const unsigned long n = std::strtoul(v, &end, 10);
    if (end == v || *end != '\0' || n < lo || n > hi) {
        die(std::string(key) + ": '" + v + "' is not an integer in [" + std::to_string(lo) + ", " +
            std::to_string(hi) + "]");
    }
    return static_cast<uint32_t>(n);
}

Ip4 parse_ip(const char* key, const char* v) {
    const auto ip = Ip4::parse(v);
    if (!ip) {
        die(std::string(key) + ": '" + v + "' is not an IPv4 address");
    }
    return *ip;
}

Mac parse_mac(const char* key, const char* v) {
    const auto mac = Mac::parse(v);
    if (!mac) {
        die(std::string(key) + ": '" + v + "' is not a MAC address");
    }
    return *mac;
}

Options parse_options(int argc, char** argv) {
    enum : int {
        kOptWorkload = 256,
        kOptSize,
        kOptFlows,
        kOptVary,
        kOptRate,
        kOptSeconds,
        kOptWarmup,
        kOptBidir,
        kOptOpenLoop,
        kOptPortA,
        kOptPortB,
        kOptLinkTimeout,
        kOptQueues,
        kOptSrcMac,
        kOptDstMac,
        kOptSrcIp,
        kOptDstIp,
        kOptSport,
        kOptDport,
        kOptOuterSrcMac,
        kOptOuterDstMac,
        kOptOuterSrcIp,
        kOptOuterDstIp,
        kOptVxlanPort,
        kOptVni,
        kOptArpIp,
        kOptArpMac,
        kOptFlowsPerIp,
        kOptDumpPcap,
        kOptDumpCount,
        kOptHelp,
    };
    static const option kLong[] = {
        {"workload", required_argument, nullptr, kOptWorkload},
        {"size", required_argument, nullptr, kOptSize},
        {"flows", required_argument, nullptr, kOptFlows},
        {"vary", required_argument, nullptr, kOptVary},
        {"rate-mpps", required_argument, nullptr, kOptRate},
        {"seconds", required_argument, nullptr, kOptSeconds},
        {"warmup", required_argument, nullptr, kOptWarmup},
        {"bidir", no_argument, nullptr, kOptBidir},
        {"open-loop", no_argument, nullptr, kOptOpenLoop},
        {"port-a", required_argument, nullptr, kOptPortA},
        {"port-b", required_argument, nullptr, kOptPortB},
        {"link-timeout", required_argument, nullptr, kOptLinkTimeout},
        {"queues", required_argument, nullptr, kOptQueues},
        {"src-mac", required_argument, nullptr, kOptSrcMac},
        {"dst-mac", required_argument, nullptr, kOptDstMac},
        {"src-ip", required_argument, nullptr, kOptSrcIp},
        {"dst-ip", required_argument, nullptr, kOptDstIp},
        {"sport", required_argument, nullptr, kOptSport},
        {"dport", required_argument, nullptr, kOptDport},
        {"outer-src-mac", required_argument, nullptr, kOptOuterSrcMac},
        {"outer-dst-mac", required_argument, nullptr, kOptOuterDstMac},
        {"outer-src-ip", required_argument, nullptr, kOptOuterSrcIp},
        {"outer-dst-ip", required_argument, nullptr, kOptOuterDstIp},
        {"vxlan-port", required_argument, nullptr, kOptVxlanPort},
        {"vni", required_argument, nullptr, kOptVni},
        {"arp-reply-ip", required_argument, nullptr, kOptArpIp},
        {"arp-reply-mac", required_argument, nullptr, kOptArpMac},
        {"flows-per-ip", required_argument, nullptr, kOptFlowsPerIp},
        {"dump-pcap", required_argument, nullptr, kOptDumpPcap},
        {"dump-count", required_argument, nullptr, kOptDumpCount},
        {"help", no_argument, nullptr, kOptHelp},
        {nullptr, 0, nullptr, 0},
    };
    Options o;
    optind = 1;
    int c = 0;
    while ((c = getopt_long(argc, argv, "h", kLong, nullptr)) != -1) {
        const char* v = optarg;
        switch (c) {
            case kOptWorkload: {
                const std::string_view w = v;
                if (w == "l2") {
                    o.workload = Workload::kL2;
                } else if (w == "local") {
                    o.workload = Workload::kLocal;
                } else if (w == "encap") {
                    o.workload = Workload::kEncap;
                } else if (w == "decap") {
                    o.workload = Workload::kDecap;
                } else if (w == "service") {
                    o.workload = Workload::kService;
                } else if (w == "full") {
                    o.workload = Workload::kFull;
                } else if (w == "syn") {
                    o.workload = Workload::kSyn;
                } else {
                    die(std::string("--workload: '") + v +
                        "' is not l2, local, encap, decap, service, full or syn");
                }
                break;
            }
            case kOptSize:
                o.size_name = v;
                if (o.size_name == "imix") {
                    // Simple IMIX (64:594:1518 at 7:4:1), spread so no size comes in a long run.
                    o.sizes = {64, 594, 1518};
                    o.size_pattern = {0, 1, 0, 0, 1, 0, 2, 0, 1, 0, 0, 1};
                } else {
                    o.sizes = {static_cast<uint16_t>(parse_uint("--size", v, 60, kMaxFrame))};
                    o.size_pattern = {0};
                }
                break;
            case kOptFlows:
                o.flows = parse_uint("--flows", v, 1, 1u << 22);
                o.flows_set = true;
                break;
            case kOptFlowsPerIp:
                o.flows_per_ip = parse_uint("--flows-per-ip", v, 1, 64000);
                break;
            case kOptDumpPcap:
                o.dump_pcap = v;
                break;
            case kOptDumpCount:
                o.dump_count = parse_uint("--dump-count", v, 1, 1u << 20);
                break;
            case kOptVary: {
                const std::string_view f = v;
                if (f == "sport") {
                    o.vary = Vary::kSport;
                } else if (f == "sip") {
                    o.vary = Vary::kSip;
                } else if (f == "both") {
                    o.vary = Vary::kBoth;
                } else if (f == "sport-sip") {
                    o.vary = Vary::kSportSip;
                } else if (f == "sport-dip") {
                    o.vary = Vary::kSportDip;
                } else {
                    die(std::string("--vary: '") + v +
                        "' is not sport, sip, both, sport-sip or sport-dip");
                }
                o.vary_set = true;
                break;
            }
            case kOptRate:
                o.rate_mpps = parse_double("--rate-mpps", v, 0, 1000);
                break;
            case kOptSeconds:
                o.seconds = parse_double("--seconds", v, 0.1, 86400);
                break;
            case kOptWarmup:
                o.warmup = parse_double("--warmup", v, 0, 3600);
                break;
            case kOptOpenLoop:
                o.open_loop = true;
                break;
            case kOptBidir:
                o.bidir = true;
                break;
            case kOptPortA:
                o.port_a =
                    static_cast<uint16_t>(parse_uint("--port-a", v, 0, RTE_MAX_ETHPORTS - 1));
                break;
            case kOptPortB:
                o.port_b =
                    static_cast<uint16_t>(parse_uint("--port-b", v, 0, RTE_MAX_ETHPORTS - 1));
                break;
            case kOptLinkTimeout:
                o.link_timeout = parse_double("--link-timeout", v, 0, 600);
                break;
            case kOptQueues:
                o.queues = static_cast<uint16_t>(parse_uint("--queues", v, 1, 16));
                break;
            case kOptSrcMac:
                o.src_mac = parse_mac("--src-mac", v);
                break;
            case kOptDstMac:
                o.dst_mac = parse_mac("--dst-mac", v);
                break;
            case kOptSrcIp:
                o.src_ip = parse_ip("--src-ip", v);
                break;
            case kOptDstIp:
                o.dst_ip = parse_ip("--dst-ip", v);
                break;
            case kOptSport:
                o.sport = static_cast<uint16_t>(parse_uint("--sport", v, 1, 65535));
                break;
            case kOptDport:
                o.dport = static_cast<uint16_t>(parse_uint("--dport", v, 1, 65535));
                break;
            case kOptOuterSrcMac:
                o.outer_src_mac = parse_mac("--outer-src-mac", v);
                break;
            case kOptOuterDstMac:
                o.outer_dst_mac = parse_mac("--outer-dst-mac", v);
                break;
            case kOptOuterSrcIp:
                o.outer_src_ip = parse_ip("--outer-src-ip", v);
                break;
            case kOptOuterDstIp:
                o.outer_dst_ip = parse_ip("--outer-dst-ip", v);
                break;
            case kOptVxlanPort:
                o.vxlan_port = static_cast<uint16_t>(parse_uint("--vxlan-port", v, 1, 65535));
                break;
            case kOptVni:
                o.vni = parse_uint("--vni", v, 0, (1u << 24) - 1);
                break;
            case kOptArpIp:
                o.arp_reply_ip = parse_ip("--arp-reply-ip", v);
                break;
            case kOptArpMac:
                o.arp_reply_mac = parse_mac("--arp-reply-mac", v);
                break;
            case 'h':
            case kOptHelp:
                usage(argv[0]);
                std::exit(0);
            default:
                usage(argv[0]);
                std::exit(2);
        }
    }
    if (optind != argc) {
        die(std::string("unexpected argument '") + argv[optind] + "'");
    }
    if (o.bidir && o.workload != Workload::kL2 && o.workload != Workload::kLocal) {
        die("--bidir: only for the l2 and local workloads (encap and decap are one-way paths)");
    }
    if (o.port_a == o.port_b) {
        die("--port-a and --port-b must differ");
    }
    if (o.open_loop && o.rate_mpps <= 0) {
        die("--open-loop needs --rate-mpps: without a rate there is no load to hold");
    }
    if (o.flows < o.queues) {
        die("--flows: fewer flows than --queues (every queue sends flows of its own)");
    }
    if (encapsulated(o.workload) &&
        *std::max_element(o.sizes.begin(), o.sizes.end()) + kVxlanOverhead > kDataRoom) {
        die("--size: too large for an encapsulated frame");
    }
    if (!o.vary_set && o.workload == Workload::kService) {
        o.vary = Vary::kSportDip;
    } else if (!o.vary_set && o.workload == Workload::kFull) {
        o.vary = Vary::kSportSip;
    }
    if (o.workload == Workload::kSyn) {
        if (!o.flows_set) {
            o.flows = 1;  // unused: every packet is a new tuple
        }
        if (o.dport == 5001) {
            o.dport = 80;
        }
    }
    if ((o.workload == Workload::kService || o.workload == Workload::kFull) && o.dport == 5001) {
        o.dport = 80;  // the Service port run.sh's manifest declares
    }
    const bool by_ip = o.vary == Vary::kSportSip || o.vary == Vary::kSportDip;
    if (o.workload != Workload::kSyn && !by_ip && o.vary != Vary::kSip &&
        o.flows > 65535u - o.sport + 1) {
        die("--flows: more than the source ports above --sport; use --vary sip or both");
    }
    if (by_ip && o.flows_per_ip > 65535u - o.sport + 1) {
        die("--flows-per-ip: more than the source ports above --sport");
    }

    const bool decap = encapsulated(o.workload);
    const Mac gateway = *Mac::parse("0a:58:0a:f4:01:01");
    if (!o.src_mac) {
        o.src_mac = decap ? Mac::from_ip(o.outer_src_ip) : *Mac::parse("02:00:00:00:00:0a");
    }
    if (!o.dst_mac) {
        switch (o.workload) {
            case Workload::kL2:
                o.dst_mac = *Mac::parse("02:00:00:00:00:0b");
                break;
            case Workload::kLocal:
            case Workload::kEncap:
                o.dst_mac = gateway;
                break;
            case Workload::kDecap:
            case Workload::kFull:
            case Workload::kSyn:
                o.dst_mac = Mac::from_ip(o.outer_dst_ip);
                break;
            case Workload::kService:
                o.dst_mac = gateway;
                break;
        }
    }
    if (!o.src_ip) {
        o.src_ip = *Ip4::parse(decap ? "10.244.2.10" : "10.244.1.10");
    }
    if (!o.dst_ip) {
        switch (o.workload) {
            case Workload::kEncap:
                o.dst_ip = *Ip4::parse("10.244.2.10");
                break;
            case Workload::kService:
            case Workload::kFull:
            case Workload::kSyn:
                o.dst_ip = *Ip4::parse("10.96.0.20");
                break;
            default:
                o.dst_ip = *Ip4::parse("10.244.1.11");
                break;
        }
    }
    if (!o.outer_src_mac) {
        o.outer_src_mac = *Mac::parse("02:00:00:00:02:02");
    }
    if (!o.outer_dst_mac) {
        o.outer_dst_mac = *Mac::parse("02:00:00:00:01:01");
    }
    return o;
}

// ---------------------------------------------------------------------------------------------
// Templates and flows

// One flow of the ring: the fields that differ between flows, precomputed (network order),
// including the IPv4 header checksum for every frame size since total_length enters it.
struct Flow {
    uint32_t src_ip;
    uint32_t dst_ip;
    uint16_t sport;
    uint16_t outer_sport;  // decap: a real VTEP derives it from the inner flow (RFC 7348 s5)
    std::array<uint16_t, 3> ip_csum;
};

// The SYN workload's tuple space: source ports 1024..65023, then the next remote pod address.
constexpr uint32_t kSynPorts = 64000;
constexpr uint32_t kSynAddrs = 250;
constexpr uint16_t kTcpHdrLen = 20;
constexpr uint8_t kTcpSyn = 0x02;

// Headers of one direction, one per frame size, plus where the per-flow fields go.
struct Template {
    std::array<std::array<uint8_t, 128>, 3> hdr{};
    std::array<uint16_t, 3> pkt_len{};
    uint16_t hdr_len = 0;
    uint16_t ip_off = 0;  // the IPv4 header whose source varies (the inner one for decap)
    bool outer = false;   // decap: patch the outer UDP source port too
    // syn: no ring; every packet gets the next tuple, its IPv4 and TCP checksums completed
    // from these sums of the header with the varying fields zero (RFC 1071 is additive).
    bool fresh = false;
    std::array<uint32_t, 3> ip_sum{};
    uint32_t tcp_sum = 0;
    uint32_t src_base = 0;  // host order
    uint16_t sport_base = 0;
    std::vector<Flow> flows;
};

void write_eth(uint8_t* p, const Mac& dst, const Mac& src, uint16_t type) {
    auto* eh = reinterpret_cast<rte_ether_hdr*>(p);
    std::memcpy(&eh->dst_addr, dst.b.data(), 6);
    std::memcpy(&eh->src_addr, src.b.data(), 6);
    eh->ether_type = rte_cpu_to_be_16(type);
}

// IPv4 and a UDP (or, with `syn`, a TCP SYN) header; the UDP checksum is 0 (optional over
// IPv4, and no forwarder under test verifies it), the TCP one is valid.
void write_ip_l4(
    uint8_t* p, Ip4 src, Ip4 dst, uint16_t sport, uint16_t dport, uint16_t ip_total_len, bool syn) {
    auto* ip = reinterpret_cast<rte_ipv4_hdr*>(p);
    std::memset(ip, 0, sizeof(*ip));
    ip->version_ihl = RTE_IPV4_VHL_DEF;
    ip->total_length = rte_cpu_to_be_16(ip_total_len);
    ip->fragment_offset = rte_cpu_to_be_16(RTE_IPV4_HDR_DF_FLAG);
    ip->time_to_live = 64;
    ip->next_proto_id = syn ? IPPROTO_TCP : IPPROTO_UDP;
    ip->src_addr = src.be;
    ip->dst_addr = dst.be;
    ip->hdr_checksum = rte_ipv4_cksum(ip);
    if (syn) {
        auto* tcp = reinterpret_cast<rte_tcp_hdr*>(p + sizeof(rte_ipv4_hdr));
        std::memset(tcp, 0, sizeof(*tcp));
        tcp->src_port = rte_cpu_to_be_16(sport);
        tcp->dst_port = rte_cpu_to_be_16(dport);
        tcp->sent_seq = rte_cpu_to_be_32(1);
        tcp->data_off = (kTcpHdrLen / 4) << 4;
        tcp->tcp_flags = kTcpSyn;
        tcp->rx_win = rte_cpu_to_be_16(65535);
        tcp->cksum = rte_ipv4_udptcp_cksum(ip, tcp);
        return;
    }
    auto* udp = reinterpret_cast<rte_udp_hdr*>(p + sizeof(rte_ipv4_hdr));
    udp->src_port = rte_cpu_to_be_16(sport);
    udp->dst_port = rte_cpu_to_be_16(dport);
    udp->dgram_len = rte_cpu_to_be_16(static_cast<uint16_t>(ip_total_len - sizeof(rte_ipv4_hdr)));
    udp->dgram_cksum = 0;
}

struct Direction {
    Mac src_mac, dst_mac;
    Ip4 src_ip, dst_ip;
};

// 16-bit one's-complement sum (not yet folded) of `len` bytes, network order words.
uint32_t sum16(const uint8_t* p, size_t len) {
    uint32_t s = 0;
    for (size_t i = 0; i + 1 < len; i += 2) {
        s += uint32_t{p[i]} << 8 | p[i + 1];
    }
    return s;
}

inline uint16_t fold_csum(uint32_t s) {
    while (s >> 16) {
        s = (s & 0xffff) + (s >> 16);
    }
    return rte_cpu_to_be_16(static_cast<uint16_t>(~s & 0xffff));
}

inline uint32_t sum_ip(uint32_t be) {
    const uint32_t h = rte_be_to_cpu_32(be);
    return (h >> 16) + (h & 0xffff);
}

// Tuple i of the ring (or of the SYN sequence): source and destination address, source port.
struct Tuple {
    Ip4 src, dst;
    uint16_t sport;
};

Tuple tuple_of(const Options& o, const Direction& d, uint64_t i) {
    uint32_t ip_add = 0;
    uint32_t dip_add = 0;
    uint32_t port_add = 0;
    if (o.workload == Workload::kSyn) {
        port_add = static_cast<uint32_t>(i % kSynPorts);
        ip_add = static_cast<uint32_t>(i / kSynPorts % kSynAddrs);
    } else {
        switch (o.vary) {
            case Vary::kSport:
                port_add = static_cast<uint32_t>(i);
                break;
            case Vary::kSip:
                ip_add = static_cast<uint32_t>(i);
                break;
            case Vary::kBoth:
                ip_add = static_cast<uint32_t>(i / 256);
                port_add = static_cast<uint32_t>(i % 256);
                break;
            case Vary::kSportSip:
                ip_add = static_cast<uint32_t>(i / o.flows_per_ip);
                port_add = static_cast<uint32_t>(i % o.flows_per_ip);
                break;
            case Vary::kSportDip:
                dip_add = static_cast<uint32_t>(i / o.flows_per_ip);
                port_add = static_cast<uint32_t>(i % o.flows_per_ip);
                break;
        }
    }
    return Tuple{Ip4::from_host(d.src_ip.host() + ip_add),
                 Ip4::from_host(d.dst_ip.host() + dip_add),
                 static_cast<uint16_t>(o.sport + port_add)};
}

Template build_template(const Options& o, const Direction& d) {
    Template t;
    const bool decap = encapsulated(o.workload);
    const bool syn = o.workload == Workload::kSyn;
    const uint16_t outer = decap ? kVxlanOverhead : 0;
    t.hdr_len = static_cast<uint16_t>(outer + kInnerHdrLen + (syn ? kTcpHdrLen - 8 : 0));
    t.ip_off = static_cast<uint16_t>(outer + sizeof(rte_ether_hdr));
    t.outer = decap;
    t.fresh = syn;
    t.src_base = d.src_ip.host();
    t.sport_base = o.sport;
    for (size_t k = 0; k < o.sizes.size(); ++k) {
        const uint16_t inner_len = static_cast<uint16_t>(o.sizes[k] - kFcsLen);
        t.pkt_len[k] = static_cast<uint16_t>(inner_len + outer);
        // A SYN carries no data: the IPv4 packet is 40 bytes, the frame padded to its size.
        const auto ip_len = static_cast<uint16_t>(syn ? sizeof(rte_ipv4_hdr) + kTcpHdrLen
                                                      : inner_len - sizeof(rte_ether_hdr));
        uint8_t* p = t.hdr[k].data();
        if (decap) {
            write_eth(p, *o.outer_dst_mac, *o.outer_src_mac, RTE_ETHER_TYPE_IPV4);
            write_ip_l4(p + 14, o.outer_src_ip, o.outer_dst_ip, 49152, o.vxlan_port,
                        static_cast<uint16_t>(inner_len + kVxlanOverhead - 14), false);
            uint8_t* vx = p + 14 + 20 + 8;  // RFC 7348 s5: flags (I), reserved, VNI, reserved
            vx[0] = 0x08;
            vx[4] = static_cast<uint8_t>(o.vni >> 16);
            vx[5] = static_cast<uint8_t>(o.vni >> 8);
            vx[6] = static_cast<uint8_t>(o.vni);
        }
        write_eth(p + outer, d.dst_mac, d.src_mac, RTE_ETHER_TYPE_IPV4);
        write_ip_l4(p + t.ip_off, d.src_ip, d.dst_ip, o.sport, o.dport, ip_len, syn);
        if (syn) {
            // Checksum bases with the source address and port zero (the VIP stays fixed).
            rte_ipv4_hdr ip;
            std::memcpy(&ip, p + t.ip_off, sizeof(ip));
            ip.src_addr = 0;
            ip.hdr_checksum = 0;
            t.ip_sum[k] = sum16(reinterpret_cast<const uint8_t*>(&ip), sizeof(ip));
            std::array<uint8_t, kTcpHdrLen> tcp;
            std::memcpy(tcp.data(), p + t.ip_off + sizeof(rte_ipv4_hdr), kTcpHdrLen);
            std::memset(tcp.data(), 0, 2);       // source port
            std::memset(tcp.data() + 16, 0, 2);  // checksum
            // Pseudo header (RFC 793 s3.1) without the source: destination, protocol, length.
            t.tcp_sum =
                sum16(tcp.data(), kTcpHdrLen) + sum_ip(ip.dst_addr) + IPPROTO_TCP + kTcpHdrLen;
        }
    }
    if (syn) {
        return t;
    }
    t.flows.resize(o.flows);
    for (uint32_t i = 0; i < o.flows; ++i) {
        const Tuple tu = tuple_of(o, d, i);
        Flow& f = t.flows[i];
        f.src_ip = tu.src.be;
        f.dst_ip = tu.dst.be;
        f.sport = rte_cpu_to_be_16(tu.sport);
        // The VTEP's entropy source port: 49152 + a hash of the inner flow (RFC 7348 s5).
        f.outer_sport = rte_cpu_to_be_16(static_cast<uint16_t>(49152 + ((i * 2654435761u) >> 18)));
        for (size_t k = 0; k < o.sizes.size(); ++k) {
            rte_ipv4_hdr ip;
            std::memcpy(&ip, t.hdr[k].data() + t.ip_off, sizeof(ip));
            ip.src_addr = f.src_ip;
            ip.dst_addr = f.dst_ip;
            ip.hdr_checksum = 0;
            f.ip_csum[k] = rte_ipv4_cksum(&ip);
        }
    }
    return t;
}

// ---------------------------------------------------------------------------------------------
// Per-lcore state

// Written only by its lcore (load + store, no RMW needed), read by the main lcore.
struct alignas(RTE_CACHE_LINE_SIZE) LcoreStats {
    std::atomic<uint64_t> tx_pkts{0};
    std::atomic<uint64_t> tx_bytes{0};
    std::atomic<uint64_t> tx_refused{0};  // open loop: built, offered, refused by the ring
    std::atomic<uint64_t> tx_skipped{0};  // open loop: never built, this process was late
    std::atomic<uint64_t> rx_pkts{0};
    std::atomic<uint64_t> rx_bytes{0};
    std::atomic<uint64_t> rx_other{0};  // ARP and anything else not counted as traffic
    std::atomic<uint64_t> arp_replies{0};
    std::atomic<uint64_t> alloc_fail{0};
    std::atomic<uint64_t> busy_cycles{0};
};

inline void bump(std::atomic<uint64_t>& c, uint64_t n) {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

struct Snapshot {
    uint64_t tsc = 0;
    uint64_t tx_pkts = 0, tx_bytes = 0, rx_pkts = 0, rx_bytes = 0, rx_other = 0;
    uint64_t arp_replies = 0, alloc_fail = 0, busy_cycles = 0;
    uint64_t tx_refused = 0, tx_skipped = 0;
};

Snapshot snap(const LcoreStats& s, uint64_t tsc) {
    constexpr auto r = std::memory_order_relaxed;
    return Snapshot{tsc,
                    s.tx_pkts.load(r),
                    s.tx_bytes.load(r),
                    s.rx_pkts.load(r),
                    s.rx_bytes.load(r),
                    s.rx_other.load(r),
                    s.arp_replies.load(r),
                    s.alloc_fail.load(r),
                    s.busy_cycles.load(r),
                    s.tx_refused.load(r),
                    s.tx_skipped.load(r)};
}

// One transmitting port: builds bursts from the template and keeps what the ring refused, so a
// full ring costs one tx_burst call rather than an alloc, a build and a free.
struct TxCtx {
    uint16_t port = 0;
    uint16_t queue = 0;
    uint32_t flow_first = 0;  // this queue's flows: flow_first, + flow_step, ...
    uint32_t flow_step = 1;
    rte_mempool* pool = nullptr;
    const Template* tmpl = nullptr;
    const uint8_t* pattern = nullptr;
    uint32_t pattern_len = 1;
    uint32_t pattern_i = 0;
    uint32_t flow_i = 0;
    uint64_t seq = 0;           // syn: packets built so far, i.e. the next tuple
    double pkts_per_cycle = 0;  // 0: unlimited
    bool open_loop = false;
    uint64_t rate_start = 0;
    uint64_t built = 0;
    std::array<rte_mbuf*, kBurstSize> pending{};
    uint16_t pend_off = 0;
    uint16_t pend_n = 0;
};

struct RxCtx {
    uint16_t port = 0;
    uint16_t queue = 0;
    bool arp = false;
    Ip4 arp_ip;
    Mac arp_mac;
    rte_mempool* reply_pool = nullptr;  // replies come from the TX pool: one pool per TX queue
};

// syn: the next new tuple, with both checksums completed from the template's sums.
inline void build_fresh(const Template& tm, uint64_t seq, uint8_t k, uint8_t* p) {
    const auto port_add = static_cast<uint32_t>(seq % kSynPorts);
    const auto ip_add = static_cast<uint32_t>(seq / kSynPorts % kSynAddrs);
    const uint32_t src_h = tm.src_base + ip_add;
    const auto sport_h = static_cast<uint16_t>(tm.sport_base + port_add);
    const uint32_t src_be = rte_cpu_to_be_32(src_h);
    const uint16_t sport_be = rte_cpu_to_be_16(sport_h);
    const uint32_t src_sum = (src_h >> 16) + (src_h & 0xffff);
    const uint16_t ip_csum = fold_csum(tm.ip_sum[k] + src_sum);
    const uint16_t tcp_csum = fold_csum(tm.tcp_sum + src_sum + sport_h);
    uint8_t* ip = p + tm.ip_off;
    std::memcpy(ip + offsetof(rte_ipv4_hdr, hdr_checksum), &ip_csum, 2);
    std::memcpy(ip + offsetof(rte_ipv4_hdr, src_addr), &src_be, 4);
    std::memcpy(ip + sizeof(rte_ipv4_hdr), &sport_be, 2);
    std::memcpy(ip + sizeof(rte_ipv4_hdr) + offsetof(rte_tcp_hdr, cksum), &tcp_csum, 2);
    // The remote VTEP's entropy port follows the inner flow (RFC 7348 s5).
    const uint16_t outer_sport = rte_cpu_to_be_16(
        static_cast<uint16_t>(49152 + ((static_cast<uint32_t>(seq) * 2654435761u) >> 18)));
    std::memcpy(p + 14 + 20, &outer_sport, 2);
    if (tm.pkt_len[k] > tm.hdr_len) {
        std::memset(p + tm.hdr_len, 0, tm.pkt_len[k] - tm.hdr_len);  // Ethernet padding
    }
}

inline void build_burst(TxCtx& t, uint16_t n) {
    const Template& tm = *t.tmpl;
    if (tm.fresh) {
        for (uint16_t i = 0; i < n; ++i) {
            rte_mbuf* m = t.pending[i];
            const uint8_t k = t.pattern[t.pattern_i];
            if (++t.pattern_i == t.pattern_len) {
                t.pattern_i = 0;
            }
            uint8_t* p = rte_pktmbuf_mtod(m, uint8_t*);
            std::memcpy(p, tm.hdr[k].data(), tm.hdr_len);
            build_fresh(tm, t.seq, k, p);
            t.seq += t.flow_step;
            m->data_len = tm.pkt_len[k];
            m->pkt_len = tm.pkt_len[k];
        }
        return;
    }
    const uint16_t hl = tm.hdr_len;
    const uint16_t ip_off = tm.ip_off;
    const uint32_t nflows = static_cast<uint32_t>(tm.flows.size());
    for (uint16_t i = 0; i < n; ++i) {
        rte_mbuf* m = t.pending[i];
        const uint8_t k = t.pattern[t.pattern_i];
        if (++t.pattern_i == t.pattern_len) {
            t.pattern_i = 0;
        }
        const Flow& f = tm.flows[t.flow_i];
        t.flow_i += t.flow_step;
        if (t.flow_i >= nflows) {
            t.flow_i = t.flow_first;
        }
        uint8_t* p = rte_pktmbuf_mtod(m, uint8_t*);
        std::memcpy(p, tm.hdr[k].data(), hl);
        std::memcpy(p + ip_off + offsetof(rte_ipv4_hdr, hdr_checksum), &f.ip_csum[k], 2);
        std::memcpy(p + ip_off + offsetof(rte_ipv4_hdr, src_addr), &f.src_ip, 4);
        std::memcpy(p + ip_off + offsetof(rte_ipv4_hdr, dst_addr), &f.dst_ip, 4);
        std::memcpy(p + ip_off + sizeof(rte_ipv4_hdr), &f.sport, 2);
        if (tm.outer) {
            std::memcpy(p + 14 + 20, &f.outer_sport, 2);
        }
        m->data_len = tm.pkt_len[k];
        m->pkt_len = tm.pkt_len[k];
    }
}

inline uint16_t tx_step(TxCtx& t, LcoreStats& st, uint64_t now) {
    if (t.pend_n == 0) {
        uint16_t want = kBurstSize;
        if (t.pkts_per_cycle > 0) {
            const double allowed = static_cast<double>(now - t.rate_start) * t.pkts_per_cycle;
            double room = allowed - static_cast<double>(t.built);
            if (room < 1) {
                return 0;
            }
            if (t.open_loop && room > kRingSize) [[unlikely]] {
                // Descheduled: a burst of a whole ring or more at once would measure this
                // process's lateness as the forwarder's loss. Skip ahead and say so.
                const auto late = static_cast<uint64_t>(room) - kBurstSize;
                bump(st.tx_skipped, late);
                t.built += late;
                room = kBurstSize;
            }
            want = room < kBurstSize ? static_cast<uint16_t>(room) : kBurstSize;
        }
        if (rte_pktmbuf_alloc_bulk(t.pool, t.pending.data(), want) != 0) [[unlikely]] {
            bump(st.alloc_fail, 1);
            return 0;
        }
        build_burst(t, want);
        t.built += want;
        t.pend_off = 0;
        t.pend_n = want;
    }
    const uint16_t sent =
        rte_eth_tx_burst(t.port, t.queue, t.pending.data() + t.pend_off, t.pend_n);
    if (sent != 0) {
        uint64_t bytes = 0;
        for (uint16_t i = 0; i < sent; ++i) {
            bytes += t.pending[t.pend_off + i]->pkt_len;  // header line still hot from the build
        }
        bump(st.tx_pkts, sent);
        bump(st.tx_bytes, bytes);
        t.pend_off = static_cast<uint16_t>(t.pend_off + sent);
        t.pend_n = static_cast<uint16_t>(t.pend_n - sent);
    }
    if (t.open_loop && t.pend_n != 0) {
        // Open loop: the forwarder's ring is full now; these frames were offered and lost.
        rte_pktmbuf_free_bulk(t.pending.data() + t.pend_off, t.pend_n);
        bump(st.tx_refused, t.pend_n);
        t.pend_n = 0;
    }
    return sent;
}

// Turns an ARP request for the configured address into a reply built in a TX-pool mbuf.
// Returns true if `m` was ARP (answered or not), i.e. not traffic.
inline bool handle_arp(const RxCtx& r, rte_mbuf* m, LcoreStats& st) {
    const auto* eh = rte_pktmbuf_mtod(m, const rte_ether_hdr*);
    if (eh->ether_type != rte_cpu_to_be_16(RTE_ETHER_TYPE_ARP)) {
        return false;
    }
    if (m->data_len < sizeof(rte_ether_hdr) + sizeof(rte_arp_hdr)) {
        return true;
    }
    const auto* req = reinterpret_cast<const rte_arp_hdr*>(eh + 1);
    if (req->arp_opcode != rte_cpu_to_be_16(RTE_ARP_OP_REQUEST) ||
        req->arp_data.arp_tip != r.arp_ip.be) {
        return true;
    }
    rte_mbuf* out = rte_pktmbuf_alloc(r.reply_pool);
    if (out == nullptr) {
        bump(st.alloc_fail, 1);
        return true;
    }
    auto* oeh = rte_pktmbuf_mtod(out, rte_ether_hdr*);
    rte_ether_addr mine;
    std::memcpy(&mine, r.arp_mac.b.data(), 6);
    oeh->dst_addr = req->arp_data.arp_sha;
    oeh->src_addr = mine;
    oeh->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_ARP);
    auto* rep = reinterpret_cast<rte_arp_hdr*>(oeh + 1);
    rep->arp_hardware = rte_cpu_to_be_16(RTE_ARP_HRD_ETHER);
    rep->arp_protocol = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
    rep->arp_hlen = RTE_ETHER_ADDR_LEN;
    rep->arp_plen = 4;
    rep->arp_opcode = rte_cpu_to_be_16(RTE_ARP_OP_REPLY);
    rep->arp_data.arp_sha = mine;
    rep->arp_data.arp_sip = r.arp_ip.be;
    rep->arp_data.arp_tha = req->arp_data.arp_sha;
    rep->arp_data.arp_tip = req->arp_data.arp_sip;
    constexpr uint16_t kArpFrame = 60;  // minimum Ethernet frame without FCS, zero padded
    uint8_t* pad = reinterpret_cast<uint8_t*>(rep + 1);
    std::memset(pad, 0, kArpFrame - sizeof(rte_ether_hdr) - sizeof(rte_arp_hdr));
    out->data_len = kArpFrame;
    out->pkt_len = kArpFrame;
    if (rte_eth_tx_burst(r.port, r.queue, &out, 1) == 1) {
        bump(st.arp_replies, 1);
    } else {
        rte_pktmbuf_free(out);
    }
    return true;
}

inline uint16_t rx_step(const RxCtx& r, LcoreStats& st) {
    std::array<rte_mbuf*, kBurstSize> bufs;
    const uint16_t n = rte_eth_rx_burst(r.port, r.queue, bufs.data(), kBurstSize);
    if (n == 0) {
        return 0;
    }
    uint64_t bytes = 0;
    uint16_t other = 0;
    for (uint16_t i = 0; i < n; ++i) {
        if (r.arp && handle_arp(r, bufs[i], st)) {
            ++other;
            continue;
        }
        bytes += bufs[i]->pkt_len;
    }
    bump(st.rx_pkts, n - other);
    bump(st.rx_bytes, bytes);
    if (other != 0) {
        bump(st.rx_other, other);
    }
    rte_pktmbuf_free_bulk(bufs.data(), n);
    return n;
}

// ---------------------------------------------------------------------------------------------
// Lcore loops and the clock

std::atomic<bool> g_stop{false};
std::atomic<bool> g_signalled{false};

struct LcoreWork {
    unsigned lcore = 0;
    std::string role;
    std::vector<TxCtx> tx;
    std::vector<RxCtx> rx;
    LcoreStats stats;
};

// The calling thread's scheduler accounting (ns on CPU, ns runnable but waiting), from
// /proc/thread-self/schedstat. On a shared machine this is what tells a slow forwarder from a
// generator that other processes pushed off its CPU. Read twice per run, never per packet.
struct SchedStat {
    uint64_t on_cpu_ns = 0;
    uint64_t wait_ns = 0;
};

SchedStat read_schedstat() {
    SchedStat s;
    if (std::FILE* f = std::fopen("/proc/thread-self/schedstat", "r")) {
        if (std::fscanf(f, "%" SCNu64 " %" SCNu64, &s.on_cpu_ns, &s.wait_ns) != 2) {
            s = SchedStat{};
        }
        std::fclose(f);
    }
    return s;
}

struct Clock {
    uint64_t hz = 0;
    SchedStat sched0, sched1;  // the main lcore's, at the window's two ends
    uint64_t warm_end = 0;
    uint64_t end = 0;
    bool measuring = false;
    std::vector<LcoreWork*> all;
    std::vector<Snapshot> s0, s1;
};

void take(Clock& c, std::vector<Snapshot>& out, SchedStat& sched, uint64_t now) {
    sched = read_schedstat();
    out.clear();
    for (const LcoreWork* w : c.all) {
        out.push_back(snap(w->stats, now));
    }
}

// One iteration of polling: returns packets moved. Busy cycles are only those of iterations
// that moved something, so busy/total says how close this lcore is to being the bottleneck.
inline void poll_once(LcoreWork& w, uint64_t now) {
    uint32_t moved = 0;
    for (TxCtx& t : w.tx) {
        moved += tx_step(t, w.stats, now);
    }
    for (const RxCtx& r : w.rx) {
        moved += rx_step(r, w.stats);
    }
    if (moved != 0) {
        bump(w.stats.busy_cycles, rte_rdtsc() - now);
    }
}

int worker_main(void* arg) {
    auto* w = static_cast<LcoreWork*>(arg);
    while (!g_stop.load(std::memory_order_relaxed)) {
        poll_once(*w, rte_rdtsc());
    }
    return 0;
}

void main_loop(LcoreWork& w, Clock& c) {
    for (;;) {
        const uint64_t now = rte_rdtsc();
        // The window's ends on stderr, so that a harness samples the forwarder's CPU time over
        // the window alone (not its idle start-up, which a sleeping forwarder does not spend).
        if (now >= c.warm_end && !c.measuring) [[unlikely]] {
            take(c, c.s0, c.sched0, now);
            c.measuring = true;
            std::fprintf(stderr, "kdp-pktgen: window start\n");
        } else if (now >= c.end) [[unlikely]] {
            take(c, c.s1, c.sched1, now);
            std::fprintf(stderr, "kdp-pktgen: window end\n");
            break;
        }
        if (g_signalled.load(std::memory_order_relaxed)) [[unlikely]] {
            break;
        }
        poll_once(w, now);
    }
    g_stop.store(true, std::memory_order_relaxed);
}

void on_signal(int) {
    g_signalled.store(true, std::memory_order_relaxed);
}

// ---------------------------------------------------------------------------------------------
// Ports

void setup_port(uint16_t port, rte_mempool* rx_pool, uint16_t queues) {
    rte_eth_dev_info info;
    if (int rc = rte_eth_dev_info_get(port, &info); rc != 0) {
        die("port " + std::to_string(port) + ": dev_info_get: " + rte_strerror(-rc));
    }
    rte_eth_conf conf{};
    if (info.tx_offload_capa & RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE) {
        // Safe: every mbuf sent on a queue comes from that lcore's TX pool with refcnt 1.
        conf.txmode.offloads |= RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE;
    }
    if (queues > info.max_rx_queues || queues > info.max_tx_queues) {
        die("port " + std::to_string(port) + ": --queues " + std::to_string(queues) +
            " but the device has " + std::to_string(info.max_rx_queues) +
            " (give the vdev queues=" + std::to_string(queues) + ")");
    }
    if (int rc = rte_eth_dev_configure(port, queues, queues, &conf); rc != 0) {
        die("port " + std::to_string(port) + ": configure: " + rte_strerror(-rc));
    }
    uint16_t nb_rxd = kRingSize;
    uint16_t nb_txd = kRingSize;
    rte_eth_dev_adjust_nb_rx_tx_desc(port, &nb_rxd, &nb_txd);
    const int socket = rte_eth_dev_socket_id(port);
    const unsigned sock = socket < 0 ? 0 : static_cast<unsigned>(socket);
    rte_eth_txconf txconf = info.default_txconf;
    txconf.offloads = conf.txmode.offloads;
    for (uint16_t q = 0; q < queues; ++q) {
        if (int rc = rte_eth_rx_queue_setup(port, q, nb_rxd, sock, nullptr, rx_pool); rc != 0) {
            die("port " + std::to_string(port) + ": rx queue: " + rte_strerror(-rc));
        }
        if (int rc = rte_eth_tx_queue_setup(port, q, nb_txd, sock, &txconf); rc != 0) {
            die("port " + std::to_string(port) + ": tx queue: " + rte_strerror(-rc));
        }
    }
    if (int rc = rte_eth_dev_start(port); rc != 0) {
        die("port " + std::to_string(port) + ": start: " + rte_strerror(-rc));
    }
    rte_eth_promiscuous_enable(port);  // not all vdevs support it; harmless if refused
}

bool wait_links(const std::vector<uint16_t>& ports, double timeout_s) {
    const uint64_t deadline =
        rte_get_tsc_cycles() +
        static_cast<uint64_t>(timeout_s * static_cast<double>(rte_get_tsc_hz()));
    for (;;) {
        bool all_up = true;
        for (uint16_t p : ports) {
            rte_eth_link link{};
            if (rte_eth_link_get_nowait(p, &link) != 0 || link.link_status != RTE_ETH_LINK_UP) {
                all_up = false;
            }
        }
        if (all_up) {
            return true;
        }
        if (rte_get_tsc_cycles() > deadline) {
            return false;
        }
        rte_delay_ms(10);
    }
}

void fill_payload(rte_mempool*, void*, void* obj, unsigned idx) {
    auto* m = static_cast<rte_mbuf*>(obj);
    auto* data = static_cast<uint8_t*>(m->buf_addr) + RTE_PKTMBUF_HEADROOM;
    const unsigned room = m->buf_len - unsigned{RTE_PKTMBUF_HEADROOM};
    for (unsigned i = 0; i < room; ++i) {
        data[i] = static_cast<uint8_t>(i + idx);
    }
}

rte_mempool* make_pool(const std::string& name, bool fill, uint16_t queues) {
    // Every queue's ring may hold kRingSize of them: the pool grows with the queues.
    const unsigned n = (kPoolSize + 1) * queues - 1;
    rte_mempool* mp = rte_pktmbuf_pool_create(name.c_str(), n, kPoolCache, 0, kDataRoom,
                                              static_cast<int>(rte_socket_id()));
    if (mp == nullptr) {
        die("mempool " + name + ": " + rte_strerror(rte_errno));
    }
    if (fill) {
        rte_mempool_obj_iter(mp, fill_payload, nullptr);
    }
    return mp;
}

// ---------------------------------------------------------------------------------------------
// Report

void print_json(const Options& o,
                const Clock& c,
                const std::vector<uint16_t>& rx_ports,
                const std::vector<uint16_t>& tx_ports) {
    Snapshot d;  // totals over lcores, s1 - s0
    std::string lcores;
    const double secs = static_cast<double>(c.s1[0].tsc - c.s0[0].tsc) / static_cast<double>(c.hz);
    for (size_t i = 0; i < c.all.size(); ++i) {
        const Snapshot& a = c.s0[i];
        const Snapshot& b = c.s1[i];
        const uint64_t tx = b.tx_pkts - a.tx_pkts;
        const uint64_t rx = b.rx_pkts - a.rx_pkts + b.rx_other - a.rx_other;
        const uint64_t busy = b.busy_cycles - a.busy_cycles;
        const uint64_t total = b.tsc - a.tsc;
        d.tx_pkts += tx;
        d.tx_bytes += b.tx_bytes - a.tx_bytes;
        d.rx_pkts += b.rx_pkts - a.rx_pkts;
        d.rx_bytes += b.rx_bytes - a.rx_bytes;
        d.rx_other += b.rx_other - a.rx_other;
        d.arp_replies += b.arp_replies - a.arp_replies;
        d.alloc_fail += b.alloc_fail - a.alloc_fail;
        d.tx_refused += b.tx_refused - a.tx_refused;
        d.tx_skipped += b.tx_skipped - a.tx_skipped;
        char buf[512];
        std::snprintf(buf, sizeof(buf),
                      "%s{\"lcore\":%u,\"role\":\"%s\",\"busy_cycles\":%" PRIu64
                      ",\"total_cycles\":%" PRIu64 ",\"busy_ratio\":%.4f,\"tx_packets\":%" PRIu64
                      ",\"rx_packets\":%" PRIu64 ",\"cycles_per_packet\":%.2f}",
                      i == 0 ? "" : ",", c.all[i]->lcore, c.all[i]->role.c_str(), busy, total,
                      total ? static_cast<double>(busy) / static_cast<double>(total) : 0.0, tx, rx,
                      tx + rx ? static_cast<double>(busy) / static_cast<double>(tx + rx) : 0.0);
        lcores += buf;
    }
    std::string ports;
    std::vector<uint16_t> all_ports = tx_ports;
    for (uint16_t p : rx_ports) {
        if (std::find(all_ports.begin(), all_ports.end(), p) == all_ports.end()) {
            all_ports.push_back(p);
        }
    }
    std::sort(all_ports.begin(), all_ports.end());
    for (uint16_t p : all_ports) {
        rte_eth_stats s{};
        rte_eth_stats_get(p, &s);
        char buf[256];
        std::snprintf(buf, sizeof(buf),
                      "%s{\"port\":%u,\"ipackets\":%" PRIu64 ",\"opackets\":%" PRIu64
                      ",\"imissed\":%" PRIu64 ",\"ierrors\":%" PRIu64 ",\"oerrors\":%" PRIu64 "}",
                      ports.empty() ? "" : ",", p, s.ipackets, s.opackets, s.imissed, s.ierrors,
                      s.oerrors);
        ports += buf;
    }
    const double tx_pps = static_cast<double>(d.tx_pkts) / secs;
    const double rx_pps = static_cast<double>(d.rx_pkts) / secs;
    // Offered: what the forwarder accepted plus, in open loop, what its full ring refused.
    const uint64_t offered = d.tx_pkts + d.tx_refused;
    const double offered_pps = static_cast<double>(offered) / secs;
    const double loss =
        offered ? 1.0 - static_cast<double>(d.rx_pkts) / static_cast<double>(offered) : 0.0;
    // Share of the window the main lcore's thread spent on its CPU, and waiting for it.
    auto share = [secs](uint64_t ns) { return static_cast<double>(ns) / 1e9 / secs; };
    std::printf(
        "{\"workload\":\"%s\",\"size\":\"%s\",\"flows\":%u,\"bidir\":%s,"
        "\"rate_mpps_offered\":%.3f,\"open_loop\":%s,\"offered_pps\":%.0f,"
        "\"tx_refused\":%" PRIu64 ",\"tx_skipped\":%" PRIu64
        ",\"seconds\":%.3f,\"tx_pps\":%.0f,\"rx_pps\":%.0f,"
        "\"tx_mpps\":%.4f,\"rx_mpps\":%.4f,\"rx_gbps\":%.4f,\"loss\":%.6f,"
        "\"tx_packets\":%" PRIu64 ",\"rx_packets\":%" PRIu64 ",\"rx_other\":%" PRIu64
        ",\"arp_replies\":%" PRIu64 ",\"alloc_fail\":%" PRIu64 ",\"tsc_hz\":%" PRIu64
        ",\"main_cpu_share\":%.4f,\"main_wait_share\":%.4f,\"lcores\":[%s],\"ports\":[%s]}\n",
        workload_name(o.workload), o.size_name.c_str(), o.flows, o.bidir ? "true" : "false",
        o.rate_mpps, o.open_loop ? "true" : "false", offered_pps, d.tx_refused, d.tx_skipped, secs,
        tx_pps, rx_pps, tx_pps / 1e6, rx_pps / 1e6,
        static_cast<double>(d.rx_bytes) * 8 / secs / 1e9, loss, d.tx_pkts, d.rx_pkts, d.rx_other,
        d.arp_replies, d.alloc_fail, c.hz, share(c.sched1.on_cpu_ns - c.sched0.on_cpu_ns),
        share(c.sched1.wait_ns - c.sched0.wait_ns), lcores.c_str(), ports.c_str());
    std::fflush(stdout);
}

// Writes the first o.dump_count frames port A would send, built by the same code as the TX
// path into plain buffers, as a pcap file (microsecond stamps, LINKTYPE_ETHERNET).
int dump_pcap(const Options& o) {
    const Direction fwd{*o.src_mac, *o.dst_mac, *o.src_ip, *o.dst_ip};
    const Template tmpl = build_template(o, fwd);
    std::FILE* f = std::fopen(o.dump_pcap.c_str(), "wb");
    if (f == nullptr) {
        die("--dump-pcap: cannot create " + o.dump_pcap);
    }
    struct {
        uint32_t magic = 0xa1b2c3d4;
        uint16_t major = 2, minor = 4;
        int32_t zone = 0;
        uint32_t sigfigs = 0, snaplen = 65535, linktype = 1;
    } const file_hdr;
    std::fwrite(&file_hdr, sizeof(file_hdr), 1, f);
    std::vector<uint8_t> buf(kDataRoom);
    rte_mbuf m{};
    m.buf_addr = buf.data();
    m.data_off = 0;
    m.buf_len = kDataRoom;
    TxCtx t;
    t.tmpl = &tmpl;
    t.pattern = o.size_pattern.data();
    t.pattern_len = static_cast<uint32_t>(o.size_pattern.size());
    t.pending[0] = &m;
    for (uint32_t i = 0; i < o.dump_count; ++i) {
        for (size_t j = 0; j < buf.size(); ++j) {
            buf[j] = static_cast<uint8_t>(j);  // fill_payload's bytes for the pool's first mbuf
        }
        build_burst(t, 1);
        const uint32_t rec[4] = {i, 0, m.data_len, m.data_len};
        std::fwrite(rec, sizeof(rec), 1, f);
        std::fwrite(buf.data(), 1, m.data_len, f);
    }
    if (std::fclose(f) != 0) {
        die("--dump-pcap: cannot write " + o.dump_pcap);
    }
    std::fprintf(stderr, "kdp-pktgen: %u %s frames written to %s\n", o.dump_count,
                 workload_name(o.workload), o.dump_pcap.c_str());
    return 0;
}

int run(int argc, char** argv) {
    int dash = argc;
    bool dump = false;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
            usage(argv[0]);
            return 0;
        }
        if (std::strcmp(argv[i], "--") == 0 && dash == argc) {
            dash = i;
        }
        if (std::strcmp(argv[i], "--dump-pcap") == 0) {
            dump = true;
        }
    }
    if (dump) {  // no EAL: the options are everything after "--" (or every argument)
        const int first = dash == argc ? 0 : dash;
        argv[first] = argv[0];
        return dump_pcap(parse_options(argc - first, argv + first));
    }
    const int eal_argc = rte_eal_init(argc, argv);
    if (eal_argc < 0) {
        die(std::string("EAL init failed: ") + rte_strerror(rte_errno));
    }
    argv[eal_argc] = argv[0];
    const Options o = parse_options(argc - eal_argc, argv + eal_argc);

    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);

    const uint16_t nports = rte_eth_dev_count_avail();
    if (o.port_a >= nports || o.port_b >= nports) {
        die("need ethdev ports " + std::to_string(o.port_a) + " and " + std::to_string(o.port_b) +
            ", have " + std::to_string(nports) + " (pass two --vdev net_virtio_user...)");
    }

    rte_mempool* tx_pool = make_pool("pktgen_tx", true, o.queues);
    rte_mempool* rx_pool = make_pool("pktgen_rx", false, o.queues);
    setup_port(o.port_a, rx_pool, o.queues);
    setup_port(o.port_b, rx_pool, o.queues);
    if (!wait_links({o.port_a, o.port_b}, o.link_timeout)) {
        die("links not up after " + std::to_string(o.link_timeout) +
            " s: is the forwarder listening on the vhost sockets?");
    }

    const Direction fwd{*o.src_mac, *o.dst_mac, *o.src_ip, *o.dst_ip};
    Direction rev = fwd;
    if (o.workload == Workload::kL2) {
        rev = Direction{*o.dst_mac, *o.src_mac, *o.dst_ip, *o.src_ip};
    } else if (o.workload == Workload::kLocal) {
        // Pod B answers through the same gateway; its MAC mirrors pod A's default scheme.
        rev = Direction{*Mac::parse("02:00:00:00:00:0b"), *o.dst_mac, *o.dst_ip, *o.src_ip};
    }
    const Template tmpl_fwd = build_template(o, fwd);
    const Template tmpl_rev = build_template(o, rev);

    Clock c;
    c.hz = rte_get_tsc_hz();
    const uint64_t start = rte_rdtsc();
    c.warm_end = start + static_cast<uint64_t>(o.warmup * static_cast<double>(c.hz));
    c.end = c.warm_end + static_cast<uint64_t>(o.seconds * static_cast<double>(c.hz));

    // One TX context per queue, each with every o.queues-th flow (or syn tuple) from its own.
    auto make_tx = [&](uint16_t port, uint16_t queue, const Template& t) {
        TxCtx x;
        x.port = port;
        x.queue = queue;
        x.flow_first = queue;
        x.flow_i = queue;
        x.flow_step = o.queues;
        x.seq = queue;
        x.pool = tx_pool;
        x.tmpl = &t;
        x.pattern = o.size_pattern.data();
        x.pattern_len = static_cast<uint32_t>(o.size_pattern.size());
        x.pkts_per_cycle = o.rate_mpps / o.queues * 1e6 / static_cast<double>(c.hz);
        x.open_loop = o.open_loop;
        x.rate_start = start;
        return x;
    };
    auto make_rx = [&](uint16_t port, uint16_t queue) {
        RxCtx r;
        r.port = port;
        r.queue = queue;
        r.arp = o.arp_reply_ip.has_value();
        r.arp_ip = o.arp_reply_ip.value_or(Ip4{});
        r.arp_mac = o.arp_reply_mac;
        r.reply_pool = tx_pool;
        return r;
    };

    std::vector<uint16_t> tx_ports{o.port_a};
    std::vector<uint16_t> rx_ports{o.port_b};
    if (o.bidir) {
        tx_ports.push_back(o.port_b);
        rx_ports.push_back(o.port_a);
    }
    const unsigned rx_lcore = rte_get_next_lcore(rte_get_main_lcore(), 1, 0);
    const bool split = rx_lcore < RTE_MAX_LCORE;
    if (split && o.bidir && o.arp_reply_ip) {
        die("--bidir with --arp-reply-ip needs a single lcore: both would transmit on one queue");
    }

    LcoreWork main_work;
    LcoreWork rx_work;
    main_work.lcore = rte_get_main_lcore();
    main_work.role = split ? "tx" : "tx+rx";
    for (uint16_t q = 0; q < o.queues; ++q) {
        main_work.tx.push_back(make_tx(o.port_a, q, tmpl_fwd));
        if (o.bidir) {
            main_work.tx.push_back(make_tx(o.port_b, q, tmpl_rev));
        }
    }
    LcoreWork& rxw = split ? rx_work : main_work;
    for (uint16_t p : rx_ports) {
        for (uint16_t q = 0; q < o.queues; ++q) {
            rxw.rx.push_back(make_rx(p, q));
        }
    }
    c.all.push_back(&main_work);
    if (split) {
        rx_work.lcore = rx_lcore;
        rx_work.role = "rx";
        c.all.push_back(&rx_work);
        if (int rc = rte_eal_remote_launch(worker_main, &rx_work, rx_lcore); rc != 0) {
            die("cannot launch the RX lcore: " + std::string(rte_strerror(-rc)));
        }
    }
    std::fprintf(stderr,
                 "kdp-pktgen: %s size %s, %u flows, warm-up %.1f s, window %.1f s, lcores: %s\n",
                 workload_name(o.workload), o.size_name.c_str(), o.flows, o.warmup, o.seconds,
                 split ? "tx + rx" : "one");
    main_loop(main_work, c);
    rte_eal_mp_wait_lcore();

    int rc = 0;
    if (c.s1.empty()) {
        std::fprintf(stderr, "kdp-pktgen: interrupted before the window ended\n");
        rc = 1;
    } else {
        print_json(o, c, rx_ports, tx_ports);
    }
    for (TxCtx& t : main_work.tx) {
        if (t.pend_n != 0) {
            rte_pktmbuf_free_bulk(t.pending.data() + t.pend_off, t.pend_n);
        }
    }
    for (uint16_t p : {o.port_a, o.port_b}) {
        rte_eth_dev_stop(p);
        rte_eth_dev_close(p);
    }
    rte_mempool_free(tx_pool);
    rte_mempool_free(rx_pool);
    rte_eal_cleanup();
    return rc;
}

}  // namespace

int main(int argc, char** argv) {
    return run(argc, argv);
}
