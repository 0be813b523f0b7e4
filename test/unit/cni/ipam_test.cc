// kdp-cni's address store on a real directory: distinct addresses, ADD idempotent per
// (container, interface), release and no immediate reuse, exhaustion, state kept across
// instances (a plugin restart), and concurrent allocation from separate processes under the
// real flock(2).
#include "ipam.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <set>

#include <gtest/gtest.h>

namespace kdp::cni {
namespace {

class Ipam : public ::testing::Test {
protected:
    Ipam() {
        char tmpl[] = "/tmp/kdp-ipam-test-XXXXXX";
        dir_ = mkdtemp(tmpl);
    }
    ~Ipam() override { std::filesystem::remove_all(dir_); }
    IpamStore store(const char* cidr = "10.244.1.0/24") const {
        return IpamStore(dir_ + "/net", *Prefix4::parse(cidr), gateway(cidr));
    }
    static Ip4 gateway(const char* cidr) {
        return Ip4::from_host(Prefix4::parse(cidr)->addr.host() + 1);
    }
    std::string dir_;
};

TEST_F(Ipam, HandsOutDistinctAddressesSkippingGatewayNetworkAndBroadcast) {
    IpamStore s = store("10.244.1.0/29");  // .1 gateway; .2-.6 usable; .7 broadcast
    std::set<uint32_t> got;
    for (int i = 0; i < 5; ++i) {
        const Ip4 ip = s.allocate("c" + std::to_string(i), "eth0");
        EXPECT_TRUE(got.insert(ip.host()).second) << ip.str();
        EXPECT_GE(ip.host() & 7, 2u) << ip.str();
        EXPECT_LE(ip.host() & 7, 6u) << ip.str();
    }
    try {
        s.allocate("c9", "eth0");
        FAIL() << "a sixth address out of five";
    } catch (const IpamError& e) {
        EXPECT_EQ(e.kind(), IpamError::Kind::kExhausted);
        EXPECT_STREQ(e.what(), "no free address left in 10.244.1.0/29 (5 in use)");
    }
}

TEST_F(Ipam, AddIsIdempotentPerContainerAndInterface) {
    IpamStore s = store();
    const Ip4 a = s.allocate("abc", "eth0");
    EXPECT_EQ(s.allocate("abc", "eth0"), a);
    EXPECT_NE(s.allocate("abc", "net1"), a) << "another interface of the pod: another address";
    EXPECT_EQ(s.find("abc", "eth0"), a);
    EXPECT_EQ(s.find("xyz", "eth0"), std::nullopt);
}

TEST_F(Ipam, ReleaseFreesAndTheAddressIsNotReusedAtOnce) {
    IpamStore s = store();
    const Ip4 a = s.allocate("a", "eth0");
    EXPECT_TRUE(s.release("a", "eth0"));
    EXPECT_FALSE(s.release("a", "eth0")) << "DEL of what is gone: nothing to do";
    const Ip4 b = s.allocate("b", "eth0");
    EXPECT_NE(a, b) << "the search goes on after the last address handed out";
    EXPECT_EQ(s.leases().size(), 1u);
}

TEST_F(Ipam, ARestartedPluginKnowsEveryLease) {
    Ip4 a, b;
    {
        IpamStore s = store();
        a = s.allocate("a", "eth0");
        b = s.allocate("b", "eth0");
    }
    IpamStore again = store();
    EXPECT_EQ(again.find("a", "eth0"), a);
    EXPECT_EQ(again.allocate("b", "eth0"), b);
    const Ip4 c = again.allocate("c", "eth0");
    EXPECT_NE(c, a);
    EXPECT_NE(c, b);
    const auto l = again.leases();
    ASSERT_EQ(l.size(), 3u);
    EXPECT_EQ(l[0].container_id, "a");
    EXPECT_EQ(l[0].ifname, "eth0");
}

TEST_F(Ipam, ConcurrentProcessesNeverShareAnAddress) {
    constexpr int kProcs = 8, kEach = 25;
    std::vector<pid_t> kids;
    for (int p = 0; p < kProcs; ++p) {
        const pid_t pid = fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            try {
                IpamStore s = store();
                for (int i = 0; i < kEach; ++i) {
                    s.allocate("p" + std::to_string(p) + "-" + std::to_string(i), "eth0");
                }
            } catch (...) {
                _exit(1);
            }
            _exit(0);
        }
        kids.push_back(pid);
    }
    for (const pid_t pid : kids) {
        int status = 0;
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    const auto l = store().leases();
    ASSERT_EQ(l.size(), static_cast<size_t>(kProcs * kEach));
    std::set<std::string> owners;
    for (const Lease& x : l) {
        owners.insert(x.container_id);
    }
    EXPECT_EQ(owners.size(), l.size()) << "one address per container, each once";
}

TEST_F(Ipam, GivesARequestedAddressOnlyWhenItIsFreeAndUsable) {
    IpamStore s = store();
    const Ip4 want = *Ip4::parse("10.244.1.10");
    EXPECT_EQ(s.allocate("a", "eth0", want), want);
    EXPECT_EQ(s.allocate("a", "eth0", want), want) << "ADD again: the same address";
    const auto refused = [&](const char* id, const char* ip, const char* needle) {
        try {
            s.allocate(id, "eth0", *Ip4::parse(ip));
            ADD_FAILURE() << id << " got " << ip;
        } catch (const IpamError& e) {
            EXPECT_EQ(e.kind(), IpamError::Kind::kUnavailable) << e.what();
            EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
        }
    };
    refused("b", "10.244.1.10", "held by container a");
    refused("a", "10.244.1.11", "already holds 10.244.1.10");
    refused("b", "10.244.1.1", "gateway 10.244.1.1 excluded");
    refused("b", "10.244.1.0", "is not one of 10.244.1.0/24");
    refused("b", "10.244.1.255", "is not one of");
    refused("b", "10.244.2.10", "is not one of");
    EXPECT_EQ(s.leases().size(), 1u) << "refusals recorded nothing";
    EXPECT_NE(s.allocate("b", "eth0"), want) << "the free search skips a requested lease";
}

TEST_F(Ipam, GcFreesEveryLeaseNotKept) {
    IpamStore s = store();
    const Ip4 a = s.allocate("a", "eth0");
    const Ip4 b = s.allocate("b", "eth0");
    const Ip4 b1 = s.allocate("b", "net1");
    const auto freed = s.release_except({{"a", "eth0"}, {"b", "net1"}, {"gone", "eth0"}});
    ASSERT_EQ(freed.size(), 1u);
    EXPECT_EQ(freed[0].ip, b);
    EXPECT_EQ(s.find("a", "eth0"), a);
    EXPECT_EQ(s.find("b", "net1"), b1);
    EXPECT_EQ(s.find("b", "eth0"), std::nullopt);
    EXPECT_EQ(s.release_except({}).size(), 2u);
    EXPECT_TRUE(s.leases().empty());
}

TEST_F(Ipam, AnUnwritableDirectoryIsAnIoError) {
    try {
        IpamStore s("/proc/kdp-no-such-dir/net", *Prefix4::parse("10.244.1.0/24"),
                    Ip4::from_host(0x0af40101));
        FAIL() << "created a store under /proc";
    } catch (const IpamError& e) {
        EXPECT_EQ(e.kind(), IpamError::Kind::kIo);
        EXPECT_NE(std::string(e.what()).find("/proc/kdp-no-such-dir/net"), std::string::npos);
    }
}

}  // namespace
}  // namespace kdp::cni
