#include "api/live_stats.h"

#include <errno.h>

#include <atomic>
#include <cstddef>
#include <cstring>

#include "api/stats.h"
#include "common/log.h"
#include "ebbmalloc.h"
#include "ebbmalloc_live.h"
#include "front/globals.h"
#include "os/os.h"

namespace ebb {

// The writer copies the snapshot as 64-bit words; the reader relies on it.
static_assert(offsetof(ebb_live_file_t, seq) % 8 == 0 && offsetof(ebb_live_file_t, stats) % 8 == 0);
static_assert(sizeof(ebb_stats_t) % 8 == 0);
// Changing the file's layout (or ebb_stats_t) must change EBB_LIVE_LAYOUT;
// then update this size.
static_assert(EBB_LIVE_LAYOUT == 3 && sizeof(ebb_live_file_t) == 1000, "bump EBB_LIVE_LAYOUT");
static_assert(sizeof(ebb_live_file_t) <= EBB_LIVE_FILE_SIZE);

namespace {

// A fixed buffer for a path (no allocation).
struct Path {
  char s[256] = {};
  size_t n = 0;
  Path& add(const char* t) {
    while (*t && n + 1 < sizeof(s)) s[n++] = *t++;
    s[n] = 0;
    return *this;
  }
  Path& num(uint64_t v) {
    char d[24];
    int k = 0;
    do d[k++] = static_cast<char>('0' + v % 10); while ((v /= 10) != 0);
    while (k > 0 && n + 1 < sizeof(s)) s[n++] = d[--k];
    s[n] = 0;
    return *this;
  }
};

constinit ebb_live_file_t* g_file = nullptr;
constinit std::atomic<bool> g_active{false};
constinit Path g_path;  // the file, for the unlink at exit

void refuse(const char* path, const char* why) {
  OutBuf o(2);
  o.str("ebbmalloc: EBBMALLOC_LIVE_STATS: ").str(path).str(": ").str(why).str("; running without live statistics\n");
}

const char* describe(int err) {
  switch (err) {
    case ELOOP: return "is a symlink (not followed)";
    case ENOTDIR: return "is not a directory";
    case EPERM: return "belongs to another user or is open to group/others (want a 0700 directory of yours)";
    case EACCES: return "permission denied";
    case ENOENT: return "does not exist";
    case ENOSPC: return "no space left";
    case EEXIST: return "exists";
    default: return "cannot be created";
  }
}

// "<digits>.stats" -> pid; 0 for any other name.
int pid_of(const char* name) {
  int pid = 0;
  const char* p = name;
  for (; *p >= '0' && *p <= '9'; ++p) {
    if (pid > 100000000) return 0;
    pid = pid * 10 + (*p - '0');
  }
  return p != name && strcmp(p, EBB_LIVE_SUFFIX) == 0 ? pid : 0;
}

// Removes the files of this user's processes that died without removing
// theirs (killed by a signal, or exec'd away).
void sweep_stale(int dirfd, int self) {
  alignas(8) char buf[4096];
  for (;;) {
    const long n = os::read_dir(dirfd, buf, sizeof(buf));
    if (n <= 0) return;
    for (size_t off = 0; off < static_cast<size_t>(n);) {
      size_t next;
      const char* name = os::dir_entry_name(buf, off, &next);
      off = next;
      const int pid = pid_of(name);
      if (pid == 0 || pid == self || os::process_exists(pid)) continue;
      if (os::classify(dirfd, name) == 0) os::unlink_at(dirfd, name);
    }
  }
}

void store_words(void* dst, const void* src, size_t bytes) {
  uint64_t w;
  for (size_t i = 0; i < bytes; i += 8) {
    memcpy(&w, static_cast<const char*>(src) + i, 8);
    __atomic_store_n(reinterpret_cast<uint64_t*>(static_cast<char*>(dst) + i), w, __ATOMIC_RELAXED);
  }
}

// The last resident floor (the version-3 fields of ebb_stats_t), when it was
// taken and when the next may be (only the reporter thread publishes).
constinit ebb_stats_t g_floor{};
constinit uint64_t g_floor_ms = 0;
constinit uint64_t g_next_floor_ms = 0;

// The floor stops every thread for its walk: at most once per
// max(publish period, 100 x the last walk), so threads wait <= 1% of the time.
void refresh_floor(uint64_t now) {
  if (g_floor_ms && now < g_next_floor_ms) return;
  collect_floor(&g_floor);
  g_floor_ms = now ? now : 1;
  const uint64_t cost_ms = 100 * g_floor.floor_walk_us / 1000;
  g_next_floor_ms = now + (cost_ms > g.opts.live_stats_ms ? cost_ms : g.opts.live_stats_ms);
}

// The reporter's publish hook (and the first snapshot, from start()).
void publish() {
  if (!g_active.load(std::memory_order_acquire)) return;
  ebb_live_file_t* f = g_file;
  ebb_stats_t s;
  // Before the write window: keep it short.
  const uint64_t now = os::now_ms();
  refresh_floor(now);
  collect_stats(&s, false);
  // The floor's fields (floor_bytes .. pinned_class_bytes) from the last
  // walk; the rest is this snapshot's.
  constexpr size_t kFloorAt = offsetof(ebb_stats_t, floor_bytes), kFloorEnd = offsetof(ebb_stats_t, curve_keep_bytes);
  memcpy(reinterpret_cast<char*>(&s) + kFloorAt, reinterpret_cast<const char*>(&g_floor) + kFloorAt,
         kFloorEnd - kFloorAt);
  const uint64_t seq = __atomic_load_n(&f->seq, __ATOMIC_RELAXED);
  __atomic_store_n(&f->seq, seq + 1, __ATOMIC_RELAXED);
  __atomic_thread_fence(__ATOMIC_RELEASE);
  const uint64_t head[3] = {__atomic_load_n(&f->publishes, __ATOMIC_RELAXED) + 1, now, g_floor_ms};
  store_words(&f->publishes, head, sizeof(head));
  store_words(&f->stats, &s, sizeof(s));
  __atomic_store_n(&f->seq, seq + 2, __ATOMIC_RELEASE);
}

}  // namespace

void live_stats_start() {
  if (!g.opts.live_stats || g_file) return;
  const int pid = os::getpid();
  const unsigned uid = os::geteuid();
  Path dir;
  if (g.opts.live_stats_dir[0]) dir.add(g.opts.live_stats_dir);
  else dir.add(EBB_LIVE_DEFAULT_DIR_PREFIX).num(uid);
  const int dirfd = os::open_private_dir(dir.s);
  if (dirfd < 0) return refuse(dir.s, describe(-dirfd));
  sweep_stale(dirfd, pid);
  Path name;
  name.num(static_cast<uint64_t>(pid)).add(EBB_LIVE_SUFFIX);
  Path full;
  full.add(dir.s).add("/").add(name.s);
  int fd = os::create_private_file(dirfd, name.s, EBB_LIVE_FILE_SIZE);
  if (fd == -EEXIST) {
    // A file with our pid: left by a dead process that had this pid, or by
    // this process before an exec. Ours and regular: replace it, once.
    const int kind = os::classify(dirfd, name.s);
    if (kind == 0 && os::unlink_at(dirfd, name.s) == 0) {
      fd = os::create_private_file(dirfd, name.s, EBB_LIVE_FILE_SIZE);
    } else if (kind == 1) {
      fd = -ELOOP;
    } else {
      os::close_fd(dirfd);
      return refuse(full.s, "exists and is not a file of this user's");
    }
  }
  os::close_fd(dirfd);
  if (fd < 0) return refuse(full.s, describe(-fd));
  void* m = os::map_file_shared(fd, EBB_LIVE_FILE_SIZE);
  os::close_fd(fd);
  if (!m) {
    os::unlink_path(full.s);
    return refuse(full.s, "cannot be mapped");
  }
  ebb_live_file_t* f = static_cast<ebb_live_file_t*>(m);
  // The file is fresh (zero) and not visible to readers as valid until the
  // magic is written, last.
  f->layout = EBB_LIVE_LAYOUT;
  f->header_size = sizeof(ebb_live_file_t);
  f->pid = pid;
  f->uid = uid;
  f->publish_ms = g.opts.live_stats_ms;
  f->reporter = g.opts.reporter ? 1 : 0;
  f->created_unix_ms = os::realtime_ms();
  Path v;
  v.add(ebb_version());
  memcpy(f->version, v.s, sizeof(f->version) - 1);
  g_path = full;
  g_file = f;
  g_active.store(true, std::memory_order_release);
  publish();
  __atomic_store_n(&f->magic, EBB_LIVE_MAGIC, __ATOMIC_RELEASE);
  g.reporter.set_publisher(&publish, g.opts.live_stats_ms);
}

void live_stats_stop() {
  if (!g_active.exchange(false, std::memory_order_acq_rel)) return;
  os::unlink_path(g_path.s);
}

void live_stats_postfork_child() {
  if (!g_file) return;
  g_active.store(false, std::memory_order_relaxed);
  g.reporter.set_publisher(nullptr, 0);
  os::unmap(g_file, EBB_LIVE_FILE_SIZE);
  g_file = nullptr;
}

}  // namespace ebb
