// An in-test Backend: keeps a TableSpec, refuses stale generations and pods outside its pod
// CIDR, as the real one does. For unit tests of the gRPC server and its clients.
#pragma once

#include <mutex>
#include <stdexcept>

#include <fmt/format.h>

#include "api/backend.h"

namespace kdp::api::testing {

class FakeBackend final : public Backend {
public:
    FakeBackend() {
        info_.node_name = "node-a";
        info_.node_ip = *Ip4::parse("192.168.0.1");
        info_.pod_cidr = *Prefix4::parse("10.244.1.0/24");
        info_.vxlan_mode = "standard";
        info_.vxlan_port = 4789;
        info_.vni = 1;
        info_.workers = 2;
        info_.started_unix_ns = 1000;
    }

    NodeInfo node_info() const override {
        std::lock_guard lock(mu_);
        if (throw_) {
            throw std::runtime_error("backend exploded");
        }
        NodeInfo i = info_;
        i.generation = spec_.generation;
        return i;
    }

    std::optional<std::string> apply_tables(const table::TableSpec& spec) override {
        std::lock_guard lock(mu_);
        ++applies_;
        if (spec.generation <= spec_.generation) {
            return fmt::format("generation {} not newer than {}", spec.generation,
                               spec_.generation);
        }
        for (const auto& p : spec.pods) {
            if (!info_.pod_cidr.contains(p.ip)) {
                return fmt::format("pod \"{}\": ip {} is outside the node pod CIDR {}", p.name,
                                   p.ip.str(), info_.pod_cidr.str());
            }
        }
        spec_ = spec;
        return std::nullopt;
    }

    table::TableSpec tables() const override {
        std::lock_guard lock(mu_);
        return spec_;
    }
    std::vector<PortInfo> ports() const override {
        std::lock_guard lock(mu_);
        return ports_;
    }
    StatsSnapshot stats() const override {
        std::lock_guard lock(mu_);
        return stats_;
    }

    ConntrackListing conntrack(uint32_t limit) const override {
        std::lock_guard lock(mu_);
        ConntrackListing l = conntrack_;
        if (l.entries.size() > limit) {
            l.entries.resize(limit);
        }
        return l;
    }

    ConntrackStats conntrack_stats() const override {
        std::lock_guard lock(mu_);
        return conntrack_stats_;
    }

    // Test hooks.
    void set_conntrack_stats_for_test(ConntrackStats s) {
        std::lock_guard lock(mu_);
        conntrack_stats_ = std::move(s);
    }
    void set_conntrack_for_test(ConntrackListing l) {
        std::lock_guard lock(mu_);
        conntrack_ = std::move(l);
    }
    void set_ports_for_test(std::vector<PortInfo> p) {
        std::lock_guard lock(mu_);
        ports_ = std::move(p);
    }
    void set_stats_for_test(StatsSnapshot s) {
        std::lock_guard lock(mu_);
        stats_ = std::move(s);
    }
    void set_throw_for_test(bool t) {
        std::lock_guard lock(mu_);
        throw_ = t;
    }
    // Simulates a dataplane restart: tables gone, new start time.
    void restart_for_test() {
        std::lock_guard lock(mu_);
        spec_ = {};
        info_.started_unix_ns += 1000;
    }
    int applies() const {
        std::lock_guard lock(mu_);
        return applies_;
    }

private:
    mutable std::mutex mu_;
    NodeInfo info_;
    table::TableSpec spec_;
    std::vector<PortInfo> ports_;
    StatsSnapshot stats_;
    ConntrackListing conntrack_;
    ConntrackStats conntrack_stats_;
    bool throw_ = false;
    int applies_ = 0;
};

}  // namespace kdp::api::testing
