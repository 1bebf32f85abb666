// largeblock: the shape of mimalloc-bench's `malloc-large` (not that program):
// large blocks allocated and freed at random, with a bounded number live.
//
// One thread (the shape is single-threaded; --threads is accepted and
// ignored) keeps 20 slots. Each of 1000 x scale operations picks a random
// slot, frees the block in it (after checking it) and allocates a new block
// of a random size, uniform in [5 MiB, 25 MiB] (bytes, not rounded to pages;
// mean 15 MiB), so ~300 MiB is live on average once the slots are full (the
// first 50-odd operations fill them) and 355 MiB at the peak (seed 1, at
// scale 0.5 and 1 alike; mimalloc-bench's run peaks near 380 MiB). Everything
// left is checked and freed at the end. 7/8 of the blocks come from malloc,
// 1/8 from calloc (checked to be zero where it is sampled).
//
// Touching: malloc-large zeroes each whole block (std::make_unique<char[]>).
// Here every 4 KiB page of a new block is written: the pattern over its first
// and last 64 bytes (wl::for_each_sample), so every page becomes resident, as
// there, at a fraction of the cost of writing 15 MiB; the same bytes are
// checked before the free.
//
// Peak RSS is the figure of interest: an allocator that cannot reuse the
// freed blocks' memory for the next, differently sized ones grows past the
// ~380 MiB the program holds.
#include <vector>

#include "common.h"

namespace {

constexpr const char* kDescription =
    "Large blocks (shape of mimalloc-bench malloc-large): 20 slots, each operation\n"
    "replaces a random slot with a block of 5..25 MiB; every page written.";

constexpr unsigned kSlots = 20;
constexpr double kOperations = 1000;
constexpr uint64_t kMinSize = 5 * wl::MiB;
constexpr uint64_t kMaxSize = 25 * wl::MiB;

struct Block {
  void* p = nullptr;
  uint64_t id = 0;
  uint64_t size = 0;
};

bool is_calloc(uint64_t id) { return (wl::mix64(id ^ 0xCA11Cull) & 7) == 0; }

void* block_alloc(uint64_t id, uint64_t size) {
  void* p;
  if (is_calloc(id)) {
    p = calloc(1, size);
    wl::check_pointer(p, size, "calloc");
    wl::check_zero_sampled(p, size, "calloc");
  } else {
    p = malloc(size);
    wl::check_pointer(p, size, "malloc");
  }
  wl::for_each_sample(size, [&](size_t b, size_t e) { wl::fill_range(p, b, e, id, size); });
  return p;
}

uint64_t block_free(const Block& b) {
  const uint64_t sum = wl::check_sampled(b.p, b.size, b.id, b.size, "check before free");
  free(b.p);
  return wl::object_digest(b.id, b.size, sum);
}

}  // namespace

int main(int argc, char** argv) {
  const wl::Options opt = wl::parse_args(argc, argv, "largeblock", kDescription);
  const uint64_t ops = wl::scaled(kOperations, opt.scale, 8);
  std::vector<wl::ThreadStats> stats(1);
  wl::ThreadStats& st = stats[0];
  Block slots[kSlots];
  wl::Rng r(opt.seed, 0);

  wl::mark("start slots=%u ops=%llu scale=%g seed=%llu", kSlots, (unsigned long long)ops, opt.scale,
           (unsigned long long)opt.seed);
  wl::mark("churn start");
  for (uint64_t op = 0; op < ops; ++op) {
    Block& b = slots[r.below(kSlots)];
    const uint64_t size = kMinSize + r.below(kMaxSize - kMinSize + 1);
    if (b.p) {
      st.checksum += block_free(b);
      st.live_bytes -= b.size;
      ++st.frees;
    }
    b.id = op;
    b.size = size;
    b.p = block_alloc(b.id, b.size);
    st.live_bytes += size;
    ++st.allocs;
    if (st.live_bytes > st.peak_bytes) st.peak_bytes = st.live_bytes;
    if ((op + 1) % (ops / 4 + 1) == 0)
      wl::mark("churn %llu%% live=%.1fMiB", (unsigned long long)((op + 1) * 100 / ops), wl::mib(st.live_bytes));
  }
  wl::mark("churn done live=%.1fMiB peak-live=%.1fMiB", wl::mib(st.live_bytes), wl::mib(st.peak_bytes));
  wl::mark("free-all start");
  for (Block& b : slots) {
    if (!b.p) continue;
    st.checksum += block_free(b);
    st.live_bytes -= b.size;
    ++st.frees;
    b.p = nullptr;
  }
  wl::mark("free-all done live=0.0MiB");
  return wl::verify_and_finish(stats, ops, /*check_live=*/true);
}
