// kdp-cni: the CNI plugin binary. The runtime (containerd, CRI-O, libcni) runs it with CNI_*
// in the environment and the network configuration on stdin (see plugin.h).
#include <unistd.h>

#include <iostream>
#include <string>

#include "plugin.h"

extern char** environ;

int main() {
    kdp::cni::Env env;
    for (char** e = environ; *e != nullptr; ++e) {
        const std::string kv = *e;
        const size_t eq = kv.find('=');
        if (eq != std::string::npos && kv.rfind("CNI_", 0) == 0) {
            env[kv.substr(0, eq)] = kv.substr(eq + 1);
        }
    }
    std::string config;
    char buf[4096];
    for (ssize_t n; (n = ::read(0, buf, sizeof(buf))) > 0;) {
        config.append(buf, static_cast<size_t>(n));
    }
    return kdp::cni::run_plugin(env, config, std::cout);
}
