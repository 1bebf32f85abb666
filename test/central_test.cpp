// The central bins on their own (next to the system allocator): free pages
// inside slabs that are still in use are reported, objects on resident pages
// are handed out before objects on reported ones, and the bins' invariants
// (partial-list boundary, counts, bitmaps against reported pages) hold
// throughout. The reporter's slab pass is driven by hand, with cold_ms 0.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <random>
#include <vector>

#include "front/central.h"
#include "front/free_list.h"
#include "front/globals.h"
#include "front/thread_cache.h"
#include "os/os.h"

using namespace ebb;

namespace {

// 16 KiB objects, 4 pages each (a slab holds kPer of them).
constexpr size_t kSize = 16 * 1024;
const unsigned kCls = size_class(kSize);
const unsigned kPer = class_info(kCls).objects;

bool page_resident(const void* p) {
  unsigned char v = 0;
  void* page = reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(p) & ~uintptr_t{4095});
  EXPECT_EQ(mincore(page, 4096, &v), 0);
  return v & 1;
}

class CentralTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // No reporter thread: the tests run the slab pass themselves.
    setenv("EBBMALLOC_REPORTER", "0", 1);
    ASSERT_TRUE(ensure_init());
  }
  void TearDown() override { EXPECT_EQ(central_check(true), 0u); }

  static std::vector<char*> alloc(unsigned n) {
    std::vector<char*> v;
    while (v.size() < n) {
      void* head = nullptr;
      const unsigned got = central_alloc_batch(kCls, n - static_cast<unsigned>(v.size()), &head);
      EXPECT_GT(got, 0u);
      for (unsigned i = 0; i < got; ++i) {
        char* o = static_cast<char*>(head);
        head = link_load(o);  // links are encoded (front/free_list.h)
        v.push_back(o);
      }
    }
    return v;
  }
  static void fill(char* o, unsigned char v) { memset(o, v, kSize); }
  static bool holds(const char* o, unsigned char v, size_t from = 0) {
    for (size_t k = from; k < kSize; ++k)
      if (static_cast<unsigned char>(o[k]) != v) return false;
    return true;
  }
  static uint64_t report_cold() {
    uint64_t released = 0;
    central_report_cold(0, 0, 0, &released);
    return released;
  }
};

TEST_F(CentralTest, WhollyFreePagesOfSlabsInUseAreReportedAndSurvivorsKept) {
  // 8 slabs; keep the first and last object of each so no slab empties.
  ASSERT_GE(kPer, 4u);
  std::vector<char*> objs = alloc(8 * kPer);
  for (size_t i = 0; i < objs.size(); ++i) fill(objs[i], static_cast<unsigned char>(i));
  const CentralTotals before = central_totals();
  std::vector<char*> kept;
  for (size_t i = 0; i < objs.size(); ++i) {
    if (i % kPer == 0 || i % kPer == kPer - 1) kept.push_back(objs[i]);
    else central_free_one(kCls, objs[i]);
  }
  EXPECT_EQ(central_totals().slabs, before.slabs) << "no slab may have been released";
  const uint64_t released = report_cold();
  // kPer - 2 free objects of 4 pages each in each of the 8 slabs.
  EXPECT_EQ(released, uint64_t{8} * (kPer - 2) * kSize);
  EXPECT_EQ(central_totals().reported_bytes - before.reported_bytes, released);
  for (size_t i = 0; i < objs.size(); ++i) {
    if (i % kPer == 0 || i % kPer == kPer - 1) {
      EXPECT_TRUE(holds(objs[i], static_cast<unsigned char>(i))) << "survivor " << i << " changed";
    } else {
      EXPECT_FALSE(page_resident(objs[i])) << "object " << i << " should have been given back";
    }
  }
  // A second pass finds nothing left to report.
  EXPECT_EQ(report_cold(), 0u);
  for (char* o : kept) central_free_one(kCls, o);
}

