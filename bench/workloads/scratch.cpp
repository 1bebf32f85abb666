// scratch: passive false sharing (the shape of Hoard's cache-scratch in
// mimalloc-bench; not that program).
//
// The main thread allocates one 16 B object per thread, one after the other
// (so they share cache lines), and hands one to each of --threads threads
// (default 2). Each thread checks and frees the object it was given, then
// 2000 x scale times (at least 10) allocates a 16 B object, writes and reads
// back every byte of it 2000 times (volatile accesses), checks it and frees
// it. No object is live in two threads at once, and no thread writes another
// thread's object: if a thread's allocations share a cache line with another
// thread's, every write makes the line move between the cores.
//
// An allocator that gives a thread back the object it freed first (a
// thread cache kept in LIFO order: the object it was handed, in the same
// line as the objects the main thread handed the others) has the threads
// write the same lines; one that gives each thread its own memory does not.
// What to read: time (the loop is all byte writes; the allocator runs once
// per 32,000 of them).
#include <vector>

#include "common.h"

namespace {

constexpr const char* kDescription =
    "Passive false sharing (shape of cache-scratch): each thread frees a 16 B object\n"
    "the main thread allocated next to the others', then allocates, writes and frees\n"
    "16 B objects of its own.";

constexpr size_t kSize = 16;
constexpr double kIterations = 2000;
constexpr unsigned kRepetitions = 2000;

}  // namespace

int main(int argc, char** argv) {
  const wl::Options opt = wl::parse_args(argc, argv, "scratch", kDescription);
  const unsigned T = opt.threads;
  const uint64_t iters = wl::scaled(kIterations, opt.scale, 10);
  std::vector<wl::ThreadStats> stats(T);
  wl::Barrier bar(T + 1);

  // Allocated here, one after the other, before the threads start.
  std::vector<wl::Object> handed(T);
  for (unsigned t = 0; t < T; ++t) {
    handed[t].id = wl::make_id(T, t);  // (thread T: the main thread's ids)
    handed[t].size = kSize;
    handed[t].p = wl::obj_alloc(handed[t].id, kSize);
  }

  auto worker = [&](unsigned t) {
    wl::ThreadStats& st = stats[t];
    uint64_t counter = 0;
    bar.arrive_and_wait();
    st.checksum += wl::obj_free(handed[t].p, handed[t].id, kSize);
    ++st.frees;
    for (uint64_t i = 0; i < iters; ++i) {
      const uint64_t id = wl::make_id(t, counter++);
      void* p = wl::obj_alloc(id, kSize);
      ++st.allocs;
      volatile unsigned char* v = static_cast<volatile unsigned char*>(p);
      unsigned char pat[kSize];
      for (size_t k = 0; k < kSize; ++k) pat[k] = v[k];
      uint64_t sum = 0;
      for (unsigned r = 0; r < kRepetitions; ++r)
        for (size_t k = 0; k < kSize; ++k) {
          v[k] = pat[k];
          sum += v[k];
        }
      st.checksum += sum;
      st.checksum += wl::obj_free(p, id, kSize);
      ++st.frees;
    }
    bar.arrive_and_wait();
  };

  std::vector<std::thread> threads;
  threads.reserve(T);
  for (unsigned t = 0; t < T; ++t) threads.emplace_back(worker, t);
  wl::mark("start threads=%u iterations/thread=%llu repetitions=%u size=%zu scale=%g seed=%llu", T,
           (unsigned long long)iters, kRepetitions, kSize, opt.scale, (unsigned long long)opt.seed);
  wl::run_phase(bar, "scratch");
  wl::mark("scratch done live=0.0KiB");
  for (auto& th : threads) th.join();
  // The handed objects were allocated by the main thread: counted here.
  stats[0].allocs += T;
  return wl::verify_and_finish(stats, T * (iters + 1), /*check_live=*/false, opt.seed);
}
