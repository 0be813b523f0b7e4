#include "push/dataplane_client.h"

#include <map>

#include <fmt/format.h>

#include "api/convert.h"

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
    return grpc::CreateCustomChannel("unix:" + socket_path, grpc::InsecureChannelCredentials(),
                                     args);
}

}  // namespace

RpcError::RpcError(const char* rpc, const grpc::Status& s)
    : std::runtime_error(
          fmt::format("{}: {}: {}", rpc, code_name(s.error_code()), s.error_message())),
      code_(s.error_code()) {}

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

v1::UpdateTablesRequest diff_tables(const table::TableSpec& from, const table::TableSpec& to) {
    v1::UpdateTablesRequest req;
    std::map<std::string, const table::RouteSpec*> old_routes, new_routes;
    std::map<std::string, const table::PodSpec*> old_pods, new_pods;
    for (const auto& r : from.routes) {
        old_routes[r.node_name] = &r;
    }
    for (const auto& r : to.routes) {
        new_routes[r.node_name] = &r;
    }
    for (const auto& p : from.pods) {
        old_pods[p.name] = &p;
    }
    for (const auto& p : to.pods) {
        new_pods[p.name] = &p;
    }
    for (const auto& [k, r] : new_routes) {
        const auto it = old_routes.find(k);
        if (it == old_routes.end() || !(*it->second == *r)) {
            api::route_to_proto(*r, req.add_upsert_routes());
        }
    }
    for (const auto& [k, _] : old_routes) {
        if (new_routes.count(k) == 0) {
            req.add_delete_routes(k);
        }
    }
    for (const auto& [k, p] : new_pods) {
        const auto it = old_pods.find(k);
        if (it == old_pods.end() || !(*it->second == *p)) {
            api::pod_to_proto(*p, req.add_upsert_pods());
        }
    }
    for (const auto& [k, _] : old_pods) {
        if (new_pods.count(k) == 0) {
            req.add_delete_pods(k);
        }
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
    return Result{Action::kSync, spec.generation, spec.routes.size() + spec.pods.size(),
                  std::move(reason)};
}

Pusher::Result Pusher::push(const table::TableSpec& desired) {
    const v1::NodeInfo info = client_.node_info();
    if (!last_) {
        return sync(desired, info, "first push");
    }
    if (info.started_unix_ns() != last_->started_unix_ns) {
        return sync(desired, info, "dataplane restarted");
    }
    if (info.generation() != last_->generation) {
        return sync(desired, info,
                    fmt::format("dataplane at generation {}, expected {}", info.generation(),
                                last_->generation));
    }
    v1::UpdateTablesRequest req = diff_tables(last_->spec, desired);
    const size_t changes = static_cast<size_t>(req.upsert_routes_size() + req.delete_routes_size() +
                                               req.upsert_pods_size() + req.delete_pods_size());
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
