#include "front/pressure_relief.h"

#include <atomic>

#include "front/central.h"
#include "front/thread_cache.h"
#include "os/os.h"

namespace ebb {

namespace {
constinit std::atomic<bool> g_busy{false};
constinit std::atomic<uint64_t> g_done_ms{0};  // when the last relief ran
constinit uint64_t g_drained_ms = 0;  // when a relief last drained the thread caches (g_busy held)
// Draining every thread's cache asks every CPU for a barrier per cache, and
// the caches start small again: not at every relief.
constexpr uint64_t kDrainEveryMs = 10;
}  // namespace

void relieve_pressure() {
  const uint64_t now = os::now_ms();
  if (now == g_done_ms.load(std::memory_order_relaxed)) return;
  bool idle = false;
  if (!g_busy.compare_exchange_strong(idle, true, std::memory_order_acquire)) return;
  uint64_t released = 0;
  // The free objects in thread caches (this thread's and the others', a few
  // MiB each with their large blocks) pin slab pages and buddy blocks this
  // thread cannot otherwise reach; the reporter's pressure pass drains them
  // too, but it may be waiting out a fruitless pass's backoff, or not be
  // scheduled on a busy machine while the program grows past the limit.
  if (now >= g_drained_ms + kDrainEveryMs) {
    g_drained_ms = now;
    drain_idle_caches(now, 0, /*force=*/true);
  }
  central_report_cold(0, 0, 0, &released);
  g.heap.headroom_release(released);  // the estimate falls with it
  g.reporter.pressure().note_relief(released);
  g_done_ms.store(os::now_ms(), std::memory_order_relaxed);
  g_busy.store(false, std::memory_order_release);
}

void pressure_relief_postfork_child() { g_busy.store(false, std::memory_order_relaxed); }

}  // namespace ebb
