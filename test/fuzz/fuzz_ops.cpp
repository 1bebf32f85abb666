// libFuzzer harness: input bytes become a sequence of allocator operations.
//
// The library's objects, malloc override included, are linked into this
// binary, so the process's malloc IS ebbmalloc: the harness calls the public
// API (every malloc-family function, operator new/delete, malloc_trim,
// ebb_report_now, ebb_check_heap) and libFuzzer's own allocations go through
// ebbmalloc too. Built in a Debug-style configuration (-DEBB_DEBUG=1) and run
// with EBBMALLOC_CHECK=1, so every heap operation is followed by a walk of
// every heap invariant.
//
// Every live block's bytes are a function of (seed, offset); a block is
// verified in full before it is freed or reallocated, after a forced
// reporter pass, and all live blocks at the end of each input. Any
// mismatch, a heap check failure or a broken API contract traps (libFuzzer
// then saves the input).
//
// Build and run: see docs/RELIABILITY.md (tools/test-reliability fuzz).
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <new>
#include <thread>

#include "ebbmalloc.h"
#include "pattern.h"

extern "C" void free_sized(void*, size_t);
extern "C" void free_aligned_sized(void*, size_t, size_t);

namespace {

#define FUZZ_CHECK(cond)                                                            \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      fprintf(stderr, "fuzz_ops: check failed at line %d: %s\n", __LINE__, #cond); \
      __builtin_trap();                                                             \
    }                                                                               \
  } while (0)

// ---- input -------------------------------------------------------------------

struct Input {
  const uint8_t* p;
  size_t n;
  bool empty() const { return n == 0; }
  uint8_t u8() {
    if (!n) return 0;
    --n;
    return *p++;
  }
  uint32_t u32() {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v = v << 8 | u8();
    return v;
  }
};

constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kLiveCap = 48 * kMiB;  // total live bytes the harness keeps

// A size from 0 to huge, with the interesting edges over-represented.
size_t pick_size(Input& in) {
  const uint8_t k = in.u8();
  const uint32_t r = in.u32();
  static const size_t kEdges[] = {0, 1, 15, 16, 17, 128, 129, 4095, 4096, 4097, 32767, 32768, 32769,
                                  65536, 2 * kMiB - 1, 2 * kMiB, 2 * kMiB + 1, 32 * kMiB - 4096,
                                  32 * kMiB, 32 * kMiB + 1, 48 * kMiB};
  switch (k % 16) {
    case 0:
    case 1: return r % 65;                        // tiny
    case 2:
    case 3:
    case 4:
    case 5: return r % 4097;                      // small
    case 6:
    case 7: return r % 32769;                     // up to the largest class
    case 8:
    case 9:
    case 10: return 32769 + r % (kMiB - 32768);   // large
    case 11: return kMiB + r % (31 * kMiB);       // large, up to the top order
    case 12:
    case 13: return kEdges[r % (sizeof(kEdges) / sizeof(kEdges[0]))];
    case 14: return 32 * kMiB + r % (8 * kMiB);   // huge (own mapping)
    default: return r % 257;
  }
}

size_t pick_align(Input& in) { return size_t{1} << (in.u8() % 24); }  // 1 B .. 8 MiB

// ---- blocks ------------------------------------------------------------------

enum class Kind : uint8_t { kMalloc, kNew, kNewAligned };

struct Slot {
  unsigned char* p = nullptr;
  size_t n = 0;      // bytes the pattern covers
  size_t req = 0;    // size asked for (sized delete / free_sized)
  size_t align = 0;  // alignment asked for, 0 if none
  uint32_t seed = 0;
  Kind kind = Kind::kMalloc;
};

constexpr unsigned kSlots = 64;
Slot g_slots[kSlots];
size_t g_live = 0;
uint32_t g_seed = 1;

using ebbtest::pattern_fill;

void verify(const unsigned char* p, uint32_t seed, size_t n) { FUZZ_CHECK(ebbtest::pattern_ok(p, seed, n)); }

bool aligned_to(const void* p, size_t a) { return (reinterpret_cast<uintptr_t>(p) & (a - 1)) == 0; }

// Takes a fresh block into slot s (which must be empty).
void adopt(Slot& s, void* p, size_t n, size_t align, Kind kind) {
  FUZZ_CHECK(aligned_to(p, align > 16 ? align : 16));
  FUZZ_CHECK(malloc_usable_size(p) >= n);
  s.p = static_cast<unsigned char*>(p);
  s.n = n;
  s.req = n;
  s.align = align;
  s.seed = g_seed++;
  s.kind = kind;
  pattern_fill(s.p, s.seed, 0, n);
  g_live += n;
}

