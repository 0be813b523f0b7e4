// Happens-before edges for ThreadSanitizer where the synchronisation is done by code it cannot
// see: DPDK's libraries are not instrumented (the EAL's lcore launch and join, the net_ring
// PMD's rings, the mempool's ring of free mbufs), so two threads that DPDK orders look
// unordered to it. KDP_TSAN_RELEASE(p) before such a hand-off and KDP_TSAN_ACQUIRE(p) after it,
// on the same address, state the edge DPDK makes (the sanitizer's documented interface,
// sanitizer/tsan_interface.h). Without -fsanitize=thread they expand to nothing, so the hot
// path is unchanged in every other build.
#pragma once

#if defined(__SANITIZE_THREAD__)
#define KDP_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define KDP_TSAN 1
#endif
#endif

#if defined(KDP_TSAN)
#include <sanitizer/tsan_interface.h>
#define KDP_TSAN_RELEASE(addr) __tsan_release(const_cast<void*>(static_cast<const void*>(addr)))
#define KDP_TSAN_ACQUIRE(addr) __tsan_acquire(const_cast<void*>(static_cast<const void*>(addr)))
#else
#define KDP_TSAN_RELEASE(addr) static_cast<void>(0)
#define KDP_TSAN_ACQUIRE(addr) static_cast<void>(0)
#endif
