// The public extension API: statistics, report-now, version, options and the
// heap checker (include/ebbmalloc.h).
#include <cstddef>
#include <cstring>

#include "api/stats.h"
#include "common/log.h"
#include "ebbmalloc.h"
#include "front/floor.h"
#include "front/globals.h"
#include "front/large.h"
#include "front/thread_cache.h"
#include "os/os.h"

using namespace ebb;

namespace ebb {

static_assert(offsetof(ebb_stats_t, floor_bytes) == EBB_STATS_V2_SIZE, "version 2 ends there, for good");
static_assert(offsetof(ebb_stats_t, limit_bytes) == EBB_STATS_V3_SIZE, "version 3 ends there, for good");
static_assert(sizeof(ebb_stats_t{}.limit_path) == kCgroupPathMax, "the cgroup path fits");

void collect_limit(ebb_stats_t* s) {
  const Pressure& p = g.reporter.pressure();
  PressureSnapshot ps;
  p.snapshot(&ps);
  if (!ps.limit_bytes) return;
  s->limit_bytes = ps.limit_bytes;
  s->limit_source = static_cast<uint64_t>(ps.source);
  const uint64_t usage = p.usage_now();
  s->limit_usage_bytes = usage ? usage : ps.usage_bytes;
  s->limit_headroom_bytes = s->limit_bytes > s->limit_usage_bytes ? s->limit_bytes - s->limit_usage_bytes : 0;
  s->pressure_mark_bytes = ps.mark_bytes;
  s->pressure_passes = ps.passes;
  s->pressure_reliefs = ps.reliefs;
  s->pressure_relief_bytes = ps.relief_bytes;
  memcpy(s->limit_path, ps.path, sizeof(s->limit_path));
}

void collect_floor(ebb_stats_t* s) {
  FloorResult f;
  compute_floor(&f);
  s->process_rss_bytes = os::process_rss_bytes();
  s->floor_slab_bytes = f.slab_bytes;
  s->floor_large_bytes = f.large_bytes;
  s->floor_bytes = f.slab_bytes + f.large_bytes + f.huge_bytes;
  s->floor_walk_us = f.walk_us;
  s->floor_exact = f.exact ? 1 : 0;
  s->pinned_bytes = 0;
  s->pinned_classes = 0;
  for (unsigned k = 0; k < EBB_PINNED_TOP; ++k) s->pinned_class_size[k] = s->pinned_class_bytes[k] = 0;
  // The top classes by pinned bytes (ties: the smaller class first).
  for (unsigned c = 1; c <= kNumClasses; ++c) {
    const uint64_t b = f.pinned[c];
    s->pinned_bytes += b;
    if (b == 0) continue;
    unsigned k = s->pinned_classes < EBB_PINNED_TOP ? s->pinned_classes++ : EBB_PINNED_TOP;
    if (k == EBB_PINNED_TOP) {
      if (b <= s->pinned_class_bytes[EBB_PINNED_TOP - 1]) continue;
      k = EBB_PINNED_TOP - 1;
    }
    for (; k > 0 && s->pinned_class_bytes[k - 1] < b; --k) {
      s->pinned_class_bytes[k] = s->pinned_class_bytes[k - 1];
      s->pinned_class_size[k] = s->pinned_class_size[k - 1];
    }
    s->pinned_class_bytes[k] = b;
    s->pinned_class_size[k] = class_info(c).size;
  }
}

void collect_stats(ebb_stats_t* s, bool floor) {
  memset(s, 0, sizeof(*s));
  s->version = EBB_STATS_VERSION;
  s->num_orders = EBB_NUM_ORDERS;
  if (!initialized()) return;
  uint64_t huge_bytes, huge_count, ncaches;
  const uint64_t cached = thread_cache_bytes(&ncaches);
  const CentralTotals ct = central_totals();
  huge_totals(&huge_bytes, &huge_count);
  uint64_t frontier, meta_mapped, free_pages, reported_pages, isolated;
  {
    LockGuard h(g.heap.lock());
    const BuddyCounts& c = g.heap.buddy().counts();
    for (unsigned o = 0; o < kNumOrders; ++o) {
      s->free_blocks[o] = c.nr_free[o];
      s->reported_blocks[o] = c.nr_reported[o];
    }
    frontier = g.heap.region().frontier();
    meta_mapped = g.heap.region().metadata_mapped();
    free_pages = c.free_pages;
    reported_pages = c.reported_pages;
    isolated = c.isolated_pages;
    s->reported_fallbacks = g.heap.fallbacks();
    s->heap_given_back_bytes = g.heap.given_back_bytes();
    s->heap_give_back_calls = g.heap.give_back_calls();
    s->pressure_give_backs = g.heap.pressure_give_backs();
    s->pressure_given_back_bytes = g.heap.pressure_given_back_bytes();
    s->reported_fallback_bytes = (g.heap.fallback_pages() << kPageShift) + ct.refaulted_bytes;
  }
  const uint64_t heap_bytes = frontier << kPageShift;
  const uint64_t meta = meta_mapped + g.slab_pool.mapped_bytes();
  s->mapped_bytes = heap_bytes + huge_bytes + meta;
  s->free_warm_bytes = (free_pages - reported_pages + isolated) << kPageShift;
  s->free_reported_bytes = reported_pages << kPageShift;
  s->cached_bytes = cached + ct.free_bytes;
  s->slab_reported_bytes = ct.reported_bytes;
  s->huge_bytes = huge_bytes;
  s->metadata_bytes = meta;
  const uint64_t used_pages_bytes = heap_bytes - ((free_pages + isolated) << kPageShift);
  // In use = large blocks + slabs; live = that minus free objects held in
  // slabs and caches.
  const uint64_t in_use = used_pages_bytes + huge_bytes;
  s->live_bytes = in_use > s->cached_bytes ? in_use - s->cached_bytes : 0;
  s->resident_bytes = s->mapped_bytes - s->free_reported_bytes - s->slab_reported_bytes;
  const ReporterStats& r = g.reporter.stats();
  s->reporter_passes = r.passes.load(std::memory_order_relaxed);
  s->reporter_wakeups = r.wakeups.load(std::memory_order_relaxed);
  s->reported_blocks_total = r.blocks.load(std::memory_order_relaxed);
  s->reported_bytes_total = r.bytes.load(std::memory_order_relaxed) + s->heap_given_back_bytes;
  s->curve_keep_bytes = g.reporter.last_keep_pages() << kPageShift;
  s->slab_pages_reported_total = r.slab_pages.load(std::memory_order_relaxed);
  s->madvise_calls = r.madvise_calls.load(std::memory_order_relaxed) + s->heap_give_back_calls;
  s->madvise_failures = r.madvise_failures.load(std::memory_order_relaxed);
  s->cache_drains = r.cache_drains.load(std::memory_order_relaxed);
  s->thread_caches = ncaches;
  s->reporter_thread_running = g.reporter.thread_running() ? 1 : 0;
  collect_limit(s);
  if (floor) collect_floor(s);
}

}  // namespace ebb

