#include "api/grpc_server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <exception>
#include <filesystem>
#include <set>
#include <stdexcept>
#include <system_error>

#include <fmt/format.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/server_posix.h>

#include "api/peer_gate.h"
#include "common/ip_proto.h"
#include "common/thread_annotations.h"
#include "common/version.h"
#include "kdp/v1/dataplane.grpc.pb.h"
#include "spec/convert.h"

namespace kdp::api {

// The dataplane's observations (Backend types) on the wire: only this server sends them.
namespace {

void add_counters(const CounterSet& in, v1::Counters* out) {
    out->set_rx_packets(in.rx_packets);
    out->set_rx_bytes(in.rx_bytes);
    out->set_tx_packets(in.tx_packets);
    out->set_tx_bytes(in.tx_bytes);
    for (size_t i = 0; i < dataplane::kDropReasonCount; ++i) {
        if (in.drops[i] != 0) {
            auto* d = out->add_drops();
            d->set_reason(std::string(dataplane::kDropReasonInfo[i].label));
            d->set_packets(in.drops[i]);
        }
    }
}

void node_info_to_proto(const NodeInfo& in, v1::NodeInfo* out) {
    out->set_node_name(in.node_name);
    out->set_node_ip(in.node_ip.str());
    out->set_node_mac(in.node_mac.str());
    out->set_pod_cidr(in.pod_cidr.str());
    out->set_gateway_ip(in.gateway_ip.str());
    out->set_gateway_mac(in.gateway_mac.str());
    out->set_vxlan_mode(in.vxlan_mode);
    out->set_vxlan_port(in.vxlan_port);
    out->set_vni(in.vni);
    out->set_vtep_mac(in.vtep_mac.str());
    out->set_mtu(in.mtu);
    out->set_pod_mtu(in.pod_mtu);
    out->set_workers(in.workers);
    out->set_generation(in.generation);
    out->set_started_unix_ns(in.started_unix_ns);
}

void port_to_proto(const PortInfo& in, v1::Port* out) {
    out->set_name(in.name);
    out->set_kind(in.kind);
    out->set_devargs(in.devargs);
    out->set_port_id(in.port_id);
    out->set_mac(in.mac.str());
    out->set_peer_mac(in.peer_mac.str());
    out->set_rx_queues(in.rx_queues);
    out->set_tx_queues(in.tx_queues);
    out->set_link_up(in.link_up);
}

void stats_to_proto(const StatsSnapshot& in, v1::Stats* out) {
    out->set_taken_unix_ns(in.taken_unix_ns);
    for (const auto& w : in.workers) {
        auto* pw = out->add_workers();
        pw->set_worker(w.worker);
        pw->set_lcore(w.lcore);
        add_counters(w.counters, pw->mutable_counters());
        pw->set_busy_cycles(w.busy_cycles);
        pw->set_total_cycles(w.total_cycles);
        pw->set_tsc_hz(w.tsc_hz);
        for (size_t i = 0; i < dataplane::kPhaseCount; ++i) {
            auto* ph = pw->add_phases();
            ph->set_phase(std::string(dataplane::kPhaseNames[i]));
            ph->set_cycles(w.phase_cycles[i]);
        }
    }
    for (const auto& p : in.ports) {
        auto* pp = out->add_ports();
        pp->set_name(p.name);
        pp->set_port_id(p.port_id);
        add_counters(p.counters, pp->mutable_counters());
    }
}

void conntrack_to_proto(const ConntrackListing& in, v1::ListConntrackResponse* out) {
    out->set_total(in.total);
    out->set_capacity(in.capacity);
    const auto tuple = [](const ConntrackInfo::Tuple& t, v1::ConntrackTuple* o) {
        o->set_src(t.src.str());
        o->set_sport(t.sport);
        o->set_dst(t.dst.str());
        o->set_dport(t.dport);
    };
    for (const ConntrackInfo& e : in.entries) {
        auto* pe = out->add_entries();
        const std::string_view name = ip_proto_name(e.proto);
        pe->set_protocol(name.empty() ? std::to_string(e.proto) : std::string(name));
        tuple(e.original, pe->mutable_original());
        tuple(e.reply, pe->mutable_reply());
        for (const std::string& n : e.nat) {
            pe->add_nat(n);
        }
        pe->set_state(e.state);
        pe->set_expires_in_s(e.expires_in_s);
        pe->set_affinity(e.affinity);
        pe->set_worker(e.worker);
    }
}

class EventHub;

// One WatchEvents stream. Writes one event at a time from a queue. StartWrite and Finish are
// called outside `mu_` because gRPC may run reactions on the calling thread; the `writing_`
// flag hands the right to touch `current_` to exactly one thread at a time. Deletes itself
// in OnDone, after leaving the hub.
class WatchReactor final : public grpc::ServerWriteReactor<v1::Event> {
public:
    explicit WatchReactor(EventHub& hub) : hub_(hub) {}

