// Drop-in fidelity: shapes of real programs that work under glibc's malloc
// and must work the same under ebbmalloc (linked in, so it is this program's
// malloc). One shape per sub-command; each prints "dropin OK: ..." or
// "dropin FAILED: ..." and exits non-zero on failure. A watchdog *process*
// (not a thread: some shapes must stay single-threaded) kills the program
// and says so if a shape hangs.
//
//   fork-stdio       fork() in 4 threads beside fflush(NULL) and getline()
//                    threads (stdio locks held while they allocate)
//   signal-fork      a single-threaded program whose SIGALRM handler forks
//                    every 2 ms while the main loop allocates
//   single-idle      a program that never creates a thread and never has
//                    memory to give back keeps exactly one task
//   single-return    ... after freeing 64 MiB it gets the memory back with no
//                    further call, has one task again and can unshare(CLONE_NEWUSER)
//   rlimit-runtime   RLIMIT_AS lowered to 512 MiB after start-up: threads,
//                    mmap and a 100 MiB malloc still work
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/single_threaded.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>

namespace {

int g_watchdog = 0;

// Kills this process after `seconds` unless stop_watchdog() ran first.
void start_watchdog(unsigned seconds, const char* shape) {
  const pid_t parent = getpid();
  const pid_t w = fork();
  if (w < 0) return;
  if (w == 0) {
    sleep(seconds);
    if (getppid() != parent) _exit(0);
    char msg[160];
    const int n = snprintf(msg, sizeof msg, "dropin FAILED: %s hung (killed by the watchdog after %u s)\n", shape,
                           seconds);
    if (write(2, msg, static_cast<size_t>(n)) < 0) _exit(1);
    kill(parent, SIGKILL);
    _exit(0);
  }
  g_watchdog = w;
}

void stop_watchdog() {
  if (g_watchdog > 0) {
    kill(g_watchdog, SIGKILL);
    waitpid(g_watchdog, nullptr, 0);
    g_watchdog = 0;
  }
}

int fail(const char* what) {
  stop_watchdog();
  printf("dropin FAILED: %s\n", what);
  return 1;
}

uint64_t now_ms() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1000000;
}

// /proc/self/status field as a number, read without allocating (the point
// of some shapes is that nothing calls malloc).
long status_field(const char* name) {
  char buf[4096];
  const int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  const ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = 0;
  const size_t len = strlen(name);
  for (char* p = buf; (p = strstr(p, name)) != nullptr; ++p) {
    if ((p == buf || p[-1] == '\n') && p[len] == ':') return strtol(p + len + 1, nullptr, 10);
  }
  return -1;
}
long threads() { return status_field("Threads"); }
long rss_kb() { return status_field("VmRSS"); }

// ---- fork-stdio ----------------------------------------------------------------

std::atomic<bool> g_stop{false};
std::atomic<uint64_t> g_forks{0}, g_lines{0}, g_flushes{0};

void* forker(void*) {
  while (!g_stop.load(std::memory_order_relaxed)) {
    const pid_t pid = fork();
    if (pid == 0) {
      void* a = malloc(100);
      void* b = malloc(200000);
      memset(b, 1, 200000);
      free(a);
      free(b);
      _exit(0);
    }
    if (pid > 0) {
      int st = 0;
      waitpid(pid, &st, 0);
      if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        printf("dropin FAILED: a fork child did not exit cleanly (status %d)\n", st);
        _exit(1);
      }
      g_forks.fetch_add(1, std::memory_order_relaxed);
    }
  }
  return nullptr;
}

void* flusher(void*) {
  while (!g_stop.load(std::memory_order_relaxed)) {
    fflush(nullptr);
    g_flushes.fetch_add(1, std::memory_order_relaxed);
  }
  return nullptr;
}

// Lines of 10 B .. 100 KB: getline() grows its buffer with realloc inside the
// FILE lock, into the large-block sizes.
void* liner(void* arg) {
  uint32_t seed = static_cast<uint32_t>(reinterpret_cast<uintptr_t>(arg)) * 2654435761u + 1;
  char* chunk = static_cast<char*>(malloc(100001));
  memset(chunk, 'x', 100000);
  chunk[100000] = 0;
  while (!g_stop.load(std::memory_order_relaxed)) {
    char* buf = nullptr;
    size_t len = 0;
    FILE* w = open_memstream(&buf, &len);
    if (!w) continue;
    size_t want = 0;
    for (int i = 0; i < 20; ++i) {
      seed = seed * 1103515245u + 12345u;
      const size_t n = 10 + (seed >> 8) % 100000;
      fprintf(w, "%d %.*s\n", i, static_cast<int>(n), chunk);
      ++want;
    }
    fclose(w);
    FILE* r = fmemopen(buf, len, "r");
    size_t got = 0;
    if (r) {
      char* line = nullptr;
      size_t cap = 0;
      while (getline(&line, &cap, r) > 0) ++got;
      fclose(r);
      free(line);
    }
    free(buf);
    if (got != want) {
      printf("dropin FAILED: read %zu lines back, wrote %zu\n", got, want);
      _exit(1);
    }
    g_lines.fetch_add(got, std::memory_order_relaxed);
  }
  free(chunk);
  return nullptr;
}

