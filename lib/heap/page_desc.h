// Out-of-band page descriptors: one per 4 KiB page of the heap, in an array
// beside it (the user-space twin of the kernel's struct page). Everything the
// allocator knows about a free block lives here, never inside the block, so
// that reported (given back) memory is never written and stays non-resident.
#pragma once
#include <cstdint>

namespace ebb {

struct Slab;

enum class PageKind : uint8_t {
  kFreeTail = 0,  // interior page of a free block, or beyond the heap frontier
                  // (interior pages are not kept exact: only heads are read)
  kFreeHead,      // first page of a free block on a free list
  kIsolated,      // first page of a free block taken off its list by the reporter
  kSlab,          // page of a slab (small objects); `slab` is valid
  kLargeHead,     // first page of a large allocation; `npages` is valid
                  // (its interior pages keep whatever kind they had)
};

struct PageDesc {
  union {
    struct {
      uint32_t next;  // free list links, as page indices (kNil ends)
      uint32_t prev;
    } link;
    Slab* slab;
  };
  uint64_t stamp;   // free head: monotonic ms when the block last became free
  // (A free head is never a large head: one word for both. Every reader
  // looks at `kind` first.)
  union {
    uint32_t nrep;    // free / isolated head: pages of the block that are reported (not resident)
    uint32_t npages;  // large head: pages in use
  };
  uint8_t order;    // free / isolated head: buddy order
  PageKind kind;
  uint8_t flags;    // large head: kPageCached | kPageGuard*
  uint8_t group;    // a pageblock's first page: the group its free fragments
                    // belong to (Buddy::Group; whether a page is resident:
                    // HeapRegion::reported())
};
// A large block freed into a thread's large-block cache (so a second free,
// from any thread, is a double free).
constexpr uint8_t kPageCached = 1;
// The hardened mode (front/harden.h): a large block with guard pages and a
// canary (`stamp` holds the requested size), the block of a leading guard
// page, a block whose guard page comes first, a freed block in quarantine.
constexpr uint8_t kPageHardened = 2;
constexpr uint8_t kPageGuardPage = 4;
constexpr uint8_t kPageLeadGuard = 8;
constexpr uint8_t kPageQuarantined = 16;
// What large_free must not take for a live block.
constexpr uint8_t kPageNotLive = kPageCached | kPageGuardPage | kPageQuarantined;
// 24 bytes per 4 KiB page: 0.59% of the heap (32 before nrep and npages
// shared a word: python3 holding 12 M strings, 9.0 -> 7.5 MiB of metadata).
static_assert(sizeof(PageDesc) == 24, "descriptors are kept at 24 bytes");

}  // namespace ebb