namespace {

constinit ebb_options_t g_public_options{};

void field(OutBuf& o, const char* name, uint64_t v, bool json, bool first = false) {
  if (json) {
    o.str(first ? "\"" : ",\"").str(name).str("\":").u64(v);
  } else {
    o.str("  ").str(name).str(": ").u64(v).chr('\n');
  }
}

}  // namespace

extern "C" {

EBB_EXPORT int ebb_stats_sized(ebb_stats_t* out, size_t size) {
  if (!out || size < EBB_STATS_V2_SIZE) return -1;
  ebb_stats_t s;
  // The newest version that fits: 4 (all), 3 (up to the limit), 2 (no floor).
  const size_t n = size >= sizeof(ebb_stats_t) ? sizeof(ebb_stats_t) : size >= EBB_STATS_V3_SIZE ? EBB_STATS_V3_SIZE : EBB_STATS_V2_SIZE;
  collect_stats(&s, n >= EBB_STATS_V3_SIZE);
  s.version = n == sizeof(ebb_stats_t) ? EBB_STATS_VERSION : n == EBB_STATS_V3_SIZE ? 3 : 2;
  memcpy(out, &s, n);
  return 0;
}

EBB_EXPORT int(ebb_stats)(ebb_stats_t* out) { return ebb_stats_sized(out, EBB_STATS_V2_SIZE); }

EBB_EXPORT void ebb_print_stats(int fd, int json) {
  ebb_stats_t s;
  collect_stats(&s, true);
  OutBuf o(fd);
  if (json) {
    o.str("{");
    field(o, "version", s.version, true, true);
    field(o, "mapped_bytes", s.mapped_bytes, true);
    field(o, "resident_bytes", s.resident_bytes, true);
    field(o, "live_bytes", s.live_bytes, true);
    field(o, "free_warm_bytes", s.free_warm_bytes, true);
    field(o, "free_reported_bytes", s.free_reported_bytes, true);
    field(o, "cached_bytes", s.cached_bytes, true);
    field(o, "slab_reported_bytes", s.slab_reported_bytes, true);
    field(o, "huge_bytes", s.huge_bytes, true);
    field(o, "metadata_bytes", s.metadata_bytes, true);
    o.str(",\"free_blocks\":[");
    for (unsigned i = 0; i < EBB_NUM_ORDERS; ++i) o.str(i ? "," : "").u64(s.free_blocks[i]);
    o.str("],\"reported_blocks\":[");
    for (unsigned i = 0; i < EBB_NUM_ORDERS; ++i) o.str(i ? "," : "").u64(s.reported_blocks[i]);
    o.str("]");
    field(o, "reporter_passes", s.reporter_passes, true);
    field(o, "reporter_wakeups", s.reporter_wakeups, true);
    field(o, "reported_blocks_total", s.reported_blocks_total, true);
    field(o, "reported_bytes_total", s.reported_bytes_total, true);
    field(o, "slab_pages_reported_total", s.slab_pages_reported_total, true);
    field(o, "madvise_calls", s.madvise_calls, true);
    field(o, "madvise_failures", s.madvise_failures, true);
    field(o, "reported_fallbacks", s.reported_fallbacks, true);
    field(o, "reported_fallback_bytes", s.reported_fallback_bytes, true);
    field(o, "cache_drains", s.cache_drains, true);
    field(o, "thread_caches", s.thread_caches, true);
    field(o, "reporter_thread_running", s.reporter_thread_running, true);
    field(o, "floor_bytes", s.floor_bytes, true);
    field(o, "floor_slab_bytes", s.floor_slab_bytes, true);
    field(o, "floor_large_bytes", s.floor_large_bytes, true);
    field(o, "pinned_bytes", s.pinned_bytes, true);
    field(o, "process_rss_bytes", s.process_rss_bytes, true);
    field(o, "floor_walk_us", s.floor_walk_us, true);
    field(o, "floor_exact", s.floor_exact, true);
    o.str(",\"pinned_class_size\":[");
    for (unsigned i = 0; i < s.pinned_classes; ++i) o.str(i ? "," : "").u64(s.pinned_class_size[i]);
    o.str("],\"pinned_class_bytes\":[");
    for (unsigned i = 0; i < s.pinned_classes; ++i) o.str(i ? "," : "").u64(s.pinned_class_bytes[i]);
    o.str("]");
    field(o, "curve_keep_bytes", s.curve_keep_bytes, true);
    field(o, "heap_given_back_bytes", s.heap_given_back_bytes, true);
    field(o, "heap_give_back_calls", s.heap_give_back_calls, true);
    field(o, "limit_bytes", s.limit_bytes, true);
    o.str(",\"limit_source\":\"").str(limit_source_name(static_cast<LimitSource>(s.limit_source))).str("\"");
    o.str(",\"limit_path\":\"").json_str(s.limit_path).str("\"");
    field(o, "limit_usage_bytes", s.limit_usage_bytes, true);
    field(o, "limit_headroom_bytes", s.limit_headroom_bytes, true);
    field(o, "pressure_mark_bytes", s.pressure_mark_bytes, true);
    field(o, "pressure_passes", s.pressure_passes, true);
    field(o, "pressure_give_backs", s.pressure_give_backs, true);
    field(o, "pressure_given_back_bytes", s.pressure_given_back_bytes, true);
    field(o, "pressure_reliefs", s.pressure_reliefs, true);
    field(o, "pressure_relief_bytes", s.pressure_relief_bytes, true);
    o.str("}\n");
    return;
  }
  o.str("ebbmalloc statistics (").str(ebb_version()).str(")\n");
  o.str("  mapped        ").pad(12).bytes(s.mapped_bytes).chr('\n');
  o.str("  resident~     ").pad(12).bytes(s.resident_bytes).chr('\n');
  o.str("  live          ").pad(12).bytes(s.live_bytes).chr('\n');
  o.str("  free warm     ").pad(12).bytes(s.free_warm_bytes).chr('\n');
  o.str("  free reported ").pad(12).bytes(s.free_reported_bytes).chr('\n');
  o.str("  cached        ").pad(12).bytes(s.cached_bytes).chr('\n');
  o.str("  slab reported ").pad(12).bytes(s.slab_reported_bytes).chr('\n');
  o.str("  huge          ").pad(12).bytes(s.huge_bytes).chr('\n');
  o.str("  metadata      ").pad(12).bytes(s.metadata_bytes).chr('\n');
  // The resident floor: pages holding a live byte, what a non-moving
  // allocator could shrink the heap to at best; RSS against it.
  o.str("  floor         ").pad(12).bytes(s.floor_bytes).str("  (pages with a live byte: slabs ").bytes(s.floor_slab_bytes);
  o.str(", large ").bytes(s.floor_large_bytes).str(", huge ").bytes(s.huge_bytes);
  o.str("; walk ").u64(s.floor_walk_us).str(" us").str(s.floor_exact ? "" : ", inexact").str(")\n");
  if (s.process_rss_bytes) {
    o.str("  process RSS   ").pad(12).bytes(s.process_rss_bytes);
    if (s.process_rss_bytes >= s.floor_bytes) o.str("  (floor + ").bytes(s.process_rss_bytes - s.floor_bytes).str(")\n");
    else o.str("  (below the floor: part of it is swapped out)\n");
  }
  o.str("  pinned        ").pad(12).bytes(s.pinned_bytes).str("  (free objects on pages in the floor)");
  for (unsigned i = 0; i < s.pinned_classes; ++i)
    o.str(i ? ", " : ": ").u64(s.pinned_class_size[i]).str(" B ").bytes(s.pinned_class_bytes[i]);
  o.chr('\n');
  o.str("  order  block-size   free  reported\n");
  for (unsigned i = 0; i < EBB_NUM_ORDERS; ++i) {
    if (!s.free_blocks[i]) continue;
    o.str("  ").pad(5).u64(i).str("  ").pad(10).bytes(uint64_t{4096} << i).pad(7).u64(s.free_blocks[i]);
    o.pad(10).u64(s.reported_blocks[i]).chr('\n');
  }
  field(o, "reporter passes", s.reporter_passes, false);
  field(o, "reporter wakeups", s.reporter_wakeups, false);
  field(o, "blocks reported", s.reported_blocks_total, false);
  o.str("  bytes reported: ").bytes(s.reported_bytes_total).chr('\n');
  field(o, "slab pages reported", s.slab_pages_reported_total, false);
  field(o, "madvise calls", s.madvise_calls, false);
  field(o, "madvise failures", s.madvise_failures, false);
  o.str("  kept warm by the return curve: ").bytes(s.curve_keep_bytes).chr('\n');
  o.str("  given back by the heap before faulting in: ").bytes(s.heap_given_back_bytes).str(" in ");
  o.u64(s.heap_give_back_calls).str(" madvise calls\n");
  if (s.limit_bytes) {
    // Where the limit comes from, how full it is, what pressure did.
    o.str("  memory limit  ").pad(12).bytes(s.limit_bytes).str("  (").str(limit_source_name(static_cast<LimitSource>(s.limit_source)));
    if (s.limit_path[0]) o.str(" of ").str(s.limit_path);
    o.str("; pressure at ").bytes(s.pressure_mark_bytes).str(")\n");
    o.str("  limit usage   ").pad(12).bytes(s.limit_usage_bytes).str("  (headroom ").bytes(s.limit_headroom_bytes).str(")\n");
    field(o, "pressure passes", s.pressure_passes, false);
    o.str("  given back by the heap under pressure: ").bytes(s.pressure_given_back_bytes).str(" in ");
    o.u64(s.pressure_give_backs).str(" give-backs; slab pages by allocating threads: ");
    o.bytes(s.pressure_relief_bytes).str(" in ").u64(s.pressure_reliefs).str(" reliefs\n");
  } else {
    o.str("  memory limit: none\n");
  }
  field(o, "fallbacks to reported memory", s.reported_fallbacks, false);
  o.str("  reported memory reused: ").bytes(s.reported_fallback_bytes).chr('\n');
  field(o, "idle caches drained", s.cache_drains, false);
  field(o, "thread caches", s.thread_caches, false);
}

EBB_EXPORT size_t ebb_report_now(void) {
  if (!ensure_init()) return 0;
  thread_cache_flush_mine();
  return static_cast<size_t>(g.reporter.report_all());
}

#ifndef EBB_VERSION
#error "EBB_VERSION (the project version) is defined by lib/CMakeLists.txt"
#endif
EBB_EXPORT const char* ebb_version(void) { return "ebbmalloc " EBB_VERSION; }

EBB_EXPORT const ebb_options_t* ebb_options(void) {
  ensure_init();
  const Options& o = g.opts;
  ebb_options_t& p = g_public_options;
  p.reporter = o.reporter;
  p.delay_ms = o.delay_ms;
  p.cold_ms = o.cold_ms;
  p.report_order = o.report_order;
  p.batch = o.batch;
  p.madvise_free = o.madv_free;
  p.stats = static_cast<int>(o.stats);
  p.verbose = o.verbose;
  p.reserve_gb = o.reserve_gb;
  p.split_warm = o.split_warm;
  p.report_mark_kb = o.report_mark_kb;
  p.check = o.check;
  p.live_stats = o.live_stats;
  p.live_stats_ms = o.live_stats_ms;
  p.reporter_linger_ms = o.linger_ms;
  p.thread_cache_kb = o.thread_cache_kb;
  p.harden = o.harden;
  p.limit_mb = o.limit_mb;
  p.pressure_pct = o.pressure_pct;
  p.madvise_batch = o.madvise_batch;
  return &p;
}

EBB_EXPORT unsigned ebb_check_heap(void) {
  if (!ensure_init()) return 0;
  unsigned errors = central_check(true);
  LockGuard h(g.heap.lock());
  return errors + g.heap.buddy().check(true);
}

}  // extern "C"
