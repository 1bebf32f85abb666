// measure.h — the reusable measuring core of ebbrun (and of bench/compare).
//
// It knows which allocators exist and how to preload them, runs a command
// under one of them, and samples the resident memory of the command's whole
// process tree from /proc while it runs.
//
// Everything here is Linux-specific (/proc, wait4, pidfd) and single-threaded:
// run_under() forks, so call it from a process with no other threads.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <sys/types.h>

#include "locate.h"  // ebb_library_path(): where libebbmalloc.so is
#include "svg_plot.h"

namespace ebb::measure {

// One environment variable assignment, VAR=VALUE.
struct EnvVar {
  std::string name;
  std::string value;
};

// ---------------------------------------------------------------------------
// Allocator registry
// ---------------------------------------------------------------------------

struct Allocator {
  std::string name;              // "glibc", "ebb", "mimalloc", ...
  std::string preload;           // library put into LD_PRELOAD; empty = none
  std::vector<EnvVar> env;       // extra variables (e.g. MALLOC_CONF)
  std::string install_hint;      // how to get it when it is missing

  // True when the allocator can be used: no preload needed, or the preload
  // library exists and is readable.
  bool installed() const;
};

// All known allocators, in the default order:
// glibc, ebb, mimalloc, jemalloc, jemalloc-bg, tcmalloc, and ebb-baseline
// when $EBBRUN_BASELINE_LIB names another libebbmalloc.so (before/after).
std::vector<Allocator> known_allocators();

// The allocator with that name, or nullptr.
const Allocator* find_allocator(const std::vector<Allocator>& all,
                                const std::string& name);

// The allocators named (all known ones when `names` is empty), in that
// order; every name must be known.
std::vector<const Allocator*> select_allocators(const std::vector<Allocator>& known,
                                                const std::vector<std::string>& names);

// The Debian packages that provide the non-ebb allocators.
inline constexpr const char* kAllocatorPackages[] = {
    "libmimalloc-dev", "libjemalloc-dev", "libgoogle-perftools-dev"};

// ---------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------

// The environment for a child run under `alloc`: `base` (normally environ)
// with, in this order,
//   1. the allocator's own variables set (e.g. MALLOC_CONF for jemalloc-bg),
//   2. the caller's `extras` set (so a user can override step 1),
//   3. the allocator's preload library put in FRONT of whatever LD_PRELOAD
//      is then (joined with ':'), so an existing LD_PRELOAD is kept but the
//      measured allocator wins symbol resolution for malloc & co.
// Returns "NAME=VALUE" strings.
std::vector<std::string> build_child_env(const Allocator& alloc,
                                         const std::vector<EnvVar>& extras,
                                         char** base);

// ---------------------------------------------------------------------------
// Process-tree RSS
// ---------------------------------------------------------------------------

// The memory of one process as a sampler should see it.
struct ProcessMemory {
  uint64_t rss = 0;    // bytes: /proc/PID/statm field 2 × page size
  bool live = false;   // false: gone, a zombie, or exiting
};

// Reads one process. A process that is exiting (PF_EXITING on all its
// threads) reports live = false and rss 0: while the kernel tears its address
// space down, statm falls towards 0 over tens of milliseconds, and such a
// reading says nothing about what the allocator kept. A process whose main
// thread has exited but other threads run on is still live (its RSS is read
// through one of them).
ProcessMemory read_process_memory(pid_t pid);

// read_process_memory(pid).rss.
uint64_t process_rss(pid_t pid);

// Parses the ppid and the flags (field 9) out of the contents of a
// /proc/PID/stat file; false if malformed. (The command name in field 2 may
// contain spaces and ')'.)
bool parse_stat(const std::string& stat, pid_t* ppid, unsigned* flags, char* state);

// `root` and all its live descendants (root first). Uses
// /proc/PID/task/*/children when the kernel provides it, else a scan of the
// ppid field of every /proc/*/stat.
std::vector<pid_t> process_tree(pid_t root);

// Sum of process_rss() over process_tree(root).
uint64_t tree_rss(pid_t root);

// ---------------------------------------------------------------------------
// Running and sampling
// ---------------------------------------------------------------------------

struct Sample {
  double t;       // seconds since the child was started
  uint64_t rss;   // bytes, whole process tree
};

struct RunOptions {
  int interval_ms = 50;      // sampling period
  std::vector<EnvVar> env;   // extra variables for this run (see build_child_env)
  // Where the command's stdout and stderr go: -1 = inherit ours; otherwise
  // both are dup2'd onto this descriptor (e.g. /dev/null or a log file).
  int output_fd = -1;
  // When true, the command's stdout and stderr go to in-memory files instead
  // (output_fd is then ignored), and RunResult::stdout_tail / stderr_tail
  // receive the last 64 KiB of each. Used to check a workload's
  // verification line and read its phase markers.
  bool capture_output = false;
  // Kill the command (and its tree) after this many seconds; 0 = never.
  double timeout_s = 0;
  // Called after each RSS sample with the command's pid and the sample (to
  // read more about the process at the same moment, e.g. its live
  // statistics file: compare_floor.cpp).
  std::function<void(pid_t pid, const Sample& s)> on_sample;
};

struct RunResult {
  double wall_s = 0;            // fork → exit seen
  std::vector<Sample> samples;
  uint64_t peak = 0;            // bytes; max of samples and the kernel's ru_maxrss
  uint64_t final_rss = 0;       // bytes; last sample before exit
  double mean_rss = 0;          // bytes; time-weighted mean over the samples
  double integral_mib_s = 0;    // ∫ RSS dt in MiB·s
  long minor_faults = 0;        // ru_minflt of the child and its waited-for descendants
  double cpu_s = 0;             // user + system CPU seconds (same rusage)
  std::string status;           // "0", "exit 3", "signal SIGSEGV", "command not found", ...
  bool ok = false;              // exited with status 0
  bool started = false;         // exec succeeded (numbers are meaningful)
  std::string stdout_tail;      // see RunOptions::capture_output
  std::string stderr_tail;
};

// Runs argv (argv[0] looked up in PATH) under `alloc` and samples it.
// Never throws for a failing command: failures are in the result's status.
RunResult run_under(const Allocator& alloc, const std::vector<std::string>& argv,
                    const RunOptions& opts);

// Fills peak / final_rss / mean_rss / integral_mib_s from r.samples and
// r.wall_s (each sample is taken to hold until the next one; the last holds
// until the exit). Exposed for tests.
void summarize(RunResult& r);

// "0", "exit N", "signal SIGSEGV" (+ " (core dumped)") for a wait status.
std::string describe_wait_status(int wstatus);

// ---------------------------------------------------------------------------
// Helpers shared by the command-line drivers (ebbrun, bench/compare)
// ---------------------------------------------------------------------------

// One command-line argument as the drivers' parsers see it: "--opt VALUE"
// or "--opt=VALUE" (the value inline).
struct CliOption {
  std::string name;   // the whole argument, or what precedes '=' in "--opt=..."
  std::string value;  // what follows '='
  bool has_value = false;
  // The value: inline, else the next argument (advancing *i). When there is
  // none, calls usage_error("NAME needs a value"), which must not return.
  std::string need_value(int argc, char** argv, int* i,
                         void (*usage_error)(const std::string&)) const;
};
// Splits `arg`; "-h" and "--help" print `usage` on stdout and exit 0.
CliOption split_option(const std::string& arg, const char* usage);

// `s` cut at every `sep` (empty fields kept).
std::vector<std::string> split(const std::string& s, char sep);

// Strict parses: all of `s` must be the number. False when malformed or out
// of range (integers in [lo, hi]; doubles finite and > 0).
bool parse_int(const std::string& s, long lo, long hi, long* out);
bool parse_positive(const std::string& s, double* out);

// "" when `path` can be written (checked by creating and removing
// path + ".tmp", which is also how results are written), else why not.
std::string writable_error(const std::string& path);

// Runs a command with its stdout sent to our stderr (so the caller's stdout
// stays its tables); returns its exit code, -1 if it could not run.
int run_to_stderr(const std::vector<std::string>& args);

// --install: apt-gets kAllocatorPackages when one of `wanted` (ebb aside) is
// missing. `tool` prefixes the notes. False when apt-get failed.
bool install_allocators(const std::vector<const Allocator*>& wanted, const char* tool);

// Median (the mean of the two middle values for an even count); 0 if empty.
double median(std::vector<double> v);

// All runs of one allocator, with their medians over the runs that started.
struct AllocRuns {
  const Allocator* alloc;
  std::vector<RunResult> runs;