void release(Slot& s, Input& in) {
  if (!s.p) return;
  verify(s.p, s.seed, s.n);
  g_live -= s.n;
  const uint8_t how = in.u8() % 3;
  switch (s.kind) {
    case Kind::kMalloc:
      if (how == 0) free(s.p);
      else if (how == 1 && !s.align) free_sized(s.p, s.req);
      else if (how == 1) free_aligned_sized(s.p, s.align, s.req);
      else free(s.p);
      break;
    case Kind::kNew:
      if (how == 0) ::operator delete(s.p);
      else ::operator delete(s.p, s.req);
      break;
    case Kind::kNewAligned:
      if (how == 0) ::operator delete(s.p, std::align_val_t(s.align));
      else ::operator delete(s.p, s.req, std::align_val_t(s.align));
      break;
  }
  s = Slot{};
}

bool room_for(size_t n) { return n <= kLiveCap && g_live + n <= kLiveCap; }

// ---- a second thread, for cross-thread frees and allocations -----------------

struct Worker {
  std::mutex m;
  std::condition_variable cv;
  Slot* job = nullptr;  // free it (p set) or fill it (p null, n = size)
  bool done = true;

  void run() {
    std::unique_lock<std::mutex> l(m);
    for (;;) {
      cv.wait(l, [&] { return !done; });
      Slot& s = *job;
      if (s.p) {
        verify(s.p, s.seed, s.n);
        free(s.p);
        g_live -= s.n;
        s = Slot{};
      } else {
        void* p = malloc(s.n);
        if (p) adopt(s, p, s.n, 0, Kind::kMalloc);
        else s = Slot{};
      }
      done = true;
      cv.notify_all();
    }
  }
  void submit(Slot* s) {
    std::unique_lock<std::mutex> l(m);
    job = s;
    done = false;
    cv.notify_all();
    cv.wait(l, [&] { return done; });
  }
};
Worker* g_worker;
uint64_t g_ops = 0;  // operations run, printed at exit (for docs/RELIABILITY.md)
__attribute__((destructor)) void print_ops() { fprintf(stderr, "fuzz_ops: %llu allocator operations\n", (unsigned long long)g_ops); }

// ---- operations ----------------------------------------------------------------

void op_alloc(Slot& s, Input& in, uint8_t which) {
  const size_t n = pick_size(in);
  if (!room_for(n)) return;
  void* p = nullptr;
  size_t align = 0;
  Kind kind = Kind::kMalloc;
  switch (which % 9) {
    case 0: p = malloc(n); break;
    case 1: {
      const size_t m = 1 + in.u8() % 16;
      const size_t each = n / m;
      p = calloc(m, each);
      if (p) {
        FUZZ_CHECK(ebbtest::all_zero(static_cast<unsigned char*>(p), m * each));
        adopt(s, p, m * each, 0, kind);
      }
      return;
    }
    case 2: {
      align = pick_align(in);
      if (align < sizeof(void*)) align = sizeof(void*);
      void* q = nullptr;
      const int rc = posix_memalign(&q, align, n);
      FUZZ_CHECK(rc == 0 || rc == ENOMEM);
      p = rc == 0 ? q : nullptr;
      break;
    }
    case 3: align = pick_align(in); p = aligned_alloc(align, n); break;
    case 4: align = pick_align(in); p = memalign(align, n); break;
    case 5: align = 4096; p = valloc(n); break;
    case 6: p = ::operator new(n, std::nothrow); kind = Kind::kNew; break;
    case 7:
      align = pick_align(in);
      p = ::operator new(n, std::align_val_t(align), std::nothrow);
      kind = Kind::kNewAligned;
      break;
    default: {
      const size_t m = 1 + in.u8() % 8;
      p = reallocarray(nullptr, m, n / m);
      if (p) adopt(s, p, m * (n / m), 0, kind);
      return;
    }
  }
  if (p) adopt(s, p, n, align, kind);
}

void op_realloc(Slot& s, Input& in) {
  if (s.p && s.kind != Kind::kMalloc) return;
  // A chain of reallocs on one block, each checked.
  const unsigned steps = 1 + in.u8() % 4;
  for (unsigned k = 0; k < steps; ++k) {
    const size_t n = pick_size(in);
    if (!room_for(n)) return;
    if (s.p) verify(s.p, s.seed, s.n);
    if (n == 0 && s.p) {
      // glibc semantics: frees, returns NULL.
      FUZZ_CHECK(realloc(s.p, 0) == nullptr);
      g_live -= s.n;
      s = Slot{};
      return;
    }
    void* q = realloc(s.p, n);
    if (!q) {
      FUZZ_CHECK(errno == ENOMEM);
      return;  // the old block is untouched (checked at its free)
    }
    if (!s.p) {
      adopt(s, q, n, 0, Kind::kMalloc);
      continue;
    }
    s.p = static_cast<unsigned char*>(q);
    const size_t keep = s.n < n ? s.n : n;
    verify(s.p, s.seed, keep);
    FUZZ_CHECK(malloc_usable_size(q) >= n);
    pattern_fill(s.p, s.seed, keep, n);
    g_live = g_live - s.n + n;
    s.n = s.req = n;
    s.align = 0;
  }
}

