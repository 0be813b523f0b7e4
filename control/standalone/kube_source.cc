#include "standalone/kube_source.h"

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

#include "common/log.h"
#include "common/thread_annotations.h"
#include "compile/node_tables.h"
#include "k8s/client.h"
#include "k8s/events.h"
#include "k8s/kubeconfig.h"
#include "k8s/reflector.h"
#include "model/model.h"
#include "serve/status.h"

namespace kdp::control::standalone {

namespace asio = boost::asio;

class KubeSource::Impl final : public k8s::EventSink {
public:
    Impl(const k8s::ClusterConfig& cfg, std::string node, std::optional<Prefix4> service_cidr)
        : node_(std::move(node)),
          service_cidr_(service_cidr),
          ioc_(std::make_unique<asio::io_context>()),
          work_(asio::make_work_guard(*ioc_)),
          client_(ioc_->get_executor(), cfg),
          recorder_(client_, k8s::EventRecorder::Options{.host = node_}) {
        for (const k8s::ResourceSpec& spec : k8s::kdp_resources()) {
            reflectors_.push_back(std::make_unique<k8s::Reflector>(client_, spec, *this));
            wanted_.insert(spec.name);
        }
        for (auto& r : reflectors_) {
            asio::co_spawn(*ioc_, r->run(), asio::detached);
        }
        thread_ = std::thread([this] { ioc_->run(); });
    }

    ~Impl() override {
        asio::post(*ioc_, [this] {
            for (auto& r : reflectors_) {
                r->stop();
            }
            work_.reset();
        });
        // Reflectors end their coroutines once stopped; stop the context in case a request
        // is still waiting on its deadline.
        asio::post(*ioc_, [this] { ioc_->stop(); });
        thread_.join();
        // The io_context (declared first) goes last, with the coroutines still suspended in
        // it: the I/O objects of the reflectors, client and recorder must go before it, and a
        // suspended request forgets its reflector's CancelToken when that goes (client.h).
    }

    void on_event(const k8s::ResourceSpec& resource,
                  k8s::EventType type,
                  const nlohmann::json& obj) override {
        LockGuard lock(mu_);
        try {
            if (type == k8s::EventType::kDeleted) {
                const auto& md = obj.at("metadata");
                model_.remove(obj.at("kind").get<std::string>(), md.value("namespace", ""),
                              md.at("name").get<std::string>());
            } else {
                model_.upsert(obj);
                if (resource.name == "endpointslices") {
                    note_trigger_time(obj);
                }
            }
            dirty_ = true;
        } catch (const ModelError& e) {
            cannot_honour(obj, e.what());
        } catch (const std::exception& e) {
            // Not an object at all (no kind or name): nothing to attach an event to.
            kdp::log::warning("{}: {}", resource.name, e.what());
        }
    }

    // An object the API server accepted that kdp cannot read: say so where an operator looks
    // (log, Event on the object, counter) and do what is safe with it.
    void cannot_honour(const nlohmann::json& obj, const std::string& why) KDP_REQUIRES(mu_) {
        const k8s::ObjectRef ref = k8s::object_ref(obj);
        std::string what;
        if (ref.kind == "NetworkPolicy") {
            try {
                model_.upsert_fail_closed_policy(obj);
                dirty_ = true;
                what =
                    "enforced fail closed: the pods it selects are isolated in the directions "
                    "it names, and rules kdp cannot read allow nothing";
            } catch (const ModelError& e) {
                what = fmt::format("left out ({})", e.what());
            }
        } else if (Model::known_kind(ref.kind) && model_.contains(ref.kind, ref.ns, ref.name)) {
            what = "the last version kdp could read stays in force";
        } else {
            what = "left out";
        }
        const uint64_t n = ++unhonoured_[ref.kind];
        kdp::log::warning("cannot honour {} {}{}{}: {}; {} ({} {} so far)", ref.kind, ref.ns,
                          ref.ns.empty() ? "" : "/", ref.name, why, what, n, ref.kind);
        recorder_.warn(ref, "KdpCannotHonour",
                       fmt::format("kdp cannot honour this object: {}; {}", why, what));
    }

    // Part of an object the compiler left out (a frontend two Services claim): the same
    // log line, Event and counter as an object kdp cannot read, once per object and message
    // (poll() compiles again at every change). On the loop thread.
    void partly_honoured(const CompileWarning& w) KDP_REQUIRES(mu_) {
        if (!warned_.insert(fmt::format("{}/{}/{}\n{}", w.kind, w.ns, w.name, w.message)).second) {
            return;
        }
        const uint64_t n = ++unhonoured_[w.kind];
        kdp::log::warning("{} ({} {} so far)", w.message, n, w.kind);
        k8s::ObjectRef ref{w.kind, "v1", w.ns, w.name, "", ""};
        std::string msg = fmt::format("kdp cannot honour all of this object: {}", w.message);
        asio::post(*ioc_, [this, ref = std::move(ref), msg = std::move(msg)] {
            recorder_.warn(ref, "KdpCannotHonour", msg);
        });
    }

