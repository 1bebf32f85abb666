#include "front/pressure_relief.h"

#include <atomic>

#include "front/central.h"
#include "os/os.h"

namespace ebb {

namespace {
constinit std::atomic<bool> g_busy{false};
constinit std::atomic<uint64_t> g_quiet_until{0};
constinit std::atomic<uint64_t> g_wait_ms{1};
}  // namespace

void relieve_pressure() {
  const uint64_t now = os::now_ms();
  if (now < g_quiet_until.load(std::memory_order_relaxed)) return;
  bool idle = false;
  if (!g_busy.compare_exchange_strong(idle, true, std::memory_order_acquire)) return;
  uint64_t released = 0;
  central_report_cold(0, 0, &released);
  g.heap.headroom_unmap(released);  // the estimate falls with it
  g.reporter.pressure().note_relief(released);
  const uint64_t most = g.opts.delay_ms > 1 ? g.opts.delay_ms : 1;
  uint64_t wait = g_wait_ms.load(std::memory_order_relaxed);
  wait = released >= (uint64_t{g.opts.report_mark_kb} << 10) ? 1 : (wait * 2 < most ? wait * 2 : most);
  g_wait_ms.store(wait, std::memory_order_relaxed);
  g_quiet_until.store(os::now_ms() + wait, std::memory_order_relaxed);
  g_busy.store(false, std::memory_order_release);
}

}  // namespace ebb
