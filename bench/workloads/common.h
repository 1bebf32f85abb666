// Shared helpers for the ebbmalloc workload programs (bench/workloads/*.cpp).
//
// The workloads are standalone processes that use the system allocation API
// directly (malloc/calloc/realloc/free and operator new/delete) and do NOT link
// ebbmalloc, so any allocator can be swapped in with LD_PRELOAD.
//
// Conventions shared by every program:
//   * flags: --scale F, --threads N, --seed N, --idle-ms N, --tail-idle-ms N,
//     --limit-mb N, --report-live, --help (see parse_args()).  Unknown flags: usage on stderr, exit 2.
//   * every object gets a pattern derived from (id, key) written over all of
//     its bytes, and the pattern is checked before the object is freed.  A
//     mismatch, a NULL return or a misaligned pointer ends the process with
//     `verify <name> FAILED: <reason>` on stdout and exit status 1.
//   * the last stdout line of a successful run is
//     `verify <name> checksum=<16 hex digits> OK`.  The checksum is a
//     wrapping SUM of per-object digests computed over the bytes read back, so
//     it does not depend on which thread freed what or in which order; it only
//     depends on the arguments (scale, threads, seed).
//   * phase markers go to stderr as `[<name>] t=<seconds, 3 decimals> <text>`,
//     written with write(2) from a stack buffer so that logging itself never
//     calls the allocator.
#pragma once

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

#include <signal.h>
#include <time.h>
#include <unistd.h>

namespace wl {

constexpr uint64_t KiB = 1024;
constexpr uint64_t MiB = 1024 * KiB;
constexpr uint64_t GiB = 1024 * MiB;

// ---------------------------------------------------------------------------
// Time and logging
// ---------------------------------------------------------------------------

inline uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

inline const char* g_name = "workload";
inline uint64_t g_start_ns = now_ns();  // reset by parse_args()

// Writes all of buf to fd, retrying on short writes / EINTR.
inline void write_all(int fd, const char* buf, size_t len) {
  while (len > 0) {
    ssize_t n = ::write(fd, buf, len);
    if (n <= 0) return;  // nothing sensible left to do
    buf += n;
    len -= size_t(n);
  }
}

// Formats fmt/ap into buf after its first n bytes (a prefix), cuts it to
// fit and ends it with a newline. Returns the line's length.
inline size_t finish_line(char* buf, size_t size, int n, const char* fmt, va_list ap) {
  int m = vsnprintf(buf + n, size - size_t(n) - 1, fmt, ap);
  size_t len = size_t(n) + (m < 0 ? 0 : size_t(m));
  if (len > size - 2) len = size - 2;
  buf[len++] = '\n';
  return len;
}

// `[<name>] t=<s.mmm> <message>` on stderr.  Formats into a stack buffer and
// uses write(2): no stdio buffering and no allocator calls, so it is safe to
// use right before/after the idle phases.
[[gnu::format(printf, 1, 2)]] inline void mark(const char* fmt, ...) {
  char buf[512];
  uint64_t ms = (now_ns() - g_start_ns) / 1000000ull;
  int n = snprintf(buf, sizeof buf, "[%s] t=%llu.%03llu ", g_name,
                   (unsigned long long)(ms / 1000), (unsigned long long)(ms % 1000));
  va_list ap;
  va_start(ap, fmt);
  size_t len = finish_line(buf, sizeof buf, n, fmt, ap);
  va_end(ap);
  write_all(2, buf, len);
}

// ---------------------------------------------------------------------------
// Failure reporting
// ---------------------------------------------------------------------------

inline std::atomic<bool> g_failing{false};

// Prints `verify <name> FAILED: <reason>` on stdout and exits with status 1.
// Callable from any thread; if several threads fail at once only the first one
// reports, the others wait for it to terminate the process.
[[noreturn, gnu::format(printf, 1, 2)]] inline void fail(const char* fmt, ...) {
  if (g_failing.exchange(true)) {
    for (;;) pause();
  }
  static char buf[1024];  // static: the allocator may be what is broken
  int n = snprintf(buf, sizeof buf, "verify %s FAILED: ", g_name);
  va_list ap;
  va_start(ap, fmt);
  size_t len = finish_line(buf, sizeof buf, n, fmt, ap);
  va_end(ap);
  fflush(stdout);
  write_all(1, buf, len);
  _exit(1);
}

// A crash inside the allocator (SIGSEGV, or abort() from its own consistency
// checks) must also produce a FAILED line, not just a missing OK line.
inline char g_signal_msg[160];
inline void on_fatal_signal(int sig) {
  // Only async-signal-safe calls here: build "<prefix><signal number>\n".
  char buf[200];
  size_t len = strlen(g_signal_msg);
  memcpy(buf, g_signal_msg, len);
  char digits[8];
  int nd = 0;
  for (int s = sig; nd == 0 || s > 0; s /= 10) digits[nd++] = char('0' + s % 10);
  while (nd > 0) buf[len++] = digits[--nd];
  buf[len++] = '\n';
  if (!g_failing.exchange(true)) write_all(1, buf, len);
  _exit(1);
}

inline void install_signal_handlers() {
  snprintf(g_signal_msg, sizeof g_signal_msg, "verify %s FAILED: fatal signal ", g_name);
  // Run on an alternate stack so that a stack overflow is reported too.
  static char altstack[64 * 1024];
  stack_t ss{};
  ss.ss_sp = altstack;
  ss.ss_size = sizeof altstack;
  sigaltstack(&ss, nullptr);
  struct sigaction sa {};
  sa.sa_handler = on_fatal_signal;
  sa.sa_flags = SA_ONSTACK | SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL}) sigaction(sig, &sa, nullptr);
}

