#include "front/central.h"

#include "common/check.h"
#include "common/log.h"
#include "front/globals.h"

namespace ebb {

namespace {

void partial_push(CentralBin& bin, Slab* s) {
  s->prev = nullptr;
  s->next = bin.partial;
  if (bin.partial) bin.partial->prev = s;
  bin.partial = s;
  s->on_partial = true;
}

void partial_remove(CentralBin& bin, Slab* s) {
  if (s->prev) s->prev->next = s->next;
  else bin.partial = s->next;
  if (s->next) s->next->prev = s->prev;
  s->prev = s->next = nullptr;
  s->on_partial = false;
}

// Bin lock held. Carves a new slab from the page heap.
Slab* new_slab(unsigned cls) {
  const SizeClass& sc = class_info(cls);
  Slab* s = g.slab_pool.get();
  if (!s) return nullptr;
  const uint32_t npages = uint32_t{1} << sc.slab_order;
  PageRun run;
  bool ok;
  {
    LockGuard h(g.heap.lock());
    ok = g.heap.alloc_pages(npages, 0, &run);
    if (ok) {
      PageDesc* d = g.heap.region().descs();
      uint8_t* pc = g.heap.region().page_class();
      for (uint32_t k = 0; k < npages; ++k) {
        d[run.idx + k].kind = PageKind::kSlab;
        d[run.idx + k].slab = s;
        pc[run.idx + k] = static_cast<uint8_t>(cls);
      }
      debug_check_heap_locked();
    }
  }
  if (!ok) {
    g.slab_pool.put(s);  // outside the heap lock: the lock order is slab pool -> heap
    return nullptr;
  }
  s->start = g.heap.region().page_addr(run.idx);
  s->cls = cls;
  s->page = run.idx;
  s->nfree = sc.objects;
  s->hint = 0;
  for (uint32_t w = 0; w < kMaxSlabObjects / 64; ++w) {
    const uint32_t lo = w * 64;
    if (lo + 64 <= sc.objects) s->bits[w] = ~uint64_t{0};
    else if (lo < sc.objects) s->bits[w] = (uint64_t{1} << (sc.objects - lo)) - 1;
    else s->bits[w] = 0;
  }
  return s;
}

// Bin lock held; the slab has no live object left.
void release_slab(CentralBin& bin, Slab* s) {
  const uint32_t npages = uint32_t{1} << class_info(s->cls).slab_order;
  if (s->on_partial) partial_remove(bin, s);
  bin.slabs--;
  bin.free_objects -= s->nfree;
  {
    LockGuard h(g.heap.lock());
    uint8_t* pc = g.heap.region().page_class();
    for (uint32_t k = 0; k < npages; ++k) pc[s->page + k] = 0;
    g.heap.free_pages(s->page, npages);
    debug_check_heap_locked();
  }
  g.slab_pool.put(s);
}

// Bin lock held. Marks one object free; aborts on an invalid or double free.
void free_object(CentralBin& bin, unsigned cls, void* p) {
  const SizeClass& sc = class_info(cls);
  const uint32_t page = g.heap.region().page_index(p);
  const PageDesc& d = g.heap.region().descs()[page];
  if (d.kind != PageKind::kSlab || !d.slab || d.slab->cls != cls)
    fatal_pointer("free(): invalid pointer", p, "not an object allocated by ebbmalloc");
  Slab* s = d.slab;
  const uint64_t off = static_cast<uint64_t>(static_cast<char*>(p) - s->start);
  const uint64_t i = (off * sc.magic) >> 32;
  if (i * sc.size != off || i >= sc.objects)
    fatal_pointer("free(): invalid pointer", p, "points inside an object, not at its start");
  const uint64_t bit = uint64_t{1} << (i & 63);
  if (s->bits[i >> 6] & bit) fatal_pointer("free(): double free of", p, "the object is already free");
  s->bits[i >> 6] |= bit;
  if (i / 64 < s->hint) s->hint = static_cast<uint32_t>(i / 64);
  s->nfree++;
  bin.free_objects++;
  if (s->nfree == sc.objects) {
    release_slab(bin, s);
  } else if (!s->on_partial) {
    partial_push(bin, s);
  }
}

}  // namespace

unsigned central_alloc_batch(unsigned cls, unsigned want, void** head) {
  const SizeClass& sc = class_info(cls);
  CentralBin& bin = g.bins[cls];
  LockGuard bl(bin.lock);
  unsigned got = 0;
  void* first = nullptr;
  void** link = &first;
  while (got < want) {
    Slab* s = bin.partial;
    if (!s) {
      s = new_slab(cls);
      if (!s) break;
      bin.slabs++;
      bin.free_objects += s->nfree;
      partial_push(bin, s);
    }
    const uint32_t words = (sc.objects + 63) / 64;
    for (uint32_t w = s->hint; w < words && got < want; ++w) {
      uint64_t bits = s->bits[w];
      while (bits && got < want) {
        const unsigned b = static_cast<unsigned>(__builtin_ctzll(bits));
        bits &= bits - 1;
        char* obj = s->start + (size_t{w} * 64 + b) * sc.size;
        *link = obj;
        link = reinterpret_cast<void**>(obj);
        ++got;
        s->nfree--;
        bin.free_objects--;
      }
      s->bits[w] = bits;
      s->hint = bits ? w : w + 1;
    }
    if (s->nfree == 0) partial_remove(bin, s);
  }
  *link = nullptr;
  *head = first;
  return got;
}

void central_free_batch(unsigned cls, void* head, unsigned n) {
  CentralBin& bin = g.bins[cls];
  LockGuard bl(bin.lock);
  for (unsigned i = 0; i < n && head; ++i) {
    void* next = *static_cast<void**>(head);
    free_object(bin, cls, head);
    head = next;
  }
}

void* central_alloc_one(unsigned cls) {
  void* p = nullptr;
  return central_alloc_batch(cls, 1, &p) ? p : nullptr;
}

void central_free_one(unsigned cls, void* p) {
  CentralBin& bin = g.bins[cls];
  LockGuard bl(bin.lock);
  free_object(bin, cls, p);
}

void central_totals(uint64_t* slab_bytes, uint64_t* free_bytes, uint64_t* slab_count) {
  uint64_t sb = 0, fb = 0, sc_total = 0;
  for (unsigned c = 1; c <= kNumClasses; ++c) {
    const SizeClass& sc = class_info(c);
    // Racy reads are fine for statistics.
    const uint64_t slabs = __atomic_load_n(&g.bins[c].slabs, __ATOMIC_RELAXED);
    const uint64_t fo = __atomic_load_n(&g.bins[c].free_objects, __ATOMIC_RELAXED);
    sb += slabs * (uint64_t{4096} << sc.slab_order);
    fb += fo * sc.size;
    sc_total += slabs;
  }
  *slab_bytes = sb;
  *free_bytes = fb;
  *slab_count = sc_total;
}

}  // namespace ebb
