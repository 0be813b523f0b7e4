#include "standalone/kube_source.h"

#include <mutex>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <fmt/format.h>

#include "compile/node_tables.h"
#include "k8s/client.h"
#include "k8s/kubeconfig.h"
#include "k8s/reflector.h"
#include "model/model.h"

namespace kdp::control::standalone {

namespace asio = boost::asio;

class KubeSource::Impl final : public k8s::EventSink {
public:
    Impl(const k8s::ClusterConfig& cfg, std::string node)
        : node_(std::move(node)),
          work_(asio::make_work_guard(ioc_)),
          client_(ioc_.get_executor(), cfg) {
        for (const k8s::ResourceSpec& spec : k8s::kdp_resources()) {
            reflectors_.push_back(std::make_unique<k8s::Reflector>(client_, spec, *this));
            wanted_.insert(spec.name);
        }
        for (auto& r : reflectors_) {
            asio::co_spawn(ioc_, r->run(), asio::detached);
        }
        thread_ = std::thread([this] { ioc_.run(); });
    }

    ~Impl() override {
        asio::post(ioc_, [this] {
            for (auto& r : reflectors_) {
                r->stop();
            }
            work_.reset();
        });
        // Reflectors end their coroutines once stopped; stop the context in case a request
        // is still waiting on its deadline.
        asio::post(ioc_, [this] { ioc_.stop(); });
        thread_.join();
    }

    void on_event(const k8s::ResourceSpec& resource,
                  k8s::EventType type,
                  const nlohmann::json& obj) override {
        std::lock_guard lock(mu_);
        try {
            if (type == k8s::EventType::kDeleted) {
                const auto& md = obj.at("metadata");
                model_.remove(obj.at("kind").get<std::string>(), md.value("namespace", ""),
                              md.at("name").get<std::string>());
            } else {
                model_.upsert(obj);
            }
            dirty_ = true;
        } catch (const std::exception& e) {
            // One malformed object is reported and left out; the others still compile.
            fmt::print(stderr, "kdp-control: {}: {}\n", resource.name, e.what());
        }
    }

    void on_synced(const k8s::ResourceSpec& resource) override {
        std::lock_guard lock(mu_);
        if (synced_.insert(resource.name).second) {
            fmt::print(stderr, "kdp-control: {} listed ({}/{})\n", resource.name, synced_.size(),
                       wanted_.size());
        }
        dirty_ = true;
    }

    void on_error(const k8s::ResourceSpec& resource, const std::string& message) override {
        fmt::print(stderr, "kdp-control: {}: {} (retrying)\n", resource.name, message);
    }

    std::optional<std::optional<table::TableSpec>> poll() {
        std::lock_guard lock(mu_);
        if (!dirty_ || synced_.size() < wanted_.size()) {
            return std::nullopt;
        }
        dirty_ = false;
        try {
            // The cluster's EndpointSlice controller publishes every Service's endpoints:
            // none are derived from Pods here, so a Service without slices has no endpoints.
            std::vector<std::string> warnings;
            auto spec = compile_node_tables(
                model_, node_,
                ServiceOptions{.derive_endpoints = false, .service_cidr_known = false}, &warnings);
            for (const auto& w : warnings) {
                fmt::print(stderr, "kdp-control: {}\n", w);
            }
            return std::optional<table::TableSpec>(std::move(spec));
        } catch (const std::exception& e) {
            fmt::print(stderr, "kdp-control: {}; keeping the last good state\n", e.what());
            return std::optional<table::TableSpec>();
        }
    }

private:
    std::string node_;
    asio::io_context ioc_;
    asio::executor_work_guard<asio::io_context::executor_type> work_;
    k8s::Client client_;
    std::vector<std::unique_ptr<k8s::Reflector>> reflectors_;
    std::thread thread_;

    std::mutex mu_;  // guards everything below; taken by the io thread and the loop thread
    Model model_;
    std::set<std::string> wanted_;
    std::set<std::string> synced_;
    bool dirty_ = false;
};

KubeSource::KubeSource(const k8s::ClusterConfig& cfg, std::string node)
    : impl_(std::make_unique<Impl>(cfg, std::move(node))) {}

KubeSource::~KubeSource() = default;

std::optional<std::optional<table::TableSpec>> KubeSource::poll() {
    return impl_->poll();
}

}  // namespace kdp::control::standalone
