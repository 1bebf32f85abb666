#include "buddy/page_heap.h"

#include "common/check.h"
#include "common/log.h"
#include "os/os.h"

namespace ebb {

namespace {
// The frontier advances at least this much at a time (two pageblocks):
// mapping is cheap, fresh memory stays non-resident until used.
constexpr uint32_t kGrowPages = uint32_t{2} * (kPageblockSize >> kPageShift);
}  // namespace

bool PageHeap::init(size_t max_bytes, std::atomic<size_t>* extent, unsigned report_order, uint64_t mark_pages,
                    Buddy::NotifyFn notify, bool verbose) {
  verbose_ = verbose;
  notify_ = notify;
  if (!region_.init(max_bytes, extent)) return false;
  buddy_.init(region_.descs(), &region_.reported(), &frontier_, report_order, mark_pages, notify);
  return true;
}

bool PageHeap::grow_for(unsigned order, uint64_t now) {
  const uint32_t need = uint32_t{1} << order;
  const uint32_t start = static_cast<uint32_t>(align_up(region_.frontier(), need));
  return grow_to(uint64_t{start} + need, uint64_t{start} + (need > kGrowPages ? need : kGrowPages), now);
}

bool PageHeap::grow_to(uint64_t need_end, uint64_t want_end, uint64_t now) {
  const uint32_t old = region_.frontier();
  uint64_t end = want_end > need_end ? want_end : need_end;
  if (end > region_.total_pages()) end = need_end;
  if (end > region_.total_pages() || !region_.grow(static_cast<uint32_t>(end))) return false;
  // With EBBMALLOC_VERBOSE, say when the heap first serves memory: tests use
  // it to check that a preloaded program really allocates from ebbmalloc.
  if (verbose_ && old == 0) log_line("heap: first allocation served");
  frontier_ = region_.frontier();
  buddy_.add_fresh(old, static_cast<uint32_t>(end) - old, now);
  in_use_hint_.store(in_use_pages(), std::memory_order_relaxed);
  if (headroom_.discover && !discover_called_ && (uint64_t{frontier_} << kPageShift) >= Headroom::kDiscoverBytes) {
    discover_called_ = true;
    headroom_.discover();
  }
  // Growing while free pages sit in slabs or fragments: the reporter's next
  // pass gives those back without waiting (ReturnCurve::plan, `growing`).
  if (notify_ && old != 0) notify_();
  return true;
}

bool PageHeap::take(uint32_t npages, unsigned order, unsigned align_order, uint64_t now, Buddy::Group group,
                    uint32_t* idx, uint32_t* size) {
  // Runs serve requests of a pageblock or more that are not a power of two
  // (alignment up to a pageblock: runs start on one).
  const bool runnable = npages >= (uint32_t{1} << kPageblockOrder) && !is_pow2(npages) &&
                        align_order <= kPageblockOrder;
  constexpr unsigned kRunStarts = 256;
  bool warm_block = false;
  for (unsigned o = order; o <= kMaxOrder && !warm_block; ++o) warm_block = buddy_.has_warm(o);
  Buddy::Block b;
  // Warm memory first: a warm block (split), else the run with the most
  // warm pages, else reported memory as a block or a run, else fresh memory.
  if (!warm_block && runnable && buddy_.alloc_run(npages, 1, now, kRunStarts, idx)) {
    *size = npages;
    return true;
  }
  // (The other group's reported memory only when the heap cannot grow.)
  if (buddy_.alloc(order, now, &b, group, /*steal_reported=*/false)) {
    *idx = b.idx;
    *size = uint32_t{1} << b.order;
    return true;
  }
  if (runnable && buddy_.alloc_run(npages, 0, now, kRunStarts, idx)) {
    *size = npages;
    return true;
  }
  // Fresh memory; the other group's reported blocks if the heap cannot grow.
  const bool grown = grow_for(order, now);
  if (!buddy_.alloc(order, now, &b, group, /*steal_reported=*/!grown)) return false;
  *idx = b.idx;
  *size = uint32_t{1} << b.order;
  return true;
}

bool PageHeap::alloc_pages(uint32_t npages, unsigned align_order, PageRun* out, bool keep_reported,
                           Buddy::Group group) {
  unsigned order = log2_ceil(npages);
  if (order < align_order) order = align_order;
  if (order > kMaxOrder) return false;
  const uint64_t now = os::now_ms();
  uint32_t idx, size;
  if (!take(npages, order, align_order, now, group, &idx, &size)) return false;
  // A block longer than the request: its tail goes back at once (with its
  // reported bits: the tail of a reported block stays reported).
  if (npages < size) buddy_.free_range(idx + npages, size - npages, true, now);
  out->idx = idx;
  out->npages = npages;
  out->reported = settle(idx, npages, keep_reported, now);
  return true;
}

uint32_t PageHeap::settle(uint32_t idx, uint32_t npages, bool keep_reported, uint64_t now) {
  const uint32_t used_rep = buddy_.count_reported(idx, npages);
  if (used_rep && !keep_reported) {
    buddy_.clear_reported(idx, npages);
    ++fallbacks_;
    fallback_pages_ += used_rep;
    if (npages >= (uint32_t{1} << kPageblockOrder)) give_back_warm(used_rep, in_use_pages() / 5, 64, now);
  }
  // (Slab pages are counted when taken: the slab faults them in one by one.)
  if (used_rep) check_headroom(used_rep, now);
  drawn_pages_ += npages;
  const uint64_t used = in_use_pages();
  if (used >= in_use_peak_) {
    in_use_peak_ = used;
    in_use_peak_ms_ = now;
  }
  return used_rep;
}

bool PageHeap::extend(uint32_t idx, uint32_t npages, uint32_t more) {
  const uint32_t a = idx + npages;
  if (uint64_t{a} + more > region_.total_pages()) return false;
  const uint64_t now = os::now_ms();
  // Free pages up to the frontier and the rest beyond it: the heap grows
  // under the block (a program growing its last buffer).
  const uint32_t free = buddy_.free_pages_from(a, more);
  if (free < more) {
    const uint64_t need = uint64_t{a} + more;
    if (a + free != region_.frontier() || !grow_to(need, uint64_t{a} + (more > kGrowPages ? more : kGrowPages), now))
      return false;
  }
  if (!buddy_.take_range(a, more)) return false;
  settle(a, more, false, now);
  return true;
}

uint64_t PageHeap::give_back_warm(uint64_t pages, uint64_t cushion, unsigned max_blocks, uint64_t now,
                                  bool largest) {
  // A large request keeps a cushion of a fifth of what is in use warm (the
  // next requests take it without faults) and gives back the rest, up to
  // what it faults in, whatever its age: otherwise a program whose freed
  // blocks do not fit its next requests grows by every one of them. (An
  // eighth: `largeblock --scale 0.5` peaked at 404 MiB with 295-305k minor
  // faults in 0.59-0.71 s; a fifth: 422-424 MiB, 223-251k, 0.52-0.57 s;
  // glibc 429 MiB, 242k, 0.47-0.51 s.) Under pressure there is no cushion.
  const uint64_t warm = buddy_.warm_reportable_pages();
  if (warm <= cushion) return 0;
  if (pages > warm - cushion) pages = warm - cushion;
  const uint64_t want = pages << kPageShift;
  uint64_t given = 0;
  // The last block taken gives back only what is still wanted, and what it
  // keeps resident keeps its free time: a 16 MiB block for 2.6 MiB to fault
  // in gave back 6x what was asked, which the next requests faulted back
  // (`largeblock`: 1.2 GiB given back to fault in 0.63 GiB over a run).
  // Blocks are taken until their resident pages cover what is wanted, and
  // their runs given back together (advise_blocks: one system call for up
  // to 64 of them; `pressure` gave back 560 MiB in 10.7k calls a run, one a
  // block).
  uint32_t ids[os::kAdviseBatch];
  uint64_t freed[os::kAdviseBatch];
  bool ok[os::kAdviseBatch];
  for (unsigned taken = 0; given < want && taken < max_blocks;) {
    const unsigned n = isolate_for(want - given, max_blocks - taken, largest, now, ids, freed);
    if (n == 0) break;
    taken += n;
    const bool all = advise_blocks(ids, n, ok, &given, &give_back_calls_, (want - given) >> kPageShift);
    // (The bits say what went back; a failed call is retried once cold again.)
    for (unsigned k = 0; k < n; ++k) buddy_.putback(ids[k], false, ok[k] ? freed[k] : now);
    if (!all) break;
  }
  given_back_bytes_ += given;
  if (verbose_) {
    OutBuf o(2);
    o.str("ebbmalloc: heap: gave back ").bytes(given).str(" of warm free memory before faulting in ");
    o.bytes(pages << kPageShift).chr('\n');
  }
  return given;
}

unsigned PageHeap::isolate_for(uint64_t bytes, unsigned max, bool largest, uint64_t now, uint32_t* ids,
                               uint64_t* freed) {
  unsigned n = 0;
  uint64_t resident = 0;
  uint32_t i;
  while (n < os::kAdviseBatch && n < max && resident < bytes &&
         (largest ? buddy_.isolate_largest(&i) : buddy_.isolate_coldest(now, &i))) {
    const PageDesc& h = region_.descs()[i];
    resident += (uint64_t{(uint32_t{1} << h.order) - h.nrep}) << kPageShift;
    freed[n] = h.stamp;
    ids[n++] = i;
  }
  return n;
}

void PageHeap::check_headroom(uint64_t pages, uint64_t now) {
  const uint64_t mark = headroom_.mark.load(std::memory_order_relaxed);
  if (!mark) return;
  const uint64_t bytes = pages << kPageShift;
  uint64_t est = headroom_.estimate.fetch_add(bytes, std::memory_order_relaxed) + bytes;
  headroom_.ahead.fetch_add(bytes, std::memory_order_relaxed);
  if (est < mark) return;
  // The estimate only learns what the heap faults in (and what the reporter
  // samples): before acting on it, read the usage itself, at most once per
  // millisecond.
  if (headroom_.sample && now != headroom_sampled_ms_) {
    headroom_sampled_ms_ = now;
    const uint64_t usage = headroom_.sample();
    if (usage) {
      est = usage + bytes;
      headroom_.estimate.store(est, std::memory_order_relaxed);
      headroom_.ahead.store(bytes, std::memory_order_relaxed);
      if (est < mark) return;
    }
    // The reporter's pressure pass gives back what the heap cannot reach
    // from here (thread caches, free pages of slabs).
    if (headroom_.urge) headroom_.urge();
  }
  // Largest blocks first: what goes back is what the usage is over the
  // target by, in as few calls as possible (a mass of 64 KiB blocks, coldest
  // first, cost the pressure workload 25k madvise calls per run; giving back
  // only what it was over the mark by, a give-back for every request).
  const uint64_t target = headroom_.target.load(std::memory_order_relaxed);
  const uint64_t over = est > target ? est - target : 0;
  const uint64_t given = give_back_warm((over + kPageSize - 1) >> kPageShift, 0, 1024, now, true);
  if (!given) return;
  headroom_release(given);
  ++pressure_give_backs_;
  pressure_given_back_ += given;
}

void PageHeap::headroom_map(uint64_t bytes) {
  if (!headroom_.mark.load(std::memory_order_relaxed)) return;
  LockGuard g(lock_);
  check_headroom((bytes + kPageSize - 1) >> kPageShift, os::now_ms());
}

bool PageHeap::advise_blocks(const uint32_t* ids, unsigned n, bool* ok, uint64_t* released, uint64_t* calls,
                             uint64_t max_pages) {
  ReportedBits& bits = region_.reported();
  os::Range r[os::kAdviseBatch];
  uint32_t first[os::kAdviseBatch], count[os::kAdviseBatch];
  unsigned owner[os::kAdviseBatch];
  bool done[os::kAdviseBatch];
  unsigned m = 0;
  bool all = true;
  // The bits of a run are set once it went back (atomic word ops: the words
  // are shared with other blocks' pages).
  auto flush = [&] {
    *calls += os::advise_free_ranges(r, m, lazy_, done);
    for (unsigned k = 0; k < m; ++k) {
      if (done[k]) {
        *released += r[k].size;
        bits.set(first[k], count[k]);
      } else {
        ok[owner[k]] = all = false;
      }
    }
    m = 0;
  };
  for (unsigned i = 0; i < n; ++i) {
    ok[i] = true;
    const uint32_t end = ids[i] + (uint32_t{1} << region_.descs()[ids[i]].order);
    uint32_t a, b;
    for (uint32_t k = ids[i]; max_pages && bits.next_clear_run(k, end, &a, &b); k = b) {
      if (b - a > max_pages) b = a + static_cast<uint32_t>(max_pages);
      r[m] = {region_.page_addr(a), size_t{b - a} << kPageShift};
      first[m] = a;
      count[m] = b - a;
      owner[m] = i;
      max_pages -= b - a;
      if (++m == os::kAdviseBatch) flush();
    }
  }
  if (m) flush();
  return all;
}

void PageHeap::free_pages(uint32_t idx, uint32_t npages, bool count_reported, uint64_t freed_at) {
  const uint64_t now = os::now_ms();
  // Leaving the peak: the heap had it in use until now.
  if (in_use_pages() >= in_use_peak_) in_use_peak_ms_ = now;
  buddy_.free_range(idx, npages, count_reported, freed_at && freed_at < now ? freed_at : now);
}

}  // namespace ebb
