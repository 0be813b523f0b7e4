#include "push/dataplane_client.h"

#include <map>

#include <fmt/format.h>

#include "common/version.h"
#include "spec/convert.h"

namespace kdp::control {
namespace {

template <typename Resp, typename Call>
Resp call(const char* rpc, Call&& c) {
    Resp resp;
    const grpc::Status s = c(&resp);
    if (!s.ok()) {
        throw RpcError(rpc, s);
    }
    return resp;
}

std::string code_name(grpc::StatusCode c) {
    switch (c) {
        case grpc::StatusCode::OK:
            return "OK";
        case grpc::StatusCode::CANCELLED:
            return "CANCELLED";
        case grpc::StatusCode::INVALID_ARGUMENT:
            return "INVALID_ARGUMENT";
        case grpc::StatusCode::DEADLINE_EXCEEDED:
            return "DEADLINE_EXCEEDED";
        case grpc::StatusCode::NOT_FOUND:
            return "NOT_FOUND";
        case grpc::StatusCode::FAILED_PRECONDITION:
            return "FAILED_PRECONDITION";
        case grpc::StatusCode::ABORTED:
            return "ABORTED";
        case grpc::StatusCode::UNIMPLEMENTED:
            return "UNIMPLEMENTED";
        case grpc::StatusCode::INTERNAL:
            return "INTERNAL";
        case grpc::StatusCode::UNAVAILABLE:
            return "UNAVAILABLE";
        default:
            return fmt::format("code {}", static_cast<int>(c));
    }
}

// gRPC's default reconnect backoff grows to 120 s: a dataplane that restarts would stay
// unreachable to us long after it is back. Local socket: retry within a second.
std::shared_ptr<grpc::Channel> channel(const std::string& socket_path) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    args.SetMaxReceiveMessageSize(api::kMaxMessageBytes);  // ListServices of a large node
    args.SetMaxSendMessageSize(api::kMaxMessageBytes);
    return grpc::CreateCustomChannel("unix:" + socket_path, grpc::InsecureChannelCredentials(),
                                     args);
}

}  // namespace

RpcError::RpcError(const char* rpc, const grpc::Status& s)
    : std::runtime_error(
          fmt::format("{}: {}: {}", rpc, code_name(s.error_code()), s.error_message())),
      code_(s.error_code()) {}

void check_api_revision(const v1::NodeInfo& info,
                        const std::string& socket_path,
                        const std::string& program) {
    if (speaks_api_revision(info.api_revision())) {
        return;
    }
    const std::string theirs = info.version().empty() ? "a version older than 0.1.0"
                                                      : fmt::format("version {}", info.version());
    throw ApiRevisionError(fmt::format(
        "the dataplane at {} ({}) speaks kdp.v1 API revision {}; this {} (version {}) speaks "
        "revision {}: refusing it, run matching versions of kdp",
        socket_path, theirs, info.api_revision(), program, version(), kApiRevision));
}

DataplaneClient::DataplaneClient(const std::string& socket_path, std::chrono::milliseconds deadline)
    : socket_path_(socket_path),
      deadline_(deadline),
      stub_(v1::Dataplane::NewStub(channel(socket_path))) {}

std::unique_ptr<grpc::ClientContext> DataplaneClient::context() const {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() + deadline_);
    return ctx;
}

v1::NodeInfo DataplaneClient::node_info() {
    return call<v1::NodeInfo>("GetNodeInfo", [&](auto* r) {
        return stub_->GetNodeInfo(context().get(), v1::GetNodeInfoRequest{}, r);
    });
}

v1::SyncTablesResponse DataplaneClient::sync_tables(const table::TableSpec& spec) {
    v1::SyncTablesRequest req;
    api::spec_to_proto(spec, &req);
    return call<v1::SyncTablesResponse>(
        "SyncTables", [&](auto* r) { return stub_->SyncTables(context().get(), req, r); });
}

v1::UpdateTablesResponse DataplaneClient::update_tables(const v1::UpdateTablesRequest& req) {
    return call<v1::UpdateTablesResponse>(
        "UpdateTables", [&](auto* r) { return stub_->UpdateTables(context().get(), req, r); });
}

