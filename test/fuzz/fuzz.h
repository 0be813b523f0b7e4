// The libFuzzer entry point every target in test/fuzz/ defines. Built two ways (meson.build):
// with clang and -fsanitize=fuzzer when the `fuzz` option is on, to search for inputs; and
// always with replay_main.cc, which runs the checked-in corpus (test/fuzz/corpus/TARGET/) as a
// unit test, under ASan/UBSan in the sanitizer build. A target returns 0 and fails by
// aborting (a broken property) or by a sanitizer report.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

// A property every input must keep; aborts with the message so the fuzzer saves the input.
#define FUZZ_CHECK(cond)                                                                     \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            std::fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #cond); \
            std::abort();                                                                    \
        }                                                                                    \
    } while (0)
