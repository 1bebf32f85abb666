#include "live_reader.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>

namespace ebbtop {

namespace {

std::string read_small_file(const std::string& path, bool* ok) {
  std::ifstream in(path, std::ios::binary);
  *ok = static_cast<bool>(in);
  std::ostringstream s;
  if (*ok) s << in.rdbuf();
  return s.str();
}

// The value of NAME in a NUL-separated environment block; `found` tells
// whether it is set at all.
std::string env_value(const std::string& block, const std::string& name, bool* found) {
  const std::string key = name + "=";
  for (size_t i = 0; i < block.size();) {
    const size_t end = block.find('\0', i);
    const size_t stop = end == std::string::npos ? block.size() : end;
    if (block.compare(i, key.size(), key) == 0) {
      *found = true;
      return block.substr(i + key.size(), stop - i - key.size());
    }
    i = stop + 1;
  }
  *found = false;
  return "";
}

bool truthy(const std::string& v) { return v == "1" || v == "true" || v == "on" || v == "yes"; }

std::string who(const Target& t) { return "process " + std::to_string(t.pid) + " (" + t.comm + ")"; }

// Why is there no file? Looks at the process's environment and mappings.
Error explain_missing(const Target& t) {
  const std::string proc = "/proc/" + std::to_string(t.pid);
  bool env_ok = false, maps_ok = false;
  const std::string env = read_small_file(proc + "/environ", &env_ok);
  const std::string maps = read_small_file(proc + "/maps", &maps_ok);
  if (!env_ok && !maps_ok && !process_alive(t.pid)) return {"process " + std::to_string(t.pid) + " exited", 1};
  bool set = false;
  const bool opted_in = env_ok && truthy(env_value(env, "EBBMALLOC_LIVE_STATS", &set));
  const bool loaded = maps_ok && maps.find("libebbmalloc") != std::string::npos;
  if (opted_in) {
    return {who(t) + " was started with EBBMALLOC_LIVE_STATS=1 but has no " + t.path +
                " (its stderr has an 'ebbmalloc: EBBMALLOC_LIVE_STATS:' line saying why; a fork child has "
                "no file of its own)",
            1};
  }
  if (loaded) {
    return {who(t) + " runs ebbmalloc without live statistics: start it with EBBMALLOC_LIVE_STATS=1", 1};
  }
  if (maps_ok) {
    return {who(t) + " has no live statistics: libebbmalloc.so is not loaded in it. Start it with "
                "LD_PRELOAD=/path/to/libebbmalloc.so EBBMALLOC_LIVE_STATS=1 (or, if ebbmalloc is linked in "
                "statically, with EBBMALLOC_LIVE_STATS=1)",
            1};
  }
  return {who(t) + " has no live statistics (no " + t.path + "): start it with EBBMALLOC_LIVE_STATS=1, under "
              "LD_PRELOAD=/path/to/libebbmalloc.so unless ebbmalloc is linked in",
          1};
}

}  // namespace

bool parse_pid(const std::string& s, int* pid) {
  if (s.empty() || s.size() > 10) return false;
  long long v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  if (v < 1 || v > 0x7fffffff) return false;
  *pid = static_cast<int>(v);
  return true;
}

void sleep_ms(unsigned ms) {
  struct timespec ts = {static_cast<time_t>(ms / 1000), static_cast<long>(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

bool process_alive(int pid) {
  if (kill(pid, 0) != 0 && errno != EPERM) return false;
  // A zombie has exited: only its parent has not collected it yet.
  bool ok;
  const std::string stat = read_small_file("/proc/" + std::to_string(pid) + "/stat", &ok);
  const size_t paren = stat.rfind(')');
  if (!ok || paren == std::string::npos || paren + 2 >= stat.size()) return ok;
  const char state = stat[paren + 2];
  return state != 'Z' && state != 'X';
}

int64_t process_rss(int pid) {
  bool ok;
  const std::string s = read_small_file("/proc/" + std::to_string(pid) + "/statm", &ok);
  unsigned long long size = 0, resident = 0;
  if (!ok || sscanf(s.c_str(), "%llu %llu", &size, &resident) != 2) return -1;
  return static_cast<int64_t>(resident) * sysconf(_SC_PAGESIZE);
}

uint64_t monotonic_ms() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000u + static_cast<uint64_t>(ts.tv_nsec) / 1000000u;
}

bool find_target(int pid, const std::string& dir_override, Target* t, Error* err) {
  t->pid = pid;
  if (kill(pid, 0) != 0 && errno == ESRCH) {
    *err = {"no process with pid " + std::to_string(pid), 1};
    return false;
  }
  if (!process_alive(pid)) {
    *err = {"process " + std::to_string(pid) + " has exited (a zombie its parent has not reaped)", 1};
    return false;
  }
  const std::string proc = "/proc/" + std::to_string(pid);
  struct stat st;
  if (stat(proc.c_str(), &st) != 0) {
    *err = {"no process with pid " + std::to_string(pid) + " in /proc", 1};
    return false;
  }
  t->uid = st.st_uid;
  bool ok;
  t->comm = read_small_file(proc + "/comm", &ok);
  while (!t->comm.empty() && t->comm.back() == '\n') t->comm.pop_back();
  if (!ok || t->comm.empty()) t->comm = "?";
  t->dir = dir_override;
  if (t->dir.empty()) {
    bool set = false;
    const std::string env = read_small_file(proc + "/environ", &ok);
    if (ok) t->dir = env_value(env, "EBBMALLOC_LIVE_STATS_DIR", &set);
    if (!set || t->dir.empty() || t->dir[0] != '/') t->dir = EBB_LIVE_DEFAULT_DIR_PREFIX + std::to_string(t->uid);
  }
  t->path = t->dir + "/" + std::to_string(pid) + EBB_LIVE_SUFFIX;
  return true;
}

LiveFile::~LiveFile() {
  if (map_) munmap(const_cast<ebb_live_file_t*>(map_), EBB_LIVE_FILE_SIZE);
  if (fd_ >= 0) close(fd_);
}

bool LiveFile::open(const Target& t, Error* err) {
  fd_ = ::open(t.path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd_ < 0) {
    const int e = errno;
    if (e == ENOENT) {
      *err = explain_missing(t);
    } else if (e == EACCES || e == EPERM) {
      *err = {"permission denied reading " + t.path + ": " + who(t) + " belongs to uid " + std::to_string(t.uid) +
                  "; run ebbtop as that user",
              1};
    } else if (e == ELOOP) {
      *err = {t.path + " is a symlink; not following it", 1};
    } else {
      *err = {"cannot open " + t.path + ": " + strerror(e), 1};
    }
    return false;
  }
  struct stat st;
  if (fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
    *err = {t.path + " is not a regular file; refusing it", 1};
    return false;
  }
  if (st.st_uid != t.uid) {
    *err = {t.path + " belongs to uid " + std::to_string(st.st_uid) + ", not to the owner of " + who(t) +
                " (uid " + std::to_string(t.uid) + "); refusing it",
            1};
    return false;
  }
  if (st.st_size < static_cast<off_t>(EBB_LIVE_FILE_SIZE)) {
    *err = {t.path + " is not an ebbmalloc live statistics file (too short)", 1};
    return false;
  }
  void* m = mmap(nullptr, EBB_LIVE_FILE_SIZE, PROT_READ, MAP_SHARED, fd_, 0);
  if (m == MAP_FAILED) {
    *err = {"cannot map " + t.path + ": " + strerror(errno), 1};
    return false;
  }
  map_ = static_cast<const ebb_live_file_t*>(m);
  // The magic is written last when the file is made: a file only just
  // created may not have it yet.
  uint64_t magic = 0;
  for (int i = 0; i < 50 && (magic = __atomic_load_n(&map_->magic, __ATOMIC_ACQUIRE)) == 0; ++i) sleep_ms(10);
  if (magic != EBB_LIVE_MAGIC) {
    *err = {t.path + " is not an ebbmalloc live statistics file (bad magic)", 1};
    return false;
  }
  if (map_->layout != EBB_LIVE_LAYOUT || map_->header_size != sizeof(ebb_live_file_t)) {
    char version[sizeof(map_->version) + 1] = {};
    memcpy(version, map_->version, sizeof(map_->version));
    *err = {t.path + " has layout " + std::to_string(map_->layout) + " (written by '" + version +
                "'), this ebbtop reads layout " + std::to_string(EBB_LIVE_LAYOUT) +
                ": use the ebbtop built with that process's ebbmalloc",
            1};
    return false;
  }
  if (map_->pid != t.pid) {
    *err = {t.path + " belongs to pid " + std::to_string(map_->pid) + ", not " + std::to_string(t.pid) +
                " (a stale file); refusing it",
            1};
    return false;
  }
  return true;
}

bool LiveFile::read(ebb_live_file_t* out, Error* err) const {
  // Seqlock: copy between two equal, even reads of seq. The writer holds
  // the odd value for a few hundred bytes of stores; a process stopped in
  // that window (SIGSTOP, a debugger) would keep it odd, hence the bound.
  const size_t from = offsetof(ebb_live_file_t, seq);
  for (int attempt = 0; attempt < 300; ++attempt) {
    const uint64_t s1 = __atomic_load_n(&map_->seq, __ATOMIC_ACQUIRE);
    if (s1 & 1) {
      sleep_ms(attempt < 10 ? 0 : 10);
      continue;
    }
    memcpy(out, map_, from);
    const uint64_t* src = reinterpret_cast<const uint64_t*>(reinterpret_cast<const char*>(map_) + from);
    for (size_t i = 0; i < (sizeof(ebb_live_file_t) - from) / 8; ++i) {
      const uint64_t w = __atomic_load_n(src + i, __ATOMIC_RELAXED);
      memcpy(reinterpret_cast<char*>(out) + from + i * 8, &w, 8);
    }
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (__atomic_load_n(&map_->seq, __ATOMIC_RELAXED) == s1) return true;
  }
  *err = {"the statistics of process " + std::to_string(map_->pid) +
              " stayed half-written for 3 s (is it stopped?)",
          1};
  return false;
}

bool LiveFile::removed() const {
  struct stat st;
  return fstat(fd_, &st) != 0 || st.st_nlink == 0;
}

}  // namespace ebbtop
