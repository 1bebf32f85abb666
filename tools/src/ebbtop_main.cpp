// ebbtop PID: the live view of a process running ebbmalloc with
// EBBMALLOC_LIVE_STATS=1. Reads the process's statistics file (a shared
// mapping, no signals, no ptrace) and /proc/PID/statm once per interval.
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "live_reader.h"

namespace {

constexpr const char* kUsage =
    "usage: ebbtop PID [--interval MS] [--once] [--json] [--dir DIR]\n"
    "  Shows the heap of a process that runs ebbmalloc with EBBMALLOC_LIVE_STATS=1,\n"
    "  refreshed every --interval ms (default 1000) until the process exits.\n"
    "  --once   print one snapshot and exit      --json  one JSON object per snapshot\n"
    "  --dir    where the process keeps its file (default: its EBBMALLOC_LIVE_STATS_DIR,\n"
    "           else /dev/shm/ebbmalloc-<uid>)\n";

struct Args {
  int pid = 0;
  unsigned interval_ms = 1000;
  bool once = false;
  bool json = false;
  std::string dir;
};

[[noreturn]] void usage_error(const std::string& msg) {
  fprintf(stderr, "ebbtop: %s (see ebbtop --help)\n", msg.c_str());
  exit(2);
}

Args parse_args(int argc, char** argv) {
  Args a;
  bool have_pid = false;
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    auto value = [&](const char* name) -> std::string {
      if (i + 1 >= argc) usage_error(std::string(name) + " needs a value");
      return argv[++i];
    };
    if (s == "-h" || s == "--help") {
      fputs(kUsage, stdout);
      exit(0);
    } else if (s == "--once") {
      a.once = true;
    } else if (s == "--json") {
      a.json = true;
    } else if (s == "--interval") {
      const std::string v = value("--interval");
      int ms = 0;
      if (!ebbtop::parse_pid(v, &ms) || ms < 50 || ms > 3600000) {
        usage_error("--interval '" + v + "' is not valid (milliseconds, 50..3600000)");
      }
      a.interval_ms = static_cast<unsigned>(ms);
    } else if (s == "--dir") {
      a.dir = value("--dir");
      if (a.dir.empty() || a.dir[0] != '/') usage_error("--dir '" + a.dir + "' is not an absolute path");
    } else if (!s.empty() && s[0] == '-' && s != "-") {
      usage_error("unknown option '" + s + "'");
    } else if (have_pid) {
      usage_error("one PID only ('" + s + "' is extra)");
    } else {
      if (!ebbtop::parse_pid(s, &a.pid)) usage_error("'" + s + "' is not a process id (a number from 1)");
      have_pid = true;
    }
  }
  if (!have_pid) usage_error("missing PID");
  return a;
}

std::string human(uint64_t v) {
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double d = static_cast<double>(v);
  unsigned u = 0;
  while (d >= 1024 && u + 1 < sizeof(kUnits) / sizeof(kUnits[0])) {
    d /= 1024;
    ++u;
  }
  char buf[32];
  if (u == 0) snprintf(buf, sizeof(buf), "%llu B", static_cast<unsigned long long>(v));
  else snprintf(buf, sizeof(buf), "%.1f %s", d, kUnits[u]);
  return buf;
}

std::string json_string(const std::string& s) {
  std::string o = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      o += '\\';
      o += static_cast<char>(c);
    } else if (c < 0x20) {
      char b[8];
      snprintf(b, sizeof(b), "\\u%04x", c);
      o += b;
    } else {
      o += static_cast<char>(c);
    }
  }
  return o + "\"";
}

// How old the floor in the snapshot is (it is taken less often than the
// snapshot: include/ebbmalloc_live.h), in ms; -1 when there is none yet.
int64_t floor_age(const ebb_live_file_t& f, uint64_t now_ms) {
  if (!f.floor_mono_ms) return -1;
  return now_ms > f.floor_mono_ms ? static_cast<int64_t>(now_ms - f.floor_mono_ms) : 0;
}

