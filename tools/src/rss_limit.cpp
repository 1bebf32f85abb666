// rss_limit.cpp — see rss_limit.h.
#include "rss_limit.h"

#include <algorithm>

namespace ebb::measure {

double seconds_over(const RunResult& r, uint64_t limit) {
  const auto& s = r.samples;
  double over = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i].rss <= limit) continue;
    const double until = i + 1 < s.size() ? s[i + 1].t : std::max(r.wall_s, s[i].t);
    over += until - s[i].t;
  }
  return over;
}

double median_seconds_over(const AllocRuns& a, uint64_t limit) {
  return a.med([limit](const RunResult& r) { return seconds_over(r, limit); });
}

double peak_per_limit(const AllocRuns& a, uint64_t limit) {
  return limit > 0 ? a.peak() / static_cast<double>(limit) : 0;
}

bool reads_limit_option(const Allocator& a) {
  return a.name == "ebb" || a.name.rfind("ebb-", 0) == 0;
}

EnvVar limit_option(uint64_t limit_mib) {
  return {"EBBMALLOC_LIMIT_MB", std::to_string(limit_mib)};
}

std::vector<std::string> limit_heads() { return {"over L s", "peak/L"}; }

std::vector<std::string> limit_cells(const AllocRuns& a, uint64_t limit) {
  if (!a.any_started()) return {"-", "-"};
  return {fmtd("%.2f", median_seconds_over(a, limit)), fmtd("%.2f", peak_per_limit(a, limit))};
}

}  // namespace ebb::measure
