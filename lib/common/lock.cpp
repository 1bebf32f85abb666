#include "common/lock.h"

#include "os/os.h"

namespace ebb {

constinit thread_local uint32_t t_lock_depth __attribute__((tls_model("initial-exec"))) = 0;

void RawMutex::lock_slow(uint32_t c) {
  // Spin briefly: critical sections here are short.
  for (int i = 0; i < 100; ++i) {
    __builtin_ia32_pause();
    c = 0;
    if (state_.compare_exchange_weak(c, 1, std::memory_order_acquire)) return;
  }
  if (c != 2) c = state_.exchange(2, std::memory_order_acquire);
  while (c != 0) {
    os::futex_wait(&state_, 2, -1);
    c = state_.exchange(2, std::memory_order_acquire);
  }
}

void RawMutex::wake_one() { os::futex_wake(&state_, 1); }

}  // namespace ebb
