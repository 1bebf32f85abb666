// The allocator's tunables. Every one is an EBBMALLOC_* environment variable
// (read once, at initialisation, without allocating: see api/options.cpp);
// the defaults and the reasons for them are in README.md and docs/DESIGN.md.
#pragma once
#include <cstdint>

namespace ebb {

enum class StatsMode : uint8_t { kOff = 0, kText = 1, kJson = 2 };

constexpr uint32_t kLimitAuto = ~uint32_t{0};

struct Options {
  bool reporter = true;            // EBBMALLOC_REPORTER
  uint32_t delay_ms = 200;         // EBBMALLOC_DELAY_MS: minimum time between passes
  uint32_t cold_ms = 1000;         // EBBMALLOC_COLD_MS: free this long before reported
  uint32_t linger_ms = 2000;       // EBBMALLOC_REPORTER_LINGER_MS: idle time before the thread exits
  uint32_t report_order = 0;       // EBBMALLOC_REPORT_ORDER: 0 = 4 KiB .. 9 = 2 MiB
  uint32_t batch = 32;             // EBBMALLOC_BATCH: blocks per isolate/madvise round
  bool madv_free = false;          // EBBMALLOC_MADVISE=dontneed|free
  bool madvise_batch = true;       // EBBMALLOC_MADVISE_BATCH: many ranges per call (process_madvise)
  StatsMode stats = StatsMode::kOff;  // EBBMALLOC_STATS=0|1|json
  bool verbose = false;            // EBBMALLOC_VERBOSE
  uint32_t reserve_gb = 1024;      // EBBMALLOC_RESERVE_GB: largest heap (address space taken as it grows)
  bool split_warm = true;          // EBBMALLOC_SPLIT_WARM: split warm before reported fit
  uint32_t report_mark_kb = 1024;  // EBBMALLOC_REPORT_MARK_KB: warm free memory that wakes the reporter
  uint32_t thread_cache_kb = 2048;  // EBBMALLOC_THREAD_CACHE_KB: most small objects one thread's cache holds
  // EBBMALLOC_LIMIT_MB: the memory limit the reporter keeps the process
  // under (report/pressure.h); kLimitAuto = the cgroup's, 0 = none.
  uint32_t limit_mb = kLimitAuto;
  uint32_t pressure_pct = 90;      // EBBMALLOC_PRESSURE_PCT: usage (% of the limit) that is pressure
  bool check = false;              // EBBMALLOC_CHECK: heap invariant walks (debug builds)
  bool live_stats = false;         // EBBMALLOC_LIVE_STATS: keep counters in a file for ebbtop
  bool harden = false;             // EBBMALLOC_HARDEN: the hardened mode (front/harden.h)
  uint32_t live_stats_ms = 500;    // EBBMALLOC_LIVE_STATS_MS: time between snapshots
  // EBBMALLOC_LIVE_STATS_DIR: where the file goes ("" = /dev/shm/ebbmalloc-<euid>)
  char live_stats_dir[192] = {};
};

}  // namespace ebb
