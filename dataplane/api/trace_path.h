// The pieces of kdpctl trace that the live trace (TableManager::trace) and the offline cluster
// (control/offline) share: frames as a client or a node would send them, one frame run through
// process_burst on a private worker, and what NetworkPolicy says of a connection.
//
// Control threads only. Nothing here touches an ethdev: run_frame takes back what the pipeline
// would have transmitted from the worker's TX buffers before anything flushes them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/net.h"
#include "core/worker.h"
#include "pkt/drop_reason.h"
#include "stage/node_context.h"
#include "table/tables.h"

namespace kdp::api::tracing {

/// The client port of a crafted packet.
inline constexpr uint16_t kTraceSport = 47000;
/// Ethernet + IPv4 + VXLAN headers in front of an encapsulated frame.
inline constexpr size_t kVxlanOverhead = 14 + 20 + 8 + 8;

/// Ethernet + IPv4 + the first packet of a connection (TCP SYN, an empty UDP datagram, SCTP
/// INIT), checksums filled in; with `reply`, the server's answer to it (SYN-ACK, a datagram
/// back, INIT-ACK).
std::vector<uint8_t> craft(const Mac& dst_mac,
                           const Mac& src_mac,
                           Ip4 src,
                           Ip4 dst,
                           uint8_t proto,
                           uint16_t sport,
                           uint16_t dport,
                           bool reply = false);

/// `inner` (an Ethernet frame) as the VXLAN packet node `from_ip` sends to node `to`.
std::vector<uint8_t> encapsulate(const std::vector<uint8_t>& inner,
                                 const dataplane::NodeContext& to,
                                 Ip4 from_ip,
                                 const Mac& from_mac);

/// "TCP 10.0.0.1:47000 -> 10.0.0.2:80".
std::string flow_text(uint8_t proto, Ip4 s, uint16_t sp, Ip4 d, uint16_t dp);
const char* proto_name(uint8_t proto);  // "TCP", "UDP", "SCTP", "ICMP"

/// A frame the pipeline would have sent.
struct Emitted {
    uint16_t port = 0;
    std::vector<uint8_t> frame;
};

/// What one frame did.
struct FrameRun {
    std::vector<Emitted> out;
    uint32_t held = 0;  // waiting for an ARP reply (they would leave once it came)
    dataplane::DropReason drop = dataplane::DropReason::kNone;  // counted while it ran
};

/// Runs `frame`, as received on `in_port`, through process_burst on `w` at time `now`. `w`'s
/// node context decides which conntrack and neighbour table the run may change (the caller
/// points them at scratch ones); the port's learned peer MAC is put back. Everything it would
/// have sent or held is taken back into `out` and freed. False when no mbuf was free.
bool run_frame(dataplane::Worker& w,
               const table::TableSet* t,
               uint16_t in_port,
               const std::vector<uint8_t>& frame,
               uint64_t now,
               FrameRun& out);

/// The parsed addresses of an emitted frame: its own, or for VXLAN to `vxlan_port_be` its inner
/// packet's (with `vxlan` set and `outer_dst` the node it is sent to).
struct Flow {
    bool ipv4 = false;
    bool arp = false;
    bool vxlan = false;
    Ip4 outer_dst;
    Ip4 src, dst;
    uint16_t sport = 0, dport = 0;  // host order
    uint8_t proto = 0;
    uint8_t tcp_flags = 0;
};
Flow read_flow(const std::vector<uint8_t>& frame, uint16_t vxlan_port_be);

/// What NetworkPolicy on node `n` says of a connection from `client` to `server`:`port` (after
/// DNAT), seen by the server as coming from `seen`: which policy rule allowed each isolated
/// side of this node, or that none did. The same judge() the workers run on a first packet.
std::string policy_detail(const dataplane::NodeContext& n,
                          const table::PolicyTables& pol,
                          Ip4 client,
                          Ip4 seen,
                          Ip4 server,
                          uint16_t port,
                          uint8_t proto);

/// How the service stage chose backend:backend_port for a new connection `in` (as it arrived:
/// on the uplink or not, in VXLAN or not) to the Service port `fe`: "Maglev slot N of M" (over
/// this node's endpoints, hashed on the client address, as maglev_choice says), or "the
/// client's recorded affinity" when the slot does not lead there (an affinity record chose it).
std::string maglev_slot(const table::TableSet& t,
                        const table::Frontend& fe,
                        const Flow& in,
                        bool on_uplink,
                        Ip4 backend,
                        uint16_t backend_port);

}  // namespace kdp::api::tracing
