#include "report/pressure.h"

#include <cstring>

#include "common/log.h"
#include "os/os.h"

namespace ebb {

namespace {
constexpr uint64_t kRereadMs = 1000;  // a cgroup's limit is re-read at most this often

Pressure* g_self = nullptr;  // for the heap's sample hook (one Pressure per process)
uint64_t sample_hook() { return g_self ? g_self->usage_now() : 0; }
void discover_hook() {
  if (g_self) g_self->discover();
}
}  // namespace

void Pressure::set_limit(uint64_t limit, LimitSource source) {
  limit_.store(limit, std::memory_order_relaxed);
  source_.store(static_cast<uint32_t>(source), std::memory_order_relaxed);
  // A mark of at least a page, so that "mark 0" keeps meaning "no limit".
  uint64_t mark = limit / 100 * opts_->pressure_pct + limit % 100 * opts_->pressure_pct / 100;
  if (limit && mark < kPageSize) mark = kPageSize;
  // Below the mark by half its distance to the limit (85% of the limit with
  // the default mark): what goes back at the mark makes room for the next
  // few requests too, instead of a give-back (a usage read, madvise calls)
  // for every one of them.
  const uint64_t gap = limit > mark ? (limit - mark) / 2 : 0;
  heap_->headroom().target.store(mark > gap ? mark - gap : 0, std::memory_order_relaxed);
  heap_->headroom().mark.store(mark, std::memory_order_relaxed);
}

void Pressure::init(const Options* opts, PageHeap* heap) {
  opts_ = opts;
  heap_ = heap;
  g_self = this;
  if (!opts->reporter || opts->limit_mb == 0) return;
  heap->headroom().sample = &sample_hook;
  if (opts->limit_mb != kLimitAuto) {
    set_limit(uint64_t{opts->limit_mb} << 20, LimitSource::kOption);
    watching_.store(true, std::memory_order_release);
    start_estimate();
    return;
  }
  // The cgroup is looked up later (discover()): reading its files costs a
  // process ~0.3 ms at start-up (1.24 -> 1.59 ms for /bin/true), and a
  // program with a small heap has nothing to give back anyway.
  pending_.store(true, std::memory_order_release);
  heap->headroom().discover = &discover_hook;
}

void Pressure::discover() {
  bool expected = true;
  if (!pending_.compare_exchange_strong(expected, false, std::memory_order_acq_rel)) return;
  // A cgroup without a limit is watched too: one can be set later (a
  // container resized in place).
  CgroupLimit& c = cg_[0];
  if (!discover_cgroup(CgroupFiles{}, &c)) return;
  cur_.store(&c, std::memory_order_release);
  set_limit(c.limit_bytes, c.source);
  watching_.store(true, std::memory_order_release);
  start_estimate();
}

void Pressure::start_estimate() {
  if (!active()) return;
  const uint64_t usage = usage_now();
  usage_.store(usage, std::memory_order_relaxed);
  heap_->headroom().estimate.store(usage, std::memory_order_relaxed);
  if (opts_->verbose) {
    OutBuf o(2);
    o.str("ebbmalloc: memory limit ").bytes(limit_.load(std::memory_order_relaxed)).str(" (");
    o.str(limit_source_name(static_cast<LimitSource>(source_.load(std::memory_order_relaxed))));
    const CgroupLimit* c = cur_.load(std::memory_order_acquire);
    if (c) o.str(" of ").str(c->limit_dir);
    o.str("), pressure at ").bytes(mark_bytes()).str(", usage ").bytes(usage).chr('\n');
  }
}

uint64_t Pressure::usage_now() const {
  const CgroupLimit* c = cur_.load(std::memory_order_acquire);
  if (!c) return os::process_rss_bytes();
  const uint64_t mark = mark_bytes();
  return mark ? cgroup_usage(*c, mark) : 0;
}

uint64_t Pressure::sample(uint64_t now) {
  const CgroupLimit* c = cur_.load(std::memory_order_acquire);
  if (c && now >= reread_at_) {
    reread_at_ = now + kRereadMs;
    CgroupLimit& next = c == &cg_[0] ? cg_[1] : cg_[0];
    next = *c;
    if (reread_cgroup_limit(&next)) {
      if (strcmp(next.limit_dir, c->limit_dir) != 0) cur_.store(&next, std::memory_order_release);
      set_limit(next.limit_bytes, next.source);
    }
  }
  if (!active()) return 0;
  const uint64_t usage = usage_now();
  if (usage) {
    usage_.store(usage, std::memory_order_relaxed);
    Headroom& h = heap_->headroom();
    h.estimate.store(usage + h.ahead.exchange(0, std::memory_order_relaxed), std::memory_order_relaxed);
  }
  return usage;
}

void Pressure::snapshot(PressureSnapshot* out) const {
  out->limit_bytes = limit_.load(std::memory_order_relaxed);
  out->mark_bytes = mark_bytes();
  out->usage_bytes = usage_.load(std::memory_order_relaxed);
  out->passes = passes_.load(std::memory_order_relaxed);
  out->reliefs = reliefs_.load(std::memory_order_relaxed);
  out->relief_bytes = relief_bytes_.load(std::memory_order_relaxed);
  out->source = static_cast<LimitSource>(source_.load(std::memory_order_relaxed));
  out->path[0] = 0;
  const CgroupLimit* c = cur_.load(std::memory_order_acquire);
  if (c) {
    const size_t n = strnlen(c->limit_dir, sizeof(out->path) - 1);
    memcpy(out->path, c->limit_dir, n);
    out->path[n] = 0;
  }
}

}  // namespace ebb
