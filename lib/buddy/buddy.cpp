#include "buddy/buddy.h"

#include "common/check.h"
#include "common/log.h"

namespace ebb {

void Buddy::init(PageDesc* descs, ReportedBits* bits, const uint32_t* frontier,
                 unsigned report_order, uint64_t mark_pages, NotifyFn notify) {
  descs_ = descs;
  bits_ = bits;
  frontier_ = frontier;
  report_order_ = report_order;
  mark_pages_ = mark_pages;
  notify_ = notify;
  for (auto& a : area_) a = Area{};
  c_ = BuddyCounts{};
  warm_reportable_ = 0;
}

// ---- list primitives: the boundary is maintained here and only here -------

void Buddy::account(uint32_t i, unsigned o, int sign) {
  const uint64_t n = pages(o), rep = d(i).nrep;
  if (sign > 0) {
    c_.nr_free[o]++;
    if (rep == n) c_.nr_reported[o]++;
    c_.free_pages += n;
    c_.reported_pages += rep;
    if (o >= report_order_) warm_reportable_ += n - rep;
  } else {
    c_.nr_free[o]--;
    if (rep == n) c_.nr_reported[o]--;
    c_.free_pages -= n;
    c_.reported_pages -= rep;
    if (o >= report_order_) warm_reportable_ -= n - rep;
  }
}

void Buddy::list_add_warm(uint32_t i, unsigned o) {
  // Warm blocks go to the head: newest first, so the run is ordered by the
  // time blocks became free and the coldest sit just before the boundary.
  Area& a = area_[list_of(i, o)];
  d(i).link.prev = kNil;
  d(i).link.next = a.head;
  if (a.head != kNil) d(a.head).link.prev = i;
  else a.tail = i;
  a.head = i;
  account(i, o, +1);
  if (o >= report_order_ && warm_reportable_ >= mark_pages_ && notify_) notify_();
}

void Buddy::list_add_warm_aged(uint32_t i, unsigned o) {
  // A block freed earlier than the newest warm block (slab pages that sat
  // in an idle cache): it goes where its stamp belongs in the run, looked
  // for from both ends a few dozen steps; failing that it goes to the head
  // as the newest (reported one cold period later than it could be).
  const unsigned l = list_of(i, o);
  Area& a = area_[l];
  const uint64_t stamp = d(i).stamp;
  constexpr unsigned kSteps = 32;
  // From the head: the first block not newer than this one (or the end of
  // the warm run); it goes just before that.
  uint32_t before = a.head;
  unsigned steps = 0;
  while (before != a.boundary && d(before).stamp > stamp && steps < kSteps) {
    before = d(before).link.next;
    ++steps;
  }
  uint32_t after;  // it goes just after this one
  if (before == a.boundary || d(before).stamp <= stamp) {
    after = before == kNil ? a.tail : d(before).link.prev;
  } else {
    // From the cold end: the first block not older than this one.
    after = cold_end(l);
    for (steps = 0; after != kNil && d(after).stamp < stamp; ++steps) {
      if (steps == kSteps) {
        d(i).stamp = d(a.head).stamp;
        list_add_warm(i, o);
        return;
      }
      after = d(after).link.prev;
    }
  }
  if (after == kNil) {
    list_add_warm(i, o);
    return;
  }
  const uint32_t next = d(after).link.next;
  d(i).link.prev = after;
  d(i).link.next = next;
  d(after).link.next = i;
  if (next != kNil) d(next).link.prev = i;
  else a.tail = i;
  account(i, o, +1);
  if (o >= report_order_ && warm_reportable_ >= mark_pages_ && notify_) notify_();
}

void Buddy::list_add_reported(uint32_t i, unsigned o) {
  // Reported blocks go behind the boundary, at the tail.
  Area& a = area_[list_of(i, o)];
  d(i).link.next = kNil;
  d(i).link.prev = a.tail;
  if (a.tail != kNil) d(a.tail).link.next = i;
  else a.head = i;
  a.tail = i;
  if (a.boundary == kNil) a.boundary = i;
  account(i, o, +1);
}

void Buddy::list_del(uint32_t i, unsigned o) {
  Area& a = area_[list_of(i, o)];
  const uint32_t n = d(i).link.next, p = d(i).link.prev;
  if (a.boundary == i) a.boundary = n;  // the next block, if any, is reported too
  if (p != kNil) d(p).link.next = n;
  else a.head = n;
  if (n != kNil) d(n).link.prev = p;
  else a.tail = p;
  account(i, o, -1);
}

void Buddy::insert(uint32_t i, unsigned o, uint32_t nrep, uint64_t stamp) {
  PageDesc& h = d(i);
  h.kind = PageKind::kFreeHead;
  h.order = static_cast<uint8_t>(o);
  h.nrep = nrep;
  h.stamp = stamp;
  const Area& a = area_[list_of(i, o)];
  if (nrep == pages(o)) list_add_reported(i, o);
  else if (a.head == kNil || a.head == a.boundary || stamp >= d(a.head).stamp) list_add_warm(i, o);
  else list_add_warm_aged(i, o);
}

// ---- allocation ------------------------------------------------------------

void Buddy::split(Block* b, unsigned target, uint64_t now) {
  while (b->order > target) {
    const unsigned o = --b->order;
    const uint32_t upper = b->idx + pages(o);
    uint32_t up_rep;
    if (b->nrep == 0) up_rep = 0;
    else if (b->nrep == 2 * pages(o)) up_rep = pages(o);
    else up_rep = count_reported(upper, pages(o));
    b->nrep -= up_rep;
    // The remainder keeps its residency; as a warm block it is stamped now so
    // the warm run stays ordered (it may be reported cold_ms later than the
    // exact time it became free: a small, safe delay).
    insert(upper, o, up_rep, now);
  }
}

void Buddy::claim(uint32_t i, unsigned o, Group group) {
  EBB_ASSERT(o >= kPageblockOrder);
  for (uint32_t k = i, end = i + pages(o); k < end; k += pages(kPageblockOrder)) d(k).group = group;
}

bool Buddy::alloc(unsigned order, uint64_t now, Block* out, Group group, bool steal_reported) {
  EBB_ASSERT(order <= kMaxOrder);
  // Where to look, in order (each step: a list, and its warm or its reported
  // run): warm memory before reported, the group's own blocks before whole
  // pageblocks before the other group's -- but a slab takes reported memory
  // of its own or a whole pageblock before a warm fragment of the large
  // group's (a slab pins its pageblock's free memory into fragments for as
  // long as one object in it lives; a large block is freed whole), and the
  // other group's reported memory only when the heap cannot grow (fresh
  // memory costs nothing until touched).
  // (Looked at in place, stopping at the first hit: building the list of
  // steps first cost 330 instructions a call, most of a new slab's.)
  const unsigned own = group == kSlabGroup ? kNumOrders : 0, other = group == kSlabGroup ? 0 : kNumOrders;
  const unsigned whole_from = order > kPageblockOrder ? order : kPageblockOrder;
  unsigned found = kLists;
  bool warm = false;
  auto look = [&](unsigned base, unsigned from, unsigned to, bool reported) {
    for (unsigned o = from; o < to; ++o) {
      const unsigned l = base + o;
      if (reported ? area_[l].boundary != kNil : list_has_warm(l)) {
        found = l;
        warm = !reported;
        return true;
      }
      // EBBMALLOC_SPLIT_WARM=0: a reported fit of this order before a warm
      // block of a higher order.
      if (!reported && !split_warm_first_ && area_[l].boundary != kNil) {
        found = l;
        return true;
      }
    }
    return false;
  };
  const bool slab = group == kSlabGroup;
  bool hit = look(own, order, kPageblockOrder, false) || look(0, whole_from, kNumOrders, false);
  if (!hit && slab)
    hit = look(own, order, kPageblockOrder, true) || look(0, whole_from, kNumOrders, true) ||
          look(other, order, kPageblockOrder, false);
  if (!hit && !slab)
    hit = look(other, order, kPageblockOrder, false) || look(own, order, kPageblockOrder, true) ||
          look(0, whole_from, kNumOrders, true);
  if (!hit && steal_reported) hit = look(other, order, kPageblockOrder, true);
  if (!hit) return false;
  const unsigned fo = list_order(found);
  const uint32_t i = warm ? area_[found].head : area_[found].boundary;
  list_del(i, fo);
  if (fo >= kPageblockOrder) claim(i, fo, group);
  out->idx = i;
  out->order = fo;
  out->nrep = d(i).nrep;
  split(out, order, now);
  d(i).kind = PageKind::kFreeTail;  // the caller marks it as in use
  return true;
}

bool Buddy::alloc_run(uint32_t npages, uint64_t min_warm, uint64_t now, unsigned max_starts, uint32_t* idx) {
  EBB_ASSERT(npages >= pages(kPageblockOrder));
  unsigned looked = 0;
  uint32_t best = kNil, best_end = 0;
  uint64_t best_warm = 0;
  for (unsigned o = kPageblockOrder; o <= kMaxOrder; ++o) {
    for (uint32_t i = area_[o].head; i != kNil && looked < max_starts; i = d(i).link.next, ++looked) {
      // Free blocks from i on, end to end, until the run is long enough.
      uint32_t j = i;
      uint64_t covered = 0, warm = 0;
      while (covered < npages && j < *frontier_) {
        const PageDesc& h = d(j);
        if (h.kind != PageKind::kFreeHead) break;
        const uint64_t n = pages(h.order);
        // (Warm pages of the part the run uses of its last block: counted
        // as if spread evenly.)
        const uint64_t use = covered + n > npages ? npages - covered : n;
        warm += (n - h.nrep) * use / n;
        covered += n;
        j += static_cast<uint32_t>(n);
      }
      if (covered < npages) continue;
      if (best == kNil || warm > best_warm) {
        best = i;
        best_end = j;
        best_warm = warm;
        if (warm == npages) break;
      }
    }
    if (best != kNil && best_warm == npages) break;
  }
  if (best == kNil || best_warm < min_warm) return false;
  for (uint32_t k = best; k < best_end;) {
    const unsigned ko = d(k).order;
    list_del(k, ko);
    if (ko >= kPageblockOrder) claim(k, ko, kLargeGroup);
    d(k).kind = PageKind::kFreeTail;  // the caller marks the run's head; free_range the rest
    k += pages(ko);
  }
  if (best_end - best > npages) free_range(best + npages, best_end - best - npages, true, now);
  *idx = best;
  return true;
}

uint32_t Buddy::free_head_of(uint32_t k) const {
  for (unsigned o = 0; o <= kMaxOrder; ++o) {
    const uint32_t h = k & ~(pages(o) - 1);
    if (d(h).kind == PageKind::kFreeHead && d(h).order == o) return h;
  }
  return kNil;
}

uint32_t Buddy::free_pages_from(uint32_t a, uint32_t n) const {
  uint32_t k = a;
  while (k < a + n && k < *frontier_) {
    const uint32_t h = free_head_of(k);
    if (h == kNil) break;
    k = h + pages(d(h).order);
  }
  return (k < a + n ? k : a + n) - a;
}

bool Buddy::take_range(uint32_t a, uint32_t n) {
  if (free_pages_from(a, n) < n) return false;
  const uint32_t end = a + n;
  for (uint32_t k = a; k < end;) {
    const uint32_t h = free_head_of(k);
    const unsigned o = d(h).order;
    const uint64_t stamp = d(h).stamp;
    const uint32_t block_end = h + pages(o);
    list_del(h, o);
    if (o >= kPageblockOrder) claim(h, o, kLargeGroup);
    d(h).kind = PageKind::kFreeTail;
    // The parts outside the range are sub-blocks of this block: they merge
    // only among themselves (the range's pages are no heads now).
    if (h < a) free_range(h, a - h, true, stamp);
    if (block_end > end) free_range(end, block_end - end, true, stamp);
    k = block_end;
  }
  return true;
}

// ---- freeing ---------------------------------------------------------------

void Buddy::free_block(uint32_t idx, unsigned order, uint32_t nrep, uint64_t stamp) {
  EBB_ASSERT((idx & (pages(order) - 1)) == 0);
  while (order < kMaxOrder) {
    const uint32_t b = idx ^ pages(order);
    if (b >= *frontier_) break;
    const PageDesc& bd = d(b);
    if (bd.kind != PageKind::kFreeHead || bd.order != order) break;
    list_del(b, order);
    // The merged block is as cold as its most recently freed warm part.
    if (bd.nrep < pages(order) && bd.stamp > stamp) stamp = bd.stamp;
    nrep += bd.nrep;
    // The higher of the two heads becomes an interior page.
    d(idx > b ? idx : b).kind = PageKind::kFreeTail;
    if (b < idx) idx = b;
    ++order;
  }
  insert(idx, order, nrep, stamp);
}

void Buddy::free_range(uint32_t idx, uint32_t npages, bool count_bits, uint64_t now) {
  while (npages > 0) {
    unsigned o = idx ? static_cast<unsigned>(__builtin_ctz(idx)) : kMaxOrder;
    const unsigned fit = log2_floor(npages);
    if (o > fit) o = fit;
    if (o > kMaxOrder) o = kMaxOrder;
    const uint32_t rep = count_bits ? count_reported(idx, pages(o)) : 0;
    free_block(idx, o, rep, now);
    idx += pages(o);
    npages -= pages(o);
  }
}

void Buddy::add_fresh(uint32_t idx, uint32_t npages, uint64_t now) {
  // Pages past the frontier were never used: their descriptors are still
  // zero (kFreeTail), and free_range sets the heads.
  bits_->set(idx, npages);
  free_range(idx, npages, true, now);
}

// ---- reporting -------------------------------------------------------------

void Buddy::isolate(uint32_t i, unsigned o) {
  list_del(i, o);
  d(i).kind = PageKind::kIsolated;
  c_.isolated_pages += pages(o);
}

unsigned Buddy::isolate_cold(unsigned order, uint64_t cutoff, uint32_t* out, unsigned max,
                             uint64_t* next_stamp) {
  // The order's lists (one, or one per group below a pageblock), the older
  // of their cold ends first.
  uint32_t cur[2] = {cold_end(order), order < kPageblockOrder ? cold_end(kNumOrders + order) : kNil};
  unsigned n = 0;
  while (n < max) {
    const uint32_t i = older(cur[0], cur[1]);
    const unsigned k = i == cur[0] ? 0 : 1;
    if (i == kNil) break;
    PageDesc& h = d(i);
    EBB_ASSERT(h.nrep < pages(order));
    if (h.stamp > cutoff) {
      // Everything nearer the heads became free later still.
      if (next_stamp && *next_stamp > h.stamp) *next_stamp = h.stamp;
      break;
    }
    cur[k] = h.link.prev;
    isolate(i, order);
    out[n++] = i;
  }
  return n;
}

bool Buddy::cold_cutoff(uint64_t budget, uint64_t newest, unsigned max_blocks, uint64_t* cutoff) const {
  // One cursor per list at its coldest warm block; take the oldest of the
  // cursors until the budget is covered.
  uint32_t cur[kLists];
  for (unsigned l = 0; l < kLists; ++l) cur[l] = list_order(l) < report_order_ ? kNil : cold_end(l);
  uint64_t pages_seen = 0;
  bool any = false;
  for (unsigned n = 0; n < max_blocks && pages_seen < budget; ++n) {
    unsigned best = kLists;
    for (unsigned l = 0; l < kLists; ++l)
      if (cur[l] != kNil && (best == kLists || d(cur[l]).stamp < d(cur[best]).stamp)) best = l;
    if (best == kLists) break;
    const PageDesc& h = d(cur[best]);
    if (h.stamp > newest) break;  // every other cursor is newer still
    pages_seen += pages(list_order(best)) - h.nrep;
    *cutoff = h.stamp;
    any = true;
    cur[best] = h.link.prev;
  }
  return any;
}

bool Buddy::isolate_coldest(uint64_t newest, uint32_t* idx) {
  unsigned best = kLists;
  uint32_t bi = kNil;
  for (unsigned l = 0; l < kLists; ++l) {
    if (list_order(l) < report_order_) continue;
    const uint32_t i = cold_end(l);
    if (i == kNil || d(i).stamp > newest) continue;
    if (best == kLists || d(i).stamp < d(bi).stamp) {
      best = l;
      bi = i;
    }
  }
  if (best == kLists) return false;
  isolate(bi, list_order(best));
  *idx = bi;
  return true;
}

bool Buddy::isolate_largest(uint32_t* idx) {
  for (unsigned o = kNumOrders; o-- > report_order_;) {
    // (Below a pageblock: the colder of the two groups' oldest.)
    const uint32_t i = o < kPageblockOrder ? older(cold_end(o), cold_end(kNumOrders + o)) : cold_end(o);
    if (i == kNil) continue;
    isolate(i, o);
    *idx = i;
    return true;
  }
  return false;
}

void Buddy::putback(uint32_t idx, bool reported, uint64_t now) {
  PageDesc& h = d(idx);
  EBB_ASSERT(h.kind == PageKind::kIsolated);
  const unsigned o = h.order;
  c_.isolated_pages -= pages(o);
  // Not all of it: the pages that did go back (before a failed call, or of a
  // bounded give-back) are those whose bits the give-back set.
  uint32_t nrep;
  if (reported) {
    bits_->set(idx, pages(o));
    nrep = pages(o);
  } else {
    nrep = count_reported(idx, pages(o));
  }
  // free_block merges; a block that merges with a warm buddy is warm again,
  // and only its resident part will be reported next time.
  free_block(idx, o, nrep, now);
}

// ---- invariant checker -----------------------------------------------------

unsigned Buddy::check(bool print) const {
  CheckErrors errs(print, "");
  auto bad = [&](const char* what, uint64_t a, uint64_t b) { errs.bad(what, a, b); };
  BuddyCounts seen{};
  uint64_t warm_rep = 0;
  for (unsigned l = 0; l < kLists; ++l) {
    const unsigned o = list_order(l);
    const Area& a = area_[l];
    uint32_t prev = kNil;
    bool in_reported = false;
    uint64_t last_stamp = ~uint64_t{0};
    uint64_t steps = 0;
    for (uint32_t i = a.head; i != kNil; prev = i, i = d(i).link.next) {
      if (++steps > *frontier_) {
        bad("free list cycle at order", o, i);
        break;
      }
      const PageDesc& h = d(i);
      if (h.link.prev != prev) bad("broken prev link (order, page)", o, i);
      if (h.kind != PageKind::kFreeHead) bad("listed block is not a free head (order, page)", o, i);
      if (h.order != o) bad("block on wrong order list (order, page)", o, i);
      else if (list_of(i, o) != l) bad("block on the other group's list (order, page)", o, i);
      if (i & (pages(o) - 1)) bad("misaligned free block (order, page)", o, i);
      if (i + pages(o) > *frontier_) bad("free block past the frontier (order, page)", o, i);
      const uint32_t rep = count_reported(i, pages(o));
      if (rep != h.nrep) bad("reported count differs from page bits (page, count)", i, h.nrep);
      const bool full = h.nrep == pages(o);
      if (full && !in_reported) {
        if (a.boundary != i) bad("boundary is not the first reported block (order, page)", o, i);
        in_reported = true;
      } else if (!full && in_reported) {
        bad("warm block behind the boundary (order, page)", o, i);
      }
      if (!full) {
        if (h.stamp > last_stamp) bad("warm run not ordered by free time (order, page)", o, i);
        last_stamp = h.stamp;
        if (o >= report_order_) warm_rep += pages(o) - h.nrep;
      }
      seen.nr_free[o]++;
      if (full) seen.nr_reported[o]++;
      seen.free_pages += pages(o);
      seen.reported_pages += h.nrep;
    }
    if (prev != a.tail) bad("tail pointer wrong at order", o, a.tail);
    if (!in_reported && a.boundary != kNil) bad("boundary set without reported blocks (order)", o, a.boundary);
  }
  for (unsigned o = 0; o <= kMaxOrder; ++o) {
    if (seen.nr_free[o] != c_.nr_free[o]) bad("nr_free mismatch (order, counted)", o, seen.nr_free[o]);
    if (seen.nr_reported[o] != c_.nr_reported[o]) bad("nr_reported mismatch (order, counted)", o, seen.nr_reported[o]);
  }
  if (seen.free_pages != c_.free_pages) bad("free page count mismatch", seen.free_pages, c_.free_pages);
  if (seen.reported_pages != c_.reported_pages) bad("reported page count mismatch", seen.reported_pages, c_.reported_pages);
  if (warm_rep != warm_reportable_) bad("warm reportable count mismatch", warm_rep, warm_reportable_);

  // Every page below the frontier belongs to exactly one block. Only heads
  // are kept exact (interior pages may keep the kind they had in a block
  // they belonged to before: nothing reads them); a head inside another
  // block's span is an overlap.
  auto is_head = [](PageKind k) {
    return k == PageKind::kFreeHead || k == PageKind::kIsolated || k == PageKind::kLargeHead;
  };
  uint64_t free_walked = 0, isolated_walked = 0;
  for (uint32_t i = 0; i < *frontier_;) {
    const PageDesc& h = d(i);
    uint32_t span = 1;
    switch (h.kind) {
      case PageKind::kFreeHead:
      case PageKind::kIsolated:
        span = pages(h.order);
        for (uint32_t k = 1; k < span && i + k < *frontier_; ++k)
          if (is_head(d(i + k).kind)) {
            bad("free block overlaps another block (head, page)", i, i + k);
            break;
          }
        (h.kind == PageKind::kFreeHead ? free_walked : isolated_walked) += span;
        break;
      case PageKind::kLargeHead:
        span = h.npages;
        if (span == 0) {
          bad("large block with no pages at", i, 0);
          span = 1;
        }
        for (uint32_t k = 1; k < span && i + k < *frontier_; ++k)
          if (is_head(d(i + k).kind)) {
            bad("large block overlaps another block (head, page)", i, i + k);
            break;
          }
        if (count_reported(i, span) != 0) bad("in-use large block has reported pages", i, count_reported(i, span));
        break;
      case PageKind::kSlab:
        // A slab's pages may be reported while it is in use: the central
        // bins own those bits (central_check verifies them).
        break;
      case PageKind::kFreeTail:
        bad("page belongs to no block", i, static_cast<uint64_t>(h.kind));
        break;
    }
    i += span;
  }
  if (free_walked != c_.free_pages) bad("pages in free heads differ from listed pages", free_walked, c_.free_pages);
  if (isolated_walked != c_.isolated_pages) bad("isolated pages mismatch", isolated_walked, c_.isolated_pages);
  return errs.count();
}

}  // namespace ebb
