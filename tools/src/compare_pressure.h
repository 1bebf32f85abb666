// bench/compare's pressure table (issue 15): the workloads that run against
// a memory limit L (bench/workloads/pressure: at most 0.8 L live at any
// moment), and for every allocator how its RSS stood against L: peak, peak
// ÷ L, seconds above L. ebbmalloc's runs are told L (EBBMALLOC_LIMIT_MB, see
// rss_limit.h); the other allocators have no such option.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "measure.h"

namespace ebb::compare {

// L in MiB for a workload whose limit is `limit_mib` at scale 1, run at
// `scale`: limit_mib x scale, rounded, at least 16 MiB (the workload's own
// minimum). compare passes it to the workload as --limit-mb L without a
// --scale, so the workload's L and ebbmalloc's are this same number.
uint64_t scaled_limit_mib(uint64_t limit_mib, double scale);

// One allocator's runs of a workload with a limit, and why they failed ("" if
// they passed: a failed cell shows FAILED, never figures).
struct PressureCell {
  const measure::AllocRuns* runs;
  std::string failure;
};

// The table: a head and one row per cell (compare renders it).
struct PressureRows {
  std::vector<std::string> head;
  std::vector<std::vector<std::string>> rows;
};
PressureRows pressure_rows(const std::vector<PressureCell>& cells, uint64_t limit_mib);

}  // namespace ebb::compare
