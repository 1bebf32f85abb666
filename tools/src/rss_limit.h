// rss_limit.h — a run's RSS against a memory limit L (issue 15): how long
// the sampled RSS of the process tree stayed above L and how far its peak
// went, for `ebbrun --limit-mb` and bench/compare's pressure table; and the
// variable that tells ebbmalloc the limit (the other allocators have no such
// option: they are measured against L without knowing it).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "measure.h"

namespace ebb::measure {

// L in bytes for a limit given in MiB.
inline uint64_t limit_bytes(uint64_t limit_mib) { return limit_mib * 1024 * 1024; }

// Seconds of the run during which the sampled RSS was above `limit` bytes,
// each sample holding until the next one and the last until the exit (as
// summarize() integrates). A spike shorter than the sampling interval may be
// missed here; the peak (which includes the kernel's ru_maxrss) still shows it.
double seconds_over(const RunResult& r, uint64_t limit);

// Medians over the runs of `a` that started: seconds above `limit`, and the
// peak RSS divided by `limit`.
double median_seconds_over(const AllocRuns& a, uint64_t limit);
double peak_per_limit(const AllocRuns& a, uint64_t limit);

// Whether the allocator is an ebbmalloc build, which reads
// EBBMALLOC_LIMIT_MB: ebb, ebb-baseline, and bench/compare's variants of ebb
// (ebb-noreporter), i.e. "ebb" and every name starting with "ebb-".
bool reads_limit_option(const Allocator& a);

// EBBMALLOC_LIMIT_MB=<limit_mib>.
EnvVar limit_option(uint64_t limit_mib);

// The table cells of the limit: the heads `over L s` and `peak/L`, and the
// cells of one allocator's runs ("-" when none started).
std::vector<std::string> limit_heads();
std::vector<std::string> limit_cells(const AllocRuns& a, uint64_t limit);

}  // namespace ebb::measure
