// measure.cpp — see measure.h.
#include "measure.h"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <unordered_map>

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef EBB_LIB_PATH
#define EBB_LIB_PATH "lib/libebbmalloc.so"
#endif

extern char** environ;

namespace ebb::measure {

// ---------------------------------------------------------------------------
// Allocator registry
// ---------------------------------------------------------------------------

bool Allocator::installed() const {
  return preload.empty() || access(preload.c_str(), R_OK) == 0;
}

std::string ebb_library_path() {
  const char* over = getenv("EBBRUN_EBB_LIB");
  if (over && *over) return over;
  return EBB_LIB_PATH;
}

std::vector<Allocator> known_allocators() {
  // Debian 12 paths: libmimalloc2.0 installs libmimalloc.so.2 (-> .so.2.0),
  // libjemalloc2 installs libjemalloc.so.2, libtcmalloc-minimal4 (pulled in
  // by libgoogle-perftools-dev) installs libtcmalloc_minimal.so.4.
  const std::string lib = "/usr/lib/x86_64-linux-gnu/";
  const std::string apt = "ebbrun --install, or apt-get install -y ";
  return {
      {"glibc", "", {}, ""},
      {"ebb", ebb_library_path(), {},
       "build it: cmake --build build/release --target ebbmalloc, "
       "or point EBBRUN_EBB_LIB at it"},
      {"mimalloc", lib + "libmimalloc.so.2", {}, apt + "libmimalloc-dev"},
      {"jemalloc", lib + "libjemalloc.so.2", {}, apt + "libjemalloc-dev"},
      // jemalloc tuned to give memory back as eagerly as it can: a background
      // thread purges dirty pages after 1 s and skips the "muzzy" stage.
      {"jemalloc-bg", lib + "libjemalloc.so.2",
       {{"MALLOC_CONF", "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0"}},
       apt + "libjemalloc-dev"},
      {"tcmalloc", lib + "libtcmalloc_minimal.so.4", {},
       apt + "libgoogle-perftools-dev"},
  };
}

const Allocator* find_allocator(const std::vector<Allocator>& all,
                                const std::string& name) {
  for (const auto& a : all)
    if (a.name == name) return &a;
  return nullptr;
}

// ---------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------

namespace {

// Sets NAME=VALUE in a list of "NAME=VALUE" strings, replacing any earlier one.
void set_var(std::vector<std::string>& env, const std::string& name,
             const std::string& value) {
  const std::string prefix = name + "=";
  for (auto& e : env) {
    if (e.compare(0, prefix.size(), prefix) == 0) {
      e = prefix + value;
      return;
    }
  }
  env.push_back(prefix + value);
}

const std::string* get_var(const std::vector<std::string>& env,
                           const std::string& name) {
  const std::string prefix = name + "=";
  for (const auto& e : env)
    if (e.compare(0, prefix.size(), prefix) == 0) return &e;
  return nullptr;
}

}  // namespace

std::vector<std::string> build_child_env(const Allocator& alloc,
                                         const std::vector<EnvVar>& extras,
                                         char** base) {
  std::vector<std::string> env;
  for (char** p = base; p && *p; ++p) env.emplace_back(*p);
  for (const auto& v : alloc.env) set_var(env, v.name, v.value);
  for (const auto& v : extras) set_var(env, v.name, v.value);
  if (!alloc.preload.empty()) {
    std::string value = alloc.preload;
    if (const std::string* old = get_var(env, "LD_PRELOAD")) {
      std::string rest = old->substr(sizeof("LD_PRELOAD=") - 1);
      if (!rest.empty()) value += ":" + rest;
    }
    set_var(env, "LD_PRELOAD", value);
  }
  return env;
}

// ---------------------------------------------------------------------------
// Process-tree RSS
// ---------------------------------------------------------------------------

namespace {

// Reads a small /proc file in one go (they are generated on read, so a
// single read gives a consistent snapshot). Returns false if it's gone.
bool read_small_file(const char* path, std::string& out) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[4096];
  out.clear();
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return true;
}

bool is_number(const char* s) {
  if (!*s) return false;
  for (; *s; ++s)
    if (*s < '0' || *s > '9') return false;
  return true;
}

// Whether this kernel has /proc/PID/task/TID/children (CONFIG_PROC_CHILDREN).
bool have_children_files() {
  static const bool have = [] {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", getpid(), getpid());
    return access(path, R_OK) == 0;
  }();
  return have;
}

// Children of `pid` via /proc/PID/task/*/children (a child belongs to the
// thread that forked it, so every thread's file has to be read).
void children_from_task_files(pid_t pid, std::vector<pid_t>& out) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/task", pid);
  DIR* d = opendir(path);
  if (!d) return;
  std::string text;
  while (dirent* e = readdir(d)) {
    if (!is_number(e->d_name)) continue;
    char file[300];
    snprintf(file, sizeof file, "/proc/%d/task/%s/children", pid, e->d_name);
    if (!read_small_file(file, text)) continue;
    const char* p = text.c_str();
    char* end;
    for (;;) {
      long v = strtol(p, &end, 10);
      if (end == p) break;
      out.push_back(static_cast<pid_t>(v));
      p = end;
    }
  }
  closedir(d);
}

