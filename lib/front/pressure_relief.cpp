#include "front/pressure_relief.h"

#include <atomic>

#include "front/central.h"
#include "os/os.h"

namespace ebb {

namespace {
constinit std::atomic<bool> g_busy{false};
constinit std::atomic<uint64_t> g_done_ms{0};  // when the last relief ran
}  // namespace

void relieve_pressure() {
  const uint64_t now = os::now_ms();
  if (now == g_done_ms.load(std::memory_order_relaxed)) return;
  bool idle = false;
  if (!g_busy.compare_exchange_strong(idle, true, std::memory_order_acquire)) return;
  uint64_t released = 0;
  central_report_cold(0, 0, &released);
  g.heap.headroom_release(released);  // the estimate falls with it
  g.reporter.pressure().note_relief(released);
  g_done_ms.store(os::now_ms(), std::memory_order_relaxed);
  g_busy.store(false, std::memory_order_release);
}

void pressure_relief_postfork_child() { g_busy.store(false, std::memory_order_relaxed); }

}  // namespace ebb