    void push(const v1::Event& e) {
        {
            LockGuard lock(mu_);
            if (finishing_) {
                return;
            }
            queue_.push_back(e);
            if (writing_) {
                return;
            }
            writing_ = true;
            current_ = std::move(queue_.front());
            queue_.pop_front();
        }
        StartWrite(&current_);
    }

    void finish(const grpc::Status& s) {
        {
            LockGuard lock(mu_);
            if (finishing_) {
                return;
            }
            finishing_ = true;
            status_ = s;
            if (writing_) {
                return;  // OnWriteDone finishes
            }
        }
        Finish(s);
    }

    void OnWriteDone(bool ok) override {
        grpc::Status finish_with;
        bool write_next = false;
        {
            LockGuard lock(mu_);
            if (!ok && !finishing_) {
                finishing_ = true;
                status_ = grpc::Status(grpc::StatusCode::CANCELLED, "write failed");
            }
            if (finishing_) {
                writing_ = false;
                finish_with = status_;
            } else if (queue_.empty()) {
                writing_ = false;
                return;
            } else {
                current_ = std::move(queue_.front());
                queue_.pop_front();
                write_next = true;
            }
        }
        if (write_next) {
            StartWrite(&current_);
        } else {
            Finish(finish_with);
        }
    }

    void OnCancel() override { finish(grpc::Status::CANCELLED); }
    void OnDone() override;

private:
    EventHub& hub_;
    Mutex mu_;
    std::deque<v1::Event> queue_ KDP_GUARDED_BY(mu_);
    v1::Event current_;  // not guarded: `writing_` hands it to one thread at a time
    bool writing_ KDP_GUARDED_BY(mu_) = false;
    bool finishing_ KDP_GUARDED_BY(mu_) = false;
    grpc::Status status_ KDP_GUARDED_BY(mu_);
};

// The set of open WatchEvents streams. Lock order: EventHub::mu_, then WatchReactor::mu_.
class EventHub {
public:
    // Returns false once the hub is closed (server shutting down).
    bool add(WatchReactor* r) {
        LockGuard lock(mu_);
        if (closed_) {
            return false;
        }
        watchers_.insert(r);
        return true;
    }
    void remove(WatchReactor* r) {
        LockGuard lock(mu_);
        watchers_.erase(r);
    }
    void publish(const v1::Event& e) {
        LockGuard lock(mu_);
        for (auto* w : watchers_) {
            w->push(e);
        }
    }
    void close() {
        LockGuard lock(mu_);
        closed_ = true;
        for (auto* w : watchers_) {
            w->finish(grpc::Status::OK);
        }
    }

private:
    Mutex mu_;
    std::set<WatchReactor*> watchers_ KDP_GUARDED_BY(mu_);
    bool closed_ KDP_GUARDED_BY(mu_) = false;
};

void WatchReactor::OnDone() {
    hub_.remove(this);
    delete this;
}

// Runs `body` and turns any exception into INTERNAL, logged with the RPC's name.
template <typename F>
grpc::Status guarded(const char* rpc, F&& body) {
    try {
        return body();
    } catch (const std::exception& e) {
        fmt::print(stderr, "kdp-dataplane: grpc {}: internal error: {}\n", rpc, e.what());
        return grpc::Status(grpc::StatusCode::INTERNAL, fmt::format("{}: {}", rpc, e.what()));
    } catch (...) {
        fmt::print(stderr, "kdp-dataplane: grpc {}: internal error\n", rpc);
        return grpc::Status(grpc::StatusCode::INTERNAL, fmt::format("{}: unknown error", rpc));
    }
}

grpc::Status port_status(const PortError& e) {
    using K = PortError::Kind;
    const grpc::StatusCode code = e.kind == K::kInvalid       ? grpc::StatusCode::INVALID_ARGUMENT
                                  : e.kind == K::kExists      ? grpc::StatusCode::ALREADY_EXISTS
                                  : e.kind == K::kNotFound    ? grpc::StatusCode::NOT_FOUND
                                  : e.kind == K::kUnsupported ? grpc::StatusCode::UNIMPLEMENTED
                                                              : grpc::StatusCode::INTERNAL;
    return grpc::Status(code, e.message);
}

grpc::ServerUnaryReactor* reply(grpc::CallbackServerContext* ctx, const grpc::Status& s) {
    auto* r = ctx->DefaultReactor();
    r->Finish(s);
    return r;
}

}  // namespace

class GrpcServer::Service final : public v1::Dataplane::CallbackService {
public:
    Service(Backend& backend, uint32_t api_revision)
        : backend_(backend), api_revision_(api_revision) {}