// ebb_stats_t.limit_source, as the library's statistics name it.
const char* limit_source(uint64_t s) {
  static const char* const kNames[] = {"none", "option", "memory.high", "memory.max", "memory.soft_limit_in_bytes",
                                       "memory.limit_in_bytes"};
  return s < sizeof(kNames) / sizeof(kNames[0]) ? kNames[s] : "?";
}

// The limit path is a fixed array: never trust it to be terminated.
std::string limit_path(const ebb_stats_t& s) { return std::string(s.limit_path, strnlen(s.limit_path, sizeof(s.limit_path))); }

void print_json(const ebbtop::Target& t, const ebb_live_file_t& f, int64_t rss, uint64_t age_ms, int64_t floor_ms) {
  const ebb_stats_t& s = f.stats;
  std::string o = "{\"pid\":" + std::to_string(t.pid) + ",\"comm\":" + json_string(t.comm);
  auto num = [&](const char* k, uint64_t v) { o += std::string(",\"") + k + "\":" + std::to_string(v); };
  o += ",\"process_rss_bytes\":" + std::to_string(rss);
  num("snapshot_age_ms", age_ms);
  num("publishes", f.publishes);
  num("publish_ms", f.publish_ms);
  num("mapped_bytes", s.mapped_bytes);
  num("resident_bytes", s.resident_bytes);
  num("live_bytes", s.live_bytes);
  num("free_warm_bytes", s.free_warm_bytes);
  num("free_reported_bytes", s.free_reported_bytes);
  num("cached_bytes", s.cached_bytes);
  num("slab_reported_bytes", s.slab_reported_bytes);
  num("huge_bytes", s.huge_bytes);
  num("metadata_bytes", s.metadata_bytes);
  for (int which = 0; which < 2; ++which) {
    o += which ? ",\"reported_blocks\":[" : ",\"free_blocks\":[";
    for (unsigned i = 0; i < EBB_NUM_ORDERS; ++i) {
      o += (i ? "," : "") + std::to_string(which ? s.reported_blocks[i] : s.free_blocks[i]);
    }
    o += "]";
  }
  num("reporter_passes", s.reporter_passes);
  num("reporter_wakeups", s.reporter_wakeups);
  num("reported_blocks_total", s.reported_blocks_total);
  num("reported_bytes_total", s.reported_bytes_total);
  num("slab_pages_reported_total", s.slab_pages_reported_total);
  num("madvise_calls", s.madvise_calls);
  num("madvise_failures", s.madvise_failures);
  num("reported_fallbacks", s.reported_fallbacks);
  num("reported_fallback_bytes", s.reported_fallback_bytes);
  num("cache_drains", s.cache_drains);
  num("thread_caches", s.thread_caches);
  num("reporter_thread_running", s.reporter_thread_running);
  num("floor_bytes", s.floor_bytes);
  num("floor_slab_bytes", s.floor_slab_bytes);
  num("floor_large_bytes", s.floor_large_bytes);
  num("pinned_bytes", s.pinned_bytes);
  num("floor_process_rss_bytes", s.process_rss_bytes);
  num("floor_walk_us", s.floor_walk_us);
  num("floor_exact", s.floor_exact);
  o += ",\"floor_age_ms\":" + std::to_string(floor_ms);
  num("limit_bytes", s.limit_bytes);
  o += std::string(",\"limit_source\":\"") + limit_source(s.limit_source) + "\"";
  o += ",\"limit_path\":" + json_string(limit_path(s));
  num("limit_usage_bytes", s.limit_usage_bytes);
  num("limit_headroom_bytes", s.limit_headroom_bytes);
  num("pressure_mark_bytes", s.pressure_mark_bytes);
  num("pressure_passes", s.pressure_passes);
  num("pressure_give_backs", s.pressure_give_backs);
  num("pressure_given_back_bytes", s.pressure_given_back_bytes);
  num("pressure_reliefs", s.pressure_reliefs);
  num("pressure_relief_bytes", s.pressure_relief_bytes);
  for (int which = 0; which < 2; ++which) {
    o += which ? ",\"pinned_class_bytes\":[" : ",\"pinned_class_size\":[";
    for (unsigned i = 0; i < s.pinned_classes && i < EBB_PINNED_TOP; ++i)
      o += (i ? "," : "") + std::to_string(which ? s.pinned_class_bytes[i] : s.pinned_class_size[i]);
    o += "]";
  }
  o += "}\n";
  fputs(o.c_str(), stdout);
}