int fork_stdio(unsigned seconds) {
  start_watchdog(seconds + 30, "fork-stdio");
  pthread_t t[12];
  unsigned n = 0;
  for (int i = 0; i < 4; ++i) pthread_create(&t[n++], nullptr, forker, nullptr);
  for (int i = 0; i < 2; ++i) pthread_create(&t[n++], nullptr, flusher, nullptr);
  for (uintptr_t i = 0; i < 6; ++i) pthread_create(&t[n++], nullptr, liner, reinterpret_cast<void*>(i));
  sleep(seconds);
  g_stop = true;
  for (unsigned i = 0; i < n; ++i) pthread_join(t[i], nullptr);
  stop_watchdog();
  if (g_forks.load() == 0 || g_lines.load() == 0) return fail("no progress");
  printf("dropin OK: fork-stdio %u s, %llu forks, %llu lines, %llu fflush(NULL)\n", seconds,
         static_cast<unsigned long long>(g_forks.load()), static_cast<unsigned long long>(g_lines.load()),
         static_cast<unsigned long long>(g_flushes.load()));
  return 0;
}

// ---- signal-fork -----------------------------------------------------------------

volatile sig_atomic_t g_sig_forks = 0, g_sig_bad = 0;

void on_alarm(int) {
  const int saved = errno;
  const pid_t pid = fork();
  if (pid == 0) _exit(0);
  if (pid > 0) {
    int st = 0;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st)) g_sig_bad = 1;
    g_sig_forks = g_sig_forks + 1;
  }
  errno = saved;
}

int signal_fork(unsigned seconds) {
  start_watchdog(seconds + 30, "signal-fork");
  struct sigaction sa = {};
  sa.sa_handler = on_alarm;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGALRM, &sa, nullptr);
  struct itimerval it = {};
  it.it_interval.tv_usec = 2000;
  it.it_value.tv_usec = 2000;
  setitimer(ITIMER_REAL, &it, nullptr);
  constexpr unsigned kSlots = 64;
  void* live[kSlots] = {};
  uint32_t seed = 7;
  uint64_t ops = 0;
  const uint64_t end = now_ms() + seconds * 1000ull;
  while (now_ms() < end) {
    for (int k = 0; k < 1000; ++k, ++ops) {
      seed = seed * 1103515245u + 12345u;
      const unsigned i = (seed >> 16) % kSlots;
      free(live[i]);
      const size_t n = (seed & 7) == 0 ? 200000 : 1 + (seed >> 20) % 3000;
      live[i] = malloc(n);
      static_cast<char*>(live[i])[0] = 1;
      static_cast<char*>(live[i])[n - 1] = 2;
    }
  }
  it = {};
  setitimer(ITIMER_REAL, &it, nullptr);
  for (void* p : live) free(p);
  stop_watchdog();
  if (g_sig_bad) return fail("a child forked from the signal handler did not exit");
  if (g_sig_forks < 10) return fail("the signal handler hardly ever forked");
  printf("dropin OK: signal-fork %u s, %d forks from the handler, %llu malloc/free, %ld task(s)\n", seconds,
         static_cast<int>(g_sig_forks), static_cast<unsigned long long>(ops), threads());
  return 0;
}

// ---- single-idle / single-return ----------------------------------------------------

// What a small program does: a few hundred small objects, some strings, a
// few medium buffers, all freed; far less than the reporter's mark.
void small_program_work() {
  void* p[400];
  for (int round = 0; round < 20; ++round) {
    for (int i = 0; i < 400; ++i) p[i] = malloc(static_cast<size_t>(8 + (i * 37) % 700));
    for (int i = 0; i < 400; ++i) free(p[i]);
  }
  void* big = malloc(40000);
  void* big2 = malloc(200000);
  memset(big, 1, 40000);
  memset(big2, 1, 200000);
  free(big);
  free(big2);
}

int single_idle() {
  start_watchdog(60, "single-idle");
  small_program_work();
  // Longer than the reporter's delay and cold time together.
  usleep(2500 * 1000);
  const long t = threads();
  const bool single = __libc_single_threaded;
  stop_watchdog();
  if (t != 1) {
    printf("dropin FAILED: %ld tasks in a program that never created a thread\n", t);
    return 1;
  }
  if (!single) return fail("__libc_single_threaded became false");
  printf("dropin OK: single-idle: 1 task, __libc_single_threaded still true\n");
  return 0;
}

