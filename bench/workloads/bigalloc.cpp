// bigalloc: large and huge blocks, calloc-heavy, with realloc.
//
// Each thread keeps up to 64 blocks of 64 KiB .. 64 MiB (octave-uniform, mean
// ~10 MiB) under a byte budget of 512 MiB x scale / T (so peak live is
// ~512 MiB at scale 1; the largest size is capped at a quarter of the budget).
// Each operation is one of
//   50%  calloc a new block: verify it is zero (every byte up to 1 MiB, else
//        the first and last 64 bytes of every 4 KiB), then write its pattern
//        over all of it;  random blocks are freed first if over budget
//   25%  realloc a random block to between 1/4 and 4x its size (clamped):
//        verify the preserved prefix (same full/sampled rule), pattern the
//        grown tail
//   25%  free a random block (verified first)
// and everything left is verified and freed at the end.
// 600 operations x scale in total across threads (glibc spends most of the
// time in the kernel: page faults and TLB shootdowns from munmap/mremap).
#include <vector>

#include "common.h"

namespace {

constexpr const char* kDescription =
    "Large blocks: calloc (zero-checked) 64 KiB .. 64 MiB, realloc up/down (contents\n"
    "checked), free; working set bounded at ~512 MiB.";

constexpr double kBudget = 512.0 * wl::MiB;  // all threads together
constexpr double kOperations = 600;
constexpr unsigned kMinBits = 16;            // 64 KiB
constexpr unsigned kMaxBits = 26;            // 64 MiB
constexpr size_t kMaxBlocks = 64;            // per thread

struct Block {
  void* p;
  uint64_t id;
  uint64_t key;  // size at creation: the pattern key, kept across realloc
  uint64_t len;  // current size
};

}  // namespace