void op_usable(Slot& s) {
  // Every byte malloc_usable_size promises is writable and keeps its value.
  if (!s.p) return;
  const size_t u = malloc_usable_size(s.p);
  FUZZ_CHECK(u >= s.n);
  if (!room_for(u - s.n) || s.kind != Kind::kMalloc) return;
  pattern_fill(s.p, s.seed, s.n, u);
  g_live += u - s.n;
  s.n = u;  // req stays: free_sized takes the requested size
}

void op_absurd(Input& in) {
  // Requests that can never be met get NULL and the right errno.
  const uint8_t k = in.u8() % 8;
  const size_t huge = SIZE_MAX - (in.u8() % 64) * size_t{4096};
  // Through volatiles: the compiler must not judge the bad alignments itself.
  volatile size_t bad_align = 48, giant_align = size_t{1} << 62;
  errno = 0;
  switch (k) {
    case 0: FUZZ_CHECK(malloc(huge) == nullptr && errno == ENOMEM); break;
    case 1: FUZZ_CHECK(calloc(huge / 2 + 2, 2) == nullptr && errno == ENOMEM); break;
    case 2: FUZZ_CHECK(realloc(nullptr, huge) == nullptr && errno == ENOMEM); break;
    case 3: {
      void* q = nullptr;
      FUZZ_CHECK(posix_memalign(&q, 24, 16) == EINVAL);
      FUZZ_CHECK(posix_memalign(&q, 64, huge) == ENOMEM);
      break;
    }
    case 4: FUZZ_CHECK(aligned_alloc(bad_align, 64) == nullptr && errno == EINVAL); break;
    case 5: FUZZ_CHECK(memalign(giant_align, 64) == nullptr && errno == ENOMEM); break;
    case 6: FUZZ_CHECK(reallocarray(nullptr, huge, 3) == nullptr && errno == ENOMEM); break;
    default: FUZZ_CHECK(::operator new(huge, std::nothrow) == nullptr); break;
  }
}

void verify_all() {
  for (Slot& s : g_slots)
    if (s.p) verify(s.p, s.seed, s.n);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  g_worker = new Worker;
  std::thread([] { g_worker->run(); }).detach();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in{data, size};
  while (!in.empty()) {
    const uint8_t op = in.u8();
    ++g_ops;
    Slot& s = g_slots[in.u8() % kSlots];
    switch (op % 16) {
      case 0:
      case 1:
      case 2:
      case 3: if (!s.p) op_alloc(s, in, op / 16); else release(s, in); break;
      case 4:
      case 5: op_realloc(s, in); break;
      case 6: release(s, in); break;
      case 7: op_usable(s); break;
      case 8:  // cross-thread free, or an allocation on the other thread
        if (!s.p || s.kind == Kind::kMalloc) {
          if (!s.p) {
            s.n = pick_size(in);
            if (!room_for(s.n)) {
              s = Slot{};
              break;
            }
          }
          g_worker->submit(&s);
        }
        break;
      case 9: malloc_trim(0); verify_all(); break;
      case 10: ebb_report_now(); verify_all(); break;
      case 11: FUZZ_CHECK(ebb_check_heap() == 0); break;
      case 12: op_absurd(in); break;
      case 13: {
        ebb_stats_t st;
        FUZZ_CHECK(ebb_stats(&st) == 0 && st.version == EBB_STATS_VERSION);
        FUZZ_CHECK(st.live_bytes >= g_live / 2);  // small objects are class-rounded up, never down
        // The resident floor: pages of live bytes, within what is mapped;
        // its walk leaves the heap consistent.
        FUZZ_CHECK(st.floor_exact == 1 && st.floor_bytes <= st.mapped_bytes);
        FUZZ_CHECK(st.floor_bytes == st.floor_slab_bytes + st.floor_large_bytes + st.huge_bytes);
        FUZZ_CHECK(ebb_check_heap() == 0);
        const struct mallinfo2 mi = mallinfo2();
        FUZZ_CHECK(mi.uordblks + mi.hblkhd >= g_live / 2);
        break;
      }
      case 14: {  // free several blocks at once: frees runs of buddies (merging)
        const unsigned n = 1 + in.u8() % 16;
        for (unsigned i = 0; i < n; ++i) release(g_slots[(op + i) % kSlots], in);
        break;
      }
      default:
        if (s.p) verify(s.p, s.seed, s.n);
        break;
    }
  }
  // Nothing leaks from one input to the next.
  for (Slot& s : g_slots) release(s, in);
  FUZZ_CHECK(g_live == 0);
  FUZZ_CHECK(ebb_check_heap() == 0);
  return 0;
}