    EventHub& hub() { return hub_; }

    grpc::ServerUnaryReactor* GetNodeInfo(grpc::CallbackServerContext* ctx,
                                          const v1::GetNodeInfoRequest*,
                                          v1::NodeInfo* resp) override {
        return reply(ctx, guarded("GetNodeInfo", [&] {
                         node_info_to_proto(backend_.node_info(), resp);
                         // The server's own build, whatever the backend: clients check it.
                         resp->set_version(kdp::version());
                         resp->set_api_revision(api_revision_);
                         return grpc::Status::OK;
                     }));
    }

    grpc::ServerUnaryReactor* SyncTables(grpc::CallbackServerContext* ctx,
                                         const v1::SyncTablesRequest* req,
                                         v1::SyncTablesResponse* resp) override {
        return reply(ctx, guarded("SyncTables", [&] {
                         table::TableSpec spec;
                         if (auto e = spec_from_proto(*req, spec)) {
                             return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, *e);
                         }
                         sort_spec(spec);
                         LockGuard lock(write_mu_);
                         const uint64_t current = backend_.table_counts().generation;
                         if (spec.generation <= current) {
                             return grpc::Status(
                                 grpc::StatusCode::FAILED_PRECONDITION,
                                 fmt::format("generation {} is not newer than the generation in "
                                             "force ({})",
                                             spec.generation, current));
                         }
                         if (auto e = backend_.apply_tables(spec)) {
                             return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, *e);
                         }
                         resp->set_generation(spec.generation);
                         publish_applied(backend_.table_counts(), "sync");
                         return grpc::Status::OK;
                     }));
    }

    // Parses only the change and hands it to the Backend, which applies an endpoint change in
    // place; nothing here copies the tables in force.
    grpc::ServerUnaryReactor* UpdateTables(grpc::CallbackServerContext* ctx,
                                           const v1::UpdateTablesRequest* req,
                                           v1::UpdateTablesResponse* resp) override {
        return reply(ctx, guarded("UpdateTables", [&] {
                         LockGuard lock(write_mu_);
                         const uint64_t current = backend_.table_counts().generation;
                         if (req->base_generation() != current) {
                             return grpc::Status(
                                 grpc::StatusCode::ABORTED,
                                 fmt::format("base_generation {} is not the generation in force "
                                             "({}); resync",
                                             req->base_generation(), current));
                         }
                         if (req->generation() <= req->base_generation()) {
                             return grpc::Status(
                                 grpc::StatusCode::FAILED_PRECONDITION,
                                 fmt::format("generation {} is not newer than base_generation {}",
                                             req->generation(), req->base_generation()));
                         }
                         table::TableUpdate update;
                         if (auto e = update_from_proto(*req, update)) {
                             return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, *e);
                         }
                         if (auto e = backend_.apply_update(update)) {
                             return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, *e);
                         }
                         const TableCounts c = backend_.table_counts();
                         resp->set_generation(c.generation);
                         resp->set_routes(c.routes);
                         resp->set_pods(c.pods);
                         resp->set_services(c.services);
                         publish_applied(c, "update");
                         return grpc::Status::OK;
                     }));
    }

    grpc::ServerUnaryReactor* ListRoutes(grpc::CallbackServerContext* ctx,
                                         const v1::ListRoutesRequest*,
                                         v1::ListRoutesResponse* resp) override {
        return reply(ctx, guarded("ListRoutes", [&] {
                         auto spec = backend_.tables();
                         sort_spec(spec);
                         resp->set_generation(spec.generation);
                         for (const auto& r : spec.routes) {
                             route_to_proto(r, resp->add_routes());
                         }
                         return grpc::Status::OK;
                     }));
    }

    grpc::ServerUnaryReactor* ListPods(grpc::CallbackServerContext* ctx,
                                       const v1::ListPodsRequest*,
                                       v1::ListPodsResponse* resp) override {
        return reply(ctx, guarded("ListPods", [&] {
                         auto spec = backend_.tables();
                         sort_spec(spec);
                         resp->set_generation(spec.generation);
                         for (const auto& p : spec.pods) {
                             pod_to_proto(p, resp->add_pods());
                         }
                         return grpc::Status::OK;
                     }));
    }

    grpc::ServerUnaryReactor* GetPolicy(grpc::CallbackServerContext* ctx,
                                        const v1::GetPolicyRequest*,
                                        v1::GetPolicyResponse* resp) override {
        return reply(ctx, guarded("GetPolicy", [&] {
                         const auto spec = backend_.tables();
                         resp->set_generation(spec.generation);
                         resp->set_synced(spec.policy.present);
                         policy_to_proto(spec.policy, resp->mutable_policy());
                         return grpc::Status::OK;
                     }));
    }

    grpc::ServerUnaryReactor* ListServices(grpc::CallbackServerContext* ctx,
                                           const v1::ListServicesRequest*,
                                           v1::ListServicesResponse* resp) override {
        return reply(ctx, guarded("ListServices", [&] {
                         auto spec = backend_.tables();
                         sort_spec(spec);
                         resp->set_generation(spec.generation);
                         for (const auto& sv : spec.services) {
                             service_to_proto(sv, resp->add_services());
                         }
                         return grpc::Status::OK;
                     }));
    }

    grpc::ServerUnaryReactor* ListPorts(grpc::CallbackServerContext* ctx,
                                        const v1::ListPortsRequest*,
                                        v1::ListPortsResponse* resp) override {
        return reply(ctx, guarded("ListPorts", [&] {
                         auto ports = backend_.ports();
                         std::sort(ports.begin(), ports.end(), [](const auto& a, const auto& b) {
                             return a.port_id < b.port_id;
                         });
                         for (const auto& p : ports) {
                             port_to_proto(p, resp->add_ports());
                         }
                         return grpc::Status::OK;
                     }));
    }

    grpc::ServerUnaryReactor* GetStats(grpc::CallbackServerContext* ctx,
                                       const v1::GetStatsRequest*,
                                       v1::Stats* resp) override {
        return reply(
            ctx, guarded("GetStats", [&] {
                auto s = backend_.stats();
                std::sort(s.workers.begin(), s.workers.end(),
                          [](const auto& a, const auto& b) { return a.worker < b.worker; });
                std::sort(s.ports.begin(), s.ports.end(),
                          [](const auto& a, const auto& b) { return a.port_id < b.port_id; });
                stats_to_proto(s, resp);
                return grpc::Status::OK;
            }));
    }

    grpc::ServerWriteReactor<v1::Event>* WatchEvents(grpc::CallbackServerContext*,
                                                     const v1::WatchEventsRequest*) override {
        auto* r = new WatchReactor(hub_);
        v1::Event first;
        const grpc::Status s = guarded("WatchEvents", [&] {
            const TableCounts c = backend_.table_counts();
            first.set_kind(v1::Event::KIND_CURRENT);
            first.set_unix_ns(now_unix_ns());
            first.set_generation(c.generation);
            first.set_routes(c.routes);
            first.set_pods(c.pods);
            first.set_services(c.services);
            return grpc::Status::OK;
        });
        if (!s.ok()) {
            r->finish(s);
            return r;
        }
        // Holding write_mu_ orders the CURRENT event before any later TABLES_APPLIED event.
        LockGuard lock(write_mu_);
        if (!hub_.add(r)) {
            r->finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "server shutting down"));
            return r;
        }
        r->push(first);
        return r;
    }

    grpc::ServerUnaryReactor* AddPort(grpc::CallbackServerContext* ctx,
                                      const v1::AddPortRequest* req,
                                      v1::AddPortResponse* resp) override {
        return reply(
            ctx, guarded("AddPort", [&] {
                PodPortRequest r;
                r.name = req->name();
                switch (req->type()) {
                    case v1::PORT_TYPE_TAP:
                        r.type = "tap";
                        break;
                    case v1::PORT_TYPE_VHOSTUSER:
                        r.type = "vhostuser";
                        break;
                    default:
                        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                            "type: must be PORT_TYPE_TAP or "
                                            "PORT_TYPE_VHOSTUSER");
                }
                r.iface = req->iface();
                r.socket_path = req->socket_path();
                r.netns = req->netns();
                r.netns_iface = req->netns_iface();
                r.queues = req->queues();
                if (!req->pod_ip().empty()) {
                    r.pod_ip = Ip4::parse(req->pod_ip());
                    if (!r.pod_ip) {
                        return grpc::Status(
                            grpc::StatusCode::INVALID_ARGUMENT,
                            fmt::format("pod_ip: \"{}\" is not an IPv4 address", req->pod_ip()));
                    }
                }
                if (req->mtu() > 65535) {
                    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                        fmt::format("mtu: {} is not an MTU", req->mtu()));
                }
                r.mtu = static_cast<uint16_t>(req->mtu());
                PortInfo out;
                if (auto e = backend_.add_pod_port(r, out)) {
                    return port_status(*e);
                }
                port_to_proto(out, resp->mutable_port());
                return grpc::Status::OK;
            }));
    }

    grpc::ServerUnaryReactor* RemovePort(grpc::CallbackServerContext* ctx,
                                         const v1::RemovePortRequest* req,
                                         v1::RemovePortResponse*) override {
        return reply(ctx, guarded("RemovePort", [&] {
                         if (auto e = backend_.remove_pod_port(req->name())) {
                             return port_status(*e);
                         }
                         return grpc::Status::OK;
                     }));
    }

    grpc::ServerUnaryReactor* Trace(grpc::CallbackServerContext* ctx,
                                    const v1::TraceRequest* req,
                                    v1::TraceResponse* resp) override {
        return reply(
            ctx, guarded("Trace", [&] {
                TraceQuery q;
                q.from = req->from();
                q.to = req->to();
                const auto proto = protocol_from_name(req->protocol());
                if (!proto) {
                    return grpc::Status(
                        grpc::StatusCode::INVALID_ARGUMENT,
                        fmt::format("protocol: \"{}\" is not tcp, udp or sctp", req->protocol()));
                }
                if (req->port() == 0 || req->port() > 65535) {
                    return grpc::Status(
                        grpc::StatusCode::INVALID_ARGUMENT,
                        fmt::format("port: {} is not a port (1..65535)", req->port()));
                }
                if (req->source_port() > 65535) {
                    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                        fmt::format("source_port: {} is not a port (0..65535)",
                                                    req->source_port()));
                }
                q.proto = *proto;
                q.port = static_cast<uint16_t>(req->port());
                q.sport = static_cast<uint16_t>(req->source_port());
                TraceResult r;
                if (auto e = backend_.trace(q, r)) {
                    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, *e);
                }
                resp->set_verdict(r.verdict);
                resp->set_backend(r.backend);
                resp->set_backend_port(r.backend_port);
                resp->set_seen_src(r.seen_src);
                for (const auto& h : r.hops) {
                    auto* ph = resp->add_hops();
                    ph->set_node(h.node);
                    ph->set_stage(h.stage);
                    ph->set_detail(h.detail);
                }
                if (r.next) {
                    auto* n = resp->mutable_next();
                    n->set_node(r.next->node);
                    n->set_from(r.next->src.str());
                    n->set_to(r.next->dst.str());
                    n->set_port(r.next->dport);
                    n->set_source_port(r.next->sport);
                }
                return grpc::Status::OK;
            }));
    }

    grpc::ServerUnaryReactor* ListConntrack(grpc::CallbackServerContext* ctx,
                                            const v1::ListConntrackRequest* req,
                                            v1::ListConntrackResponse* resp) override {
        return reply(ctx, guarded("ListConntrack", [&] {
                         const uint32_t limit =
                             req->limit() == 0 || req->limit() > kConntrackListCap
                                 ? kConntrackListCap
                                 : req->limit();
                         conntrack_to_proto(backend_.conntrack(limit), resp);
                         return grpc::Status::OK;
                     }));
    }