// Prints the success line.  Returns the process exit status (0).
inline int finish(uint64_t checksum) {
  printf("verify %s checksum=%016llx OK\n", g_name, (unsigned long long)checksum);
  fflush(stdout);
  return 0;
}

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

struct Options {
  double scale = 1.0;           // multiplies memory volume and operation counts
  unsigned threads = 2;         // worker threads
  uint64_t seed = 1;            // PRNG seed; the checksum depends on it
  uint64_t idle_ms = 4000;      // phase: main idle period (others ignore it)
  uint64_t tail_idle_ms = 1500; // phase: final idle period (others ignore it)
  uint64_t limit_mb = 256;      // pressure: the limit L in MiB, times scale (others ignore it)
  bool report_live = false;     // pressure: its live peak on stderr (others ignore it)
};

inline void usage(FILE* out, const char* description) {
  fprintf(out,
          "usage: %s [options]\n"
          "%s\n"
          "options:\n"
          "  --scale F          multiply memory volume and operation counts (default 1.0;\n"
          "                     0.01 is a sub-second smoke test)\n"
          "  --threads N        worker threads (default 2)\n"
          "  --seed N           PRNG seed (default 1)\n"
          "  --idle-ms N        idle period in ms (default 4000; only 'phase' idles)\n"
          "  --tail-idle-ms N   final idle period in ms (default 1500; only 'phase' idles)\n"
          "  --limit-mb N       memory limit L in MiB, times --scale (default 256; only\n"
          "                     'pressure' has one)\n"
          "  --report-live      print the live peak on stderr (only 'pressure')\n"
          "  --help             show this help\n"
          "Prints 'verify %s checksum=<hex> OK' on success, or\n"
          "'verify %s FAILED: <reason>' and exits 1 if any check fails.\n",
          g_name, description, g_name, g_name);
}

[[noreturn]] inline void bad_usage(const char* description, const char* what, const char* arg) {
  fprintf(stderr, "%s: %s '%s'\n", g_name, what, arg);
  usage(stderr, description);
  exit(2);
}

inline bool parse_u64(const char* s, uint64_t& out) {
  if (!s || !*s || *s == '-') return false;
  char* end = nullptr;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0 || *end != '\0') return false;
  out = v;
  return true;
}

inline bool parse_double(const char* s, double& out) {
  if (!s || !*s) return false;
  char* end = nullptr;
  errno = 0;
  double v = strtod(s, &end);
  if (errno != 0 || *end != '\0') return false;
  out = v;
  return true;
}