// ppid → children for every process, from /proc/*/stat.
std::unordered_map<pid_t, std::vector<pid_t>> scan_parents() {
  std::unordered_map<pid_t, std::vector<pid_t>> kids;
  DIR* d = opendir("/proc");
  if (!d) return kids;
  std::string text;
  while (dirent* e = readdir(d)) {
    if (!is_number(e->d_name)) continue;
    char file[300];
    snprintf(file, sizeof file, "/proc/%s/stat", e->d_name);
    if (!read_small_file(file, text)) continue;
    pid_t ppid;
    if (parse_stat(text, &ppid, nullptr, nullptr) && ppid > 0)
      kids[ppid].push_back(static_cast<pid_t>(atol(e->d_name)));
  }
  closedir(d);
  return kids;
}

}  // namespace

bool parse_stat(const std::string& stat, pid_t* ppid, unsigned* flags, char* state) {
  // "PID (comm) STATE PPID PGRP SESSION TTY TPGID FLAGS ...": comm may hold
  // anything, so parse from after the LAST ')'.
  size_t close = stat.rfind(')');
  if (close == std::string::npos) return false;
  char st;
  int pp, pgrp, session, tty, tpgid;
  unsigned fl;
  if (sscanf(stat.c_str() + close + 1, " %c %d %d %d %d %d %u", &st, &pp, &pgrp, &session,
             &tty, &tpgid, &fl) != 7)
    return false;
  if (ppid) *ppid = pp;
  if (flags) *flags = fl;
  if (state) *state = st;
  return true;
}

namespace {

constexpr unsigned kPfExiting = 0x4;  // PF_EXITING, include/linux/sched.h

uint64_t read_statm_rss(const char* path) {
  std::string text;
  if (!read_small_file(path, text)) return 0;
  unsigned long long size = 0, resident = 0;
  if (sscanf(text.c_str(), "%llu %llu", &size, &resident) != 2) return 0;
  static const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  return resident * page;
}

// Reads statm under `dir` (/proc/PID or /proc/PID/task/TID), then the
// thread's flags. statm is read FIRST: PF_EXITING is set before the address
// space is torn down, so "not exiting" after the read means the read saw
// the whole address space.
bool read_live_thread(const std::string& dir, uint64_t* rss) {
  uint64_t r = read_statm_rss((dir + "/statm").c_str());
  std::string stat;
  unsigned flags;
  char state;
  if (!read_small_file((dir + "/stat").c_str(), stat) ||
      !parse_stat(stat, nullptr, &flags, &state))
    return false;
  if ((flags & kPfExiting) || state == 'Z' || state == 'X' || r == 0) return false;
  *rss = r;
  return true;
}

}  // namespace

ProcessMemory read_process_memory(pid_t pid) {
  ProcessMemory m;
  const std::string dir = "/proc/" + std::to_string(pid);
  if (read_live_thread(dir, &m.rss)) {
    m.live = true;
    return m;
  }
  // The main thread is exiting or gone; the process lives on if any other
  // thread does (e.g. main called pthread_exit).
  DIR* d = opendir((dir + "/task").c_str());
  if (!d) return m;
  while (dirent* e = readdir(d)) {
    if (!is_number(e->d_name) || atol(e->d_name) == pid) continue;
    if (read_live_thread(dir + "/task/" + e->d_name, &m.rss)) {
      m.live = true;
      break;
    }
  }
  closedir(d);
  return m;
}

uint64_t process_rss(pid_t pid) { return read_process_memory(pid).rss; }

std::vector<pid_t> process_tree(pid_t root) {
  std::vector<pid_t> tree{root};
  if (have_children_files()) {
    for (size_t i = 0; i < tree.size(); ++i) children_from_task_files(tree[i], tree);
  } else {
    auto kids = scan_parents();
    for (size_t i = 0; i < tree.size(); ++i) {
      auto it = kids.find(tree[i]);
      if (it != kids.end()) tree.insert(tree.end(), it->second.begin(), it->second.end());
    }
  }
  return tree;
}

uint64_t tree_rss(pid_t root) {
  uint64_t sum = 0;
  for (pid_t p : process_tree(root)) sum += process_rss(p);
  return sum;
}

