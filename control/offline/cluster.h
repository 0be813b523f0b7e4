// The whole cluster a set of manifests describes, built in-process: every node's real tables
// (the compiler kdp-control runs, the TableManager the dataplane runs) and its pipeline on
// virtual ports, so that kdpctl trace can follow a probe from node to node, and its reply back,
// before anything is applied (`kdpctl trace --manifests ... [--probes ...]`).
//
//   probe --> node A: pod port / uplink --process_burst--> pod port | uplink
//                                                               | VXLAN to node B
//             node B: uplink --process_burst--> pod port (delivered) --> reply, back the same way
//
// Each node is a NodeContext with a PortTable (port 0 the uplink, 1.. its pods, no ethdev
// behind any of them), a neighbour table with every other node resolved, and a TableManager fed
// with compile_node_tables() of that node. A probe runs on scratch conntrack tables, fresh for
// every probe, so that probes are independent and the cluster's state never changes.
//
// Addresses kdp takes from a node's config are derived as a kdp install does them: node MAC and
// VTEP MAC from the InternalIP (or Flannel's annotation), the pods' gateway the first address of
// the podCIDR, VXLAN port 4789 and VNI 1 unless told otherwise. Addresses outside every node's
// subnet are reached through an underlay router.
//
// One thread. Errors are OfflineError with a message naming what is wrong.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/backend.h"
#include "compile/services.h"
#include "model/model.h"

struct rte_mempool;

namespace kdp::control::offline {

class OfflineError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// One probe: SPEC's {from, to, port, protocol} plus enters_at for an outside client.
struct Probe {
    std::string from;       // "NS/POD", "node:NAME" (its host network) or an IPv4 literal
    std::string to;         // "NS/POD", "service:NS/NAME", "node:NAME" or an IPv4 literal
    uint16_t port = 0;      // destination port
    uint8_t proto = 6;      // 6 TCP, 17 UDP, 132 SCTP
    std::string enters_at;  // the node an outside client's packet arrives at
};

struct ProbeResult {
    api::TraceResult trace;  // verdict, backend, backend_port, seen_src, hops (every node)
    /// For an allowed probe, what became of the server's answer: "allow" when it came back to
    /// the client as an answer to what it sent (addresses and ports translated back), "deny"
    /// when it did not; "" when nothing was delivered.
    std::string reply;
};

struct ClusterOptions {
    ServiceOptions services;
    uint16_t vxlan_port = 4789;
    uint32_t vni = 1;
    /// Masquerade boundary (node.cluster_cidr); default: the smallest prefix holding every
    /// node's podCIDR.
    std::optional<Prefix4> cluster_cidr;
};

/// Starts DPDK's EAL for in-process use (no hugepages, no devices, no shared files) unless it
/// is already running in this process. Throws OfflineError if it cannot.
void ensure_eal();

class Cluster {
public:
    /// Builds every node of `model` (copied) that has a podCIDR and an InternalIP. Throws
    /// OfflineError (no such node, a node with more pods than a dataplane has ports, tables a
    /// dataplane would refuse).
    explicit Cluster(const Model& model, ClusterOptions options = {});
    ~Cluster();
    Cluster(const Cluster&) = delete;
    Cluster& operator=(const Cluster&) = delete;

    /// Follows `probe` through the cluster. Throws OfflineError for a probe that names nothing
    /// in the cluster (unknown pod, Service without a ClusterIP, outside client without
    /// enters_at).
    ProbeResult trace(const Probe& probe);

    /// What compiling left out, per node ("node1: ...").
    const std::vector<std::string>& warnings() const { return warnings_; }
    size_t node_count() const { return nodes_.size(); }
    size_t pod_count() const;

private:
    struct Node;
    struct Walk;
    Node* node_named(const std::string& name) const;
    Node* node_with_ip(Ip4 ip) const;
    /// Runs `frame` into `n` at `port` and follows what comes out; appends hops to `out`.
    void walk(Walk& w);
    void learn_outside(Ip4 ip);

    Model model_;
    ClusterOptions options_;
    std::map<std::string, Ip4> cluster_ips_;  // "NS/NAME" -> ClusterIP
    std::vector<std::unique_ptr<Node>> nodes_;
    std::vector<std::string> warnings_;
    rte_mempool* pool_ = nullptr;
    uint64_t probe_seq_ = 0;
};

/// Probes from a YAML or JSON file: a list of probes, or an object whose `probes` is one.
/// Throws OfflineError naming the file, the probe's index and the field.
std::vector<Probe> read_probes(const std::string& path);
/// One probe from its JSON form; `where` prefixes error messages.
Probe parse_probe(const nlohmann::json& j, const std::string& where);

/// The probe and its result as one JSON object: from, to, port, protocol, [enters_at],
/// verdict, backend (or null), backend_port, seen_src, reply, hops.
nlohmann::ordered_json result_json(const Probe& p, const ProbeResult& r);

}  // namespace kdp::control::offline
