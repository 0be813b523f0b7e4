// Keeps a run-time TAP pod port's kernel interface alive across dataplane restarts.
//
// net_tap's queues are file descriptors of the dataplane process: when it exits, a TAP that is
// not persistent disappears from the pod's namespace with its address and routes, and the pod
// is cut off until it is attached again. A TapKeeper holds one more queue of the TAP, marked
// persistent and detached (it receives nothing), so the interface outlives the process; a
// restarted dataplane enters the pod's namespace and lets net_tap attach to the same interface
// by name. Removing the port releases the keeper, which clears the persistence, so the
// interface goes with its last queue. Main/API thread only.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/net.h"

namespace kdp::dataplane {

/// The TUN flags (IFF_TAP, IFF_MULTI_QUEUE, IFF_NO_PI, ...) of the interface `ifname` in the
/// mount namespace's sysfs, i.e. an interface of the dataplane's own network namespace.
std::optional<uint32_t> tap_flags(const std::string& ifname, std::string& err);

/// The interface's MAC address, asked in the calling thread's network namespace.
std::optional<Mac> iface_mac(const std::string& ifname, std::string& err);

/// Holds the TAP `ifname` (of the calling thread's namespace) persistent. Returns the held
/// queue's descriptor, or nullopt with `err` set. `flags` must be the TAP's own: the kernel
/// applies an attaching queue's flags to the whole device.
std::optional<int> tap_hold(const std::string& ifname, uint32_t flags, std::string& err);

/// Clears the persistence of a held TAP and closes the held queue: the interface is removed
/// once the device's other queues are closed too. Works from any namespace.
void tap_release(int fd);

/// Moves the calling thread into a network namespace (a path such as /var/run/netns/NAME or
/// /proc/PID/ns/net) for its lifetime, and back on destruction. ok() says whether it entered.
class NetnsScope {
public:
    NetnsScope(const std::string& path, std::string& err);
    ~NetnsScope();
    NetnsScope(const NetnsScope&) = delete;
    NetnsScope& operator=(const NetnsScope&) = delete;
    bool ok() const { return entered_; }

private:
    int home_ = -1;
    bool entered_ = false;
};

}  // namespace kdp::dataplane