// ---------------------------------------------------------------------------
// Running and sampling
// ---------------------------------------------------------------------------

std::string describe_wait_status(int ws) {
  if (WIFEXITED(ws)) {
    int code = WEXITSTATUS(ws);
    return code == 0 ? "0" : "exit " + std::to_string(code);
  }
  if (WIFSIGNALED(ws)) {
    int sig = WTERMSIG(ws);
    const char* abbrev = sigabbrev_np(sig);
    std::string s = abbrev ? std::string("signal SIG") + abbrev
                           : "signal " + std::to_string(sig);
    if (WCOREDUMP(ws)) s += " (core dumped)";
    return s;
  }
  return "unknown status " + std::to_string(ws);
}

void summarize(RunResult& r) {
  const auto& s = r.samples;
  uint64_t peak = r.peak;  // may already hold the kernel's ru_maxrss
  for (const auto& x : s) peak = std::max(peak, x.rss);
  r.peak = peak;
  r.final_rss = s.empty() ? 0 : s.back().rss;
  // Step integral: each sample holds until the next sample, the last until
  // the exit.
  double integral = 0;  // byte·seconds
  for (size_t i = 0; i < s.size(); ++i) {
    double until = i + 1 < s.size() ? s[i + 1].t : std::max(r.wall_s, s[i].t);
    integral += static_cast<double>(s[i].rss) * (until - s[i].t);
  }
  double span = s.empty() ? 0 : std::max(r.wall_s, s.back().t) - s.front().t;
  r.mean_rss = span > 0 ? integral / span : (s.empty() ? 0 : static_cast<double>(s[0].rss));
  r.integral_mib_s = integral / (1024.0 * 1024.0);
}

namespace {

double now_s() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

timespec to_timespec(double seconds) {
  if (seconds < 0) seconds = 0;
  timespec ts;
  ts.tv_sec = static_cast<time_t>(seconds);
  ts.tv_nsec = static_cast<long>((seconds - static_cast<double>(ts.tv_sec)) * 1e9);
  return ts;
}

// A pidfd becomes readable when the process exits, which lets the sampler
// sleep until the next tick OR the exit, whichever comes first — so the wall
// time isn't rounded up to the sampling interval. -1 if unsupported.
int open_pidfd(pid_t pid) {
#ifdef SYS_pidfd_open
  return static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
#else
  (void)pid;
  return -1;
#endif
}

// Sleeps `seconds`, waking early if pidfd (when >= 0) signals an exit.
void wait_for_exit_or(int pidfd, double seconds) {
  timespec ts = to_timespec(seconds);
  if (pidfd >= 0) {
    pollfd p{pidfd, POLLIN, 0};
    ppoll(&p, 1, &ts, nullptr);
  } else {
    nanosleep(&ts, nullptr);
  }
}

std::string exec_error_status(int err) {
  if (err == ENOENT) return "command not found";
  if (err == EACCES) return "permission denied";
  return std::string("exec failed: ") + strerror(err);
}

// Child side of the fork: only async-signal-safe calls from here on.
[[noreturn]] void child_exec(char** argv, char** envp, int out_fd, int err_fd,
                             int report_fd, pid_t parent) {
  // If the measuring process dies (killed, Ctrl-C), don't leave the command
  // running on its own. (The setting survives execvp.)
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != parent) _exit(127);  // it died before the prctl
  if (out_fd >= 0) dup2(out_fd, STDOUT_FILENO);
  if (err_fd >= 0) dup2(err_fd, STDERR_FILENO);
  // Setting environ before execvp (rather than execvpe) makes a PATH given
  // through the extra environment count for the command lookup too.
  environ = envp;
  execvp(argv[0], argv);
  int err = errno;
  ssize_t ignored = write(report_fd, &err, sizeof err);
  (void)ignored;
  _exit(127);
}

// The last 64 KiB written to a captured-output file.
std::string read_tail(int fd) {
  constexpr off_t kTail = 64 * 1024;
  std::string out;
  if (fd < 0) return out;
  off_t size = lseek(fd, 0, SEEK_END);
  if (size <= 0) return out;
  off_t from = size > kTail ? size - kTail : 0;
  out.resize(static_cast<size_t>(size - from));
  ssize_t got = pread(fd, out.data(), out.size(), from);
  out.resize(got > 0 ? static_cast<size_t>(got) : 0);
  return out;
}

}  // namespace

