// Clang thread-safety annotations, and a mutex that carries them.
//
// Clang's -Wthread-safety checks at compile time that state declared KDP_GUARDED_BY(mu) is
// touched only with `mu` held, and that a function declared KDP_REQUIRES(mu) is called only
// with it held (https://clang.llvm.org/docs/ThreadSafetyAnalysis.html). libstdc++'s std::mutex
// carries no annotations, so the analysis cannot see it taken: kdp::Mutex and kdp::LockGuard
// wrap it with them (the same idea as Abseil's absl::Mutex and the annotated mutex of
// Chromium's base/). test/thread_safety_check.sh compiles the annotated files with clang and
// -Wthread-safety -Werror in CI. Under GCC the macros expand to nothing and the types are a
// std::mutex and a lock_guard.
#pragma once

#include <mutex>
#include <shared_mutex>

#if defined(__clang__)
#define KDP_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define KDP_THREAD_ANNOTATION(x)
#endif

// On a type: it is a lockable capability (a mutex).
#define KDP_CAPABILITY(name) KDP_THREAD_ANNOTATION(capability(name))
// On an RAII type: it holds a capability from construction to destruction.
#define KDP_SCOPED_CAPABILITY KDP_THREAD_ANNOTATION(scoped_lockable)
// On data: read and written only with the capability held (shared suffices to read).
#define KDP_GUARDED_BY(x) KDP_THREAD_ANNOTATION(guarded_by(x))
// On a pointer: what it points to is guarded so.
#define KDP_PT_GUARDED_BY(x) KDP_THREAD_ANNOTATION(pt_guarded_by(x))
// On a function: the caller holds the capability (exclusively / at least shared).
#define KDP_REQUIRES(...) KDP_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define KDP_REQUIRES_SHARED(...) KDP_THREAD_ANNOTATION(requires_shared_capability(__VA_ARGS__))
// On a function: the caller must not hold it (the function takes it itself).
#define KDP_EXCLUDES(...) KDP_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
// On a function: it takes / gives back the capability.
#define KDP_ACQUIRE(...) KDP_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define KDP_ACQUIRE_SHARED(...) KDP_THREAD_ANNOTATION(acquire_shared_capability(__VA_ARGS__))
#define KDP_RELEASE(...) KDP_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define KDP_RELEASE_SHARED(...) KDP_THREAD_ANNOTATION(release_shared_capability(__VA_ARGS__))
#define KDP_TRY_ACQUIRE(...) KDP_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))

namespace kdp {

/// std::mutex, as a capability the analysis knows.
class KDP_CAPABILITY("mutex") Mutex {
public:
    void lock() KDP_ACQUIRE() { mu_.lock(); }
    void unlock() KDP_RELEASE() { mu_.unlock(); }
    bool try_lock() KDP_TRY_ACQUIRE(true) { return mu_.try_lock(); }

private:
    std::mutex mu_;
};

/// std::shared_mutex, as a capability: many readers or one writer.
class KDP_CAPABILITY("mutex") SharedMutex {
public:
    void lock() KDP_ACQUIRE() { mu_.lock(); }
    void unlock() KDP_RELEASE() { mu_.unlock(); }
    void lock_shared() KDP_ACQUIRE_SHARED() { mu_.lock_shared(); }
    void unlock_shared() KDP_RELEASE_SHARED() { mu_.unlock_shared(); }

private:
    std::shared_mutex mu_;
};

/// std::lock_guard for Mutex or SharedMutex: holds it exclusively for its scope.
template <class M>
class KDP_SCOPED_CAPABILITY ScopedLock {
public:
    explicit ScopedLock(M& mu) KDP_ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
    ~ScopedLock() KDP_RELEASE() { mu_.unlock(); }
    ScopedLock(const ScopedLock&) = delete;
    ScopedLock& operator=(const ScopedLock&) = delete;

private:
    M& mu_;
};
using LockGuard = ScopedLock<Mutex>;
using WriterLock = ScopedLock<SharedMutex>;

/// Holds a SharedMutex shared for its scope.
class KDP_SCOPED_CAPABILITY ReaderLock {
public:
    explicit ReaderLock(SharedMutex& mu) KDP_ACQUIRE_SHARED(mu) : mu_(mu) { mu_.lock_shared(); }
    ~ReaderLock() KDP_RELEASE() { mu_.unlock_shared(); }
    ReaderLock(const ReaderLock&) = delete;
    ReaderLock& operator=(const ReaderLock&) = delete;

private:
    SharedMutex& mu_;
};

}  // namespace kdp
