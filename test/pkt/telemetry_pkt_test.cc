// The /kdp/ telemetry commands through the EAL's real telemetry socket, as dpdk-telemetry.py
// reads them: ports named as real pods are (dashes, dots, slashes), a node's ports paged under
// the 16 KiB reply limit, and no container left behind, also when DPDK refuses one.
#include <dlfcn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <map>
#include <set>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <rte_eal.h>
#include <rte_telemetry.h>

#include "api/fake_backend.h"
#include "api/telemetry.h"
#include "node_harness.h"

// Containers alive and made: every rte_tel_data_alloc and rte_tel_data_free, kdp's and the
// library's own (it frees a reply's containers after writing them, through its PLT), comes
// here first, then goes on to DPDK's.
namespace {
std::atomic<long> g_containers{0};
std::atomic<long> g_allocated{0};
}  // namespace

extern "C" rte_tel_data* rte_tel_data_alloc(void) {
    using Fn = rte_tel_data* (*)();
    static const auto real = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "rte_tel_data_alloc"));
    rte_tel_data* d = real();
    if (d != nullptr) {
        ++g_containers;
        ++g_allocated;
    }
    return d;
}

extern "C" void rte_tel_data_free(rte_tel_data* d) {
    using Fn = void (*)(rte_tel_data*);
    static const auto real = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "rte_tel_data_free"));
    if (d != nullptr) {
        --g_containers;
    }
    real(d);
}

namespace kdp::test {
namespace {

using nlohmann::json;

// One connection to <runtime dir>/dpdk_telemetry.v2: a hello, then one message per request.
class TelemetryClient {
public:
    TelemetryClient() {
        fd_ = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        const std::string path = std::string(rte_eal_get_runtime_dir()) + "/dpdk_telemetry.v2";
        std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
        if (fd_ < 0 || ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
            ADD_FAILURE() << "cannot connect to " << path;
            return;
        }
        const json hello = read();
        max_output_len = hello.value("max_output_len", size_t{0});
    }
    ~TelemetryClient() {
        if (fd_ >= 0) {
            ::close(fd_);
        }
    }
    TelemetryClient(const TelemetryClient&) = delete;
    TelemetryClient& operator=(const TelemetryClient&) = delete;

    // The reply's value for `cmd` (its first part, before a ','); bytes: the message's size.
    json query(const std::string& cmd, size_t* bytes = nullptr) {
        if (::send(fd_, cmd.data(), cmd.size(), 0) != static_cast<ssize_t>(cmd.size())) {
            ADD_FAILURE() << "send " << cmd;
            return {};
        }
        const json j = read(bytes);
        const std::string name = cmd.substr(0, cmd.find(','));
        return j.contains(name) ? j[name] : json();
    }

    size_t max_output_len = 0;

private:
    json read(size_t* bytes = nullptr) {
        std::string buf(64 * 1024, '\0');
        const ssize_t n = ::recv(fd_, buf.data(), buf.size(), 0);
        if (n <= 0) {
            ADD_FAILURE() << "no answer from the telemetry socket";
            return {};
        }
        buf.resize(static_cast<size_t>(n));
        if (bytes != nullptr) {
            *bytes = buf.size();
        }
        const json j = json::parse(buf, nullptr, false);
        EXPECT_FALSE(j.is_discarded()) << "not JSON: " << buf;
        return j;
    }

    int fd_ = -1;
};

// Registered once per process, as the dataplane does; each test names its backend.
class TelemetryPkt : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        ensure_eal();
        const auto e = api::register_telemetry();
        ASSERT_FALSE(e) << *e;
    }
    void TearDown() override { api::set_telemetry_backend(nullptr); }
};

// Names as Kubernetes makes them: a Deployment's pod (dashes), a namespace with a dot, a
// StatefulSet pod; before, DPDK refused every one as a key and the port vanished.
const std::vector<std::string> kPodNames = {
    "default/web-7d9f8c6b5-x2x7k",
    "kube-system/coredns-5d78c9869d-kfw2q",
    "team.a/api.v2-0",
};