RunResult run_under(const Allocator& alloc, const std::vector<std::string>& argv,
                    const RunOptions& opts) {
  RunResult r;
  if (argv.empty()) {
    r.status = "no command";
    return r;
  }

  // Everything the child needs is prepared before fork(): after it, the
  // child only calls async-signal-safe functions.
  std::vector<std::string> env_strings = build_child_env(alloc, opts.env, environ);
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_copy = argv;
  std::vector<char*> cargv;
  for (auto& a : argv_copy) cargv.push_back(a.data());
  cargv.push_back(nullptr);

  // The child's stdout and stderr: inherited (-1), opts.output_fd, or two
  // in-memory files when capturing.
  int out_fd = opts.output_fd, err_fd = opts.output_fd;
  int captured[2] = {-1, -1};
  if (opts.capture_output) {
    out_fd = captured[0] = memfd_create("ebbrun-stdout", MFD_CLOEXEC);
    err_fd = captured[1] = memfd_create("ebbrun-stderr", MFD_CLOEXEC);
  }
  auto close_captured = [&] {
    for (int& fd : captured)
      if (fd >= 0) close(fd), fd = -1;
  };

  // The child reports an execvp failure through this pipe; a successful exec
  // closes it (CLOEXEC), so the parent reads EOF.
  int report[2];
  if (pipe2(report, O_CLOEXEC) != 0) {
    r.status = std::string("pipe failed: ") + strerror(errno);
    close_captured();
    return r;
  }

  fflush(nullptr);  // don't let the child inherit unflushed stdio buffers
  const pid_t parent = getpid();
  const double t0 = now_s();
  pid_t pid = fork();
  if (pid < 0) {
    r.status = std::string("fork failed: ") + strerror(errno);
    close(report[0]);
    close(report[1]);
    close_captured();
    return r;
  }
  if (pid == 0) child_exec(cargv.data(), envp.data(), out_fd, err_fd, report[1], parent);

  close(report[1]);
  int child_errno = 0;
  ssize_t n;
  do {
    n = read(report[0], &child_errno, sizeof child_errno);
  } while (n < 0 && errno == EINTR);
  close(report[0]);

  int ws = 0;
  rusage ru{};
  if (n == static_cast<ssize_t>(sizeof child_errno)) {
    // execvp failed: reap the child and report why.
    while (wait4(pid, &ws, 0, &ru) < 0 && errno == EINTR) {
    }
    r.wall_s = now_s() - t0;
    r.status = exec_error_status(child_errno);
    close_captured();
    return r;
  }
  r.started = true;

  const double interval = std::max(1, opts.interval_ms) / 1000.0;
  int pidfd = open_pidfd(pid);
  double next = now_s();
  bool timed_out = false;
  for (;;) {
    pid_t w = wait4(pid, &ws, WNOHANG, &ru);
    if (w == pid) break;
    if (w < 0 && errno != EINTR) {  // shouldn't happen: our own child
      r.status = std::string("wait failed: ") + strerror(errno);
      break;
    }
    double t = now_s();
    if (opts.timeout_s > 0 && t - t0 > opts.timeout_s && !timed_out) {
      for (pid_t p : process_tree(pid)) kill(p, SIGKILL);
      timed_out = true;
    }
    // While the root is exiting, its RSS falls to 0 as the kernel unmaps it;
    // such samples would drag "final RSS" down to nothing, so they are
    // dropped. An exiting descendant counts as 0 (its memory is on its way
    // back to the OS).
    std::vector<pid_t> tree = process_tree(pid);
    ProcessMemory root = read_process_memory(pid);
    if (root.live) {
      uint64_t sum = root.rss;
      for (size_t i = 1; i < tree.size(); ++i) sum += process_rss(tree[i]);
      r.samples.push_back({t - t0, sum});
    }
    // Fixed-rate schedule; if we fell behind (a slow /proc scan), skip the
    // missed ticks instead of bursting.
    next += interval;
    double after = now_s();
    if (next < after) next = after + interval;
    wait_for_exit_or(pidfd, next - after);
  }
  r.wall_s = now_s() - t0;
  if (pidfd >= 0) close(pidfd);

  if (r.status.empty()) {
    r.status = describe_wait_status(ws);
    r.ok = WIFEXITED(ws) && WEXITSTATUS(ws) == 0;
    if (timed_out) {
      char buf[64];
      snprintf(buf, sizeof buf, "timeout %.0fs (killed)", opts.timeout_s);
      r.status = buf;
      r.ok = false;
    }
  }
  r.minor_faults = ru.ru_minflt;
  // ru_maxrss (KiB) is the kernel's exact high-water mark of the largest
  // single process in the tree: a lower bound for the tree's peak that a
  // spike between two samples cannot escape.
  r.peak = static_cast<uint64_t>(ru.ru_maxrss) * 1024;
  summarize(r);

  if (opts.capture_output) {
    r.stdout_tail = read_tail(captured[0]);
    r.stderr_tail = read_tail(captured[1]);
    close_captured();
  }
  return r;
}

}  // namespace ebb::measure