  std::vector<const RunResult*> started() const;
  template <typename F>
  double med(F field) const {
    std::vector<double> v;
    for (const auto* r : started()) v.push_back(field(*r));
    return median(v);
  }
  bool any_started() const { return !started().empty(); }
  bool all_ok() const {
    return std::all_of(runs.begin(), runs.end(), [](const auto& r) { return r.ok; });
  }
  double time() const { return med([](const RunResult& r) { return r.wall_s; }); }
  double peak() const { return med([](const RunResult& r) { return double(r.peak); }); }
  double final_rss() const { return med([](const RunResult& r) { return double(r.final_rss); }); }
  double mean() const { return med([](const RunResult& r) { return r.mean_rss; }); }
  double integral() const { return med([](const RunResult& r) { return r.integral_mib_s; }); }
  double faults() const { return med([](const RunResult& r) { return double(r.minor_faults); }); }
  double cpu() const { return med([](const RunResult& r) { return r.cpu_s; }); }

  // "0" when all runs succeeded, else each distinct failure (with how many
  // runs it hit when there were several runs).
  std::string status() const;

  // The run with the median wall time (the lower middle one for an even
  // count): the one that is plotted. nullptr when no run started.
  const RunResult* representative() const;
};

// Display width of UTF-8 text (counts code points, not bytes: "MiB·s").
size_t display_width(const std::string& s);

// printf of one double.
std::string fmtd(const char* format, double v);

// The command as a shell would take it back (quoted where needed).
std::string shell_join(const std::vector<std::string>& cmd);

// A fixed color per allocator, so plots from different runs compare at a
// glance; ebb is the red one. Others get svg::palette(index).
std::string allocator_color(const std::string& name, size_t index);

// RSS (MiB) over time (s) of a's representative run as a chart series,
// colored by allocator_color(name, index); `note` goes into the legend
// (e.g. why the allocator failed).
ebb::svg::Series rss_series(const AllocRuns& a, size_t index, const std::string& note);

// An RSS-over-time chart: titles, axis labels and one rss_series per
// allocator (`notes[i]` for all[i], may be shorter), written to `path`.
// Notes on stderr start with `tool`. False when it could not be written.
bool write_rss_chart(const std::string& path, const std::string& title,
                     const std::string& subtitle, const std::vector<const AllocRuns*>& all,
                     const std::vector<std::string>& notes, const char* tool);

// The last `n` lines of `text`, each indented by four spaces.
std::string last_lines(const std::string& text, int n);

// Workload runs must print a `verify <name> checksum=<hex> OK` line
// (bench/workloads): a run that exits 0 without it computed something wrong
// and must not look fine, so it is marked failed ("no 'verify ... OK'
// line"). A failed run that printed `verify <name> FAILED: <reason>` gets the
// reason added to its status. Returns the checksum ("" when none).
std::string check_verify_line(RunResult& r);

// The time of a workload's phase marker "[NAME] t=SECONDS WHAT" or
// "[NAME] t=SECONDS WHAT DETAILS..." (printed on its stderr, see
// bench/workloads/README.md), or -1 when there is none.
double marker_time(const std::string& err, const std::string& name, const std::string& what);

// RSS at the end of the phase that finished at workload time `t`: the last
// sample at or before t. (The workload's clock starts a little after ours,
// so that sample lies inside the phase.) -1 when unknown.
double rss_at_end_of(const RunResult& r, double t);

}  // namespace ebb::measure