    KubeSourceStats stats() {
        LockGuard lock(mu_);
        return KubeSourceStats{unhonoured_, recorder_.posted(), recorder_.failed()};
    }

    void on_synced(const k8s::ResourceSpec& resource) override {
        LockGuard lock(mu_);
        if (synced_.insert(resource.name).second) {
            kdp::log::info("{} listed ({}/{})", resource.name, synced_.size(), wanted_.size());
        }
        dirty_ = true;
    }

    void on_error(const k8s::ResourceSpec& resource, const std::string& message) override {
        kdp::log::warning("{}: {} (retrying)", resource.name, message);
    }

    std::optional<std::optional<table::TableSpec>> poll() {
        LockGuard lock(mu_);
        if (!dirty_ || synced_.size() < wanted_.size()) {
            return std::nullopt;
        }
        dirty_ = false;
        compiled_triggers_.insert(compiled_triggers_.end(), pending_triggers_.begin(),
                                  pending_triggers_.end());
        pending_triggers_.clear();
        try {
            // The cluster's EndpointSlice controller publishes every Service's endpoints:
            // none are derived from Pods here, so a Service without slices has no endpoints.
            std::vector<CompileWarning> warnings;
            ServiceOptions so;
            so.derive_endpoints = false;
            so.service_cidr_known = service_cidr_.has_value();
            if (service_cidr_) {
                so.service_cidr = *service_cidr_;
            }
            auto spec = compile_node_tables(model_, node_, so, &warnings);
            for (const CompileWarning& w : warnings) {
                partly_honoured(w);
            }
            return std::optional<table::TableSpec>(std::move(spec));
        } catch (const std::exception& e) {
            kdp::log::warning("{}; keeping the last good state", e.what());
            return std::optional<table::TableSpec>();
        }
    }

    std::vector<serve::WallClock::time_point> take_trigger_times() {
        LockGuard lock(mu_);
        return std::exchange(compiled_triggers_, {});
    }

private:
    // Only changes made after this source started count: the initial list replays old ones.
    void note_trigger_time(const nlohmann::json& slice) KDP_REQUIRES(mu_) {
        const auto& md = slice.at("metadata");
        const auto ann = md.find("annotations");
        if (ann == md.end() || !ann->is_object()) {
            return;
        }
        const auto t = ann->find(serve::kLastChangeTriggerTime);
        if (t != ann->end() && t->is_string()) {
            if (const auto when = serve::parse_rfc3339(t->get<std::string>());
                when && *when > started_) {
                pending_triggers_.push_back(*when);
            }
        }
    }

    const serve::WallClock::time_point started_ = serve::WallClock::now();
    std::string node_;
    std::optional<Prefix4> service_cidr_;    // the cluster's Service range, when given
    std::unique_ptr<asio::io_context> ioc_;  // destroyed last
    asio::executor_work_guard<asio::io_context::executor_type> work_;
    k8s::Client client_;
    k8s::EventRecorder recorder_;  // on the io thread
    std::vector<std::unique_ptr<k8s::Reflector>> reflectors_;
    std::thread thread_;

    Mutex mu_;  // guards everything below; taken by the io thread and the loop thread
    Model model_ KDP_GUARDED_BY(mu_);
    std::set<std::string> wanted_ KDP_GUARDED_BY(mu_);
    std::set<std::string> synced_ KDP_GUARDED_BY(mu_);
    bool dirty_ KDP_GUARDED_BY(mu_) = false;
    std::map<std::string, uint64_t> unhonoured_ KDP_GUARDED_BY(mu_);
    std::set<std::string> warned_ KDP_GUARDED_BY(mu_);  // compile warnings already reported
    // Not compiled yet, and compiled but not taken.
    std::vector<serve::WallClock::time_point> pending_triggers_ KDP_GUARDED_BY(mu_);
    std::vector<serve::WallClock::time_point> compiled_triggers_ KDP_GUARDED_BY(mu_);
};

KubeSource::KubeSource(const k8s::ClusterConfig& cfg,
                       std::string node,
                       std::optional<Prefix4> service_cidr)
    : impl_(std::make_unique<Impl>(cfg, std::move(node), service_cidr)) {}

KubeSource::~KubeSource() = default;

std::optional<std::optional<table::TableSpec>> KubeSource::poll() {
    return impl_->poll();
}

KubeSourceStats KubeSource::stats() const {
    return impl_->stats();
}

std::vector<std::chrono::system_clock::time_point> KubeSource::take_trigger_times() {
    return impl_->take_trigger_times();
}

}  // namespace kdp::control::standalone
