// measure.cpp — see measure.h.
#include "measure.h"
#include "svg_plot.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
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

extern char** environ;

namespace ebb::measure {

// ---------------------------------------------------------------------------
// Allocator registry
// ---------------------------------------------------------------------------

bool Allocator::installed() const {
  return preload.empty() || access(preload.c_str(), R_OK) == 0;
}

std::vector<Allocator> known_allocators() {
  // Debian 12 paths: libmimalloc2.0 installs libmimalloc.so.2 (-> .so.2.0),
  // libjemalloc2 installs libjemalloc.so.2, libtcmalloc-minimal4 (pulled in
  // by libgoogle-perftools-dev) installs libtcmalloc_minimal.so.4.
  const std::string lib = "/usr/lib/x86_64-linux-gnu/";
  const std::string apt = "ebbrun --install, or apt-get install -y ";
  std::vector<Allocator> all = {
      {"glibc", "", {}, ""},
      {"ebb", ebb_library_path(), {}, ebb_library_hint()},
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
  // A second ebbmalloc build to measure side by side with this one (before
  // and after a change): EBBRUN_BASELINE_LIB=/path/to/libebbmalloc.so.
  if (const char* base = getenv("EBBRUN_BASELINE_LIB"); base && *base)
    all.push_back({"ebb-baseline", base, {}, "EBBRUN_BASELINE_LIB names a file that is not there"});
  return all;
}

const Allocator* find_allocator(const std::vector<Allocator>& all,
                                const std::string& name) {
  for (const auto& a : all)
    if (a.name == name) return &a;
  return nullptr;
}

std::vector<const Allocator*> select_allocators(const std::vector<Allocator>& known,
                                                const std::vector<std::string>& names) {
  std::vector<const Allocator*> out;
  if (names.empty())
    for (const auto& a : known) out.push_back(&a);
  else
    for (const auto& n : names) out.push_back(find_allocator(known, n));
  return out;
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
      if (opts.on_sample) opts.on_sample(pid, r.samples.back());
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
  r.cpu_s = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
            static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
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

// ---------------------------------------------------------------------------
// Helpers shared by the command-line drivers
// ---------------------------------------------------------------------------

namespace ebb::measure {

CliOption split_option(const std::string& a, const char* usage) {
  if (a == "-h" || a == "--help") {
    fputs(usage, stdout);
    exit(0);
  }
  CliOption o{a, "", false};
  if (size_t eq = a.find('='); a.rfind("--", 0) == 0 && eq != std::string::npos)
    o = {a.substr(0, eq), a.substr(eq + 1), true};
  return o;
}

std::string CliOption::need_value(int argc, char** argv, int* i,
                                  void (*usage_error)(const std::string&)) const {
  if (has_value) return value;
  if (*i + 1 >= argc) usage_error(name + " needs a value");
  return argv[++*i];
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    size_t p = s.find(sep, start);
    out.push_back(s.substr(start, p - start));
    if (p == std::string::npos) break;
    start = p + 1;
  }
  return out;
}

bool parse_int(const std::string& s, long lo, long hi, long* out) {
  errno = 0;
  char* end = nullptr;
  long v = strtol(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || errno == ERANGE || v < lo || v > hi) return false;
  *out = v;
  return true;
}

bool parse_positive(const std::string& s, double* out) {
  char* end = nullptr;
  double v = strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || !std::isfinite(v) || v <= 0) return false;
  *out = v;
  return true;
}

std::string writable_error(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return path + " is a directory";
  std::string tmp = path + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return "cannot write " + path + ": " + strerror(errno);
  close(fd);
  unlink(tmp.c_str());
  return "";
}

int run_to_stderr(const std::vector<std::string>& args) {
  std::vector<char*> av;
  std::vector<std::string> copy = args;
  for (auto& s : copy) av.push_back(s.data());
  av.push_back(nullptr);
  fflush(nullptr);
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    dup2(STDERR_FILENO, STDOUT_FILENO);
    execvp(av[0], av.data());
    _exit(127);
  }
  int ws;
  while (waitpid(pid, &ws, 0) < 0)
    if (errno != EINTR) return -1;
  return WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
}

bool install_allocators(const std::vector<const Allocator*>& wanted, const char* tool) {
  bool missing = false;
  for (const auto* a : wanted) missing |= a->name != "ebb" && !a->installed();
  if (!missing) {
    fprintf(stderr, "%s: --install: the requested allocators are already installed\n", tool);
    return true;
  }
  fprintf(stderr, "%s: --install: running apt-get update and apt-get install\n", tool);
  std::vector<std::string> cmd = {"apt-get", "install", "-y"};
  for (const char* p : kAllocatorPackages) cmd.push_back(p);
  if (run_to_stderr({"apt-get", "update"}) != 0 || run_to_stderr(cmd) != 0) {
    fprintf(stderr, "%s: --install: apt-get failed (are you root?)\n", tool);
    return false;
  }
  return true;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::vector<const RunResult*> AllocRuns::started() const {
  std::vector<const RunResult*> s;
  for (const auto& r : runs)
    if (r.started) s.push_back(&r);
  return s;
}

std::string AllocRuns::status() const {
  if (all_ok()) return "0";
  std::map<std::string, int> count;
  std::vector<std::string> order;
  for (const auto& r : runs)
    if (!r.ok && count[r.status]++ == 0) order.push_back(r.status);
  std::string s;
  for (const auto& st : order) {
    if (!s.empty()) s += "; ";
    s += st;
    if (runs.size() > 1)
      s += " (" + std::to_string(count[st]) + "/" + std::to_string(runs.size()) + " runs)";
  }
  return s;
}

const RunResult* AllocRuns::representative() const {
  auto s = started();
  if (s.empty()) return nullptr;
  std::sort(s.begin(), s.end(), [](auto a, auto b) { return a->wall_s < b->wall_s; });
  return s[(s.size() - 1) / 2];
}

size_t display_width(const std::string& s) {
  size_t w = 0;
  for (unsigned char ch : s) w += (ch & 0xC0) != 0x80;
  return w;
}

std::string fmtd(const char* format, double v) {
  char buf[64];
  snprintf(buf, sizeof buf, format, v);
  return buf;
}

std::string shell_join(const std::vector<std::string>& cmd) {
  std::string s;
  for (const auto& a : cmd) {
    if (!s.empty()) s += ' ';
    bool plain = !a.empty() && a.find_first_of(" \t\n'\"\\$`*?;&|<>()") == std::string::npos;
    if (plain) {
      s += a;
    } else {
      s += '\'';
      for (char ch : a) s += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
      s += '\'';
    }
  }
  return s;
}

std::string allocator_color(const std::string& name, size_t index) {
  static const std::map<std::string, std::string> fixed = {
      {"glibc", "#555555"},    {"ebb", "#d62728"},         {"mimalloc", "#1f77b4"},
      {"jemalloc", "#2ca02c"}, {"jemalloc-bg", "#ff7f0e"}, {"tcmalloc", "#9467bd"}};
  auto it = fixed.find(name);
  return it != fixed.end() ? it->second : ebb::svg::palette(index);
}

ebb::svg::Series rss_series(const AllocRuns& a, size_t index, const std::string& note) {
  ebb::svg::Series s;
  s.label = a.alloc->name;
  s.color = allocator_color(a.alloc->name, index);
  s.note = note;
  if (const RunResult* r = a.representative())
    for (const auto& p : r->samples) s.points.push_back({p.t, double(p.rss) / (1024.0 * 1024.0)});
  return s;
}

bool write_rss_chart(const std::string& path, const std::string& title,
                     const std::string& subtitle, const std::vector<const AllocRuns*>& all,
                     const std::vector<std::string>& notes, const char* tool) {
  ebb::svg::Chart chart;
  chart.title = title;
  chart.subtitle = subtitle;
  chart.x_label = "time (s)";
  chart.y_label = "RSS (MiB)";
  for (size_t i = 0; i < all.size(); ++i)
    chart.series.push_back(rss_series(*all[i], i, i < notes.size() ? notes[i] : ""));
  std::string err;
  if (!ebb::svg::write_file(path, chart, &err)) {
    fprintf(stderr, "%s: --plot: %s\n", tool, err.c_str());
    return false;
  }
  fprintf(stderr, "%s: wrote %s\n", tool, path.c_str());
  return true;
}

std::string last_lines(const std::string& text, int n) {
  size_t pos = text.size();
  if (pos && text[pos - 1] == '\n') --pos;
  for (int i = 0; i < n && pos != std::string::npos && pos > 0; ++i)
    pos = text.rfind('\n', pos - 1);
  std::string tail = text.substr(pos == std::string::npos || pos == 0 ? 0 : pos + 1);
  std::string out;
  for (const auto& l : split(tail, '\n'))
    if (!l.empty()) out += "    " + l + "\n";
  return out;
}

std::string check_verify_line(RunResult& r) {
  const std::string& out = r.stdout_tail;
  size_t v = out.rfind("verify ");
  size_t eol = v == std::string::npos ? v : out.find('\n', v);
  std::string line = v == std::string::npos ? "" : out.substr(v, eol == std::string::npos ? eol : eol - v);
  size_t failed = line.find(" FAILED: ");
  if (!r.ok) {
    if (failed != std::string::npos) r.status += " (" + line.substr(failed + 1) + ")";
    return "";
  }
  size_t sum = line.find(" checksum=");
  if (failed != std::string::npos || sum == std::string::npos || line.size() < 3 ||
      line.compare(line.size() - 3, 3, " OK") != 0) {
    r.ok = false;
    r.status = failed != std::string::npos ? line.substr(failed + 1) : "no 'verify ... OK' line";
    return "";
  }
  size_t from = sum + 10;
  return line.substr(from, line.size() - 3 - from);
}

double marker_time(const std::string& err, const std::string& name, const std::string& what) {
  const std::string tag = "[" + name + "] t=";
  size_t pos = 0;
  while ((pos = err.find(tag, pos)) != std::string::npos) {
    size_t eol = err.find('\n', pos);
    std::string line = err.substr(pos, eol == std::string::npos ? eol : eol - pos);
    char* end = nullptr;
    double t = strtod(line.c_str() + tag.size(), &end);
    // The text is `what`, or `what` followed by details after a space.
    if (end && std::string(end).compare(0, what.size() + 1, " " + what) == 0 &&
        (end[what.size() + 1] == '\0' || end[what.size() + 1] == ' '))
      return t;
    if (eol == std::string::npos) break;
    pos = eol;
  }
  return -1;
}

double rss_at_end_of(const RunResult& r, double t) {
  if (t < 0) return -1;
  double rss = -1;
  for (const auto& s : r.samples)
    if (s.t <= t) rss = static_cast<double>(s.rss);
  return rss;
}

}  // namespace ebb::measure
