// compare_pressure.cpp — see compare_pressure.h.
#include "compare_pressure.h"

#include <algorithm>
#include <cmath>

#include "rss_limit.h"

namespace ebb::compare {

namespace m = ebb::measure;

namespace {

constexpr uint64_t kMinLimitMiB = 16;  // bench/workloads/pressure.cpp's minimum
constexpr double kMiB = 1024.0 * 1024.0;

}  // namespace

uint64_t scaled_limit_mib(uint64_t limit_mib, double scale) {
  const long long v = std::llround(static_cast<double>(limit_mib) * scale);
  return std::max(kMinLimitMiB, static_cast<uint64_t>(std::max(0LL, v)));
}

PressureRows pressure_rows(const std::vector<PressureCell>& cells, uint64_t limit_mib) {
  const uint64_t limit = m::limit_bytes(limit_mib);
  PressureRows t;
  t.head = {"allocator", "limit told", "peak MiB", "peak/L", "over L s", "mean MiB", "status"};
  for (const PressureCell& c : cells) {
    const m::AllocRuns& a = *c.runs;
    std::vector<std::string> row = {a.alloc->name, m::reads_limit_option(*a.alloc)
                                                       ? m::limit_option(limit_mib).name + "=" +
                                                             m::limit_option(limit_mib).value
                                                       : "-"};
    if (!c.failure.empty() || !a.any_started()) {
      row.insert(row.end(), {"FAILED", "-", "-", "-"});
    } else {
      row.insert(
          row.end(),
          {m::fmtd("%.1f", a.peak() / kMiB), m::fmtd("%.2f", m::peak_per_limit(a, limit)),
           m::fmtd("%.2f", m::median_seconds_over(a, limit)), m::fmtd("%.1f", a.mean() / kMiB)});
    }
    row.push_back(c.failure.empty() ? "ok" : c.failure);
    t.rows.push_back(row);
  }
  return t;
}

}  // namespace ebb::compare
