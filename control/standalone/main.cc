// kdp-control: see standalone.h.
#include <signal.h>

#include <atomic>
#include <iostream>
#include <string>
#include <vector>

#include "common/log.h"
#include "control/bootstrap/command.h"
#include "standalone/standalone.h"

namespace {

std::atomic<bool> g_stop{false};  // lock-free, so safe to set from a signal handler

void on_signal(int) {
    g_stop = true;
}

}  // namespace

int main(int argc, char** argv) {
    using namespace kdp::control::standalone;
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    std::vector<std::string> args(argv + 1, argv + argc);
    if (const auto bad = kdp::log::take_flags(args, "kdp-control")) {
        std::cerr << "kdp-control: " << *bad << " (see kdp-control --help)\n";
        return 2;
    }
    if (!args.empty() && args.front() == "node-config") {
        args.erase(args.begin());
        return kdp::control::bootstrap::node_config_command(args, std::cout, std::cerr, g_stop);
    }
    auto parsed = parse_args(args, std::cout, std::cerr);
    if (const int* code = std::get_if<int>(&parsed)) {
        return *code;
    }
    return run(std::get<Options>(parsed), g_stop);
}