v1::ListRoutesResponse DataplaneClient::list_routes() {
    return call<v1::ListRoutesResponse>("ListRoutes", [&](auto* r) {
        return stub_->ListRoutes(context().get(), v1::ListRoutesRequest{}, r);
    });
}

v1::ListPodsResponse DataplaneClient::list_pods() {
    return call<v1::ListPodsResponse>("ListPods", [&](auto* r) {
        return stub_->ListPods(context().get(), v1::ListPodsRequest{}, r);
    });
}

v1::ListConntrackResponse DataplaneClient::list_conntrack(uint32_t limit) {
    v1::ListConntrackRequest req;
    req.set_limit(limit);
    return call<v1::ListConntrackResponse>(
        "ListConntrack", [&](auto* r) { return stub_->ListConntrack(context().get(), req, r); });
}

v1::ListServicesResponse DataplaneClient::list_services() {
    return call<v1::ListServicesResponse>("ListServices", [&](auto* r) {
        return stub_->ListServices(context().get(), v1::ListServicesRequest{}, r);
    });
}

v1::GetPolicyResponse DataplaneClient::get_policy() {
    return call<v1::GetPolicyResponse>("GetPolicy", [&](auto* r) {
        return stub_->GetPolicy(context().get(), v1::GetPolicyRequest{}, r);
    });
}

v1::AddPortResponse DataplaneClient::add_port(const v1::AddPortRequest& req) {
    return call<v1::AddPortResponse>(
        "AddPort", [&](auto* r) { return stub_->AddPort(context().get(), req, r); });
}

void DataplaneClient::remove_port(const std::string& name) {
    v1::RemovePortRequest req;
    req.set_name(name);
    call<v1::RemovePortResponse>(
        "RemovePort", [&](auto* r) { return stub_->RemovePort(context().get(), req, r); });
}

v1::TraceResponse DataplaneClient::trace(const v1::TraceRequest& req) {
    return call<v1::TraceResponse>("Trace",
                                   [&](auto* r) { return stub_->Trace(context().get(), req, r); });
}

v1::ListPortsResponse DataplaneClient::list_ports() {
    return call<v1::ListPortsResponse>("ListPorts", [&](auto* r) {
        return stub_->ListPorts(context().get(), v1::ListPortsRequest{}, r);
    });
}

v1::Stats DataplaneClient::stats() {
    return call<v1::Stats>("GetStats", [&](auto* r) {
        return stub_->GetStats(context().get(), v1::GetStatsRequest{}, r);
    });
}

void DataplaneClient::watch_events(const std::function<bool(const v1::Event&)>& on_event) {
    grpc::ClientContext ctx;
    auto reader = stub_->WatchEvents(&ctx, v1::WatchEventsRequest{});
    v1::Event e;
    while (reader->Read(&e)) {
        if (!on_event(e)) {
            ctx.TryCancel();
            while (reader->Read(&e)) {
            }
            reader->Finish();
            return;
        }
    }
    const grpc::Status s = reader->Finish();
    if (!s.ok()) {
        throw RpcError("WatchEvents", s);
    }
}

namespace {

// Appends to the request the upserts (new or changed entries) and deletes (keys gone) that
// turn `from` into `to`, in key order.
template <class Spec, class Key, class ToProto, class Upsert, class Delete>
void diff_list(const std::vector<Spec>& from,
               const std::vector<Spec>& to,
               Key key,
               ToProto to_proto,
               Upsert upsert,
               Delete del) {
    std::map<std::string_view, const Spec*> old_items, new_items;
    for (const auto& x : from) {
        old_items[key(x)] = &x;
    }
    for (const auto& x : to) {
        new_items[key(x)] = &x;
    }
    for (const auto& [k, x] : new_items) {
        const auto it = old_items.find(k);
        if (it == old_items.end() || !(*it->second == *x)) {
            to_proto(*x, upsert());
        }
    }
    for (const auto& [k, _] : old_items) {
        if (new_items.count(k) == 0) {
            del(std::string(k));
        }
    }
}

size_t change_count(const v1::UpdateTablesRequest& req) {
    return static_cast<size_t>(req.upsert_routes_size() + req.delete_routes_size() +
                               req.upsert_pods_size() + req.delete_pods_size() +
                               req.upsert_services_size() + req.delete_services_size() +
                               (req.has_policy() ? 1 : 0));
}

}  // namespace

