#include "front/floor.h"

#include "common/log.h"
#include "front/central.h"
#include "front/free_list.h"
#include "front/globals.h"
#include "front/large.h"
#include "front/slab_geometry.h"
#include "front/thread_cache.h"
#include "heap/page_desc.h"
#include "os/os.h"

namespace ebb {

namespace {

// Objects in thread caches, transfer batches and the quarantine are free,
// but their slab's bitmap counts them as taken. While everything is held,
// their bits are set for the walk (kMark) and cleared again after it
// (kUnmark): nobody else can see the bitmaps in between. An object whose bit
// is set already when kMark comes to it is free twice (in its slab and in a
// list, or in two lists): a double free no check caught yet, which aborts
// here as it would when the object reached its slab.
enum class Pass { kMark, kUnmark };

struct MarkCtx {
  Pass pass;
  unsigned cls;
};

void mark_object(void* obj, void* ctx) {
  const MarkCtx& m = *static_cast<const MarkCtx*>(ctx);
  const SizeClass& sc = class_info(m.cls);
  const PageDesc& d = g.heap.region().descs()[g.heap.region().page_index(obj)];
  if (d.kind != PageKind::kSlab || !d.slab || d.slab->cls != m.cls)
    fatal_corrupt_list(Fn::kNone, obj, "a list of free objects");
  Slab* s = d.slab;
  const uint64_t i = (static_cast<uint64_t>(static_cast<char*>(obj) - s->start) * sc.magic) >> 32;
  uint64_t& word = s->bits[i >> 6];
  const uint64_t bit = uint64_t{1} << (i & 63);
  if (m.pass == Pass::kUnmark) {
    word &= ~bit;
  } else {
    if (word & bit) fatal_pointer("double free of", obj, "a free object is also free in its slab or in another list");
    word |= bit;
  }
}

// The class's bin lock held (and the caches, if `readable`, held still).
void visit_free_taken(unsigned cls, bool readable, MarkCtx* m) {
  thread_caches_visit(cls, readable, &mark_object, m);
  const CentralBin& bin = g.bins[cls];
  for (unsigned t = 0; t < bin.ntransfer; ++t) {
    const void* x = bin.transfer[t].head;
    for (uint32_t k = 0; k < bin.transfer[t].count; ++k) {
      if (!valid_free_object(x, cls)) fatal_corrupt_list(Fn::kNone, x, "a transfer batch");
      mark_object(const_cast<void*>(x), m);
      x = link_load(x);
    }
  }
  central_visit_quarantine(cls, &mark_object, m);
}

bool bit_set(const Slab* s, uint32_t i) { return (s->bits[i >> 6] >> (i & 63)) & 1; }

uint32_t free_in_range(const Slab* s, uint32_t a, uint32_t b) {
  uint32_t n = 0;
  for_bit_range(a, b, [&](uint32_t w, uint64_t m) { n += static_cast<uint32_t>(__builtin_popcountll(s->bits[w] & m)); });
  return n;
}

// Bytes of object i of size `size` lying on slab page p.
uint64_t overlap(uint64_t size, uint32_t i, uint32_t p) {
  const uint64_t lo = uint64_t{i} * size, hi = lo + size;
  const uint64_t plo = uint64_t{p} << kPageShift, phi = plo + kPageSize;
  return (hi < phi ? hi : phi) - (lo > plo ? lo : plo);
}

// Every bin and the heap locked, free objects marked. Adds the slab's floor
// pages and pinned bytes.
void slab_floor(const Slab* s, FloorResult* out) {
  const SizeClass& sc = class_info(s->cls);
  const uint32_t n = slab_pages(sc);
  for (uint32_t p = 0; p < n; ++p) {
    if ((s->iso_pages >> p) & 1) continue;  // wholly free, being given back
    uint32_t a, b;
    if (!objects_of_page(sc, p, &a, &b)) continue;  // slack
    // Free: the bit is set, or (an object reaching into a neighbour page)
    // it lies on a page the reporter isolated.
    auto is_free = [&](uint32_t i) { return bit_set(s, i) || (pages_of_object(sc, i) & s->iso_pages) != 0; };
    const bool a_free = is_free(a), b_free = b != a && is_free(b);
    uint32_t nfree = free_in_range(s, a, b);
    if (a_free && !bit_set(s, a)) ++nfree;
    if (b_free && !bit_set(s, b)) ++nfree;
    if (nfree == b - a + 1) continue;  // no live object on the page
    out->slab_bytes += kPageSize;
    uint64_t free_bytes = uint64_t{nfree} * sc.size;
    if (a_free) free_bytes -= sc.size - overlap(sc.size, a, p);
    if (b_free) free_bytes -= sc.size - overlap(sc.size, b, p);
    out->pinned[s->cls] += free_bytes;
  }
}

// Every bin and the heap locked: one walk over the heap's blocks, from head
// to head (as Buddy::check walks them).
void walk_heap(FloorResult* out) {
  const PageDesc* d = g.heap.region().descs();
  const uint32_t frontier = g.heap.region().frontier();
  for (uint32_t i = 0; i < frontier;) {
    const PageDesc& h = d[i];
    uint32_t span = 1;
    switch (h.kind) {
      case PageKind::kFreeHead:
      case PageKind::kIsolated:
        span = uint32_t{1} << h.order;
        break;
      case PageKind::kLargeHead:
        span = h.npages ? h.npages : 1;
        if (!(h.flags & kPageNotLive))
          out->large_bytes += uint64_t{(h.flags & kPageHardened) ? h.npages - 1 : h.npages} << kPageShift;
        break;
      case PageKind::kSlab:
        if (h.slab && h.slab->page == i) {
          span = slab_pages(class_info(h.slab->cls));
          slab_floor(h.slab, out);
        }
        break;
      case PageKind::kFreeTail:
        break;
    }
    i += span;
  }
}

void floor_held(bool readable, void* ctx) {
  FloorResult* out = static_cast<FloorResult*>(ctx);
  for (unsigned c = 1; c <= kNumClasses; ++c) g.bins[c].lock.lock();
  for (unsigned c = 1; c <= kNumClasses; ++c) {
    MarkCtx m{Pass::kMark, c};
    visit_free_taken(c, readable, &m);
  }
  {
    LockGuard h(g.heap.lock());
    walk_heap(out);
  }
  for (unsigned c = 1; c <= kNumClasses; ++c) {
    MarkCtx m{Pass::kUnmark, c};
    visit_free_taken(c, readable, &m);
  }
  for (unsigned c = kNumClasses; c >= 1; --c) g.bins[c].lock.unlock();
  out->exact = readable;
}

}  // namespace

void compute_floor(FloorResult* out) {
  *out = FloorResult{};
  if (!initialized()) return;
  const uint64_t t0 = os::now_us();
  with_thread_caches_held(&floor_held, out);
  uint64_t huge_count;
  huge_totals(&out->huge_bytes, &huge_count);
  out->walk_us = os::now_us() - t0;
}

}  // namespace ebb
