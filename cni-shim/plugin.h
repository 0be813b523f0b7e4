// kdp-cni: the CNI plugin (specification 1.0.0, and 1.1's STATUS and GC) that attaches pods to
// kdp-dataplane.
//
// ADD: the node's pod CIDR, gateway and MTU from the dataplane (NodeInfo); an address from the
// node-local store (ipam.h; or from the IPAM plugin named in ipam.type, run as the spec says);
// AddPort for a TAP named after the container, bound to the address at once; the TAP moved
// into CNI_NETNS as CNI_IFNAME, with its MTU, address and default route via the gateway. Any
// failure undoes what was done. DEL undoes it all and succeeds for what is already gone.
// CHECK verifies the port, the lease and the interface. VERSION lists the versions spoken.
//
// Network configuration keys of our own (all optional):
//   dataplane_socket  the dataplane's API socket (default /run/kdp/dataplane.sock)
//   data_dir          where addresses are kept (default /var/lib/kdp/ipam)
//   mtu               the pod interface's MTU (default: the dataplane's pod MTU)
//   port_type         tap (default) | vhostuser
//   vhost_dir         where vhost-user sockets go, one directory per pod
//   kubernetes        {"kubeconfig": PATH}: read each pod's annotation kdp.io/port-type
// CNI_ARGS IP= (or runtimeConfig ips) asks for an address of the node's pod CIDR.
#pragma once

#include <map>
#include <ostream>
#include <string>

namespace kdp::cni {

/// The CNI_* environment (and CNI_PATH), as the runtime sets it.
using Env = std::map<std::string, std::string>;

/// Runs one plugin invocation: `config` is stdin; the result or error JSON goes to `out`.
/// Returns the process exit status (0 on success).
int run_plugin(const Env& env, const std::string& config, std::ostream& out);

}  // namespace kdp::cni