// Parses the common flags (accepts both `--flag value` and `--flag=value`).
// Also records the program name and start time and installs the signal
// handlers, so it must be the first thing main() calls.
inline Options parse_args(int argc, char** argv, const char* name, const char* description) {
  g_name = name;
  g_start_ns = now_ns();
  install_signal_handlers();

  Options o;
  for (int i = 1; i < argc; ++i) {
    const char* arg = argv[i];
    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
      usage(stdout, description);
      exit(0);
    }
    // Split "--flag=value" / "--flag value".
    char flag[64];
    const char* value = nullptr;
    const char* eq = strchr(arg, '=');
    if (eq) {
      size_t n = size_t(eq - arg);
      if (n >= sizeof flag) bad_usage(description, "unknown option", arg);
      memcpy(flag, arg, n);
      flag[n] = '\0';
      value = eq + 1;
    } else {
      if (strlen(arg) >= sizeof flag) bad_usage(description, "unknown option", arg);
      strcpy(flag, arg);
    }
    auto need_value = [&]() -> const char* {
      if (value) return value;
      if (i + 1 >= argc) bad_usage(description, "missing value for", arg);
      return argv[++i];
    };
    uint64_t u = 0;
    if (strcmp(flag, "--scale") == 0) {
      const char* v = need_value();
      if (!parse_double(v, o.scale) || !(o.scale > 0) || o.scale > 1000)
        bad_usage(description, "--scale needs a number in (0, 1000], got", v);
    } else if (strcmp(flag, "--threads") == 0) {
      const char* v = need_value();
      if (!parse_u64(v, u) || u < 1 || u > 256)
        bad_usage(description, "--threads needs an integer in [1, 256], got", v);
      o.threads = unsigned(u);
    } else if (strcmp(flag, "--seed") == 0) {
      const char* v = need_value();
      if (!parse_u64(v, o.seed)) bad_usage(description, "--seed needs an unsigned integer, got", v);
    } else if (strcmp(flag, "--idle-ms") == 0) {
      const char* v = need_value();
      if (!parse_u64(v, o.idle_ms)) bad_usage(description, "--idle-ms needs an unsigned integer, got", v);
    } else if (strcmp(flag, "--tail-idle-ms") == 0) {
      const char* v = need_value();
      if (!parse_u64(v, o.tail_idle_ms))
        bad_usage(description, "--tail-idle-ms needs an unsigned integer, got", v);
    } else if (strcmp(flag, "--limit-mb") == 0) {
      const char* v = need_value();
      if (!parse_u64(v, o.limit_mb) || o.limit_mb < 1 || o.limit_mb > (1u << 20))
        bad_usage(description, "--limit-mb needs an integer in [1, 1048576], got", v);
    } else if (strcmp(flag, "--report-live") == 0 && !value) {
      o.report_live = true;
    } else {
      bad_usage(description, "unknown option", arg);
    }
  }
  return o;
}

// base * scale, rounded, but at least `min`.
inline uint64_t scaled(double base, double scale, uint64_t min) {
  double v = base * scale + 0.5;
  return v < double(min) ? min : uint64_t(v);
}

