// kdp-control: see standalone.h.
#include <signal.h>

#include <atomic>
#include <iostream>
#include <string>
#include <vector>

#include "standalone/standalone.h"

namespace {

std::atomic<bool> g_stop{false};  // lock-free, so safe to set from a signal handler

void on_signal(int) {
    g_stop = true;
}

}  // namespace

int main(int argc, char** argv) {
    using namespace kdp::control::standalone;
    auto parsed = parse_args(std::vector<std::string>(argv + 1, argv + argc), std::cout, std::cerr);
    if (const int* code = std::get_if<int>(&parsed)) {
        return *code;
    }
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    return run(std::get<Options>(parsed), g_stop);
}
