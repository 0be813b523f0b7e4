// kdp-cni's address management: addresses of the node's pod CIDR handed to pods, persisted on
// disk so that a plugin restart forgets nothing, under an exclusive lock so that concurrent
// ADDs (the kubelet runs them in parallel, each in its own process) never hand out one
// address twice.
//
// Layout of `dir` (one per network, e.g. /var/lib/kdp/ipam/<network name>):
//   lock            flock(2) target, held for the whole of each operation
//   <a.b.c.d>       one file per address in use: "<container id>\n<interface>\n"
//   last_reserved   the address handed out last: the next search starts after it, so that an
//                   address just released is not reused at once (stale conntrack, ARP caches)
// The network and broadcast addresses and the gateway are never handed out.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/net.h"

namespace kdp::cni {

class IpamError : public std::runtime_error {
public:
    enum class Kind { kExhausted, kIo, kCorrupt, kUnavailable };
    IpamError(Kind k, const std::string& what) : std::runtime_error(what), kind_(k) {}
    Kind kind() const noexcept { return kind_; }

private:
    Kind kind_;
};

struct Lease {
    Ip4 ip;
    std::string container_id;
    std::string ifname;
};

class IpamStore {
public:
    /// `range`: the addresses to hand out (the node's pod CIDR, at least a /30); `gateway` is
    /// kept out. Creates `dir` if needed. Throws IpamError (kIo) if it cannot.
    IpamStore(std::string dir, Prefix4 range, Ip4 gateway);

    /// The address of (container_id, ifname): the one it already holds (ADD is idempotent), or
    /// a free one, recorded before this returns. Throws IpamError: kExhausted, kIo.
    Ip4 allocate(const std::string& container_id, const std::string& ifname);
    /// `want` for (container_id, ifname) (the runtime asked for it: CNI_ARGS IP=, runtimeConfig
    /// ips). Throws IpamError kUnavailable if it is outside the range, reserved, held by another
    /// container, or if this one already holds a different address; kIo.
    Ip4 allocate(const std::string& container_id, const std::string& ifname, Ip4 want);
    /// Frees every lease whose (container id, interface) is not in `keep` (CNI GC). Returns
    /// what it freed.
    std::vector<Lease> release_except(const std::vector<std::pair<std::string, std::string>>& keep);
    /// Frees what (container_id, ifname) holds. False when it holds nothing (DEL of what is
    /// already gone is not an error).
    bool release(const std::string& container_id, const std::string& ifname);
    /// What (container_id, ifname) holds, if anything.
    std::optional<Ip4> find(const std::string& container_id, const std::string& ifname) const;
    /// Every address in use, in address order.
    std::vector<Lease> leases() const;

private:
    class Lock;
    std::optional<Lease> read_lease(Ip4 ip) const;
    std::optional<Ip4> find_locked(const std::string& container_id,
                                   const std::string& ifname) const;
    // Creates the lease file of `ip` for (container_id, ifname); false if it exists.
    bool record(Ip4 ip, const std::string& container_id, const std::string& ifname);

    std::string dir_;
    Prefix4 range_;
    Ip4 gateway_;
};

}  // namespace kdp::cni
