// kdp-cni: the CNI plugin binary. The runtime (containerd, CRI-O, libcni) runs it with CNI_*
// in the environment and the network configuration on stdin (see plugin.h).
#include <unistd.h>

#include <cstring>
#include <iostream>
#include <string>

#include "common/version.h"
#include "plugin.h"

extern char** environ;

int main(int argc, char** argv) {
    // Runtimes never pass arguments (CNI's VERSION command is how they ask); people do.
    if (argc == 2 && std::strcmp(argv[1], "--version") == 0) {
        std::cout << kdp::version_line("kdp-cni") << "\n";
        return 0;
    }
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
