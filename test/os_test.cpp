// The OS layer's batched give-back (os::advise_free_ranges): many ranges per
// system call where the kernel has process_madvise of the process itself,
// one madvise each otherwise, and in both cases exactly which ranges went
// back.
#include <gtest/gtest.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <vector>

#include "os/os.h"

namespace {

constexpr size_t kPage = 4096;

// Linux 6.14 or later: process_madvise takes PIDFD_SELF and any advice for
// the calling process.
bool kernel_batches() {
  struct utsname u;
  unsigned major = 0, minor = 0;
  if (uname(&u) != 0 || sscanf(u.release, "%u.%u", &major, &minor) != 2) return false;
  return major > 6 || (major == 6 && minor >= 14);
}

// Whether page i of the mapping is resident (mincore).
bool resident(const char* base, size_t i) {
  unsigned char v = 0;
  EXPECT_EQ(mincore(const_cast<char*>(base) + i * kPage, kPage, &v), 0);
  return v & 1;
}

struct Mapping {
  char* p;
  size_t pages;
  explicit Mapping(size_t n) : pages(n) {
    p = static_cast<char*>(mmap(nullptr, n * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    EXPECT_NE(p, MAP_FAILED);
    memset(p, 0x5a, n * kPage);
  }
  ~Mapping() { munmap(p, pages * kPage); }
};

// Every fourth page kept, the three after it given back: 16 KiB "slabs"
// with one survivor each, the shape of a thinned slab heap.
std::vector<ebb::os::Range> thinned(const Mapping& m) {
  std::vector<ebb::os::Range> r;
  for (size_t i = 0; i + 4 <= m.pages; i += 4) r.push_back({m.p + (i + 1) * kPage, 3 * kPage});
  return r;
}

void expect_thinned(const Mapping& m) {
  for (size_t i = 0; i < m.pages; ++i) {
    if (i % 4 == 0) {
      ASSERT_EQ(m.p[i * kPage], 0x5a) << "kept page " << i;
    } else {
      ASSERT_FALSE(resident(m.p, i)) << "page " << i << " still resident";
      ASSERT_EQ(m.p[i * kPage], 0) << "page " << i << " not given back";
    }
  }
}

TEST(AdviseRanges, ManyRangesGoBackInFewCalls) {
  ebb::os::set_advise_batch(true);
  Mapping m(4 * 200);
  std::vector<ebb::os::Range> r = thinned(m);
  std::vector<char> ok(r.size(), 0);
  const unsigned calls = ebb::os::advise_free_ranges(r.data(), static_cast<unsigned>(r.size()), false,
                                                     reinterpret_cast<bool*>(ok.data()));
  for (size_t k = 0; k < r.size(); ++k) EXPECT_TRUE(ok[k]) << "range " << k;
  expect_thinned(m);
  if (kernel_batches()) {
    EXPECT_EQ(calls, (r.size() + ebb::os::kAdviseBatch - 1) / ebb::os::kAdviseBatch);
  } else {
    EXPECT_LE(calls, r.size() + 1);
  }
}

TEST(AdviseRanges, SwitchedOffEveryRangeIsOneCall) {
  ebb::os::set_advise_batch(false);
  Mapping m(4 * 100);
  std::vector<ebb::os::Range> r = thinned(m);
  std::vector<char> ok(r.size(), 0);
  EXPECT_EQ(ebb::os::advise_free_ranges(r.data(), static_cast<unsigned>(r.size()), false,
                                        reinterpret_cast<bool*>(ok.data())),
            r.size());
  for (size_t k = 0; k < r.size(); ++k) EXPECT_TRUE(ok[k]);
  expect_thinned(m);
  ebb::os::set_advise_batch(true);
}

TEST(AdviseRanges, ARangeThatFailsIsTheOnlyOneNotGivenBack) {
  ebb::os::set_advise_batch(true);
  // A hole in the middle of the ranges: madvise of unmapped memory fails
  // (ENOMEM), the ranges before and after it still go back.
  Mapping m(4 * 100);
  std::vector<ebb::os::Range> r = thinned(m);
  void* hole = mmap(nullptr, 3 * kPage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(hole, MAP_FAILED);
  ASSERT_EQ(munmap(hole, 3 * kPage), 0);
  r.insert(r.begin() + 70, ebb::os::Range{hole, 3 * kPage});
  std::vector<char> ok(r.size(), 0);
  const unsigned calls = ebb::os::advise_free_ranges(r.data(), static_cast<unsigned>(r.size()), false,
                                                     reinterpret_cast<bool*>(ok.data()));
  for (size_t k = 0; k < r.size(); ++k) EXPECT_EQ(ok[k] != 0, k != 70) << "range " << k;
  expect_thinned(m);
  // 101 ranges: the first 64 in a call, then the six before the hole, the
  // hole alone, and the 30 after it.
  if (kernel_batches()) {
    EXPECT_EQ(calls, 4u);
  } else {
    EXPECT_LE(calls, r.size() + 1);
  }
  // Batching is still on after a range of its own failed.
  Mapping m2(4 * 100);
  std::vector<ebb::os::Range> r2 = thinned(m2);
  std::vector<char> ok2(r2.size(), 0);
  const unsigned calls2 = ebb::os::advise_free_ranges(r2.data(), static_cast<unsigned>(r2.size()), false,
                                                      reinterpret_cast<bool*>(ok2.data()));
  if (kernel_batches()) {
    EXPECT_EQ(calls2, 2u);
  }
  expect_thinned(m2);
}

// A seccomp filter that refuses process_madvise with EPERM, as a container's
// profile may: the first call finds it, the ranges still go back (one
// madvise each), and the next calls do not try again.
TEST(AdviseRanges, ARefusedBatchFallsBackToOneCallPerRange) {
  ebb::os::set_advise_batch(true);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_process_madvise, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof(f) / sizeof(f[0]), f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) _exit(3);
    Mapping m(4 * 100);
    std::vector<ebb::os::Range> r = thinned(m);
    std::vector<char> ok(r.size(), 0);
    // The refused call, then one madvise per range.
    unsigned calls = ebb::os::advise_free_ranges(r.data(), static_cast<unsigned>(r.size()), false,
                                                 reinterpret_cast<bool*>(ok.data()));
    if (calls != r.size() + 1) _exit(4);
    for (size_t k = 0; k < r.size(); ++k)
      if (!ok[k] || m.p[(4 * k + 1) * kPage] != 0 || m.p[4 * k * kPage] != 0x5a) _exit(5);
    // Not tried again: one madvise per range from the start.
    Mapping m2(4 * 100);
    std::vector<ebb::os::Range> r2 = thinned(m2);
    calls = ebb::os::advise_free_ranges(r2.data(), static_cast<unsigned>(r2.size()), false,
                                        reinterpret_cast<bool*>(ok.data()));
    _exit(calls == r2.size() ? 0 : 6);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "3: no filter, 4: calls on the refusal, 5: a range not given back, "
                                       "6: batching tried again";
}

}  // namespace
