// Process life: first-use initialisation, the library constructor and
// destructor. (fork: api/fork.cpp.)
#include <pthread.h>

#include "api/fork.h"
#include "api/live_stats.h"
#include "api/options.h"
#include "common/check.h"
#include "common/log.h"
#include "front/free_list.h"
#include "front/globals.h"
#include "front/large.h"
#include "front/thread_cache.h"
#include "os/os.h"
#include "ebbmalloc.h"

namespace ebb {

constinit FastGlobals g_fast;
constinit Globals g;

namespace {

void notify_reporter() { g.reporter.request_now(); }
void urge_reporter() { g.reporter.request_pressure(); }

bool do_init() {
  parse_options(&g.opts);
  g.zero_reported = !g.opts.madv_free;
  const uint64_t mark_pages = (uint64_t{g.opts.report_mark_kb} * 1024) >> kPageShift;
  if (!g.heap.init(size_t{g.opts.reserve_gb} << 30, &g_fast.extent, g.opts.report_order,
                   mark_pages ? mark_pages : 1, &notify_reporter, g.opts.verbose)) {
    log_line("cannot reserve address space for the heap; allocations will fail");
    return false;
  }
  g.heap.buddy().set_split_warm_first(g.opts.split_warm);
  g.heap.headroom().urge = &urge_reporter;
  g.heap.set_lazy(g.opts.madv_free);
  os::set_advise_batch(g.opts.madvise_batch);
  g.reporter.init(&g.heap, &g.opts);
  g.reporter.set_cache_hook(&drain_idle_caches);
  g.reporter.set_slab_hook(&central_report_cold);
  g.reporter.set_worth_hook(&worth_reporting);
  thread_cache_global_init();
  security_init();
  g_fast.page_class = g.heap.region().page_class();
  g_fast.base = reinterpret_cast<uintptr_t>(g.heap.region().base());
  if (g.opts.verbose) {
    OutBuf o(2);
    o.str("ebbmalloc: ").str(ebb_version()).str(" heap ").ptr(g.heap.region().base()).str(" for up to ");
    o.bytes(g.heap.region().max_bytes()).str(", reporter ").str(g.opts.reporter ? "on" : "off");
    o.str(", cold ").u64(g.opts.cold_ms).str(" ms, report order ").u64(g.opts.report_order).chr('\n');
  }
  return true;
}

}  // namespace

bool ensure_init() {
  uint32_t s = g.init_state.load(std::memory_order_acquire);
  if (EBB_LIKELY(s == 2)) return true;
  if (s == 0 && g.init_state.compare_exchange_strong(s, 1, std::memory_order_acq_rel)) {
    const bool ok = do_init();
    g.init_state.store(ok ? 2 : 3, std::memory_order_release);
    return ok;
  }
  // Another thread is initialising: wait for it.
  while ((s = g.init_state.load(std::memory_order_acquire)) == 1) __builtin_ia32_pause();
  return s == 2;
}

void debug_check_heap_locked() {
#ifdef EBB_DEBUG
  if (!g.opts.check) return;
  if (g.heap.buddy().check(true) != 0) fatal("heap invariant check failed (see above)");
#endif
}

}  // namespace ebb

using namespace ebb;

// Runs before main() (and before constructors of libraries loaded later).
// Thread creation waits for this point: pthread_create may allocate, and
// inside the dynamic loader it is not safe.
// EBBMALLOC_STATS at exit go to a copy of stderr taken now: some programs
// close stderr before they exit (GNU coreutils' close_stdout does).
static int g_stats_fd = 2;

__attribute__((constructor(101))) static void ebb_constructor() {
  if (!ensure_init()) return;
  if (g.opts.stats != StatsMode::kOff) {
    const int fd = os::dup_fd(2);
    if (fd >= 0) g_stats_fd = fd;
  }
  fork_handlers_install();
  // The memory limit: EBBMALLOC_LIMIT_MB, or where to look up the cgroup's
  // later (report/pressure.h). Here, not at the first malloc, which can come
  // from the dynamic loader.
  g.reporter.pressure().init(&g.opts, &g.heap);
  live_stats_start();
  g.reporter.allow_thread_start();
  g.reporter.maybe_start_thread();
}

__attribute__((destructor)) static void ebb_destructor() {
  if (!initialized()) return;
  live_stats_stop();
  if (g.opts.stats != StatsMode::kOff) ebb_print_stats(g_stats_fd, g.opts.stats == StatsMode::kJson);
}
