// A small futex mutex (three-state, after Drepper's "Futexes are tricky").
// Usable before any constructor ran, never allocates, and can be reset in a
// fork child where its owner no longer exists.
//
// Each thread counts the allocator locks it holds or is waiting for
// (t_lock_depth): fork() from a signal handler that interrupted this thread
// inside the allocator must not wait for them (api/fork.cpp). While a fork
// holds every lock (between the prepare and the parent/child handlers), the
// forking thread has the whole allocator to itself, so its own lock() and
// unlock() calls do nothing: other fork handlers may call malloc (glibc
// allows it), and they must not wait for the locks the fork holds.
#pragma once
#include <atomic>
#include <cstdint>

namespace ebb {

constexpr uint32_t kForkOwner = 0x80000000u;  // t_lock_depth: this thread holds the fork's locks
extern constinit thread_local uint32_t t_lock_depth __attribute__((tls_model("initial-exec")));

class Mutex {
 public:
  constexpr Mutex() = default;
  void lock() {
    const uint32_t d = t_lock_depth;
    if (__builtin_expect(d & kForkOwner, 0)) return;
    t_lock_depth = d + 1;  // before waiting: an interrupted wait counts as held
    lock_raw();
  }
  bool try_lock() {
    const uint32_t d = t_lock_depth;
    if (__builtin_expect(d & kForkOwner, 0)) return true;
    uint32_t c = 0;
    if (!state_.compare_exchange_strong(c, 1, std::memory_order_acquire)) return false;
    t_lock_depth = d + 1;
    return true;
  }
  void unlock() {
    const uint32_t d = t_lock_depth;
    if (__builtin_expect(d & kForkOwner, 0)) return;
    unlock_raw();
    t_lock_depth = d - 1;
  }
  bool is_locked() const { return state_.load(std::memory_order_relaxed) != 0; }
  // Only in a fork child: the lock's holder, if any, is gone.
  void reset_after_fork() { state_.store(0, std::memory_order_relaxed); }

  // Without the per-thread count: the fork handlers, which take every lock.
  void lock_raw() {
    uint32_t c = 0;
    if (__builtin_expect(state_.compare_exchange_strong(c, 1, std::memory_order_acquire), 1)) return;
    lock_slow(c);
  }
  void unlock_raw() {
    if (__builtin_expect(state_.exchange(0, std::memory_order_release) != 2, 1)) return;
    wake_one();
  }

 private:
  void lock_slow(uint32_t c);
  void wake_one();
  std::atomic<uint32_t> state_{0};  // 0 free, 1 locked, 2 locked with waiters
};

class LockGuard {
 public:
  explicit LockGuard(Mutex& m) : m_(m) { m_.lock(); }
  ~LockGuard() { m_.unlock(); }
  LockGuard(const LockGuard&) = delete;
  LockGuard& operator=(const LockGuard&) = delete;

 private:
  Mutex& m_;
};

}  // namespace ebb