TEST_F(TelemetryPkt, EveryPortIsReportedWhateverItsPodIsNamed) {
    NodeParams p;
    p.pod_ports = kPodNames;
    NodeHarness h(p);
    h.inject(kPodNames[0], Bytes(10, 0));  // a runt: received, then dropped by reason
    api::set_telemetry_backend(&h.manager());
    TelemetryClient c;
    const json stats = c.query("/kdp/stats");
    ASSERT_TRUE(stats.is_object()) << stats;
    EXPECT_FALSE(stats.contains("next")) << "four ports fit one page";
    EXPECT_FALSE(stats.contains("error")) << stats;
    std::map<std::string, std::string> want{{std::to_string(h.port("uplink")), "uplink"}};
    for (const std::string& n : kPodNames) {
        want[std::to_string(h.port(n))] = n;
    }
    std::map<std::string, std::string> got;
    for (const auto& [key, port] : stats.items()) {
        got[key] = port.value("name", "");
        EXPECT_TRUE(port.contains("rx_packets") && port.contains("tx_bytes")) << port;
    }
    EXPECT_EQ(got, want);
    const json& web = stats[std::to_string(h.port(kPodNames[0]))];
    EXPECT_EQ(web.value("rx_packets", 0), 1);
    EXPECT_EQ(web.value("rx_bytes", 0), 10);
    uint64_t drops = 0;
    for (const auto& [k, v] : web.items()) {
        if (k.rfind("drop_", 0) == 0) {
            drops += v.get<uint64_t>();
        }
    }
    EXPECT_EQ(drops, 1u) << web;
}

TEST_F(TelemetryPkt, InfoWorkersAndConntrackDescribeTheNode) {
    NodeParams p;
    p.pod_ports = kPodNames;
    NodeHarness h(p);
    api::set_telemetry_backend(&h.manager());
    TelemetryClient c;

    const json info = c.query("/kdp/info");
    EXPECT_EQ(info.value("node", ""), "node1") << info;
    EXPECT_EQ(info.value("ports", 0), 4);
    EXPECT_EQ(info.value("workers", -1), h.manager().node_info().workers);
    EXPECT_FALSE(info.value("version", "").empty());
    EXPECT_NE(info.value("dpdk", "").find("DPDK"), std::string::npos) << info;

    const json workers = c.query("/kdp/workers");
    ASSERT_TRUE(workers.contains("0")) << workers;
    const json& w = workers["0"];
    for (const char* k : {"busy_permille", "busy_cycles", "total_cycles", "tsc_hz", "cycles_rx",
                          "cycles_stages", "cycles_per_packet_stages", "cycles_housekeeping"}) {
        EXPECT_TRUE(w.contains(k)) << k << " missing from " << w;
    }
    EXPECT_LE(w.value("busy_permille", 0), 1000);

    const json ct = c.query("/kdp/conntrack");
    EXPECT_EQ(ct.value("capacity", 0), 4096) << ct;
    EXPECT_EQ(ct.value("entries", -1), 0);
    ASSERT_TRUE(ct.contains("worker0")) << ct;
    for (const char* k : {"entries", "capacity", "inserts", "insert_full", "insert_clash",
                          "insert_share", "early_drops", "expiries", "removals"}) {
        EXPECT_TRUE(ct["worker0"].contains(k)) << k << " missing from " << ct;
    }
}

// A port's counters with every drop reason counted and a long name: about 1.5 KB of JSON.
api::StatsSnapshot many_ports(uint16_t n) {
    api::StatsSnapshot s;
    for (uint16_t i = 0; i < n; ++i) {
        api::PortStats p;
        p.port_id = i;
        p.name = fmt::format("namespace-{:03}.example/statefulset-name-that-is-long-{}", i, i);
        p.counters.rx_packets = p.counters.tx_packets = 1ull << 60;
        for (auto& d : p.counters.drops) {
            d = 1ull << 62;
        }
        s.ports.push_back(p);
    }
    return s;
}