inline void sleep_ms(uint64_t ms) {
  timespec ts{time_t(ms / 1000), long(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

// ---------------------------------------------------------------------------
// Deterministic PRNG: splitmix64 for seeding, xoshiro256** for the stream.
// ---------------------------------------------------------------------------

inline uint64_t mix64(uint64_t z) {  // splitmix64 finalizer
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

class Rng {
 public:
  // Independent streams for (seed, stream), e.g. stream = thread index.
  Rng(uint64_t seed, uint64_t stream) {
    uint64_t sm = mix64(seed ^ 0x6A09E667F3BCC909ull) ^ mix64(stream + 0x3C6EF372FE94F82Bull);
    for (auto& w : s_) {
      sm += 0x9E3779B97F4A7C15ull;
      w = mix64(sm);
    }
  }
  uint64_t next() {
    uint64_t result = rotl(s_[1] * 5, 7) * 9;
    uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  // Uniform in [0, n) (Lemire's multiply-shift; the tiny bias is irrelevant).
  uint64_t below(uint64_t n) { return uint64_t((unsigned __int128)next() * n >> 64); }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

// "Octave-uniform" size in [2^lo_bits, 2^hi_bits): the octave is uniform, the
// position inside the octave is uniform.  A piecewise-linear approximation of
// a log-uniform distribution that needs no floating point (so it is
// bit-identical everywhere).  Mean = 1.5 * average of 2^e over the octaves.
inline uint64_t octave_uniform(Rng& r, unsigned lo_bits, unsigned hi_bits) {
  unsigned e = lo_bits + unsigned(r.below(hi_bits - lo_bits));
  return (uint64_t(1) << e) + r.below(uint64_t(1) << e);
}

// ---------------------------------------------------------------------------
// Object patterns and verification
// ---------------------------------------------------------------------------
//
// Byte o of an object with (id, key) is byte (o % 8) of the little-endian
// 64-bit word  base(id, key) + (o / 8) * kStep.  key is normally the size the
// object was created with; it stays fixed across realloc so that the bytes
// kept by realloc keep their expected values.  Different objects get
// unrelated bases, so overlapping or swapped blocks are detected, and an
// off-by-some-bytes copy is detected because every word differs.

constexpr uint64_t kStep = 0x9E3779B97F4A7C15ull;

inline uint64_t pattern_base(uint64_t id, uint64_t key) {
  return mix64(id * 0xD1B54A32D192ED03ull + mix64(key ^ 0x243F6A8885A308D3ull));
}

inline uint8_t pattern_byte(uint64_t base, size_t off) {
  return uint8_t((base + uint64_t(off / 8) * kStep) >> (8 * (off % 8)));
}

// Writes the pattern over bytes [begin, end) of the object at p.
inline void fill_range(void* p, size_t begin, size_t end, uint64_t id, uint64_t key) {
  unsigned char* c = static_cast<unsigned char*>(p);
  uint64_t base = pattern_base(id, key);
  size_t o = begin;
  for (; o < end && (o % 8) != 0; ++o) c[o] = pattern_byte(base, o);
  size_t wend = end & ~size_t(7);
  for (; o < wend; o += 8) {
    uint64_t v = base + uint64_t(o / 8) * kStep;
    memcpy(c + o, &v, 8);
  }
  for (; o < end; ++o) c[o] = pattern_byte(base, o);
}

[[noreturn]] inline void report_mismatch(const void* p, size_t begin, size_t end, uint64_t id,
                                         uint64_t key, const char* what) {
  const unsigned char* c = static_cast<const unsigned char*>(p);
  uint64_t base = pattern_base(id, key);
  for (size_t o = begin; o < end; ++o) {
    if (c[o] != pattern_byte(base, o)) {
      fail("%s: object id=%#llx size=%llu at %p: byte %zu is 0x%02x, expected 0x%02x", what,
           (unsigned long long)id, (unsigned long long)key, p, o, c[o], pattern_byte(base, o));
    }
  }
  fail("%s: object id=%#llx: inconsistent mismatch report", what, (unsigned long long)id);
}

// Checks bytes [begin, end) against the pattern and returns the wrapping sum
// of the 64-bit words read (the contribution to the object's digest).
// Calls fail() on the first mismatch.
inline uint64_t check_range(const void* p, size_t begin, size_t end, uint64_t id, uint64_t key,
                            const char* what) {
  const unsigned char* c = static_cast<const unsigned char*>(p);
  uint64_t base = pattern_base(id, key);
  uint64_t sum = 0, diff = 0;
  size_t o = begin;
  for (; o < end && (o % 8) != 0; ++o) {
    diff |= c[o] ^ pattern_byte(base, o);
    sum += uint64_t(c[o]) << (8 * (o % 8));
  }
  size_t wend = end & ~size_t(7);
  for (; o < wend; o += 8) {
    uint64_t w;
    memcpy(&w, c + o, 8);
    diff |= w ^ (base + uint64_t(o / 8) * kStep);
    sum += w;
  }
  for (; o < end; ++o) {
    diff |= c[o] ^ pattern_byte(base, o);
    sum += uint64_t(c[o]) << (8 * (o % 8));
  }
  if (diff != 0) report_mismatch(p, begin, end, id, key, what);
  return sum;
}

// Objects up to this size are always checked completely.  Larger ones are
// checked by sampling: the first and last 64 bytes of every 4 KiB chunk
// (which still touches every page and catches misplaced pages/copies).
constexpr size_t kFullCheckLimit = 1 * MiB;
constexpr size_t kSampleChunk = 4096;
constexpr size_t kSampleBytes = 64;

template <class F>
inline void for_each_sample(size_t len, F&& f) {
  if (len <= kFullCheckLimit) {
    f(size_t(0), len);
    return;
  }
  for (size_t c = 0; c < len; c += kSampleChunk) {
    size_t chunk_end = c + kSampleChunk < len ? c + kSampleChunk : len;
    size_t head_end = c + kSampleBytes < chunk_end ? c + kSampleBytes : chunk_end;
    f(c, head_end);
    size_t tail_begin = chunk_end - kSampleBytes > head_end ? chunk_end - kSampleBytes : head_end;
    if (tail_begin < chunk_end) f(tail_begin, chunk_end);
  }
}

// Pattern check of [0, len), full or sampled depending on len.
inline uint64_t check_sampled(const void* p, size_t len, uint64_t id, uint64_t key,
                              const char* what) {
  uint64_t sum = 0;
  for_each_sample(len, [&](size_t b, size_t e) { sum += check_range(p, b, e, id, key, what); });
  return sum;
}

// Verifies that [0, len) is all zero (full or sampled); returns bytes checked.
inline uint64_t check_zero_sampled(const void* p, size_t len, const char* what) {
  const unsigned char* c = static_cast<const unsigned char*>(p);
  uint64_t checked = 0;
  for_each_sample(len, [&](size_t b, size_t e) {
    // OR whole words (unaligned loads are fine), then the tail bytes; locate
    // the offending byte only on failure.
    uint64_t acc = 0;
    size_t o = b;
    for (; o + 8 <= e; o += 8) {
      uint64_t w;
      memcpy(&w, c + o, 8);
      acc |= w;
    }
    for (; o < e; ++o) acc |= c[o];
    if (acc != 0) {
      for (size_t i = b; i < e; ++i)
        if (c[i] != 0) fail("%s: calloc'd block %p of %zu bytes has byte %zu = 0x%02x", what, p, len, i, c[i]);
    }
    checked += e - b;
  });
  return checked;
}

// Digest of one checked object.  Objects are combined by wrapping addition,
// which makes the total independent of free order and of the freeing thread.
inline uint64_t object_digest(uint64_t id, uint64_t len, uint64_t word_sum) {
  return mix64(word_sum ^ mix64(id * 0x9FB21C651E98DF25ull + len));
}

inline void check_pointer(const void* p, size_t size, const char* what) {
  if (p == nullptr) fail("%s(%zu) returned NULL", what, size);
  // malloc must return memory aligned for any fundamental type (16 on
  // x86-64); every object the workloads allocate is at least 16 bytes.
  if (size >= 16 && (reinterpret_cast<uintptr_t>(p) % alignof(std::max_align_t)) != 0)
    fail("%s(%zu) returned misaligned pointer %p", what, size, p);
}

// Which allocation API an object uses, derived from its id so that the
// freeing side (possibly another thread) knows how to release it:
// 5/8 malloc, 2/8 operator new (released with sized delete), 1/8 calloc.
enum class Api { Malloc, New, Calloc };
inline Api api_for(uint64_t id) {
  uint64_t h = mix64(id ^ 0x5851F42D4C957F2Dull) >> 61;  // 0..7
  return h < 5 ? Api::Malloc : h < 7 ? Api::New : Api::Calloc;
}

// An object of `size` bytes through the API chosen by its id (null checked:
// a NULL return is a FAILED line).
inline void* obj_allocate(uint64_t id, size_t size) {
  void* p = nullptr;
  switch (api_for(id)) {
    case Api::Malloc:
      p = malloc(size);
      check_pointer(p, size, "malloc");
      break;
    case Api::New:
      // Non-throwing form so an out-of-memory condition becomes a FAILED line.
      p = ::operator new(size, std::nothrow);
      check_pointer(p, size, "operator new");
      break;
    case Api::Calloc:
      p = calloc(1, size);
      check_pointer(p, size, "calloc");
      break;
  }
  return p;
}

// Releases an object of obj_allocate(id, size) the way its API wants.
inline void obj_release(void* p, uint64_t id, size_t size) {
  if (api_for(id) == Api::New)
    ::operator delete(p, size);
  else
    free(p);
}

// Allocates an object of `size` bytes (size >= 16) through the API chosen
// by its id, verifies calloc zeroing, and fills it with its pattern.
inline void* obj_alloc(uint64_t id, size_t size) {
  void* p = obj_allocate(id, size);
  if (api_for(id) == Api::Calloc) check_zero_sampled(p, size, "calloc");
  fill_range(p, 0, size, id, size);
  return p;
}

// Verifies an object made by obj_alloc(id, size), frees it, returns its digest.
inline uint64_t obj_free(void* p, uint64_t id, size_t size) {
  uint64_t sum = check_range(p, 0, size, id, size, "check before free");
  obj_release(p, id, size);
  return object_digest(id, size, sum);
}

// A slot of the workloads that keep objects by id and size.
struct Object {
  void* p = nullptr;
  uint64_t id = 0;
  uint64_t size = 0;
};

// ---------------------------------------------------------------------------
// Threads
// ---------------------------------------------------------------------------

// Reusable barrier built on mutex + condition variable: waiting on it never
// calls the allocator (parked threads sleep in a futex), which matters for
// the idle phases.  (std::barrier would do too, but this one is obviously
// allocation-free.)
class Barrier {
 public:
  explicit Barrier(unsigned n) : n_(n) {}
  void arrive_and_wait() {
    std::unique_lock<std::mutex> lk(m_);
    uint64_t gen = gen_;
    if (++waiting_ == n_) {
      waiting_ = 0;
      ++gen_;
      cv_.notify_all();
      return;
    }
    cv_.wait(lk, [&] { return gen_ != gen; });
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  unsigned n_;
  unsigned waiting_ = 0;
  uint64_t gen_ = 0;
};

// Per-thread results, padded to a cache line to avoid false sharing.
struct alignas(64) ThreadStats {
  uint64_t checksum = 0;  // wrapping sum of object digests
  uint64_t allocs = 0;
  uint64_t frees = 0;
  uint64_t cross_frees = 0;  // frees of objects allocated by another thread
  uint64_t live_bytes = 0;
  uint64_t peak_bytes = 0;
};

// Object id: allocating thread in the top bits, per-thread counter below.
inline uint64_t make_id(unsigned thread, uint64_t counter) {
  return (uint64_t(thread) << 40) | counter;
}

// Sum of one per-thread counter over all threads.
inline uint64_t sum(const std::vector<ThreadStats>& stats, uint64_t ThreadStats::*field) {
  uint64_t s = 0;
  for (const auto& st : stats) s += st.*field;
  return s;
}

// Marks `<name> start` and lets the workers run one phase: they wait at the
// barrier for the start, run the phase, and meet at the barrier again.
inline void run_phase(Barrier& bar, const char* name) {
  mark("%s start", name);
  bar.arrive_and_wait();
  bar.arrive_and_wait();
}

// The end of every workload: checks the bookkeeping (every allocation freed
// exactly once; exactly `expected` allocations unless it is 0; live bytes
// back to 0 when `check_live`), then marks `done` and prints the
// verification line. The checksum mixes the per-object digests with the
// allocation count plus `extra` (e.g. a count of reallocs).
inline int verify_and_finish(const std::vector<ThreadStats>& stats, uint64_t expected,
                             bool check_live, uint64_t extra = 0) {
  const uint64_t allocs = sum(stats, &ThreadStats::allocs);
  const uint64_t frees = sum(stats, &ThreadStats::frees);
  if ((expected != 0 && allocs != expected) || frees != allocs ||
      (check_live && sum(stats, &ThreadStats::live_bytes) != 0))
    fail("bookkeeping: %llu allocs, %llu frees, expected %llu", (unsigned long long)allocs,
         (unsigned long long)frees, (unsigned long long)(expected ? expected : allocs));
  mark("done");
  return finish(mix64(sum(stats, &ThreadStats::checksum) ^ mix64(allocs + extra)));
}

inline double mib(uint64_t bytes) { return double(bytes) / double(MiB); }

}  // namespace wl
