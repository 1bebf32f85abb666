// hello_alloc: the smallest possible smoke test of an allocator.  Touches
// each entry point once or a few times -- malloc/free (small .. 4 MiB),
// malloc(0), free(NULL), calloc, realloc up/down and realloc(NULL), operator
// new/delete (plain, array, sized), posix_memalign, aligned_alloc and one
// cross-thread free -- checking contents, zeroing and alignment.  Runs in
// milliseconds; the common flags are accepted and ignored.
#include <vector>

#include "common.h"

namespace {

constexpr const char* kDescription = "Tiny smoke test: a few allocations through every entry point.";

uint64_t g_sum = 0;  // checksum: sum of object digests
uint64_t g_id = 0;

// Makes p visible to the outside world, so that the compiler cannot elide the
// allocation (C++ allows removing new/delete pairs it can see through).
inline void escape(void* p) { asm volatile("" : : "r"(p) : "memory"); }

// Fills p with the pattern of a fresh id, checks it, adds the digest.
uint64_t fill_and_check(void* p, size_t size, const char* what) {
  escape(p);
  uint64_t id = ++g_id;
  wl::fill_range(p, 0, size, id, size);
  g_sum += wl::object_digest(id, size, wl::check_range(p, 0, size, id, size, what));
  return id;
}

void check_alignment(const void* p, size_t align, const char* what) {
  if (reinterpret_cast<uintptr_t>(p) % align != 0) wl::fail("%s: %p not aligned to %zu", what, p, align);
}

}  // namespace

int main(int argc, char** argv) {
  const wl::Options opt = wl::parse_args(argc, argv, "hello_alloc", kDescription);
  (void)opt;
  wl::mark("start");

  // malloc/free over a range of sizes, freed in reverse order.
  const size_t sizes[] = {16, 24, 100, 1000, 4096, 10000, 65536, 300000, 1 << 20, 4 << 20};
  void* ptrs[sizeof sizes / sizeof sizes[0]];
  uint64_t ids[sizeof sizes / sizeof sizes[0]];
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; ++i) {
    ptrs[i] = malloc(sizes[i]);
    wl::check_pointer(ptrs[i], sizes[i], "malloc");
    ids[i] = fill_and_check(ptrs[i], sizes[i], "malloc");
  }
  for (size_t i = sizeof sizes / sizeof sizes[0]; i-- > 0;) {
    g_sum += wl::check_range(ptrs[i], 0, sizes[i], ids[i], sizes[i], "malloc before free");
    free(ptrs[i]);
  }

  // Edge cases: malloc(0) may return NULL or a unique pointer; free(NULL) is a no-op.
  free(malloc(0));
  free(nullptr);

  // calloc must zero, including memory that was just used and freed.
  for (size_t n : {size_t(1), size_t(37), size_t(4096), size_t(1) << 16}) {
    void* p = calloc(n, 24);
    wl::check_pointer(p, n * 24, "calloc");
    wl::check_zero_sampled(p, n * 24, "calloc");
    fill_and_check(p, n * 24, "calloc");
    free(p);
  }

  // realloc: from NULL, growing across size classes, shrinking; the prefix
  // must survive every step.
  {
    const size_t steps[] = {100, 5000, 300, 200000, 3 << 20, 40, 64};
    uint64_t id = 0xABCDEF;
    size_t len = 0;
    void* p = nullptr;
    for (size_t want : steps) {
      void* q = realloc(p, want);
      wl::check_pointer(q, want, "realloc");
      size_t keep = len < want ? len : want;
      g_sum += wl::check_range(q, 0, keep, id, 1, "realloc preserved prefix");
      if (want > len) wl::fill_range(q, len, want, id, 1);
      p = q;
      len = want;
    }
    g_sum += wl::check_range(p, 0, len, id, 1, "realloc final");
    free(p);
  }

  // operator new/delete: plain, array, sized.
  {
    auto* v = new std::vector<uint64_t>(1000);
    escape(v);
    escape(v->data());
    for (size_t i = 0; i < v->size(); ++i) (*v)[i] = wl::mix64(i);
    uint64_t s = 0;
    for (uint64_t x : *v) s += x;
    g_sum += wl::mix64(s);
    delete v;

    char* a = new char[777];
    fill_and_check(a, 777, "new[]");
    delete[] a;

    void* b = ::operator new(4000);
    wl::check_pointer(b, 4000, "operator new");
    fill_and_check(b, 4000, "operator new");
    ::operator delete(b, size_t(4000));
  }

  // Aligned allocation.
  for (size_t align : {size_t(32), size_t(64), size_t(4096), size_t(1) << 16}) {
    void* p = nullptr;
    if (posix_memalign(&p, align, 3000) != 0 || p == nullptr) wl::fail("posix_memalign(%zu, 3000) failed", align);
    check_alignment(p, align, "posix_memalign");
    fill_and_check(p, 3000, "posix_memalign");
    free(p);

    void* q = aligned_alloc(align, 2 * align);
    wl::check_pointer(q, 2 * align, "aligned_alloc");
    check_alignment(q, align, "aligned_alloc");
    fill_and_check(q, 2 * align, "aligned_alloc");
    free(q);
  }

  // One cross-thread free: allocated by a helper thread, freed here.
  {
    void* p = nullptr;
    uint64_t id = 0;
    std::thread th([&] {
      p = malloc(2000);
      wl::check_pointer(p, 2000, "malloc (thread)");
      id = fill_and_check(p, 2000, "malloc (thread)");
    });
    th.join();
    g_sum += wl::check_range(p, 0, 2000, id, 2000, "cross-thread free");
    free(p);
  }

  wl::mark("done");
  return wl::finish(wl::mix64(g_sum ^ g_id));
}
