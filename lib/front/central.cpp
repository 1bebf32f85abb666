#include "front/central.h"

#include "common/check.h"
#include "common/log.h"
#include <cstring>

#include "front/free_list.h"
#include "front/globals.h"
#include "front/harden.h"
#include "front/slab_geometry.h"
#include "os/os.h"

namespace ebb {

namespace {

constexpr uint8_t kNoList = 0, kDirtyList = 1, kScanList = 2;
constexpr unsigned kReportBatch = 32;  // slabs per isolate/madvise/putback round
constexpr uint64_t kNever = ~uint64_t{0};

constexpr bool slabs_fit_page_masks() {
  for (unsigned c = 1; c <= kNumClasses; ++c)
    if (kClasses.c[c].slab_order > 6) return false;
  return true;
}
static_assert(slabs_fit_page_masks(), "a slab's pages must fit a 64-bit page mask");

// ---- page and bitmap geometry ------------------------------------------------

bool range_all_free(const Slab* s, uint32_t a, uint32_t b) {
  bool all = true;
  for_bit_range(a, b, [&](uint32_t w, uint64_t m) { all &= (s->bits[w] & m) == m; });
  return all;
}

// Clears the free bits of [a, b]; returns how many were set.
uint32_t range_take(Slab* s, uint32_t a, uint32_t b) {
  uint32_t n = 0;
  for_bit_range(a, b, [&](uint32_t w, uint64_t m) {
    n += static_cast<uint32_t>(__builtin_popcountll(s->bits[w] & m));
    s->bits[w] &= ~m;
  });
  return n;
}

// Sets the free bits of [a, b]; returns how many were clear.
uint32_t range_give(Slab* s, uint32_t a, uint32_t b) {
  uint32_t n = 0;
  for_bit_range(a, b, [&](uint32_t w, uint64_t m) {
    n += static_cast<uint32_t>(__builtin_popcountll(~s->bits[w] & m));
    s->bits[w] |= m;
  });
  return n;
}

PageDesc* slab_descs(const Slab* s) { return g.heap.region().descs() + s->page; }

bool has_reported_objects(const Slab* s) {
  return (s->rep_pages & object_pages(class_info(s->cls))) != 0;
}

// ---- the partial list: [warm slabs][slabs with reported pages] ---------------

void partial_push_warm(CentralBin& bin, Slab* s) {
  s->prev = nullptr;
  s->next = bin.partial;
  if (bin.partial) bin.partial->prev = s;
  else bin.partial_tail = s;
  bin.partial = s;
  s->on_partial = true;
}

void partial_push_reported(CentralBin& bin, Slab* s) {
  s->next = nullptr;
  s->prev = bin.partial_tail;
  if (bin.partial_tail) bin.partial_tail->next = s;
  else bin.partial = s;
  bin.partial_tail = s;
  if (!bin.boundary) bin.boundary = s;
  s->on_partial = true;
}

void partial_insert(CentralBin& bin, Slab* s) {
  if (has_reported_objects(s)) partial_push_reported(bin, s);
  else partial_push_warm(bin, s);
}

void partial_remove(CentralBin& bin, Slab* s) {
  if (bin.boundary == s) bin.boundary = s->next;  // the rest of the run is reported too
  if (s->prev) s->prev->next = s->next;
  else bin.partial = s->next;
  if (s->next) s->next->prev = s->prev;
  else bin.partial_tail = s->prev;
  s->prev = s->next = nullptr;
  s->on_partial = false;
}

// ---- the dirty and scan lists of the reporter --------------------------------

void scan_push(CentralBin& bin, Slab* s, uint8_t list) {
  Slab*& head = list == kDirtyList ? bin.dirty : bin.scan;
  s->scan_prev = nullptr;
  s->scan_next = head;
  if (head) head->scan_prev = s;
  head = s;
  s->scan_list = list;
}

void scan_remove(CentralBin& bin, Slab* s) {
  if (s->scan_list == kNoList) return;
  Slab*& head = s->scan_list == kDirtyList ? bin.dirty : bin.scan;
  if (s->scan_prev) s->scan_prev->scan_next = s->scan_next;
  else head = s->scan_next;
  if (s->scan_next) s->scan_next->scan_prev = s->scan_prev;
  s->scan_prev = s->scan_next = nullptr;
  s->scan_list = kNoList;
}

// ---- slabs -------------------------------------------------------------------

void check_bin_if_enabled(CentralBin& bin, unsigned cls);

// Bin lock held. Carves a new slab from the page heap and lists it.
Slab* new_slab(CentralBin& bin, unsigned cls) {
  const SizeClass& sc = class_info(cls);
  const unsigned words = SlabPool::words_for(sc.objects);
  Slab* s = g.slab_pool.get(words);
  if (!s) return nullptr;
  const uint32_t npages = slab_pages(sc);
  const uint64_t now = os::now_ms();
  PageRun run;
  bool ok;
  uint64_t rep = 0;
  {
    LockGuard h(g.heap.lock());
    // Pages that come from reported memory keep their bits: they are not
    // resident, so the slab need not report them, and objects on them are
    // handed out last.
    ok = g.heap.alloc_pages(npages, 0, &run, /*keep_reported=*/true, Buddy::kSlabGroup);
    if (ok) {
      PageDesc* d = g.heap.region().descs();
      uint8_t* pc = g.heap.region().page_class();
      for (uint32_t k = 0; k < npages; ++k) {
        PageDesc& pd = d[run.idx + k];
        pd.kind = PageKind::kSlab;
        pd.slab = s;
        pd.stamp = now;
        pc[run.idx + k] = page_class_byte(cls);
      }
      rep = g.heap.region().reported().get_mask(run.idx, npages);
      debug_check_heap_locked();
    }
  }
  if (!ok) {
    g.slab_pool.put(s, words);  // outside the heap lock: the lock order is slab pool -> heap
    return nullptr;
  }
  s->start = g.heap.region().page_addr(run.idx);
  s->cls = cls;
  s->page = run.idx;
  s->nfree = sc.objects;
  s->hint = 0;
  s->rep_pages = rep;
  for (uint32_t w = 0; w < words; ++w) {
    const uint32_t lo = w * 64;
    s->bits[w] = lo + 64 <= sc.objects ? ~uint64_t{0} : (uint64_t{1} << (sc.objects - lo)) - 1;
  }
  // The hardened mode: free objects hold zeros (a write after free is found
  // when one is handed out again). Reported pages read as zero; the others
  // are zeroed when an object on them is first handed out.
  s->zero_pages = rep;
  bin.slabs++;
  bin.free_objects += s->nfree;
  bin.reported_pages += static_cast<uint64_t>(__builtin_popcountll(rep));
  partial_insert(bin, s);
  // Pages the program never touches (a partly used slab's tail, slack) are
  // reported once cold like any other wholly free page.
  scan_push(bin, s, kDirtyList);
  return s;
}

// Bin lock held; the slab has no live or isolated object left since
// `freed_at`.
void release_slab(CentralBin& bin, Slab* s, uint64_t freed_at) {
  const SizeClass& sc = class_info(s->cls);
  const uint32_t npages = slab_pages(sc);
  if (s->on_partial) partial_remove(bin, s);
  scan_remove(bin, s);
  bin.slabs--;
  bin.free_objects -= s->nfree;
  const uint32_t nrep = static_cast<uint32_t>(__builtin_popcountll(s->rep_pages));
  bin.reported_pages -= nrep;
  {
    LockGuard h(g.heap.lock());
    uint8_t* pc = g.heap.region().page_class();
    for (uint32_t k = 0; k < npages; ++k) pc[s->page + k] = 0;
    // The page bits match rep_pages: the buddy counts them.
    g.heap.free_pages(s->page, npages, nrep != 0, freed_at);
    debug_check_heap_locked();
  }
  g.slab_pool.put(s, SlabPool::words_for(sc.objects));
}

// Bin lock held. The objects on `pages` are handed out: those pages are
// resident again.
void unreport(CentralBin& bin, Slab* s, uint64_t pages) {
  g.heap.region().reported().clear_mask(s->page, pages);
  s->rep_pages &= ~pages;
  const uint64_t n = static_cast<uint64_t>(__builtin_popcountll(pages));
  bin.reported_pages -= n;
  bin.refaulted_pages += n;
  g.heap.headroom_refault(n << kPageShift);
}

// A chain of objects being built for a thread cache: `first`, and the last
// object so far (whose link is stored when the next one comes).
struct Chain {
  void* first = nullptr;
  void* last = nullptr;
};
// Objects handed to a cache carry the free key like every object in a cache
// (so a free of one the program never got is a double free).
void chain_append(Chain& c, void* obj) {
  if (c.last) link_store(c.last, obj);
  else c.first = obj;
  key_word(obj) = g_fast.free_key;
  c.last = obj;
}

// Bin lock held. Moves up to `want` free objects of `s` onto the chain,
// preferring objects on resident pages; returns how many.
unsigned take_objects(CentralBin& bin, const SizeClass& sc, Slab* s, unsigned want, Chain& link) {
  const uint32_t words = SlabPool::words_for(sc.objects);
  unsigned got = 0;
  if (!(s->rep_pages & object_pages(sc))) {
    for (uint32_t w = s->hint; w < words && got < want; ++w) {
      uint64_t bits = s->bits[w];
      while (bits && got < want) {
        const unsigned b = static_cast<unsigned>(__builtin_ctzll(bits));
        bits &= bits - 1;
        char* obj = s->start + (size_t{w} * 64 + b) * sc.size;
        chain_append(link, obj);
        ++got;
      }
      s->bits[w] = bits;
      s->hint = bits ? w : w + 1;
    }
  } else {
    // Round 0 takes objects on resident pages only (none if no object page
    // is resident: a fresh slab, or one whose free pages all went back);
    // round 1 whatever is left, in index order, faulting reported pages back
    // in: those between its first and its last object (any reported page
    // there is wholly free, so all its objects are taken), marked resident
    // once at the end, not one object at a time (`phasechange`, whose slabs
    // are fresh: a round 0 over every object and an unreport a page before,
    // central_alloc_batch 86 -> 45 instructions an object handed out).
    const uint64_t rep = s->rep_pages;
    uint64_t first = ~uint64_t{0}, last = 0;
    for (int round = (object_pages(sc) & ~rep) ? 0 : 1; round < 2 && got < want; ++round) {
      for (uint32_t w = s->hint; w < words && got < want; ++w) {
        uint64_t bits = s->bits[w], taken = 0;
        for (; bits && got < want; bits &= bits - 1) {
          const unsigned b = static_cast<unsigned>(__builtin_ctzll(bits));
          const uint64_t i = uint64_t{w} * 64 + b;
          if (round == 0) {
            if (pages_of_object(sc, i) & rep) continue;
          } else {
            if (first == ~uint64_t{0}) first = i;
            last = i;
          }
          taken |= uint64_t{1} << b;
          chain_append(link, s->start + i * sc.size);
          ++got;
        }
        s->bits[w] &= ~taken;
      }
    }
    if (first != ~uint64_t{0}) {
      const uint64_t faulted = span_mask(first_page_of(sc, first), last_page_of(sc, last)) & rep;
      if (faulted) unreport(bin, s, faulted);
    }
    while (s->hint < words && !s->bits[s->hint]) ++s->hint;
  }
  s->nfree -= got;
  bin.free_objects -= got;
  return got;
}

// Bin lock held. Marks one object free; aborts on an invalid or double free.
// Returns true if the slab was put on the dirty list. Inline: free_chain
// calls it for every object of a batch, and its register saves and restores
// were a fifth of its instructions.
// `d` is p's page's descriptor (a walk that looked it up already passes it).
EBB_INLINE bool free_object(CentralBin& bin, unsigned cls, void* p, uint64_t now, const PageDesc& d) {
  const SizeClass& sc = class_info(cls);
  if (d.kind != PageKind::kSlab || !d.slab || d.slab->cls != cls)
    fatal_pointer("free(): invalid pointer", p, "not an object allocated by ebbmalloc");
  Slab* s = d.slab;
  const uint64_t off = static_cast<uint64_t>(static_cast<char*>(p) - s->start);
  const uint64_t i = (off * sc.magic) >> 32;
  if (i * sc.size != off || i >= sc.objects)
    fatal_pointer("free(): invalid pointer", p, "points inside an object, not at its start");
  const uint64_t bit = uint64_t{1} << (i & 63);
  const uint32_t lo = first_page_of(sc, i), hi = last_page_of(sc, i);
  // An isolated object is free too (the reporter holds it for a moment).
  if ((s->bits[i >> 6] & bit) || (EBB_UNLIKELY(s->iso_pages) && (s->iso_pages & span_mask(lo, hi))))
    fatal_pointer("free(): double free of", p, "the object is already free");
  s->bits[i >> 6] |= bit;
  if (i / 64 < s->hint) s->hint = static_cast<uint32_t>(i / 64);
  s->nfree++;
  bin.free_objects++;
  // (Both ends first, then any pages between: most objects lie on one page
  // or two, and a loop's count and test were a sixth of a free of 8 KiB.)
  PageDesc* sd = slab_descs(s);
  sd[lo].stamp = now;
  sd[hi].stamp = now;
  for (uint32_t k = lo + 1; k < hi; ++k) sd[k].stamp = now;
  if (s->nfree == sc.objects) {
    release_slab(bin, s, now);
    return false;
  }
  if (!s->on_partial) partial_insert(bin, s);
  if (s->scan_list != kNoList) return false;
  scan_push(bin, s, kDirtyList);
  return true;
}
EBB_INLINE bool free_object(CentralBin& bin, unsigned cls, void* p, uint64_t now) {
  return free_object(bin, cls, p, now, g.heap.region().descs()[g.heap.region().page_index(p)]);
}

// ---- reporting ---------------------------------------------------------------

// Bin lock held. The wholly free, resident pages of `s` that have been free
// for cold_ms; the earliest time another one becomes cold goes to *due.
uint64_t cold_pages(const Slab* s, const SizeClass& sc, uint64_t now, uint64_t cold_ms, uint64_t* due) {
  const PageDesc* d = slab_descs(s);
  const uint32_t n = slab_pages(sc);
  uint64_t cold = 0;
  for (uint32_t p = 0; p < n; ++p) {
    const uint64_t bit = uint64_t{1} << p;
    if ((s->rep_pages | s->iso_pages) & bit) continue;
    uint32_t a, b;
    if (objects_of_page(sc, p, &a, &b) && !range_all_free(s, a, b)) continue;
    const uint64_t at = d[p].stamp + cold_ms;
    if (now >= at) cold |= bit;
    else if (at < *due) *due = at;
  }
  return cold;
}

// Bin lock held. Takes the objects of `pages` out of the bitmap so that
// nobody hands them out while the pages are given back.
void isolate(CentralBin& bin, const SizeClass& sc, Slab* s, uint64_t pages) {
  uint32_t taken = 0;
  for (uint64_t m = pages; m; m &= m - 1) {
    uint32_t a, b;
    if (objects_of_page(sc, static_cast<uint32_t>(__builtin_ctzll(m)), &a, &b)) taken += range_take(s, a, b);
  }
  s->iso_pages = pages;
  s->nfree -= taken;
  bin.free_objects -= taken;
  if (s->nfree == 0 && s->on_partial) partial_remove(bin, s);
}

// No lock held (batch lock held: only this round touches iso_pages). Gives
// the isolated pages of the round's n slabs back, the runs of all of them
// together (os::advise_free_ranges: a round of thinned slabs, a run or two
// each, in one or two system calls, not one per run); done[i] = the pages of
// slab i that went back.
void advise_isolated(Slab* const* batch, unsigned n, uint64_t* done, uint64_t* released) {
  os::Range r[os::kAdviseBatch];
  unsigned owner[os::kAdviseBatch];
  uint64_t runs[os::kAdviseBatch];
  bool ok[os::kAdviseBatch];
  unsigned m = 0;
  auto flush = [&] {
    g.reporter.advise_ranges(r, m, ok, released);
    for (unsigned k = 0; k < m; ++k)
      if (ok[k]) done[owner[k]] |= runs[k];
    m = 0;
  };
  for (unsigned i = 0; i < n; ++i) {
    done[i] = 0;
    for (uint64_t mask = batch[i]->iso_pages; mask;) {
      const uint32_t a = static_cast<uint32_t>(__builtin_ctzll(mask));
      const uint64_t gap = ~(mask >> a);  // 0 when the run reaches page 63
      const uint32_t b = gap ? a + static_cast<uint32_t>(__builtin_ctzll(gap)) - 1 : 63;
      runs[m] = span_mask(a, b);
      r[m] = {g.heap.region().page_addr(batch[i]->page + a), size_t{b - a + 1} << kPageShift};
      owner[m] = i;
      mask &= ~runs[m];
      if (++m == os::kAdviseBatch) flush();
    }
  }
  if (m) flush();
}

// Bin lock held. Returns the isolated objects; `reported` pages are now given
// back (madvise failed for the others: they are retried once cold again).
void putback(CentralBin& bin, const SizeClass& sc, Slab* s, uint64_t reported, uint64_t now) {
  uint32_t back = 0;
  uint32_t low_word = s->hint;
  PageDesc* d = slab_descs(s);
  for (uint64_t m = s->iso_pages; m; m &= m - 1) {
    const uint32_t p = static_cast<uint32_t>(__builtin_ctzll(m));
    uint32_t a, b;
    if (objects_of_page(sc, p, &a, &b)) {
      back += range_give(s, a, b);
      if (a / 64 < low_word) low_word = a / 64;
    }
    if (!(reported & (uint64_t{1} << p))) d[p].stamp = now;
  }
  g.heap.region().reported().set_mask(s->page, reported);
  const uint64_t failed = s->iso_pages & ~reported;
  s->iso_pages = 0;
  s->hint = low_word;
  s->rep_pages |= reported;
  bin.reported_pages += static_cast<uint64_t>(__builtin_popcountll(reported));
  s->nfree += back;
  bin.free_objects += back;
  if (s->nfree == sc.objects) {
    release_slab(bin, s, 0);
    return;
  }
  // Re-list it in the run it now belongs to.
  if (s->on_partial) partial_remove(bin, s);
  if (s->nfree) partial_insert(bin, s);
  if (failed && s->scan_list == kNoList) scan_push(bin, s, kDirtyList);
}

// Bin lock held. Frees the `n` objects chained at `head` into their slabs,
// freed at `stamp`; returns whether a slab was put on the dirty list. The
// link after the n-th object goes to *rest if rest is given.
//
// A batch freed in scattered order (a phase of objects released at once)
// touches a different page descriptor and slab header for each object, and
// each of those loads waited for the one before: the walk is done in chunks
// instead, collecting the chunk's objects (following their links) and
// asking for their descriptors, then freeing them with each slab header
// asked for a few objects ahead.
// 64 B objects, 400k freed in random order per round: free_object and
// free_chain were 30% of the time.
bool free_chain(CentralBin& bin, unsigned cls, void* head, unsigned n, uint64_t stamp, void** rest = nullptr) {
  constexpr unsigned kChunk = 64, kAhead = 4;
  const PageDesc* descs = g.heap.region().descs();
  bool dirtied = false;
  void* objs[kChunk];
  const PageDesc* ds[kChunk];  // their descriptors, looked up once
  while (n && head) {
    unsigned m = 0;
    for (; m < kChunk && m < n && head; ++m) {
      // (free_object checks the rest: class, object start, not free already.)
      if (!in_heap(head)) fatal_corrupt_list(Fn::kFree, head, "a batch of free objects");
      objs[m] = head;
      ds[m] = &descs[g.heap.region().page_index(head)];
      __builtin_prefetch(ds[m]);
      head = link_load(head);
    }
    for (unsigned k = 0; k < m; ++k) {
      if (k + kAhead < m) {
        // (A descriptor not of a slab, or a stale one, only wastes the prefetch.)
        if (const Slab* s = ds[k + kAhead]->slab) __builtin_prefetch(s, 1);
      }
      dirtied |= free_object(bin, cls, objs[k], stamp, *ds[k]);
    }
    n -= m;
  }
  if (rest) *rest = head;
  return dirtied;
}

// The transfer cache's counts, read without the lock by
// central_transfer_full (and statistics): written under it, as relaxed
// atomic stores.
void set_transfer_counts(CentralBin& bin, uint32_t ntransfer, uint64_t objects) {
  __atomic_store_n(&bin.ntransfer, ntransfer, __ATOMIC_RELAXED);
  __atomic_store_n(&bin.transfer_objects, objects, __ATOMIC_RELAXED);
}
// Whether a batch of n more objects fits the transfer cache (kTransferSlots,
// kTransferBytes): exact under the bin's lock, a hint without it.
bool transfer_fits(const CentralBin& bin, unsigned cls, uint64_t n) {
  return __atomic_load_n(&bin.ntransfer, __ATOMIC_RELAXED) < kTransferSlots &&
         (__atomic_load_n(&bin.transfer_objects, __ATOMIC_RELAXED) + n) * class_info(cls).size <= kTransferBytes;
}

// Bin lock held. Batches in the transfer cache that have been there for
// cold_ms go to their slabs (so their pages can be reported); returns when
// the next one will be cold.
uint64_t drain_transfer(CentralBin& bin, unsigned cls, uint64_t now, uint64_t cold_ms) {
  uint64_t next = kNever, objects = bin.transfer_objects;
  unsigned kept = 0;
  for (unsigned i = 0; i < bin.ntransfer; ++i) {
    const TransferBatch b = bin.transfer[i];
    if (now >= b.stamp + cold_ms) {
      objects -= b.count;
      free_chain(bin, cls, b.head, b.count, b.stamp);
    } else {
      bin.transfer[kept++] = b;
      if (b.stamp + cold_ms < next) next = b.stamp + cold_ms;
    }
  }
  set_transfer_counts(bin, kept, objects);
  return next;
}

// ---- the hardened mode: random slots, zeroed free objects, quarantine --------

}  // namespace

// Freed objects of one class wait here before they go back to their slab
// (delayed reuse): a FIFO ring, with a hash set to find an object in it
// (a double free). Out of band, mapped on the bin's first hardened free.
struct Quarantine {
  static constexpr uint32_t kRing = 1024;
  static constexpr uint32_t kHashBits = 11;  // 2048 slots: at most half full
  struct Entry {
    void* p;
    uint64_t stamp;  // when it was freed
  };
  uint32_t head;   // the oldest entry
  uint32_t count;
  uint32_t cap;    // kQuarantineBytes of the class, 8 to kRing objects
  Entry ring[kRing];
  void* set[uint32_t{1} << kHashBits];
};

namespace {

uint32_t q_hash(const void* p) {
  return static_cast<uint32_t>(((reinterpret_cast<uintptr_t>(p) >> 4) * 0x9E3779B97F4A7C15ull) >> (64 - Quarantine::kHashBits));
}
constexpr uint32_t kQMask = (uint32_t{1} << Quarantine::kHashBits) - 1;

bool q_contains(const Quarantine* q, const void* p) {
  for (uint32_t j = q_hash(p); q->set[j]; j = (j + 1) & kQMask)
    if (q->set[j] == p) return true;
  return false;
}

void q_set_erase(Quarantine* q, const void* p) {
  uint32_t i = q_hash(p);
  while (q->set[i] != p) i = (i + 1) & kQMask;
  q->set[i] = nullptr;
  // Linear probing: move followers whose home is not in (i, j] into the hole.
  for (uint32_t j = (i + 1) & kQMask; q->set[j]; j = (j + 1) & kQMask) {
    const uint32_t home = q_hash(q->set[j]);
    const bool between = i <= j ? (home > i && home <= j) : (home > i || home <= j);
    if (!between) {
      q->set[i] = q->set[j];
      q->set[j] = nullptr;
      i = j;
    }
  }
}

Quarantine::Entry q_pop(Quarantine* q) {
  const Quarantine::Entry e = q->ring[q->head];
  q->head = (q->head + 1) % Quarantine::kRing;
  q->count--;
  q_set_erase(q, e.p);
  return e;
}

void q_push(Quarantine* q, void* p, uint64_t stamp) {
  q->ring[(q->head + q->count) % Quarantine::kRing] = Quarantine::Entry{p, stamp};
  q->count++;
  uint32_t j = q_hash(p);
  while (q->set[j]) j = (j + 1) & kQMask;
  q->set[j] = p;
}

// Bin lock held. The bin's quarantine, mapped on first use (nullptr if the
// mapping fails: objects then go straight back to their slab).
Quarantine* quarantine_of(CentralBin& bin, unsigned cls) {
  if (!hf(kHfQuarantine)) return nullptr;
  if (bin.quarantine) return bin.quarantine;
  Quarantine* q = static_cast<Quarantine*>(os::map(sizeof(Quarantine)));
  if (!q) return nullptr;
  const uint64_t n = kQuarantineBytes / class_info(cls).size;
  q->cap = static_cast<uint32_t>(n < 8 ? 8 : (n > Quarantine::kRing ? Quarantine::kRing : n));
  bin.quarantine = q;
  return q;
}

// Bin lock held. An object leaves the quarantine for its slab: it must still
// hold the zeros it was filled with when it was freed.
bool quarantine_release(CentralBin& bin, unsigned cls, const Quarantine::Entry& e) {
  if (hf(kHfZero)) check_still_zero(e.p, class_info(cls).size, Fn::kNone, "when it left the quarantine");
  return free_object(bin, cls, e.p, e.stamp);
}

// Bin lock held. Objects quarantined for cold_ms go to their slabs (their
// pages can then be reported); returns when the next one is due.
uint64_t drain_quarantine(CentralBin& bin, unsigned cls, uint64_t now, uint64_t cold_ms) {
  Quarantine* q = bin.quarantine;
  while (q->count && now >= q->ring[q->head].stamp + cold_ms) quarantine_release(bin, cls, q_pop(q));
  return q->count ? q->ring[q->head].stamp + cold_ms : kNever;
}

// Bin lock held; s has a free object. A random free slot of s, on a
// resident page if there is one.
uint32_t random_free_slot(CentralBin& bin, const SizeClass& sc, const Slab* s) {
  if (!hf(kHfRandom)) {  // (measurement builds) the lowest free slot
    for (uint32_t w = s->hint;; ++w)
      if (s->bits[w]) return w * 64 + static_cast<uint32_t>(__builtin_ctzll(s->bits[w]));
  }
  uint64_t x = bin.rng ? bin.rng : (os::random_u64() | 1);
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  bin.rng = x;
  const uint32_t start = static_cast<uint32_t>(((x * 0x2545F4914F6CDD1Dull) >> 32) * sc.objects >> 32);
  const uint32_t words = SlabPool::words_for(sc.objects);
  const uint32_t w0 = start / 64;
  const uint64_t rep = s->rep_pages & object_pages(sc);
  for (int round = rep ? 0 : 1; round < 2; ++round) {
    for (uint32_t k = 0; k <= words; ++k) {
      const uint32_t w = (w0 + k) % words;
      uint64_t bits = s->bits[w];
      if (k == 0) bits &= ~uint64_t{0} << (start & 63);
      else if (k == words) bits &= (start & 63) ? (uint64_t{1} << (start & 63)) - 1 : 0;
      for (; bits; bits &= bits - 1) {
        const uint32_t i = w * 64 + static_cast<uint32_t>(__builtin_ctzll(bits));
        if (round == 0 && (pages_of_object(sc, i) & rep)) continue;
        return i;
      }
    }
  }
  fatal("hardened mode: a partial slab without a free object");
}

// Bin lock held: p (on a slab page of class cls) is an allocated object of
// its slab, or this aborts.
Slab* live_slab_object(CentralBin& bin, unsigned cls, const void* p, Fn fn, uint64_t* index) {
  const SizeClass& sc = class_info(cls);
  const PageDesc& d = g.heap.region().descs()[g.heap.region().page_index(p)];
  if (d.kind != PageKind::kSlab || !d.slab || d.slab->cls != cls)
    fatal_pointer(fn_invalid_pointer(fn), p, "not an object allocated by ebbmalloc");
  Slab* s = d.slab;
  const uint64_t off = static_cast<uint64_t>(static_cast<const char*>(p) - s->start);
  const uint64_t i = (off * sc.magic) >> 32;
  if (i * sc.size != off || i >= sc.objects) fatal_not_object_start(fn, p);
  if (((s->bits[i >> 6] >> (i & 63)) & 1) || (s->iso_pages & pages_of_object(sc, i)))
    fatal_misuse(fn, fn == Fn::kRealloc || fn == Fn::kUsableSize ? "pointer to freed memory" : "double free of", p,
                 "the object is already free (in its slab)");
  if (bin.quarantine && q_contains(bin.quarantine, p))
    fatal_misuse(fn, fn == Fn::kRealloc || fn == Fn::kUsableSize ? "pointer to freed memory" : "double free of", p,
                 "the object is already free (in the quarantine)");
  *index = i;
  return s;
}

// One bin's share of a reporter pass; returns the next deadline.
uint64_t report_bin(unsigned cls, uint64_t cold_ms, uint64_t batch_cold_ms, uint64_t page_cold_ms,
                    uint64_t* released) {
  const SizeClass& sc = class_info(cls);
  CentralBin& bin = g.bins[cls];
  uint64_t next = kNever;
  {
    // This pass looks at the slabs dirtied so far; frees from now on dirty
    // them again for the next one.
    LockGuard bl(bin.lock);
    if (bin.ntransfer) next = drain_transfer(bin, cls, os::now_ms(), batch_cold_ms);
    if (bin.quarantine) {
      const uint64_t q = drain_quarantine(bin, cls, os::now_ms(), cold_ms);
      if (q < next) next = q;
    }
    if (!bin.dirty) return next;
    while (Slab* s = bin.dirty) {
      scan_remove(bin, s);
      scan_push(bin, s, kScanList);
    }
  }
  for (;;) {
    Slab* batch[kReportBatch];
    uint64_t done[kReportBatch];
    unsigned n = 0;
    LockGuard round(g.reporter.batch_lock());
    {
      LockGuard bl(bin.lock);
      const uint64_t now = os::now_ms();
      while (n < kReportBatch && bin.scan) {
        Slab* s = bin.scan;
        scan_remove(bin, s);
        uint64_t due = kNever;
        const uint64_t cold = cold_pages(s, sc, now, page_cold_ms, &due);
        if (due != kNever) {
          scan_push(bin, s, kDirtyList);  // look again when the rest is cold
          if (due < next) next = due;
        }
        if (cold) {
          isolate(bin, sc, s, cold);
          batch[n++] = s;
        }
      }
    }
    if (n == 0) break;
    advise_isolated(batch, n, done, released);
    uint64_t pages = 0;
    for (unsigned i = 0; i < n; ++i) pages += static_cast<uint64_t>(__builtin_popcountll(done[i]));
    {
      LockGuard bl(bin.lock);
      const uint64_t now = os::now_ms();
      for (unsigned i = 0; i < n; ++i) putback(bin, sc, batch[i], done[i], now);
      check_bin_if_enabled(bin, cls);
    }
    g.reporter.stats_mut().slab_pages.fetch_add(pages, std::memory_order_relaxed);
  }
  return next;
}

// ---- checking ------------------------------------------------------------------

// Bin lock held. Returns the number of problems found.
unsigned check_bin(CentralBin& bin, unsigned cls, bool print) {
  const SizeClass& sc = class_info(cls);
  CheckErrors errs(print, "class ", cls);
  auto bad = [&](const char* what, uint64_t a, uint64_t b) { errs.bad(what, a, b); };
  uint64_t free_objects = 0, reported = 0, steps = 0;
  bool in_reported = false;
  const Slab* prev = nullptr;
  for (const Slab* s = bin.partial; s; prev = s, s = s->next) {
    if (++steps > bin.slabs) {
      bad("partial list longer than the slab count", steps, bin.slabs);
      break;
    }
    if (s->prev != prev) bad("broken prev link in the partial list at page", s->page, 0);
    if (!s->on_partial || s->cls != cls) bad("listed slab not marked partial / wrong class at page", s->page, s->cls);
    const uint32_t words = SlabPool::words_for(sc.objects);
    uint64_t set = 0;
    for (uint32_t w = 0; w < words; ++w) set += static_cast<uint64_t>(__builtin_popcountll(s->bits[w]));
    if (set != s->nfree) bad("free count differs from the bitmap (page, count)", s->page, s->nfree);
    if (sc.objects % 64 && s->bits[words - 1] >> (sc.objects % 64))
      bad("free bit past the slab's last object (page, word)", s->page, words - 1);
    if (s->nfree == 0 || s->nfree >= sc.objects) bad("partial slab full or empty (page, free)", s->page, s->nfree);
    for (uint32_t w = 0; w < s->hint && w < words; ++w)
      if (s->bits[w]) bad("free bit before the hint (page, word)", s->page, w);
    const bool rep = has_reported_objects(s);
    if (rep && !in_reported) {
      if (bin.boundary != s) bad("boundary is not the first slab with reported pages at page", s->page, 0);
      in_reported = true;
    } else if (!rep && in_reported) {
      bad("warm slab behind the boundary at page", s->page, 0);
    }
    const PageDesc* d = slab_descs(s);
    if (g.heap.region().reported().get_mask(s->page, slab_pages(sc)) != s->rep_pages)
      bad("reported bits differ from the slab's mask at page", s->page, s->rep_pages);
    for (uint32_t p = 0; p < slab_pages(sc); ++p) {
      const bool bit = (s->rep_pages >> p) & 1;
      if (d[p].kind != PageKind::kSlab || d[p].slab != s) bad("slab page not owned by its slab (page, k)", s->page, p);
      uint32_t a, b;
      if (bit && s->iso_pages == 0 && objects_of_page(sc, p, &a, &b) && !range_all_free(s, a, b))
        bad("object in use on a reported page (page, k)", s->page, p);
    }
    free_objects += s->nfree;
    reported += static_cast<uint64_t>(__builtin_popcountll(s->rep_pages));
  }
  if (prev != bin.partial_tail) bad("partial tail pointer wrong", prev ? prev->page : 0, 0);
  // Transfer batches: their counts add up. (Their objects are not read: a
  // write after free into one is the misuse checks' to report, when the
  // batch is taken or walked.)
  if (bin.ntransfer > kTransferSlots) bad("more transfer batches than slots", bin.ntransfer, kTransferSlots);
  uint64_t transfer = 0;
  for (unsigned t = 0; t < bin.ntransfer && t < kTransferSlots; ++t) {
    if (bin.transfer[t].count == 0 || !bin.transfer[t].head) bad("empty transfer batch (slot, count)", t, bin.transfer[t].count);
    transfer += bin.transfer[t].count;
  }
  if (transfer != bin.transfer_objects) bad("transfer object count mismatch", transfer, bin.transfer_objects);
  if (!in_reported && bin.boundary) bad("boundary set without reported slabs", bin.boundary->page, 0);
  if (free_objects != bin.free_objects) bad("free object count mismatch", free_objects, bin.free_objects);
  // Full slabs are not listed, and may hold reported slack pages.
  if (reported > bin.reported_pages) bad("reported page count too low", reported, bin.reported_pages);
  for (uint8_t list : {kDirtyList, kScanList}) {
    steps = 0;
    const Slab* p = nullptr;
    for (const Slab* s = list == kDirtyList ? bin.dirty : bin.scan; s; p = s, s = s->scan_next) {
      if (++steps > bin.slabs) {
        bad("dirty/scan list longer than the slab count", list, steps);
        break;
      }
      if (s->scan_list != list || s->scan_prev != p) bad("broken dirty/scan list at page", s->page, list);
    }
  }
  return errs.count();
}

void check_bin_if_enabled([[maybe_unused]] CentralBin& bin, [[maybe_unused]] unsigned cls) {
#ifdef EBB_DEBUG
  if (g.opts.check && check_bin(bin, cls, true) != 0) fatal("central bin check failed (see above)");
#endif
}

}  // namespace

// Bin lock held. The slab a refill takes from: the fullest of the first
// kPickSlabs warm slabs (else the first slab with reported pages). The
// partial list is LIFO (a slab that got a free goes first); taking from the
// fullest instead lets the emptier ones drain to empty and go back to the
// heap, so a class with lifetimes at random keeps fewer slabs half free.
constexpr unsigned kPickSlabs = 4;
Slab* pick_slab(const CentralBin& bin) {
  Slab* best = bin.partial;
  if (!best || best == bin.boundary) return best;
  unsigned k = 1;
  for (Slab* s = best->next; s && s != bin.boundary && k < kPickSlabs; s = s->next, ++k)
    if (s->nfree < best->nfree) best = s;
  return best;
}

unsigned central_alloc_batch(unsigned cls, unsigned want, void** head, unsigned fit) {
  const SizeClass& sc = class_info(cls);
  CentralBin& bin = g.bins[cls];
  const unsigned most = fit > want ? fit : want;
  LockGuard bl(bin.lock);
  if (fit && __atomic_load_n(&bin.refill_fit, __ATOMIC_RELAXED) != most)
    __atomic_store_n(&bin.refill_fit, most, __ATOMIC_RELAXED);
  // A batch another thread's cache left, if it fits: a producer's refill
  // takes a consumer's overflow whole even while their capacities differ
  // (slow start), and a new thread the cache of one that exited.
  if (bin.ntransfer) {
    const uint32_t t = bin.ntransfer - 1;
    TransferBatch& b = bin.transfer[t];
    *head = b.head;
    if (b.count <= most) {
      set_transfer_counts(bin, t, bin.transfer_objects - b.count);
      return b.count;
    }
    // A larger batch (the whole cache of a thread that exited, taken by a
    // new thread whose capacity starts small): its first `most` objects,
    // cut off by a walk -- cheaper than the slabs' bitmaps, and the batch
    // does not sit there pinning its slabs while new slabs are made.
    b.head = cut_list(b.head, most, "a transfer batch");
    b.count -= most;
    set_transfer_counts(bin, bin.ntransfer, bin.transfer_objects - most);
    return most;
  }
  unsigned got = 0;
  Chain link;
  while (got < want) {
    Slab* s = pick_slab(bin);
    if (!s && !(s = new_slab(bin, cls))) break;
    const bool was_reported = has_reported_objects(s);
    got += take_objects(bin, sc, s, want - got, link);
    if (s->nfree == 0) {
      partial_remove(bin, s);
    } else if (was_reported && !has_reported_objects(s)) {
      partial_remove(bin, s);  // every page resident again: back to the warm run
      partial_push_warm(bin, s);
    }
  }
  if (link.last) link_store(link.last, nullptr);
  *head = link.first;
  check_bin_if_enabled(bin, cls);
  return got;
}

void central_free_batch(unsigned cls, void* head, unsigned n, uint64_t freed_at, void** rest) {
  CentralBin& bin = g.bins[cls];
  g.reporter.note_freed(uint64_t{n} * class_info(cls).size);
  bool dirtied = false;
  {
    const uint64_t now = freed_at ? freed_at : os::now_ms();
    // The walk that frees the batch finds the rest -- but while another
    // thread waits for the bin (a producer's refill), the batch is cut
    // before the lock is taken: the walk over objects that may be cold
    // stays out of the critical section.
    if (!rest) {
      bin.lock.lock();
    } else if (!bin.lock.try_lock()) {
      *rest = cut_list(head, n, "a batch of free objects");
      rest = nullptr;
      bin.lock.lock();
    }
    dirtied = free_chain(bin, cls, head, n, now, rest);
    check_bin_if_enabled(bin, cls);
    bin.lock.unlock();
  }
  if (dirtied) g.reporter.request();
}

bool central_transfer_full(unsigned cls) {
  return !transfer_fits(g.bins[cls], cls, 1);
}

unsigned central_refill_fit(unsigned cls) { return __atomic_load_n(&g.bins[cls].refill_fit, __ATOMIC_RELAXED); }

void central_transfer_batch(unsigned cls, void* head, unsigned n) {
  CentralBin& bin = g.bins[cls];
  g.reporter.note_freed(uint64_t{n} * class_info(cls).size);
  {
    const uint64_t now = os::now_ms();
    LockGuard bl(bin.lock);
    if (transfer_fits(bin, cls, n)) {
      bin.transfer[bin.ntransfer] = TransferBatch{head, n, now};
      set_transfer_counts(bin, bin.ntransfer + 1, bin.transfer_objects + n);
      return;
    }
  }
  central_free_batch(cls, head, n);
}

void* central_alloc_one(unsigned cls) {
  void* p = nullptr;
  return central_alloc_batch(cls, 1, &p) ? p : nullptr;
}

void central_free_one(unsigned cls, void* p) {
  CentralBin& bin = g.bins[cls];
  g.reporter.note_freed(class_info(cls).size);
  bool dirtied;
  {
    const uint64_t now = os::now_ms();
    LockGuard bl(bin.lock);
    dirtied = free_object(bin, cls, p, now);
    check_bin_if_enabled(bin, cls);
  }
  if (dirtied) g.reporter.request();
}

const char* central_find_free(unsigned cls, const void* p) {
  const SizeClass& sc = class_info(cls);
  CentralBin& bin = g.bins[cls];
  LockGuard bl(bin.lock);
  for (unsigned t = 0; t < bin.ntransfer; ++t) {
    const void* x = bin.transfer[t].head;
    for (uint32_t i = 0; i < bin.transfer[t].count; ++i) {
      if (!valid_free_object(x, cls)) fatal_corrupt_list(Fn::kFree, x, "a transfer batch");
      if (x == p) return "the object is already free (in a transfer batch)";
      x = link_load(x);
    }
  }
  const PageDesc& d = g.heap.region().descs()[g.heap.region().page_index(p)];
  if (d.kind != PageKind::kSlab || !d.slab || d.slab->cls != cls) return nullptr;
  const Slab* s = d.slab;
  const uint64_t i = static_cast<uint64_t>(static_cast<const char*>(p) - s->start) / sc.size;
  if (i >= sc.objects) return nullptr;
  if ((s->bits[i >> 6] >> (i & 63)) & 1) return "the object is already free (in its slab)";
  if (s->iso_pages & pages_of_object(sc, i)) return "the object is already free (in its slab, being given back)";
  return nullptr;
}

void* central_alloc_hardened(unsigned cls) {
  const SizeClass& sc = class_info(cls);
  CentralBin& bin = g.bins[cls];
  void* obj;
  {
    LockGuard bl(bin.lock);
    Slab* s = bin.partial;
    if (!s && !(s = new_slab(bin, cls))) return nullptr;
    const bool was_reported = has_reported_objects(s);
    const uint32_t i = random_free_slot(bin, sc, s);
    s->bits[i >> 6] &= ~(uint64_t{1} << (i & 63));
    const uint64_t pages = pages_of_object(sc, i);
    if (const uint64_t on_reported = pages & s->rep_pages) unreport(bin, s, on_reported);
    if (hf(kHfZero)) {
      // A page no object on it has been handed out from since the slab was
      // made holds whatever the memory held before: zero it now (only free
      // objects overlap it, so nothing live is touched).
      for (uint64_t m = pages & ~s->zero_pages; m; m &= m - 1)
        memset(s->start + (size_t{static_cast<unsigned>(__builtin_ctzll(m))} << kPageShift), 0, kPageSize);
      s->zero_pages |= pages;
    }
    s->nfree--;
    bin.free_objects--;
    const uint32_t words = SlabPool::words_for(sc.objects);
    while (s->hint < words && !s->bits[s->hint]) ++s->hint;
    if (s->nfree == 0) {
      partial_remove(bin, s);
    } else if (was_reported && !has_reported_objects(s)) {
      partial_remove(bin, s);
      partial_push_warm(bin, s);
    }
    check_bin_if_enabled(bin, cls);
    obj = s->start + size_t{i} * sc.size;
  }
  if (hf(kHfZero)) check_still_zero(obj, sc.size, Fn::kMalloc, "when it was handed out again");
  return obj;
}

void central_free_hardened(unsigned cls, void* p, Fn fn, void (*check)(void* p, unsigned cls, Fn fn, size_t size),
                           size_t size) {
  const SizeClass& sc = class_info(cls);
  CentralBin& bin = g.bins[cls];
  bool dirtied = false;
  {
    const uint64_t now = os::now_ms();
    LockGuard bl(bin.lock);
    uint64_t i;
    live_slab_object(bin, cls, p, fn, &i);
    check(p, cls, fn, size);
    if (hf(kHfZero)) memset(p, 0, sc.size);
    if (Quarantine* q = quarantine_of(bin, cls)) {
      if (q->count == q->cap) dirtied = quarantine_release(bin, cls, q_pop(q));
      q_push(q, p, now);
    } else {
      dirtied = free_object(bin, cls, p, now);
    }
    check_bin_if_enabled(bin, cls);
  }
  // The reporter drains the quarantine once its objects are cold (and is
  // started here if it is not running yet: no lock is held).
  (void)dirtied;
  g.reporter.request();
  g.reporter.maybe_start_thread();
}

void central_check_live_hardened(unsigned cls, const void* p, Fn fn) {
  CentralBin& bin = g.bins[cls];
  LockGuard bl(bin.lock);
  uint64_t i;
  live_slab_object(bin, cls, p, fn, &i);
}

uint64_t central_report_cold(uint64_t cold_ms, uint64_t batch_cold_ms, uint64_t page_cold_ms, uint64_t* released) {
  // The hardened mode's quarantined large blocks first: the buddy's part of
  // this pass then gives them back.
  uint64_t next = g.opts.harden ? harden_drain_large(os::now_ms(), cold_ms) : kNever;
  for (unsigned c = 1; c <= kNumClasses; ++c) {
    const uint64_t n = report_bin(c, cold_ms, batch_cold_ms, page_cold_ms, released);
    if (n < next) next = n;
  }
  return next;
}

CentralTotals central_totals() {
  CentralTotals t{};
  for (unsigned c = 1; c <= kNumClasses; ++c) {
    const SizeClass& sc = class_info(c);
    const CentralBin& bin = g.bins[c];
    // Racy reads are fine for statistics.
    const uint64_t slabs = __atomic_load_n(&bin.slabs, __ATOMIC_RELAXED);
    t.slab_bytes += slabs * (uint64_t{kPageSize} << sc.slab_order);
    t.free_bytes += (__atomic_load_n(&bin.free_objects, __ATOMIC_RELAXED) +
                     __atomic_load_n(&bin.transfer_objects, __ATOMIC_RELAXED)) * sc.size;
    t.slabs += slabs;
    t.reported_bytes += __atomic_load_n(&bin.reported_pages, __ATOMIC_RELAXED) << kPageShift;
    t.refaulted_bytes += __atomic_load_n(&bin.refaulted_pages, __ATOMIC_RELAXED) << kPageShift;
  }
  return t;
}

void central_visit_quarantine(unsigned cls, void (*visit)(void* obj, void* ctx), void* ctx) {
  const Quarantine* q = g.bins[cls].quarantine;
  if (!q) return;
  for (uint32_t k = 0; k < q->count; ++k) visit(q->ring[(q->head + k) % Quarantine::kRing].p, ctx);
}

unsigned central_check(bool print) {
  unsigned errors = 0;
  for (unsigned c = 1; c <= kNumClasses; ++c) {
    LockGuard bl(g.bins[c].lock);
    errors += check_bin(g.bins[c], c, print);
  }
  return errors;
}

}  // namespace ebb