private:
    static grpc::Status unimplemented(const char* rpc, const char* why) {
        return grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                            fmt::format("{} is not implemented: {}", rpc, why));
    }

    // Called after a successful apply, before another can start.
    void publish_applied(const TableCounts& c, const char* source) KDP_REQUIRES(write_mu_) {
        v1::Event e;
        e.set_kind(v1::Event::KIND_TABLES_APPLIED);
        e.set_unix_ns(now_unix_ns());
        e.set_generation(c.generation);
        e.set_routes(c.routes);
        e.set_pods(c.pods);
        e.set_services(c.services);
        e.set_source(source);
        hub_.publish(e);
    }

    Backend& backend_;
    const uint32_t api_revision_;  // reported in NodeInfo
    Mutex write_mu_;  // serialises SyncTables/UpdateTables (check generation, then apply)
    EventHub hub_;
};

namespace {

// Answers every call of a refused connection, whatever the method, with PERMISSION_DENIED.
class RefuseReactor final : public grpc::ServerGenericBidiReactor {
public:
    explicit RefuseReactor(const std::string& message) {
        Finish(grpc::Status(grpc::StatusCode::PERMISSION_DENIED, message));
    }
    void OnDone() override { delete this; }
};

class RefuseService final : public grpc::CallbackGenericService {
public:
    explicit RefuseService(std::string message) : message_(std::move(message)) {}
    grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext*) override {
        return new RefuseReactor(message_);
    }

private:
    std::string message_;
};