TEST_F(CentralTest, ObjectsOnResidentPagesAreHandedOutBeforeReportedOnes) {
  std::vector<char*> objs = alloc(kPer);  // one slab
  const unsigned last = kPer - 1;
  for (size_t i = 1; i < last; ++i) central_free_one(kCls, objs[i]);
  ASSERT_EQ(report_cold(), uint64_t{kPer - 2} * kSize);
  // Free a survivor: its pages are free but resident (warm).
  fill(objs[last], 0x5A);
  central_free_one(kCls, objs[last]);
  const uint64_t refaulted = central_totals().refaulted_bytes;
  std::vector<char*> again = alloc(1);
  EXPECT_EQ(again[0], objs[last]) << "the warm object must come before the reported ones";
  EXPECT_EQ(central_totals().refaulted_bytes, refaulted);
  // The next one has to come from a reported page: it is counted, and its
  // memory reads as zero (MADV_DONTNEED) but for the two words a batch
  // writes (the encoded link and the free key).
  std::vector<char*> more = alloc(1);
  EXPECT_EQ(central_totals().refaulted_bytes, refaulted + kSize);
  EXPECT_TRUE(holds(more[0], 0, 2 * sizeof(void*)) || !g.zero_reported);
  central_free_one(kCls, objs[0]);
  central_free_one(kCls, again[0]);
  central_free_one(kCls, more[0]);
}

TEST_F(CentralTest, SlabWithReportedPagesGoesBackToTheHeapWithItsBitsCounted) {
  std::vector<char*> objs = alloc(kPer);
  for (size_t i = 1; i < kPer; ++i) central_free_one(kCls, objs[i]);
  ASSERT_EQ(report_cold(), uint64_t{kPer - 1} * kSize);
  const uint64_t rep_before = central_totals().reported_bytes;
  uint64_t heap_rep_before;
  {
    LockGuard h(g.heap.lock());
    heap_rep_before = g.heap.buddy().counts().reported_pages;
  }
  central_free_one(kCls, objs[0]);  // the slab empties and goes to the page heap
  EXPECT_EQ(central_totals().reported_bytes, rep_before - (kPer - 1) * kSize);
  LockGuard h(g.heap.lock());
  EXPECT_EQ(g.heap.buddy().counts().reported_pages, heap_rep_before + (kPer - 1) * kSize / 4096);
  EXPECT_EQ(g.heap.buddy().check(true), 0u);
}

TEST_F(CentralTest, TransferBatchesPassBetweenCachesAndDrainToSlabsWhenCold) {
  // One slab; half of it goes through the transfer cache, half stays live.
  std::vector<char*> objs = alloc(kPer);
  const unsigned n = kPer / 2;
  auto chain = [&] {
    for (unsigned i = 0; i + 1 < n; ++i) link_store(objs[i], objs[i + 1]);
    link_store(objs[n - 1], nullptr);
  };
  // A flushed overflow comes back whole to the next refill...
  chain();
  central_transfer_batch(kCls, objs[0], n);
  EXPECT_EQ(g.bins[kCls].ntransfer, 1u);
  void* head = nullptr;
  ASSERT_EQ(central_alloc_batch(kCls, n, &head), n);
  EXPECT_EQ(head, objs[0]) << "the refill takes the batch as it was left";
  EXPECT_EQ(g.bins[kCls].ntransfer, 0u);
  // ... and one that nobody takes goes to its slab once cold, where its
  // pages are reported like any other free object's.
  chain();
  central_transfer_batch(kCls, objs[0], n);
  const uint64_t free_before = central_totals().free_bytes;
  EXPECT_EQ(report_cold(), uint64_t{n} * kSize);
  EXPECT_EQ(g.bins[kCls].ntransfer, 0u);
  EXPECT_EQ(g.bins[kCls].transfer_objects, 0u);
  EXPECT_EQ(central_totals().free_bytes, free_before) << "the objects are still counted free, now in their slab";
  for (unsigned i = n; i < kPer; ++i) central_free_one(kCls, objs[i]);
}

TEST_F(CentralTest, ATransferBatchLargerThanTheRefillIsSplitNotLeftPinningItsSlab) {
  // An exited thread's whole bin, taken by a refill of a smaller capacity:
  // the refill gets the batch's first objects, the rest stays a batch.
  std::vector<char*> objs = alloc(kPer);
  for (unsigned i = 0; i + 1 < kPer; ++i) link_store(objs[i], objs[i + 1]);
  link_store(objs[kPer - 1], nullptr);
  central_transfer_batch(kCls, objs[0], kPer);
  const unsigned want = kPer / 4;
  void* head = nullptr;
  ASSERT_EQ(central_alloc_batch(kCls, want, &head, want), want);
  EXPECT_EQ(head, objs[0]);
  void* x = head;
  for (unsigned i = 1; i < want; ++i) x = link_load(x);
  EXPECT_EQ(link_load(x), nullptr) << "the refill's list ends after its objects";
  ASSERT_EQ(g.bins[kCls].ntransfer, 1u);
  EXPECT_EQ(g.bins[kCls].transfer[0].head, objs[want]);
  EXPECT_EQ(g.bins[kCls].transfer[0].count, kPer - want);
  EXPECT_EQ(g.bins[kCls].transfer_objects, kPer - want);
  EXPECT_EQ(central_check(true), 0u);
  // The rest comes whole to a refill it fits.
  void* rest = nullptr;
  ASSERT_EQ(central_alloc_batch(kCls, kPer - want, &rest), kPer - want);
  EXPECT_EQ(rest, objs[want]);
  EXPECT_EQ(g.bins[kCls].ntransfer, 0u);
  for (unsigned i = 0; i < kPer; ++i) central_free_one(kCls, objs[i]);
}