int main(int argc, char** argv) {
  const wl::Options opt = wl::parse_args(argc, argv, "bigalloc", kDescription);
  const unsigned T = opt.threads;
  const uint64_t budget = wl::scaled(kBudget / T, opt.scale, 512 * wl::KiB);
  const uint64_t ops_per_thread = wl::scaled(kOperations / T, opt.scale, 16);
  // Largest size: 2^max_bits with 2^max_bits <= budget / 4, within [128 KiB, 64 MiB].
  unsigned max_bits = kMinBits + 1;
  while (max_bits < kMaxBits && (uint64_t(1) << (max_bits + 1)) <= budget / 4) ++max_bits;
  const uint64_t min_size = uint64_t(1) << kMinBits, max_size = uint64_t(1) << max_bits;

  std::vector<std::vector<Block>> blocks(T);
  for (auto& b : blocks) b.reserve(kMaxBlocks);
  std::vector<wl::ThreadStats> stats(T);
  std::vector<uint64_t> n_calloc(T), n_realloc(T);
  wl::Barrier bar(T + 1);

  auto worker = [&](unsigned t) {
    wl::ThreadStats& st = stats[t];
    wl::Rng r(opt.seed, t);
    std::vector<Block>& my = blocks[t];
    uint64_t counter = 0;

    auto release = [&](size_t k) {  // verify + free my[k], swap-remove
      Block b = my[k];
      uint64_t s = wl::check_sampled(b.p, b.len, b.id, b.key, "check before free");
      st.checksum += wl::object_digest(b.id, b.len, s);
      free(b.p);
      ++st.frees;
      st.live_bytes -= b.len;
      my[k] = my.back();
      my.pop_back();
    };
    // Frees random blocks other than `keep` until `extra` more bytes fit.
    auto make_room = [&](uint64_t extra, size_t keep) {
      while (st.live_bytes + extra > budget) {
        size_t k = r.below(my.size());
        if (k == keep) continue;
        if (keep == my.size() - 1) keep = k;  // my.back() is about to move to k
        release(k);
      }
      return keep;
    };

    bar.arrive_and_wait();
    for (uint64_t op = 0; op < ops_per_thread; ++op) {
      uint64_t pick = r.below(100);
      if (my.empty() || (pick < 50 && my.size() < kMaxBlocks)) {
        // calloc a new block.
        Block b;
        b.id = wl::make_id(t, counter++);
        b.key = b.len = wl::octave_uniform(r, kMinBits, max_bits);
        make_room(b.len, SIZE_MAX);
        b.p = calloc(1, b.len);
        wl::check_pointer(b.p, b.len, "calloc");
        uint64_t zeros = wl::check_zero_sampled(b.p, b.len, "calloc");
        st.checksum += wl::mix64(b.id ^ zeros);
        wl::fill_range(b.p, 0, b.len, b.id, b.key);
        st.live_bytes += b.len;
        ++st.allocs;
        ++n_calloc[t];
        my.push_back(b);
      } else if (pick < 75) {
        // realloc a random block to 1/4 .. 4x (octave-uniform factor).
        size_t k = r.below(my.size());
        uint64_t old_len = my[k].len;
        unsigned shift = unsigned(r.below(4));             // 0..3 -> x1/4, x1/2, x1, x2
        uint64_t frac = 256 + r.below(256);                // x[1, 2) in 1/256 steps
        uint64_t new_len = ((old_len >> 2) << shift) / 256 * frac;
        if (new_len < min_size) new_len = min_size;
        if (new_len > max_size) new_len = max_size;
        if (new_len > old_len) k = make_room(new_len - old_len, k);
        Block& b = my[k];
        void* q = realloc(b.p, new_len);
        wl::check_pointer(q, new_len, "realloc");
        uint64_t keep = old_len < new_len ? old_len : new_len;
        uint64_t s = wl::check_sampled(q, keep, b.id, b.key, "realloc preserved prefix");
        st.checksum += wl::object_digest(b.id, keep, s);
        if (new_len > old_len) wl::fill_range(q, old_len, new_len, b.id, b.key);
        b.p = q;
        b.len = new_len;
        st.live_bytes = st.live_bytes - old_len + new_len;
        ++n_realloc[t];
      } else {
        release(r.below(my.size()));
      }
      if (st.live_bytes > st.peak_bytes) st.peak_bytes = st.live_bytes;
      if (t == 0 && (op + 1) % (ops_per_thread / 4 + 1) == 0)
        wl::mark("run %llu%% live(thread 0)=%.1fMiB", (unsigned long long)((op + 1) * 100 / ops_per_thread),
                 wl::mib(st.live_bytes));
    }
    bar.arrive_and_wait();

    bar.arrive_and_wait();  // free everything
    while (!my.empty()) release(my.size() - 1);
    bar.arrive_and_wait();
  };

  std::vector<std::thread> threads;
  threads.reserve(T);
  for (unsigned t = 0; t < T; ++t) threads.emplace_back(worker, t);

  wl::mark("start threads=%u budget/thread=%.1fMiB sizes=%llu..%llu ops/thread=%llu scale=%g seed=%llu",
           T, wl::mib(budget), (unsigned long long)min_size, (unsigned long long)max_size,
           (unsigned long long)ops_per_thread, opt.scale, (unsigned long long)opt.seed);
  wl::mark("run start");
  bar.arrive_and_wait();
  bar.arrive_and_wait();
  uint64_t callocs = 0, reallocs = 0;
  for (unsigned t = 0; t < T; ++t) callocs += n_calloc[t], reallocs += n_realloc[t];
  wl::mark("run done live=%.1fMiB peak-live=%.1fMiB(sum of per-thread peaks) callocs=%llu reallocs=%llu",
           wl::mib(wl::sum(stats, &wl::ThreadStats::live_bytes)), wl::mib(wl::sum(stats, &wl::ThreadStats::peak_bytes)),
           (unsigned long long)callocs, (unsigned long long)reallocs);
  wl::mark("free-all start");
  bar.arrive_and_wait();
  bar.arrive_and_wait();
  wl::mark("free-all done");
  for (auto& th : threads) th.join();

  return wl::verify_and_finish(stats, 0, /*check_live=*/true, reallocs << 32);
}
