// HugeArray<T>: a fixed-size array of T for big tables (conntrack), on 2 MiB pages when the
// kernel gives transparent huge pages on request (THP "madvise" or "always").
//
// A million connections are ~100 MiB of buckets and entries that every new and established
// packet touches at random: on 4 KiB pages each lookup also misses the TLB, which costs more
// than the lookup itself. Aligning the array to 2 MiB and asking for huge pages with
// madvise(MADV_HUGEPAGE) lets the kernel back it with 2 MiB pages; if it cannot, the array
// still works on small pages. Allocated and freed off the workers (at start-up).
#pragma once

#include <sys/mman.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <memory>

namespace kdp::table {

template <class T>
class HugeArray {
public:
    static constexpr size_t kHugePage = size_t{2} << 20;
    static constexpr size_t kCacheLine = 64;

    HugeArray() = default;
    static_assert(alignof(T) <= kCacheLine, "HugeArray aligns small arrays to a cache line");

    explicit HugeArray(size_t n) : n_(n) {
        // Under half a huge page (the scratch tables a trace builds per probe, small test
        // tables) an ordinary cache-aligned block: rounding it up to 2 MiB would make each of
        // them cost a huge page's clearing.
        const size_t want = n * sizeof(T);
        const bool huge = want >= kHugePage / 2;
        const size_t align = huge ? kHugePage : kCacheLine;
        const size_t bytes = std::max<size_t>((want + align - 1) / align * align, align);
        void* p = std::aligned_alloc(align, bytes);
        if (p == nullptr) {
            // Sized from the config at start-up: nothing sensible to do without it.
            std::fprintf(stderr, "kdp: cannot allocate %zu bytes for a table\n", bytes);
            std::abort();
        }
        if (huge) {
            ::madvise(p, bytes, MADV_HUGEPAGE);  // advice only: small pages if refused
        }
        data_ = static_cast<T*>(p);
        std::uninitialized_value_construct_n(data_, n_);
    }
    ~HugeArray() { reset(); }
    HugeArray(HugeArray&& o) noexcept : data_(o.data_), n_(o.n_) {
        o.data_ = nullptr;
        o.n_ = 0;
    }
    HugeArray& operator=(HugeArray&& o) noexcept {
        if (this != &o) {
            reset();
            data_ = o.data_;
            n_ = o.n_;
            o.data_ = nullptr;
            o.n_ = 0;
        }
        return *this;
    }
    HugeArray(const HugeArray&) = delete;
    HugeArray& operator=(const HugeArray&) = delete;

    T& operator[](size_t i) noexcept { return data_[i]; }
    const T& operator[](size_t i) const noexcept { return data_[i]; }
    size_t size() const noexcept { return n_; }

private:
    void reset() noexcept {
        if (data_ != nullptr) {
            std::destroy_n(data_, n_);
            std::free(data_);
            data_ = nullptr;
        }
    }

    T* data_ = nullptr;
    size_t n_ = 0;
};

}  // namespace kdp::table