void print_text(const ebbtop::Target& t, const ebb_live_file_t& f, int64_t rss, uint64_t age_ms, int64_t floor_ms) {
  const ebb_stats_t& s = f.stats;
  char when[32] = "?";
  const time_t now = time(nullptr);
  struct tm tm;
  if (localtime_r(&now, &tm)) strftime(when, sizeof(when), "%H:%M:%S", &tm);
  char version[sizeof(f.version) + 1] = {};
  memcpy(version, f.version, sizeof(f.version));
  printf("ebbtop  pid %d (%s)  %s  %s  snapshot %.1f s old%s\n", t.pid, t.comm.c_str(), version, when,
         age_ms / 1000.0, age_ms > 3ull * f.publish_ms + 2000 ? " (STALE: is the process stopped?)" : "");
  printf("\n");
  printf("  process RSS     %12s   (/proc/%d/statm)\n", rss >= 0 ? human(static_cast<uint64_t>(rss)).c_str() : "?",
         t.pid);
  // RSS against the resident floor: what a non-moving allocator could reach.
  if (floor_ms < 0) {
    printf("  floor           %12s   (not taken yet)\n", "?");
  } else {
    std::string vs;
    if (rss >= 0 && s.floor_bytes > 0) {
      char b[96];
      snprintf(b, sizeof(b), "RSS = %.2f x floor, ", static_cast<double>(rss) / static_cast<double>(s.floor_bytes));
      vs = b;
    }
    printf("  floor           %12s   pages holding a live byte (%sslabs %s, large %s, huge %s; %.1f s old, walk %.1f ms%s)\n",
           human(s.floor_bytes).c_str(), vs.c_str(), human(s.floor_slab_bytes).c_str(),
           human(s.floor_large_bytes).c_str(), human(s.huge_bytes).c_str(), floor_ms / 1000.0,
           s.floor_walk_us / 1000.0, s.floor_exact ? "" : ", inexact");
    std::string top;
    for (unsigned i = 0; i < s.pinned_classes && i < EBB_PINNED_TOP; ++i)
      top += (i ? ", " : "") + std::to_string(s.pinned_class_size[i]) + " B " + human(s.pinned_class_bytes[i]);
    printf("  pinned          %12s   free objects on pages in the floor%s%s\n", human(s.pinned_bytes).c_str(),
           top.empty() ? "" : ": ", top.c_str());
  }
  printf("  heap resident~  %12s   mapped minus free reported memory\n", human(s.resident_bytes).c_str());
  printf("  mapped          %12s   heap committed + huge objects + metadata\n", human(s.mapped_bytes).c_str());
  printf("  live            %12s   handed to the program\n", human(s.live_bytes).c_str());
  printf("  cached          %12s   free objects in thread caches and slabs\n", human(s.cached_bytes).c_str());
  printf("    of it given back %9s   wholly free pages of slabs in use, reported\n",
         human(s.slab_reported_bytes).c_str());
  printf("  free warm       %12s   free pages still resident\n", human(s.free_warm_bytes).c_str());
  printf("  free reported   %12s   free pages given back to the OS\n", human(s.free_reported_bytes).c_str());
  printf("  huge / metadata %12s / %s\n", human(s.huge_bytes).c_str(), human(s.metadata_bytes).c_str());
  printf("\n  order  block        free  reported\n");
  for (unsigned i = 0; i < EBB_NUM_ORDERS; ++i) {
    printf("  %5u  %-9s %7llu  %8llu\n", i, human(uint64_t{4096} << i).c_str(),
           static_cast<unsigned long long>(s.free_blocks[i]), static_cast<unsigned long long>(s.reported_blocks[i]));
  }
  printf("\n  reporter        %s, %llu passes, %llu wake-ups\n",
         !f.reporter ? "off (EBBMALLOC_REPORTER=0)" : (s.reporter_thread_running ? "running" : "no thread (nothing to give back)"),
         static_cast<unsigned long long>(s.reporter_passes), static_cast<unsigned long long>(s.reporter_wakeups));
  printf("  returned        %s in %llu blocks + %llu slab pages, %llu madvise calls (%llu failed)\n",
         human(s.reported_bytes_total).c_str(), static_cast<unsigned long long>(s.reported_blocks_total),
         static_cast<unsigned long long>(s.slab_pages_reported_total),
         static_cast<unsigned long long>(s.madvise_calls), static_cast<unsigned long long>(s.madvise_failures));
  printf("  fallbacks       %llu allocations used reported memory (%s)\n",
         static_cast<unsigned long long>(s.reported_fallbacks), human(s.reported_fallback_bytes).c_str());
  printf("  thread caches   %llu, %llu idle ones drained\n", static_cast<unsigned long long>(s.thread_caches),
         static_cast<unsigned long long>(s.cache_drains));
  if (!s.limit_bytes) {
    printf("  memory limit    none\n");
    return;
  }
  const std::string path = limit_path(s);
  printf("  memory limit    %s, %s%s%s\n", human(s.limit_bytes).c_str(), limit_source(s.limit_source),
         path.empty() ? "" : " of ", path.c_str());
  printf("    usage         %s (%.0f%%), headroom %s, pressure at %s\n", human(s.limit_usage_bytes).c_str(),
         100.0 * static_cast<double>(s.limit_usage_bytes) / static_cast<double>(s.limit_bytes),
         human(s.limit_headroom_bytes).c_str(), human(s.pressure_mark_bytes).c_str());
  printf("    pressure      %llu passes; the heap gave back %s before faulting in, %llu times; threads %s of slab pages, %llu times\n",
         static_cast<unsigned long long>(s.pressure_passes), human(s.pressure_given_back_bytes).c_str(),
         static_cast<unsigned long long>(s.pressure_give_backs), human(s.pressure_relief_bytes).c_str(),
         static_cast<unsigned long long>(s.pressure_reliefs));
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse_args(argc, argv);
  ebbtop::Target t;
  ebbtop::Error err;
  ebbtop::LiveFile file;
  if (!ebbtop::find_target(a.pid, a.dir, &t, &err) || !file.open(t, &err)) {
    fprintf(stderr, "ebbtop: %s\n", err.message.c_str());
    return err.exit_code;
  }
  const bool tty = isatty(STDOUT_FILENO);
  for (;;) {
    ebb_live_file_t snap;
    if (!file.read(&snap, &err)) {
      fprintf(stderr, "ebbtop: %s\n", err.message.c_str());
      return err.exit_code;
    }
    const int64_t rss = ebbtop::process_rss(a.pid);
    if (rss < 0 || file.removed()) {
      if (!a.once || !ebbtop::process_alive(a.pid)) {
        fprintf(stderr, "ebbtop: process %d exited\n", a.pid);
        return a.once ? 1 : 0;
      }
    }
    const uint64_t now = ebbtop::monotonic_ms();
    const uint64_t age = now > snap.published_mono_ms ? now - snap.published_mono_ms : 0;
    if (tty && !a.once && !a.json) fputs("\033[H\033[2J", stdout);
    if (a.json) print_json(t, snap, rss, age, floor_age(snap, now));
    else print_text(t, snap, rss, age, floor_age(snap, now));
    fflush(stdout);
    if (a.once) return 0;
    // Sleep in short steps so that the exit of the process is seen soon.
    for (unsigned slept = 0; slept < a.interval_ms; slept += 100) {
      ebbtop::sleep_ms(a.interval_ms - slept < 100 ? a.interval_ms - slept : 100);
      if (!ebbtop::process_alive(a.pid) || file.removed()) {
        fprintf(stderr, "ebbtop: process %d exited\n", a.pid);
        return 0;
      }
    }
  }
}