// The library leaves out silently what passes its 16 KiB; the pages never do, and "next"
// leads through every port once.
TEST_F(TelemetryPkt, PagesHoldEveryPortOnceUnderTheReplyLimit) {
    api::testing::FakeBackend b;
    b.set_stats_for_test(many_ports(300));
    api::set_telemetry_backend(&b);
    TelemetryClient c;
    ASSERT_GT(c.max_output_len, 0u);
    std::multiset<std::string> seen;
    int pages = 0;
    std::string cmd = "/kdp/stats";
    for (;;) {
        size_t bytes = 0;
        const json page = c.query(cmd, &bytes);
        ASSERT_TRUE(page.is_object()) << cmd << ": " << page;
        EXPECT_LT(bytes, c.max_output_len) << cmd;
        ++pages;
        for (const auto& [key, port] : page.items()) {
            if (key != "next") {
                seen.insert(port.value("name", ""));
            }
        }
        if (!page.contains("next")) {
            break;
        }
        ASSERT_LT(pages, 300) << "no end";
        cmd = fmt::format("/kdp/stats,{}", page["next"].get<int>());
    }
    EXPECT_GT(pages, 1);
    EXPECT_EQ(seen.size(), 300u);
    for (uint16_t i = 0; i < 300; ++i) {
        const std::string name =
            fmt::format("namespace-{:03}.example/statefulset-name-that-is-long-{}", i, i);
        EXPECT_EQ(seen.count(name), 1u) << name;
    }
    EXPECT_TRUE(c.query("/kdp/stats,x").is_null()) << "a bad parameter is refused";
}

TEST_F(TelemetryPkt, ANameLongerThanTelemetryKeepsIsCutAndSaysSo) {
    api::testing::FakeBackend b;
    api::StatsSnapshot s;
    api::PortStats p;
    p.port_id = 3;
    p.name = std::string(63, 'n') + "/" + std::string(253, 'p');  // the longest pod name
    s.ports.push_back(p);
    b.set_stats_for_test(s);
    api::set_telemetry_backend(&b);
    TelemetryClient c;
    const json port = c.query("/kdp/stats")["3"];
    EXPECT_EQ(port.value("name", ""), p.name.substr(0, RTE_TEL_MAX_STRING_LEN - 1));
    EXPECT_EQ(port.value("name_cut", 0), 1);
}

TEST_F(TelemetryPkt, NoBackendAnswersNull) {
    TelemetryClient c;
    EXPECT_TRUE(c.query("/kdp/info").is_null());
}

// Every container is about 66 KB, and one lost per port per query is what the user found.
// Queries that succeed, and queries where DPDK refuses a container midway (the refused and the
// unbuilt ones are freed here, what the reply already holds by the library), leave no
// container alive once the answer is read: counted exactly, by the allocator's own entry
// points (see below). Under ASan the leak checker sees them too.
TEST_F(TelemetryPkt, NoContainerOutlivesItsAnswer) {
    api::testing::FakeBackend b;
    b.set_stats_for_test(many_ports(300));
    api::set_telemetry_backend(&b);
    TelemetryClient c;
    const long before = g_containers.load();
    for (int i = 0; i < 20; ++i) {
        const json page = c.query(i % 2 == 0 ? "/kdp/stats" : "/kdp/stats,150");
        ASSERT_TRUE(page.contains("next")) << "several pages: every query fills one";
        EXPECT_EQ(g_containers.load(), before) << "query " << i;
    }
    EXPECT_GT(g_allocated.load(), 20 * 10) << "the containers were counted";
    api::set_telemetry_refusal_for_test(3);  // the 3rd container add on is refused
    for (int i = 0; i < 20; ++i) {
        const json page = c.query("/kdp/stats");
        ASSERT_TRUE(page.contains("error")) << page;
        EXPECT_EQ(page.size(), 3u) << "two ports and the error: " << page;
        EXPECT_EQ(g_containers.load(), before) << "refused query " << i;
    }
    api::set_telemetry_refusal_for_test(0);
    for (const char* cmd : {"/kdp/workers", "/kdp/conntrack", "/kdp/info"}) {
        c.query(cmd);
        EXPECT_EQ(g_containers.load(), before) << cmd;
    }
}

}  // namespace
}  // namespace kdp::test