TEST_F(CentralTest, TheTransferCacheHoldsAtMostItsBytes) {
  // Batches of two objects of the largest class fill kTransferBytes before
  // kTransferSlots; the next goes to the slabs.
  constexpr unsigned kBig = kNumClasses;
  const uint64_t batch_bytes = 2 * class_info(kBig).size;
  const unsigned fit = static_cast<unsigned>(kTransferBytes / batch_bytes);
  ASSERT_LT(fit, kTransferSlots);
  std::vector<void*> objs;
  for (unsigned i = 0; i < 2 * (fit + 1); ++i) objs.push_back(central_alloc_one(kBig));
  for (unsigned i = 0; i < objs.size(); i += 2) {
    EXPECT_EQ(central_transfer_full(kBig), i / 2 == fit);
    link_store(objs[i], objs[i + 1]);
    link_store(objs[i + 1], nullptr);
    central_transfer_batch(kBig, objs[i], 2);
  }
  EXPECT_EQ(g.bins[kBig].ntransfer, fit);
  EXPECT_EQ(g.bins[kBig].transfer_objects * class_info(kBig).size, kTransferBytes);
  EXPECT_EQ(central_check(true), 0u);
  while (g.bins[kBig].ntransfer) {
    void* p = nullptr;
    ASSERT_EQ(central_alloc_batch(kBig, 2, &p), 2u);
    void* q = link_load(p);
    central_free_one(kBig, p);
    central_free_one(kBig, q);
  }
}

TEST_F(CentralTest, RefillsTakeTheFullestOfTheFirstSlabs) {
  // Three full slabs, then frees into each: 1, 3 and 2 objects. The partial
  // list is LIFO (the last slab freed into first); a refill takes from the
  // fullest instead, so the emptier slabs can drain to empty.
  ASSERT_GE(kPer, 4u);
  std::vector<char*> objs = alloc(3 * kPer);
  const PageDesc* descs = g.heap.region().descs();
  auto slab_of = [&](const void* p) { return descs[g.heap.region().page_index(p)].slab; };
  std::vector<std::vector<char*>> by_slab;
  std::vector<const Slab*> slabs;
  for (char* o : objs) {
    unsigned k = 0;
    while (k < slabs.size() && slabs[k] != slab_of(o)) ++k;
    if (k == slabs.size()) {
      slabs.push_back(slab_of(o));
      by_slab.emplace_back();
    }
    by_slab[k].push_back(o);
  }
  ASSERT_EQ(slabs.size(), 3u) << "three new slabs, each filled";
  const unsigned frees[3] = {1, 3, 2};
  for (unsigned k = 0; k < 3; ++k)
    for (unsigned i = 0; i < frees[k]; ++i) central_free_one(kCls, by_slab[k][i]);
  EXPECT_NE(g.bins[kCls].partial, slabs[0]) << "the LIFO head is a slab freed into later";
  void* head = nullptr;
  ASSERT_EQ(central_alloc_batch(kCls, 1, &head), 1u);
  EXPECT_EQ(head, by_slab[0][0]) << "the object freed into the fullest slab";
  by_slab[0][0] = static_cast<char*>(head);
  for (unsigned k = 0; k < 3; ++k)
    for (unsigned i = k == 0 ? 0 : frees[k]; i < kPer; ++i) central_free_one(kCls, by_slab[k][i]);
}