// A listening unix stream socket at `path` (which must not exist), mode 0600, or root:group
// 0660 with a group.
int listen_unix(const std::string& path, const std::optional<gid_t>& group) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof(addr.sun_path)) {
        throw std::runtime_error(fmt::format("socket path {} is too long", path));
    }
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        throw std::runtime_error(fmt::format("socket: {}", std::strerror(errno)));
    }
    auto fail = [&](const std::string& what) {
        const int err = errno;
        ::close(fd);
        throw std::runtime_error(fmt::format("{} {}: {}", what, path, std::strerror(err)));
    };
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
        fail("cannot bind");
    }
    if (::chmod(path.c_str(), group ? 0660 : 0600) != 0) {
        fail(group ? "cannot chmod 0660" : "cannot chmod 0600");
    }
    if (group && ::chown(path.c_str(), 0, *group) != 0) {
        fail(fmt::format("cannot chown to gid {}", *group));
    }
    if (::listen(fd, 128) != 0) {
        fail("cannot listen on");
    }
    return fd;
}

}  // namespace

GrpcServer::GrpcServer(Backend& backend, std::string socket_path, std::optional<gid_t> group)
    : backend_(backend),
      socket_path_(std::move(socket_path)),
      api_revision_(kApiRevision),
      group_(group) {}

