// kdpctl: see commands.h.
#include <iostream>
#include <string>
#include <vector>

#include "kdpctl/commands.h"

int main(int argc, char** argv) {
    const std::vector<std::string> args(argv + 1, argv + argc);
    return kdp::control::kdpctl::run(args, std::cout, std::cerr);
}