// What a thread's cache holds after it churned twelve classes of 1-8 KiB
// (each slow-path call lets a class hold more, up to 128 KiB of it, within
// the thread's budget), beyond the classes' start; the heap's hint of pages
// in use refreshed first, as a reporter pass does.
uint64_t churned_cache_growth(int per_class, uint64_t* in_use) {
  {
    LockGuard h(g.heap.lock());
    uint64_t peak_ms;
    g.heap.take_in_use_peak(os::now_ms(), &peak_ms);
  }
  *in_use = g.heap.in_use_hint() << kPageShift;
  std::vector<void*> held;
  uint64_t starts = 0;
  for (size_t size = 1024; size <= 8192; size += size / 4) {
    const unsigned c = size_class(size);
    starts += uint64_t{class_info(c).cache_init} * class_info(c).size;
  }
  for (int round = 0; round < 40; ++round) {
    for (size_t size = 1024; size <= 8192; size += size / 4)
      for (int i = 0; i < per_class; ++i) held.push_back(malloc_small(size));
    for (void* p : held) free_small(p, page_bin_offset(reinterpret_cast<uintptr_t>(p) - g_fast.base));
    held.clear();
  }
  const uint64_t cached = thread_cache_bytes(nullptr);
  thread_cache_flush_mine();
  EXPECT_EQ(thread_cache_bytes(nullptr), 0u);
  return cached > starts ? cached - starts : 0;
}

TEST_F(CentralTest, ThreadCachesOfASmallHeapStaySmall) {
  // A small heap: its caches grow by an eighth of what is in use, scaled
  // down by the heap's size below 8 MiB (3/8 here), or the least budget.
  // 3 MiB in use: a flat eighth would be 384 KiB.
  std::vector<char*> some = alloc(192);
  uint64_t in_use;
  const uint64_t small = churned_cache_growth(8, &in_use);
  ASSERT_GE(in_use, uint64_t{3} << 20);
  ASSERT_LT(in_use, uint64_t{4} << 20) << "the tests before left the heap small";
  EXPECT_LT(small, in_use / 8 / 2) << "well below a flat eighth of the pages in use";
  for (char* o : some) central_free_one(kCls, o);
  // 16 MiB in use: an eighth of it, 2 MiB, lets every class grow to its
  // 128 KiB (1.5 MiB in all; what the bins hold at the end is less).
  std::vector<char*> objs = alloc(1024);
  const uint64_t large = churned_cache_growth(48, &in_use);
  ASSERT_GE(in_use, uint64_t{16} << 20);
  EXPECT_GE(large, uint64_t{512} << 10);
  for (char* o : objs) central_free_one(kCls, o);
}

TEST_F(CentralTest, APageSizedClassHasSlabsOf32ObjectsWhoseFreePagesGoBack) {
  // Classes of a page and more: 32 objects a slab, or 256 KiB (the page
  // masks' 64 pages), so a thread cycling through more objects than its
  // cache holds does not empty and re-make a slab every 8 objects.
  for (unsigned c = 1; c <= kNumClasses; ++c) {
    const SizeClass& sc = class_info(c);
    if (sc.size < 4096) continue;
    EXPECT_TRUE(sc.objects >= 32 || sc.slab_order == 6) << "class " << sc.size;
  }
  // A slab of 8 KiB objects: every object but one freed; the slab stays
  // (its survivor keeps its bytes) and the freed objects' pages go back.
  const unsigned cls = size_class(8192);
  const unsigned per = class_info(cls).objects;
  ASSERT_EQ(per, 32u);
  std::vector<char*> objs;
  while (objs.size() < 2 * per) {
    void* head = nullptr;
    const unsigned got = central_alloc_batch(cls, 2 * per - static_cast<unsigned>(objs.size()), &head);
    ASSERT_GT(got, 0u);
    for (unsigned i = 0; i < got; ++i) {
      objs.push_back(static_cast<char*>(head));
      head = link_load(objs.back());
    }
  }
  for (char* o : objs) memset(o, 0x5a, 8192);
  const PageDesc* descs = g.heap.region().descs();
  auto slab_of = [&](const char* o) { return descs[g.heap.region().page_index(o)].slab; };
  // The slab all of whose objects this test holds (two slabs' worth were
  // taken: at most one of them was partly used before).
  const Slab* whole = nullptr;
  for (char* o : objs) {
    unsigned n = 0;
    for (char* x : objs) n += slab_of(x) == slab_of(o);
    if (n == per) whole = slab_of(o);
  }
  ASSERT_NE(whole, nullptr);
  char* survivor = nullptr;
  std::vector<char*> freed;
  for (char* o : objs) {
    if (slab_of(o) != whole) continue;
    if (!survivor) survivor = o;
    else freed.push_back(o);
  }
  ASSERT_EQ(freed.size(), per - 1);
  for (char* o : freed) central_free_one(cls, o);
  EXPECT_GE(report_cold(), uint64_t{per - 1} * 8192) << "the freed objects' pages were given back";
  for (const char* o : freed) {
    EXPECT_FALSE(page_resident(o));
    EXPECT_FALSE(page_resident(o + 4096));
  }
  EXPECT_EQ(slab_of(survivor), whole) << "the survivor's slab stays";
  for (size_t k = 0; k < 8192; ++k) ASSERT_EQ(static_cast<unsigned char>(survivor[k]), 0x5a);
  for (char* o : objs)
    if (slab_of(o) != whole || o == survivor) central_free_one(cls, o);
}

