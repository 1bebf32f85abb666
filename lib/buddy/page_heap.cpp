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
  if (!region_.init(max_bytes, extent)) return false;
  buddy_.init(region_.descs(), &region_.reported(), &frontier_, report_order, mark_pages, notify);
  return true;
}

bool PageHeap::grow_for(unsigned order, uint64_t now) {
  const uint32_t need = uint32_t{1} << order;
  const uint32_t old = region_.frontier();
  const uint32_t start = static_cast<uint32_t>(align_up(old, need));
  uint64_t end = uint64_t{start} + (need > kGrowPages ? need : kGrowPages);
  if (end > region_.total_pages()) end = uint64_t{start} + need;
  if (end > region_.total_pages() || !region_.grow(static_cast<uint32_t>(end))) return false;
  // With EBBMALLOC_VERBOSE, say when the heap first serves memory: tests use
  // it to check that a preloaded program really allocates from ebbmalloc.
  if (verbose_ && old == 0) log_line("heap: first allocation served");
  frontier_ = region_.frontier();
  buddy_.add_fresh(old, static_cast<uint32_t>(end) - old, now);
  return true;
}

bool PageHeap::alloc_pages(uint32_t npages, unsigned align_order, PageRun* out,
                           bool keep_reported) {
  unsigned order = log2_ceil(npages);
  if (order < align_order) order = align_order;
  if (order > kMaxOrder) return false;
  const uint64_t now = os::now_ms();
  Buddy::Block b;
  if (!buddy_.alloc(order, now, &b)) {
    if (!grow_for(order, now) || !buddy_.alloc(order, now, &b)) return false;
  }
  const uint32_t size = uint32_t{1} << b.order;
  uint32_t used_rep = 0;
  if (b.nrep) used_rep = b.nrep == size ? npages : buddy_.count_reported(b.idx, npages);
  if (npages < size) buddy_.free_range(b.idx + npages, size - npages, b.nrep != 0, now);
  if (used_rep && !keep_reported) {
    buddy_.clear_reported(b.idx, npages);
    ++fallbacks_;
    fallback_pages_ += used_rep;
  }
  drawn_pages_ += npages;
  const uint64_t used = in_use_pages();
  if (used > in_use_peak_) in_use_peak_ = used;
  out->idx = b.idx;
  out->npages = npages;
  out->reported = used_rep;
  return true;
}

void PageHeap::free_pages(uint32_t idx, uint32_t npages, bool count_reported, uint64_t freed_at) {
  const uint64_t now = os::now_ms();
  buddy_.free_range(idx, npages, count_reported, freed_at && freed_at < now ? freed_at : now);
}

}  // namespace ebb
