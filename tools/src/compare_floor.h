// bench/compare's floor runs: each workload once more under ebbmalloc with
// its live statistics file on, read at every RSS sample, so the tables can
// put RSS beside the resident floor (ebb_stats_t version 3: the pages that
// hold a live byte, what a non-moving allocator could reach at best).
//
// These runs are separate from the measured ones: publishing the live file
// (and the floor's walk, which stops the threads for a moment, at most 1%
// of the time) would perturb their times.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "measure.h"

namespace ebb::compare {

struct FloorRun {
  std::string workload;
  measure::RunResult run;
  uint64_t peak_floor = 0;        // the largest floor seen (bytes)
  uint64_t rss_at_peak_floor = 0; // the process's RSS when that floor was taken
  uint64_t pinned_at_peak = 0;    // free object bytes on floor pages then
  uint64_t top_class = 0;         // the class pinning the most then (object size)
  uint64_t top_class_bytes = 0;
  unsigned floors = 0;            // distinct floors seen
  uint64_t longest_walk_us = 0;
  std::string error;              // why there are no figures ("" if there are)
};

// Runs cmd under `ebb` (the ebbmalloc allocator) with EBBMALLOC_LIVE_STATS=1
// published every `publish_ms`, into a private temporary directory.
FloorRun floor_run(const measure::Allocator& ebb, const std::string& workload,
                   const std::vector<std::string>& cmd, int interval_ms, int publish_ms, double timeout_s);

// The table of the runs: a head and one row per run (compare renders it).
struct FloorRows {
  std::vector<std::string> head;
  std::vector<std::vector<std::string>> rows;
};
FloorRows floor_rows(const std::vector<FloorRun>& runs);

}  // namespace ebb::compare
