#include "compare_floor.h"

#include <dirent.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "live_reader.h"

namespace ebb::compare {

namespace m = ebb::measure;

namespace {

constexpr double kMiB = 1024.0 * 1024.0;

// Removes the directory and whatever the process left in it.
void remove_dir(const std::string& dir) {
  if (DIR* d = opendir(dir.c_str())) {
    while (const dirent* e = readdir(d)) {
      const std::string name = e->d_name;
      if (name != "." && name != "..") unlink((dir + "/" + name).c_str());
    }
    closedir(d);
  }
  rmdir(dir.c_str());
}

std::string fmt(const char* f, double v) {
  char b[64];
  snprintf(b, sizeof b, f, v);
  return b;
}

}  // namespace

FloorRun floor_run(const m::Allocator& ebb, const std::string& workload, const std::vector<std::string>& cmd,
                   int interval_ms, int publish_ms, double timeout_s) {
  FloorRun fr;
  fr.workload = workload;
  char tmpl[] = "/tmp/ebb-compare-floor-XXXXXX";  // mkdtemp: mode 0700, as the library wants
  if (!mkdtemp(tmpl)) {
    fr.error = "no temporary directory";
    return fr;
  }
  const std::string dir = tmpl;
  ebbtop::LiveFile file;
  bool open = false;
  uint64_t last_floor_ms = 0;
  m::RunOptions o;
  o.interval_ms = interval_ms;
  o.capture_output = true;
  o.timeout_s = timeout_s;
  o.env = {{"EBBMALLOC_LIVE_STATS", "1"},
           {"EBBMALLOC_LIVE_STATS_MS", std::to_string(publish_ms)},
           {"EBBMALLOC_LIVE_STATS_DIR", dir}};
  o.on_sample = [&](pid_t pid, const m::Sample&) {
    ebbtop::Error err;
    if (!open) {
      ebbtop::Target t;
      // Not there yet (before the library's constructor ran): next sample.
      open = ebbtop::find_target(pid, dir, &t, &err) && file.open(t, &err);
      if (!open) return;
    }
    ebb_live_file_t snap;
    if (!file.read(&snap, &err) || snap.floor_mono_ms == 0 || snap.floor_mono_ms == last_floor_ms) return;
    last_floor_ms = snap.floor_mono_ms;
    const ebb_stats_t& s = snap.stats;
    ++fr.floors;
    if (s.floor_walk_us > fr.longest_walk_us) fr.longest_walk_us = s.floor_walk_us;
    if (s.floor_bytes >= fr.peak_floor) {
      fr.peak_floor = s.floor_bytes;
      fr.rss_at_peak_floor = s.process_rss_bytes;
      fr.pinned_at_peak = s.pinned_bytes;
      fr.top_class = s.pinned_classes ? s.pinned_class_size[0] : 0;
      fr.top_class_bytes = s.pinned_classes ? s.pinned_class_bytes[0] : 0;
    }
  };
  fr.run = m::run_under(ebb, cmd, o);
  remove_dir(dir);
  if (!fr.run.ok) fr.error = "FAILED: " + fr.run.status;
  else if (fr.floors == 0) fr.error = "no floor read (run too short for a snapshot)";
  return fr;
}

FloorRows floor_rows(const std::vector<FloorRun>& runs) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> head = {"workload",        "peak RSS MiB",         "peak floor MiB",
                                         "peak RSS ÷ peak floor", "RSS ÷ floor then", "pinned then MiB",
                                         "most pinned class then", "floors taken", "longest walk ms"};
  for (const FloorRun& f : runs) {
    if (!f.error.empty()) {
      rows.push_back({f.workload, f.run.started ? fmt("%.1f", double(f.run.peak) / kMiB) : "-", "-", "-", "-", "-",
                      f.error, std::to_string(f.floors), "-"});
      continue;
    }
    const double floor = double(f.peak_floor);
    rows.push_back({f.workload, fmt("%.1f", double(f.run.peak) / kMiB), fmt("%.1f", floor / kMiB),
                    floor > 0 ? fmt("%.2f", double(f.run.peak) / floor) : "-",
                    floor > 0 && f.rss_at_peak_floor ? fmt("%.2f", double(f.rss_at_peak_floor) / floor) : "-",
                    fmt("%.1f", double(f.pinned_at_peak) / kMiB),
                    f.top_class ? std::to_string(f.top_class) + " B (" + fmt("%.1f", double(f.top_class_bytes) / kMiB) +
                                      " MiB)"
                                : "-",
                    std::to_string(f.floors), fmt("%.1f", double(f.longest_walk_us) / 1000.0)});
  }
  return {head, rows};
}

}  // namespace ebb::compare
