// Not built: test/thread_safety_check.sh compiles this with clang's -Wthread-safety and
// requires it to be refused, so that a broken set-up (macros that expand to nothing under
// clang, the warning not enabled) cannot pass the check silently.
#include "common/thread_annotations.h"

namespace {

class Counter {
public:
    void add() {
        kdp::LockGuard lock(mu_);
        ++n_;
    }
    int peek() const { return n_; }  // the deliberate error: n_ read without mu_

private:
    mutable kdp::Mutex mu_;
    int n_ KDP_GUARDED_BY(mu_) = 0;
};

}  // namespace

int main() {
    Counter c;
    c.add();
    return c.peek();
}