v1::UpdateTablesRequest diff_tables(const table::TableSpec& from, const table::TableSpec& to) {
    v1::UpdateTablesRequest req;
    diff_list(
        from.routes, to.routes, [](const auto& r) -> std::string_view { return r.node_name; },
        api::route_to_proto, [&] { return req.add_upsert_routes(); },
        [&](std::string k) { req.add_delete_routes(std::move(k)); });
    diff_list(
        from.pods, to.pods, [](const auto& p) -> std::string_view { return p.name; },
        api::pod_to_proto, [&] { return req.add_upsert_pods(); },
        [&](std::string k) { req.add_delete_pods(std::move(k)); });
    diff_list(
        from.services, to.services, [](const auto& s) -> std::string_view { return s.name; },
        api::service_to_proto, [&] { return req.add_upsert_services(); },
        [&](std::string k) { req.add_delete_services(std::move(k)); });
    // Policy goes whole when any of it changed.
    if (to.policy.present && !(from.policy == to.policy)) {
        api::policy_to_proto(to.policy, req.mutable_policy());
    }
    return req;
}

Pusher::Result Pusher::sync(const table::TableSpec& desired,
                            const v1::NodeInfo& info,
                            std::string reason) {
    table::TableSpec spec = desired;
    api::sort_spec(spec);
    uint64_t current = info.generation();
    // Another writer may move the generation between GetNodeInfo and SyncTables: re-read once.
    for (int attempt = 0;; ++attempt) {
        spec.generation = current + 1;
        try {
            client_.sync_tables(spec);
            break;
        } catch (const RpcError& e) {
            if (e.code() != grpc::StatusCode::FAILED_PRECONDITION || attempt > 0) {
                last_.reset();
                throw;
            }
            current = client_.node_info().generation();
        }
    }
    last_ = Last{info.started_unix_ns(), spec.generation, spec};
    return Result{Action::kSync, spec.generation,
                  spec.routes.size() + spec.pods.size() + spec.services.size(), std::move(reason)};
}

Pusher::Result Pusher::push(const table::TableSpec& desired) {
    const v1::NodeInfo info = client_.node_info();
    check_api_revision(info, client_.socket_path(), program_);
    if (!last_) {
        return sync(desired, info, "first push");
    }
    if (info.started_unix_ns() != last_->started_unix_ns) {
        return sync(desired, info, "dataplane restarted");
    }
    if (desired.service_cidrs != last_->spec.service_cidrs) {
        return sync(desired, info, "service CIDRs changed");  // UpdateTables keeps them
    }
    if (info.generation() != last_->generation) {
        return sync(desired, info,
                    fmt::format("dataplane at generation {}, expected {}", info.generation(),
                                last_->generation));
    }
    v1::UpdateTablesRequest req = diff_tables(last_->spec, desired);
    const size_t changes = change_count(req);
    if (changes == 0) {
        return Result{Action::kNone, last_->generation, 0, {}};
    }
    req.set_base_generation(last_->generation);
    req.set_generation(last_->generation + 1);
    try {
        const auto resp = client_.update_tables(req);
        table::TableSpec spec = desired;
        api::sort_spec(spec);
        spec.generation = resp.generation();
        last_ = Last{info.started_unix_ns(), resp.generation(), std::move(spec)};
        return Result{Action::kUpdate, resp.generation(), changes, {}};
    } catch (const RpcError& e) {
        if (e.code() != grpc::StatusCode::ABORTED) {
            last_.reset();
            throw;
        }
        return sync(desired, client_.node_info(), "update aborted (generation moved)");
    }
}

}  // namespace kdp::control