GrpcServer::~GrpcServer() {
    shutdown();
}

void GrpcServer::start() {
    if (server_) {
        throw std::runtime_error("gRPC server already started");
    }
    namespace fs = std::filesystem;
    const fs::path path(socket_path_);
    std::error_code ec;
    if (path.has_parent_path()) {
        fs::create_directories(path.parent_path(), ec);
        if (ec) {
            throw std::runtime_error(
                fmt::format("cannot create {}: {}", path.parent_path().string(), ec.message()));
        }
    }
    const auto st = fs::symlink_status(path, ec);
    if (!ec && fs::exists(st)) {
        if (!fs::is_socket(st)) {
            throw std::runtime_error(
                fmt::format("{} exists and is not a socket; not removing it", socket_path_));
        }
        if (!fs::remove(path, ec) || ec) {
            throw std::runtime_error(
                fmt::format("cannot remove stale socket {}: {}", socket_path_, ec.message()));
        }
    }

    // The server has no listening port of its own: the gate accepts each connection, checks
    // the caller's credentials and hands the connection to the serving server or to the one
    // that refuses every call.
    const int listen_fd = listen_unix(socket_path_, group_);
    PeerPolicy policy(group_);
    service_ = std::make_unique<Service>(backend_, api_revision_);
    grpc::ServerBuilder builder;
    builder.RegisterService(service_.get());
    builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
    builder.SetMaxSendMessageSize(kMaxMessageBytes);
    server_ = builder.BuildAndStart();
    refuse_service_ = std::make_unique<RefuseService>(
        fmt::format("kdp-dataplane refuses this caller: the API at {} is for {}", socket_path_,
                    policy.describe()));
    grpc::ServerBuilder refuse_builder;
    refuse_builder.RegisterCallbackGenericService(refuse_service_.get());
    refuse_builder.SetMaxReceiveMessageSize(4096);
    refuse_server_ = refuse_builder.BuildAndStart();
    gate_ = std::make_unique<PeerGate>(listen_fd, std::move(policy));
    if (!server_ || !refuse_server_) {
        shutdown();
        throw std::runtime_error(fmt::format("cannot start the gRPC server on {}", socket_path_));
    }
    gate_->start([this](int fd) { grpc::AddInsecureChannelFromFd(server_.get(), fd); },
                 [this](int fd, const PeerCredentials&, const std::string& why) {
                     std::fprintf(stderr, "kdp-dataplane: API connection refused: %s\n",
                                  why.c_str());
                     grpc::AddInsecureChannelFromFd(refuse_server_.get(), fd);
                 });
}

uint64_t GrpcServer::connections_accepted() const {
    return gate_ ? gate_->accepted() : 0;
}

uint64_t GrpcServer::connections_refused() const {
    return gate_ ? gate_->refused() : 0;
}

void GrpcServer::shutdown() {
    if (!gate_ && !server_) {
        return;
    }
    if (gate_) {
        gate_->stop();  // no new connections from here on
    }
    if (service_) {
        service_->hub().close();
    }
    const auto deadline = std::chrono::system_clock::now() + std::chrono::seconds(1);
    for (auto* s : {server_.get(), refuse_server_.get()}) {
        if (s != nullptr) {
            s->Shutdown(deadline);
            s->Wait();
        }
    }
    gate_.reset();
    server_.reset();
    refuse_server_.reset();
    refuse_service_.reset();
    service_.reset();
    std::error_code ec;
    std::filesystem::remove(socket_path_, ec);
}

}  // namespace kdp::api