TEST_F(CentralTest, ARefillFaultsInExactlyThePagesOfTheObjectsItHandsOut) {
  // 256 B objects, 16 a page (no other test here uses the class): one slab,
  // all but its last object freed and the free pages given back, so its
  // object pages are [reported][reported][reported][resident, survivor].
  const unsigned cls = size_class(256);
  const unsigned per = class_info(cls).objects, on_page = 4096 / 256;
  ASSERT_EQ(per, 4 * on_page);
  auto take = [&](unsigned n) {
    std::vector<char*> v;
    void* head = nullptr;
    EXPECT_EQ(central_alloc_batch(cls, n, &head), n);
    for (unsigned i = 0; i < n; ++i) {
      v.push_back(static_cast<char*>(head));
      head = link_load(v.back());
    }
    return v;
  };
  std::vector<char*> slab = take(per);
  for (unsigned i = 1; i < per; ++i) ASSERT_EQ(slab[i], slab[0] + i * 256) << "one fresh slab, in order";
  for (unsigned i = 0; i + 1 < per; ++i) central_free_one(cls, slab[i]);
  ASSERT_EQ(report_cold(), uint64_t{3} * 4096);
  const uint64_t refaulted = central_totals().refaulted_bytes;
  // The resident page's free objects first: nothing faulted in.
  std::vector<char*> warm = take(on_page - 1);
  for (unsigned i = 0; i < warm.size(); ++i) EXPECT_EQ(warm[i], slab[3 * on_page + i]);
  EXPECT_EQ(central_totals().refaulted_bytes, refaulted);
  // Then, in order, objects of the reported pages: a refill ending inside
  // page 1 faults in pages 0 and 1 only; page 2 stays given back.
  std::vector<char*> cold = take(on_page + 4);
  for (unsigned i = 0; i < cold.size(); ++i) EXPECT_EQ(cold[i], slab[i]);
  EXPECT_EQ(central_totals().refaulted_bytes, refaulted + 2 * 4096);
  EXPECT_FALSE(page_resident(slab[2 * on_page])) << "page 2 was not touched";
  // The rest of page 1 is resident already; page 2 comes back with it.
  std::vector<char*> rest = take(2 * on_page - 4);
  for (unsigned i = 0; i < rest.size(); ++i) EXPECT_EQ(rest[i], slab[on_page + 4 + i]);
  EXPECT_EQ(central_totals().refaulted_bytes, refaulted + 3 * 4096);
  EXPECT_EQ(central_check(true), 0u);
  for (auto* v : {&warm, &cold, &rest})
    for (char* o : *v) central_free_one(cls, o);
  central_free_one(cls, slab[per - 1]);
}

TEST_F(CentralTest, RandomSequencesKeepTheInvariants) {
  std::mt19937 rng(7);
  std::vector<std::pair<char*, unsigned char>> live;
  for (int step = 0; step < 4000; ++step) {
    const unsigned op = rng() % 10;
    if (op < 5 || live.empty()) {
      for (char* o : alloc(1 + rng() % 8)) {
        const auto v = static_cast<unsigned char>(rng());
        memset(o, v, 64);
        live.emplace_back(o, v);
      }
    } else if (op < 9) {
      const size_t k = rng() % live.size();
      for (int b = 0; b < 64; ++b) ASSERT_EQ(static_cast<unsigned char>(live[k].first[b]), live[k].second);
      central_free_one(kCls, live[k].first);
      live[k] = live.back();
      live.pop_back();
    } else {
      report_cold();
    }
    if (step % 97 == 0) {
      ASSERT_EQ(central_check(true), 0u);
    }
  }
  for (auto& entry : live) central_free_one(kCls, entry.first);
}

}  // namespace