int single_return() {
  start_watchdog(60, "single-return");
  constexpr size_t kTotal = size_t{64} << 20;
  // Half in large blocks, half in small objects.
  constexpr unsigned kBig = 32, kSmall = 32 * 1024;
  void** big = static_cast<void**>(malloc(kBig * sizeof(void*)));
  void** small = static_cast<void**>(malloc(kSmall * sizeof(void*)));
  for (unsigned i = 0; i < kBig; ++i) memset(big[i] = malloc(kTotal / 2 / kBig), 1, kTotal / 2 / kBig);
  for (unsigned i = 0; i < kSmall; ++i) memset(small[i] = malloc(kTotal / 2 / kSmall), 1, kTotal / 2 / kSmall);
  const long peak = rss_kb();
  for (unsigned i = 0; i < kBig; ++i) free(big[i]);
  for (unsigned i = 0; i < kSmall; ++i) free(small[i]);
  free(big);
  free(small);
  // From here on: no allocator call at all.
  const uint64_t t0 = now_ms();
  long rss = peak, tasks = 0;
  uint64_t back_ms = 0, single_ms = 0;
  while (now_ms() - t0 < 15000) {
    usleep(20 * 1000);
    rss = rss_kb();
    tasks = threads();
    if (!back_ms && peak - rss >= 48 * 1024) back_ms = now_ms() - t0;
    if (back_ms && tasks == 1) {
      single_ms = now_ms() - t0;
      break;
    }
  }
  stop_watchdog();
  char msg[200];
  if (!back_ms) {
    snprintf(msg, sizeof msg, "RSS %ld -> %ld KiB: the freed memory did not come back within 15 s", peak, rss);
    return fail(msg);
  }
  if (!single_ms) {
    snprintf(msg, sizeof msg, "memory back after %llu ms, but still %ld tasks 15 s after the frees",
             static_cast<unsigned long long>(back_ms), tasks);
    return fail(msg);
  }
  if (unshare(CLONE_NEWUSER) != 0 && errno == EINVAL)
    return fail("unshare(CLONE_NEWUSER) failed with EINVAL (the process is multi-threaded)");
  printf("dropin OK: single-return: RSS %ld -> %ld KiB, memory back after %llu ms, one task after %llu ms, "
         "unshare(CLONE_NEWUSER) %s\n",
         peak, rss, static_cast<unsigned long long>(back_ms), static_cast<unsigned long long>(single_ms),
         errno == EINVAL ? "failed" : "works");
  return 0;
}

// ---- rlimit-runtime --------------------------------------------------------------

void* thread_body(void* arg) {
  void* p = malloc(1000);
  free(p);
  return arg;
}

int rlimit_runtime() {
  start_watchdog(60, "rlimit-runtime");
  small_program_work();
  const long vm_before = status_field("VmSize");
  struct rlimit rl = {size_t{512} << 20, size_t{512} << 20};
  if (setrlimit(RLIMIT_AS, &rl) != 0) return fail("setrlimit");
  char msg[200];
  pthread_t t;
  const int err = pthread_create(&t, nullptr, thread_body, nullptr);
  if (err != 0) {
    snprintf(msg, sizeof msg, "pthread_create under a 512 MiB RLIMIT_AS: %s (VmSize %ld KiB)", strerror(err),
             vm_before);
    return fail(msg);
  }
  pthread_join(t, nullptr);
  void* m = mmap(nullptr, size_t{16} << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) {
    snprintf(msg, sizeof msg, "mmap of 16 MiB under a 512 MiB RLIMIT_AS failed (VmSize %ld KiB)", vm_before);
    return fail(msg);
  }
  munmap(m, size_t{16} << 20);
  char* big = static_cast<char*>(malloc(size_t{100} << 20));
  if (!big) {
    snprintf(msg, sizeof msg, "malloc(100 MiB) under a 512 MiB RLIMIT_AS returned NULL (VmSize %ld KiB)", vm_before);
    return fail(msg);
  }
  memset(big, 3, size_t{100} << 20);
  free(big);
  // The heap keeps working under the limit, for every kind of block.
  void* p[64];
  for (int round = 0; round < 20; ++round) {
    for (int i = 0; i < 64; ++i) {
      const size_t n = static_cast<size_t>(16) << (i % 18);  // 16 B .. 2 MiB
      p[i] = malloc(n);
      if (!p[i]) return fail("malloc failed under the limit");
      memset(p[i], i, n);
    }
    for (int i = 0; i < 64; ++i) free(p[i]);
  }
  const long vm_after = status_field("VmSize");
  stop_watchdog();
  printf("dropin OK: rlimit-runtime: VmSize %ld KiB before the limit, %ld KiB after; thread, mmap and 100 MiB "
         "malloc under 512 MiB\n",
         vm_before, vm_after);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const char* shape = argc > 1 ? argv[1] : "";
  const unsigned seconds = argc > 2 ? static_cast<unsigned>(atoi(argv[2])) : 4;
  if (!strcmp(shape, "fork-stdio")) return fork_stdio(seconds);
  if (!strcmp(shape, "signal-fork")) return signal_fork(seconds);
  if (!strcmp(shape, "single-idle")) return single_idle();
  if (!strcmp(shape, "single-return")) return single_return();
  if (!strcmp(shape, "rlimit-runtime")) return rlimit_runtime();
  fprintf(stderr, "usage: dropin_prog fork-stdio|signal-fork [seconds] | single-idle | single-return | rlimit-runtime\n");
  return 2;
}
