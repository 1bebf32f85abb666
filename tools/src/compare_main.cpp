// compare — where ebbmalloc stands against the other allocators, in one run.
//
//   bench/compare [--alloc LIST] [--runs N] [--scale F] [--workloads LIST]
//                 [--micro|--no-micro] [--reporter-cost|--no-reporter-cost]
//                 [--results FILE.md] [--plot FILE.svg] [--interval MS]
//                 [--micro-min-time S] [--timeout S] [--install] [--quick]
//
// Runs every workload of bench/workloads under every installed allocator,
// interleaved (run 1 of every workload × allocator, then run 2, ...), with
// the measuring core of ebbrun (measure.h: run_under samples the RSS of the
// process tree from /proc), checks each run's verification line, then runs
// the Google Benchmark micro benchmarks (bench/micro) under each allocator
// with LD_PRELOAD. Prints markdown tables on stdout; --results writes them
// with the machine, date and versions to a file, --plot draws RSS over time
// of the phase workload.
//
// Exit status: 0 when every run passed; 1 when any run failed (crash,
// non-zero exit, missing or wrong verification line) or nothing could run;
// 2 for usage errors (nothing was run then).
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <gnu/libc-version.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "compare_floor.h"
#include "compare_pressure.h"
#include "measure.h"
#include "rss_limit.h"
#include "svg_plot.h"

#ifndef EBB_WORKLOAD_DIR
#define EBB_WORKLOAD_DIR "bench/workloads"
#endif
#ifndef EBB_MICRO_PATH
#define EBB_MICRO_PATH "bench/micro/micro"
#endif
#ifndef EBB_SOURCE_DIR
#define EBB_SOURCE_DIR "."
#endif

namespace m = ebb::measure;
using m::AllocRuns;
using m::fmtd;

namespace {

constexpr const char* kUsage =
    "usage: compare [--alloc A,B,...] [--runs N] [--scale F] [--workloads W,...]\n"
    "               [--micro|--no-micro] [--reporter-cost|--no-reporter-cost]\n"
    "               [--floor|--no-floor] [--results FILE.md] [--plot FILE.svg]\n"
    "               [--interval MS] [--micro-min-time S] [--timeout S] [--env ALLOC:VAR=VALUE]\n"
    "               [--install] [--quick]\n"
    "allocators: glibc, ebb, mimalloc, jemalloc, jemalloc-bg, tcmalloc (default: all)\n"
    "workloads:  phase, churn, fragment, server, bigalloc, largeblock, phasechange,\n"
    "            threadchurn, tinyshort, tinymixed, tinythreads, xmalloc, rptest,\n"
    "            alloctest, scratch, pressure (default: all)\n"
    "--quick: tiny sizes and short idles (a smoke test, not a measurement)\n";

constexpr double kMiB = 1024.0 * 1024.0;
constexpr const char* kBaseline = "mimalloc";  // ratios are to this allocator
constexpr const char* kNoReporter = "ebb-noreporter";

// A workload and its arguments at --scale 1 (sized so that the default run,
// 3 repetitions of everything, stays under 10 minutes on two shared cores).
struct Workload {
  std::string name;
  double scale;     // passed as --scale (times the --scale option)
  int idle_ms = 0;  // phase only
  int tail_idle_ms = 0;
  int threads = 0;  // passed as --threads when set
  // A memory limit L in MiB at scale 1 (pressure): the command gets
  // --limit-mb L x scale instead of --scale, and ebbmalloc EBBMALLOC_LIMIT_MB
  // (compare_pressure.h).
  uint64_t limit_mb = 0;
};

const std::vector<Workload> kWorkloads = {
    {"phase", 0.25, 3000, 2500},
    {"churn", 0.35},
    {"fragment", 0.5},
    {"server", 0.35},
    {"bigalloc", 0.25},
    // The memory shapes of issue 11 (peak RSS is what they measure).
    {"largeblock", 0.5},
    {"phasechange", 1},
    {"threadchurn", 1.5},
    {"tinyshort", 2},
    {"tinymixed", 1},
    {"tinythreads", 1},
    // The speed shapes of issue 14 (cross-thread frees, random lifetimes).
    {"xmalloc", 0.5},
    {"rptest", 0.25},
    {"alloctest", 0.25, 0, 0, 1},
    {"scratch", 5},
    // Issue 15: live memory below a limit L (128 MiB here), RSS against it.
    {"pressure", 0.5, 0, 0, 0, 256},
};

struct Config {
  std::vector<std::string> allocs;  // empty = all known
  std::vector<std::string> workloads;
  int runs = 3;
  double scale = 1.0;
  int interval_ms = 50;
  double timeout_s = 300;
  double micro_min_time = 0.05;
  bool micro = true;
  bool reporter_cost = true;
  bool floor = true;  // the floor runs (compare_floor.h)
  bool quick = false;
  bool install = false;
  std::string results, plot;
  // --env ALLOC:VAR=VALUE (ALLOC may be "all"): extra variables for that
  // allocator's runs, as in ebbrun.
  std::vector<std::pair<std::string, m::EnvVar>> env;
};

[[noreturn]] void usage_error(const std::string& msg) {
  fprintf(stderr, "compare: %s (see compare --help)\n", msg.c_str());
  exit(2);
}

const Workload* find_workload(const std::string& name) {
  for (const auto& w : kWorkloads)
    if (w.name == name) return &w;
  return nullptr;
}

// Comma lists of known names, deduplicated, in the order given.
std::vector<std::string> parse_list(const std::string& opt, const std::string& value,
                                    bool (*known)(const std::string&)) {
  std::vector<std::string> out;
  for (const auto& n : m::split(value, ',')) {
    if (n.empty()) continue;
    if (!known(n)) usage_error(opt + ": unknown name '" + n + "'");
    if (std::find(out.begin(), out.end(), n) == out.end()) out.push_back(n);
  }
  if (out.empty()) usage_error(opt + " needs at least one name");
  return out;
}

// The options without a value.
struct Flag {
  const char* name;
  bool Config::*field;
  bool value;
};
constexpr Flag kFlags[] = {
    {"--micro", &Config::micro, true},
    {"--no-micro", &Config::micro, false},
    {"--reporter-cost", &Config::reporter_cost, true},
    {"--no-reporter-cost", &Config::reporter_cost, false},
    {"--floor", &Config::floor, true},
    {"--no-floor", &Config::floor, false},
    {"--install", &Config::install, true},
    {"--quick", &Config::quick, true},
};

const Flag* find_flag(const std::string& name) {
  for (const auto& f : kFlags)
    if (name == f.name) return &f;
  return nullptr;
}

Config parse_args(int argc, char** argv) {
  Config c;
  bool runs_given = false, scale_given = false, min_time_given = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    const m::CliOption opt = m::split_option(a, kUsage);
    const std::string& name = opt.name;
    const bool has_value = opt.has_value;
    auto need_value = [&] { return opt.need_value(argc, argv, &i, usage_error); };
    auto number = [&](double* out) {
      std::string v = need_value();
      if (!m::parse_positive(v, out)) usage_error(name + " needs a positive number, got '" + v + "'");
    };
    auto whole = [&](long lo, long hi) {
      std::string v = need_value();
      long out;
      if (!m::parse_int(v, lo, hi, &out))
        usage_error(name + " needs a whole number from " + std::to_string(lo) + " to " +
                    std::to_string(hi) + ", got '" + v + "'");
      return static_cast<int>(out);
    };
    if (name == "--alloc") {
      c.allocs = parse_list(name, need_value(), [](const std::string& n) {
        static const auto known = m::known_allocators();
        return m::find_allocator(known, n) != nullptr;
      });
    } else if (name == "--workloads") {
      c.workloads = parse_list(name, need_value(),
                               [](const std::string& n) { return find_workload(n) != nullptr; });
    } else if (name == "--runs") {
      c.runs = whole(1, 100);
      runs_given = true;
    } else if (name == "--scale") {
      number(&c.scale);
      if (c.scale > 8) usage_error("--scale above 8 would need more memory than is sensible");
      scale_given = true;
    } else if (name == "--interval") {
      c.interval_ms = whole(10, 1000);
    } else if (name == "--timeout") {
      number(&c.timeout_s);
    } else if (name == "--micro-min-time") {
      number(&c.micro_min_time);
      min_time_given = true;
    } else if (const Flag* f = find_flag(name)) {
      if (has_value) usage_error(name + " takes no value");
      c.*(f->field) = f->value;
    } else if (name == "--results" || name == "--plot") {
      std::string v = need_value();
      if (v.empty()) usage_error(name + " needs a file name");
      std::string err = m::writable_error(v);
      if (!err.empty()) usage_error(name + ": " + err);
      (name == "--results" ? c.results : c.plot) = v;
    } else if (name == "--env") {
      // ALLOC:VAR=VALUE (VALUE may be empty and may contain ':' and '=').
      std::string spec = need_value();
      size_t colon = spec.find(':'), eq = spec.find('=', colon == std::string::npos ? 0 : colon);
      if (colon == std::string::npos || eq == std::string::npos)
        usage_error("--env needs ALLOC:VAR=VALUE, got '" + spec + "'");
      std::string alloc = spec.substr(0, colon), var = spec.substr(colon + 1, eq - colon - 1);
      static const auto known = m::known_allocators();
      if (alloc != "all" && !m::find_allocator(known, alloc))
        usage_error("--env: unknown allocator '" + alloc + "' (or use 'all')");
      bool ok = !var.empty() && !isdigit(static_cast<unsigned char>(var[0]));
      for (char ch : var) ok = ok && (isalnum(static_cast<unsigned char>(ch)) || ch == '_');
      if (!ok) usage_error("--env: bad variable name '" + var + "'");
      c.env.push_back({alloc, {var, spec.substr(eq + 1)}});
    } else {
      usage_error("unknown option or argument '" + a + "'");
    }
  }
  if (c.quick) {
    if (!runs_given) c.runs = 1;
    if (!scale_given) c.scale = 0.02;
    if (!min_time_given) c.micro_min_time = 0.001;
  }
  if (c.workloads.empty())
    for (const auto& w : kWorkloads) c.workloads.push_back(w.name);
  return c;
}

std::string env_or(const char* var, const std::string& fallback) {
  const char* v = getenv(var);
  return v && *v ? v : fallback;
}

// `path` relative to the source tree when it lies inside it (for the tables:
// build/release/... rather than wherever the checkout is).
std::string shown(const std::string& path) {
  static const std::string root = [] {
    char* r = realpath(EBB_SOURCE_DIR, nullptr);
    std::string s = r ? std::string(r) + "/" : "";
    free(r);
    return s;
  }();
  return !root.empty() && path.rfind(root, 0) == 0 ? path.substr(root.size()) : path;
}

// The workload's limit L in MiB for this configuration (0: it has none).
uint64_t workload_limit_mib(const Workload& w, const Config& c) {
  return w.limit_mb ? ebb::compare::scaled_limit_mib(w.limit_mb, w.scale * c.scale) : 0;
}

// The workload's command line for this configuration.
std::vector<std::string> workload_cmd(const Workload& w, const Config& c) {
  std::string dir = env_or("EBB_COMPARE_WORKLOAD_DIR", EBB_WORKLOAD_DIR);
  // A workload with a limit is scaled through it: L is then in the command
  // as the same number ebbmalloc is given.
  if (w.limit_mb)
    return {dir + "/" + w.name, "--limit-mb", std::to_string(workload_limit_mib(w, c))};
  std::vector<std::string> cmd = {dir + "/" + w.name, "--scale", fmtd("%g", w.scale * c.scale)};
  if (w.threads) cmd.insert(cmd.end(), {"--threads", std::to_string(w.threads)});
  if (w.name == "phase") {
    // Idle periods are not scaled (the reporter's cold time is 1 s whatever
    // the size); --quick shortens them.
    int idle = c.quick ? 300 : w.idle_ms, tail = c.quick ? 300 : w.tail_idle_ms;
    cmd.insert(cmd.end(), {"--idle-ms", std::to_string(idle), "--tail-idle-ms",
                           std::to_string(tail)});
  }
  return cmd;
}

// ---------------------------------------------------------------------------
// Results of the workloads
// ---------------------------------------------------------------------------

// Number after `"key":` in JSON text, or -1.
double json_number(const std::string& text, const std::string& key) {
  size_t p = text.rfind("\"" + key + "\":");
  if (p == std::string::npos) return -1;
  return strtod(text.c_str() + p + key.size() + 3, nullptr);
}

// madvise calls of a run: ebbmalloc's statistics at exit (EBBMALLOC_STATS=json
// on stderr); -1 when unknown (other allocators).
double madvise_calls(const m::RunResult& r) { return json_number(r.stderr_tail, "madvise_calls"); }

struct Cell {  // one workload under one allocator
  AllocRuns runs;
  std::vector<std::string> checksums;  // of the runs that passed
};

struct WorkloadResults {
  const Workload* w;
  std::vector<std::string> cmd;
  uint64_t limit_mib = 0;  // the workload's limit L (0: none)
  std::vector<Cell> cells;  // in the order of the allocator list

  const Cell* cell(const std::string& alloc) const {
    for (const auto& c : cells)
      if (c.runs.alloc->name == alloc) return &c;
    return nullptr;
  }
  // The baseline's cell when all its runs passed, else nullptr.
  const AllocRuns* baseline() const {
    const Cell* b = cell(kBaseline);
    return b && b->runs.all_ok() && b->runs.any_started() ? &b->runs : nullptr;
  }
};

double med_madvise(const AllocRuns& a) {
  return a.med([](const m::RunResult& r) { return madvise_calls(r); });
}

// The verification line of every run: a run that exited 0 without "verify
// NAME checksum=X OK", or with another checksum than the other allocators'
// passing runs of the same command (the checksum depends only on the
// arguments), is a failure.
void verify(WorkloadResults& wr) {
  // One vote per checksum and allocator library (ebb and ebb-noreporter
  // are one library: they must not outvote the others together).
  std::set<std::pair<std::string, std::string>> voted;
  std::map<std::string, int> votes;
  for (auto& c : wr.cells)
    for (auto& r : c.runs.runs) {
      std::string sum = m::check_verify_line(r);
      if (!sum.empty() && voted.insert({sum, c.runs.alloc->preload}).second) ++votes[sum];
      c.checksums.push_back(sum);
    }
  if (votes.size() <= 1) return;
  // The checksum most runs agree on is taken as right; with a tie nobody's is.
  std::string majority;
  int most = 0, at_most = 0;
  for (const auto& [sum, n] : votes) {
    if (n > most) most = n, majority = sum, at_most = 0;
    at_most += n == most;
  }
  if (at_most > 1) majority.clear();
  for (auto& c : wr.cells)
    for (size_t i = 0; i < c.runs.runs.size(); ++i)
      if (!c.checksums[i].empty() && c.checksums[i] != majority) {
        c.runs.runs[i].ok = false;
        c.runs.runs[i].status = "FAILED: checksum " + c.checksums[i] +
                                (majority.empty() ? " (runs disagree)" : " (others " + majority + ")");
      }
}

// "FAILED: <status>" for a cell with a failed run, "" when all passed.
std::string failure(const AllocRuns& a) {
  if (a.all_ok() && a.any_started()) return "";
  std::string s = a.status();
  return s.rfind("FAILED", 0) == 0 ? s : "FAILED: " + s;
}

// ---------------------------------------------------------------------------
// Tables (markdown, padded so they read in a terminal too)
// ---------------------------------------------------------------------------

struct Table {
  std::vector<std::string> head;
  std::vector<std::vector<std::string>> rows;
  std::string render() const {
    std::vector<size_t> w(head.size(), 3);
    for (size_t k = 0; k < head.size(); ++k) {
      w[k] = std::max(w[k], m::display_width(head[k]));
      for (const auto& r : rows) w[k] = std::max(w[k], m::display_width(r[k]));
    }
    auto line = [&](const std::vector<std::string>& cells) {
      std::string out = "|";
      for (size_t k = 0; k < cells.size(); ++k) {
        std::string pad(w[k] - m::display_width(cells[k]), ' ');
        out += " " + (k == 0 ? cells[k] + pad : pad + cells[k]) + " |";
      }
      return out + "\n";
    };
    std::string out = line(head) + "|";
    for (size_t k = 0; k < head.size(); ++k)
      out += k == 0 ? ":" + std::string(w[k] + 1, '-') + "|" : std::string(w[k] + 1, '-') + ":|";
    out += "\n";
    for (const auto& r : rows) out += line(r);
    return out;
  }
};

std::string mib(double bytes) { return bytes < 0 ? "-" : fmtd("%.1f", bytes / kMiB); }
std::string count(double v) { return v < 0 ? "-" : fmtd("%.0f", v); }
std::string ratio(double mine, double base) {
  return base > 0 && mine >= 0 ? fmtd("%.2f", mine / base) : "-";
}

double geomean(const std::vector<double>& v) {
  if (v.empty()) return -1;
  double s = 0;
  for (double x : v) s += std::log(x);
  return std::exp(s / static_cast<double>(v.size()));
}

// RSS-return figures of one run of phase: the first sample after the free
// phase that ends with marker `freed`, the lowest RSS from then until marker
// `idle_end` (the floor), and the seconds from `freed` until RSS was within
// 10% of the floor. (Marker times count from the workload's start, a few ms
// after the fork our samples count from.)
struct Settle {
  double at_free = -1, at_half = -1, at_one = -1, floor = -1, seconds = -1;
};

Settle settle(const m::RunResult& r, const char* freed, const char* idle_end) {
  Settle s;
  double t0 = m::marker_time(r.stderr_tail, "phase", freed);
  double t1 = m::marker_time(r.stderr_tail, "phase", idle_end);
  if (t0 < 0 || t1 < 0) return s;
  for (const auto& x : r.samples) {
    if (x.t < t0 || x.t > t1) continue;
    if (s.at_free < 0) s.at_free = double(x.rss);  // the first sample after the free phase
    if (s.at_half < 0 && x.t >= t0 + 0.5) s.at_half = double(x.rss);
    if (s.at_one < 0 && x.t >= t0 + 1.0) s.at_one = double(x.rss);
    if (s.floor < 0 || double(x.rss) < s.floor) s.floor = double(x.rss);
  }
  if (s.floor < 0) return s;
  for (const auto& x : r.samples)
    if (x.t >= t0 && double(x.rss) <= 1.1 * s.floor) {
      s.seconds = x.t - t0;
      break;
    }
  return s;
}

template <typename F>
double med_settle(const AllocRuns& a, F field) {
  return a.med([&](const m::RunResult& r) { return field(r); });
}

std::string workload_table(const WorkloadResults& wr, bool with_noreporter) {
  const AllocRuns* base = wr.baseline();
  const bool phase = wr.w->name == "phase";
  Table t;
  t.head = {"allocator", "time s", "time ×" + std::string(kBaseline), "cpu s", "cpu ×" + std::string(kBaseline), "peak MiB"};
  if (phase) t.head.push_back("after idle MiB");
  t.head.insert(t.head.end(), {"final MiB", "MiB·s", "minflt", "madvise", "status"});
  for (const auto& c : wr.cells) {
    const AllocRuns& a = c.runs;
    if (!with_noreporter && a.alloc->name == kNoReporter) continue;
    std::string fail = failure(a);
    std::vector<std::string> row = {a.alloc->name};
    if (!fail.empty()) {
      row.insert(row.end(), {"FAILED", "-", "FAILED", "-"});
    } else {
      row.push_back(fmtd("%.2f", a.time()));
      row.push_back(base ? ratio(a.time(), base->time()) : "-");
      row.push_back(fmtd("%.2f", a.cpu()));
      row.push_back(base ? ratio(a.cpu(), base->cpu()) : "-");
    }
    bool have = a.any_started();
    row.push_back(have ? mib(a.peak()) : "-");
    if (phase)
      row.push_back(have ? mib(a.med([](const m::RunResult& r) {
        return m::rss_at_end_of(r, m::marker_time(r.stderr_tail, "phase", "idle done"));
      }))
                         : "-");
    row.push_back(have ? mib(a.final_rss()) : "-");
    row.push_back(have ? fmtd("%.1f", a.integral()) : "-");
    row.push_back(have ? fmtd("%.0f", a.faults()) : "-");
    row.push_back(have ? count(med_madvise(a)) : "-");
    row.push_back(fail.empty() ? "ok" : fail);
    t.rows.push_back(row);
  }
  return t.render();
}

// Geometric means over the workloads of each allocator's ratios to the
// baseline. An allocator that failed any workload gets FAILED, not a mean.
std::string geomean_table(const std::vector<WorkloadResults>& all,
                          const std::vector<const m::Allocator*>& allocs, int* counted) {
  Table t;
  t.head = {"allocator", "time", "cpu", "peak RSS", "MiB·s", "minflt", "workloads"};
  *counted = 0;
  for (const auto& wr : all) *counted += wr.baseline() != nullptr;
  for (const auto* al : allocs) {
    std::vector<double> time, cpu, peak, integral, faults;
    std::vector<std::string> failed;
    for (const auto& wr : all) {
      const Cell* c = wr.cell(al->name);
      if (!c) continue;
      if (!failure(c->runs).empty()) {
        failed.push_back(wr.w->name);
        continue;
      }
      const AllocRuns* base = wr.baseline();
      if (!base) continue;
      time.push_back(c->runs.time() / base->time());
      cpu.push_back(c->runs.cpu() / base->cpu());
      peak.push_back(c->runs.peak() / base->peak());
      integral.push_back(c->runs.integral() / base->integral());
      faults.push_back(std::max(1.0, c->runs.faults()) / std::max(1.0, base->faults()));
    }
    std::vector<std::string> row = {al->name};
    if (!failed.empty()) {
      std::string which;
      for (const auto& f : failed) which += (which.empty() ? "" : ", ") + f;
      row.insert(row.end(), {"FAILED", "FAILED", "FAILED", "FAILED", "FAILED", "failed: " + which});
    } else {
      for (const auto* v : {&time, &cpu, &peak, &integral, &faults})
        row.push_back(v->empty() ? "-" : fmtd("%.2f", geomean(*v)));
      row.push_back(std::to_string(time.size()));
    }
    t.rows.push_back(row);
  }
  return t.render();
}

std::string settle_table(const WorkloadResults& wr) {
  Table t;
  t.head = {"allocator",          "after free90 MiB", "+0.5 s", "+1 s", "idle floor MiB", "s to floor+10%",
            "after free-all MiB", "+0.5 s",           "+1 s",   "tail floor MiB", "s to floor+10%"};
  for (const auto& c : wr.cells) {
    const AllocRuns& a = c.runs;
    std::vector<std::string> row = {a.alloc->name};
    if (!failure(a).empty()) {
      row.insert(row.end(), {"FAILED", "-", "-", "-", "-", "FAILED", "-", "-", "-", "-"});
    } else {
      for (auto [freed, end] : {std::pair{"free90 done", "idle done"},
                                std::pair{"free-all done", "tail-idle done"}}) {
        auto get = [&](double Settle::*f) {
          return med_settle(a, [&](const m::RunResult& r) { return settle(r, freed, end).*f; });
        };
        double secs = get(&Settle::seconds);
        row.push_back(mib(get(&Settle::at_free)));
        row.push_back(mib(get(&Settle::at_half)));
        row.push_back(mib(get(&Settle::at_one)));
        row.push_back(mib(get(&Settle::floor)));
        row.push_back(secs < 0 ? "-" : fmtd("%.2f", secs));
      }
    }
    t.rows.push_back(row);
  }
  return t.render();
}

// The memory shapes of issue 11 and what each is measured against: peak
// RSS under ebbmalloc against a peer's (times `factor`, plus `slack_mib`).
struct ShapeTarget {
  const char* workload;
  const char* peer;
  double factor;
  double slack_mib;
};
constexpr ShapeTarget kShapeTargets[] = {
    {"largeblock", "glibc", 1.0, 0},      {"phasechange", "jemalloc", 1.0, 0},
    {"threadchurn", "mimalloc", 1.15, 0}, {"tinyshort", "mimalloc", 1.0, 0.5},
    {"tinymixed", "mimalloc", 1.0, 0.5},  {"tinythreads", "mimalloc", 1.0, 1.0},
};

// Peak RSS of each shape per allocator, the target and whether ebb meets it.
std::string shapes_table(const std::vector<WorkloadResults>& all,
                         const std::vector<const m::Allocator*>& allocs) {
  Table t;
  t.head = {"workload (peak MiB)"};
  for (const auto* a : allocs) t.head.push_back(a->name);
  t.head.insert(t.head.end(), {"target for ebb", "ebb"});
  auto peak = [](const WorkloadResults& wr, const std::string& alloc) -> double {
    const Cell* c = wr.cell(alloc);
    return c && failure(c->runs).empty() ? c->runs.peak() / kMiB : -1;
  };
  for (const auto& st : kShapeTargets) {
    const WorkloadResults* wr = nullptr;
    for (const auto& w : all)
      if (w.w->name == st.workload) wr = &w;
    if (!wr) continue;
    std::vector<std::string> row = {st.workload};
    for (const auto* a : allocs) {
      const double v = peak(*wr, a->name);
      row.push_back(v < 0 ? (wr->cell(a->name) ? "FAILED" : "-") : fmtd("%.1f", v));
    }
    std::string target = "≤ ";
    if (st.factor != 1.0) target += fmtd("%.2f× ", st.factor);
    target += st.peer;
    if (st.slack_mib > 0) target += fmtd(" + %.1f MiB", st.slack_mib);
    row.push_back(target);
    const double ebb = peak(*wr, "ebb"), ref = peak(*wr, st.peer);
    if (ebb < 0 || ref < 0) {
      row.push_back("-");
    } else {
      const double limit = ref * st.factor + st.slack_mib;
      row.push_back((ebb <= limit ? "met: " : "not met: ") +
                    (st.slack_mib > 0 ? fmtd("%+.1f MiB", ebb - ref) : fmtd("%.2f×", ebb / ref)));
    }
    t.rows.push_back(row);
  }
  return t.rows.empty() ? "" : t.render();
}

// ebb with the reporter against ebb without it, per workload.
std::string reporter_table(const std::vector<WorkloadResults>& all) {
  Table t;
  t.head = {"workload",  "time on s",  "time off s", "on/off",       "cpu on/off",   "minflt on",
            "minflt off", "on/off",    "madvise on", "final MiB on", "final MiB off"};
  std::vector<double> tr, cr, fr;
  for (const auto& wr : all) {
    const Cell* on = wr.cell("ebb");
    const Cell* off = wr.cell(kNoReporter);
    if (!on || !off) continue;
    std::string f_on = failure(on->runs), f_off = failure(off->runs);
    if (!f_on.empty() || !f_off.empty()) {
      t.rows.push_back({wr.w->name, f_on.empty() ? "ok" : "FAILED", f_off.empty() ? "ok" : "FAILED",
                        "-", "-", "-", "-", "-", "-", "-", "-"});
      continue;
    }
    const AllocRuns &a = on->runs, &b = off->runs;
    tr.push_back(a.time() / b.time());
    cr.push_back(a.cpu() / b.cpu());
    fr.push_back(std::max(1.0, a.faults()) / std::max(1.0, b.faults()));
    t.rows.push_back({wr.w->name, fmtd("%.2f", a.time()), fmtd("%.2f", b.time()),
                      fmtd("%.2f", tr.back()), fmtd("%.2f", cr.back()), fmtd("%.0f", a.faults()),
                      fmtd("%.0f", b.faults()),
                      fmtd("%.2f", fr.back()), count(med_madvise(a)), mib(a.final_rss()),
                      mib(b.final_rss())});
  }
  if (!tr.empty())
    t.rows.push_back({"geometric mean", "", "", fmtd("%.2f", geomean(tr)),
                      fmtd("%.2f", geomean(cr)), "", "", fmtd("%.2f", geomean(fr)), "", "", ""});
  return t.render();
}

// ---------------------------------------------------------------------------
// Micro benchmarks
// ---------------------------------------------------------------------------

struct MicroEntry {
  std::string name, label, error;
  double ns_per_op = -1;  // per thread
};

// The "benchmarks" of Google Benchmark's JSON output (one field a line, as
// it writes them). Aggregates are skipped.
std::vector<MicroEntry> parse_benchmark_json(const std::string& json) {
  std::vector<MicroEntry> out;
  MicroEntry e;
  double threads = 1, ips = -1;
  bool aggregate = false, in_benchmarks = false;
  auto flush = [&] {
    if (!e.name.empty() && !aggregate) {
      if (ips > 0) e.ns_per_op = threads * 1e9 / ips;
      out.push_back(e);
    }
    e = MicroEntry{};
    threads = 1, ips = -1, aggregate = false;
  };
  auto str_value = [](const std::string& line) {
    size_t c = line.find(':'), q1 = line.find('"', c), q2 = line.rfind('"');
    return q1 == std::string::npos || q2 <= q1 ? std::string() : line.substr(q1 + 1, q2 - q1 - 1);
  };
  auto num_value = [](const std::string& line) {
    return strtod(line.c_str() + line.find(':') + 1, nullptr);
  };
  for (const auto& raw : m::split(json, '\n')) {
    std::string line = raw.substr(std::min(raw.size(), raw.find_first_not_of(' ')));
    if (line.rfind("\"benchmarks\":", 0) == 0) in_benchmarks = true;
    if (!in_benchmarks) continue;
    if (line.rfind("\"name\":", 0) == 0) {
      flush();
      e.name = str_value(line);
    } else if (line.rfind("\"run_type\":", 0) == 0) {
      aggregate = str_value(line) == "aggregate";
    } else if (line.rfind("\"threads\":", 0) == 0) {
      threads = num_value(line);
    } else if (line.rfind("\"items_per_second\":", 0) == 0) {
      ips = num_value(line);
    } else if (line.rfind("\"label\":", 0) == 0) {
      e.label = str_value(line);
    } else if (line.rfind("\"error_message\":", 0) == 0) {
      e.error = str_value(line);
    }
  }
  flush();
  return out;
}

struct MicroResults {
  std::vector<const m::Allocator*> allocs;
  std::vector<std::string> names;  // benchmark names, in program order
  // [alloc][benchmark] -> ns/op of each run
  std::map<std::string, std::map<std::string, std::vector<double>>> ns;
  std::map<std::string, std::string> failed;  // alloc -> why
  std::map<std::string, std::string> release;  // alloc -> release call of BM_CallocReported
};

std::vector<std::string> micro_cmd(const Config& c) {
  std::vector<std::string> cmd = {env_or("EBB_COMPARE_MICRO", EBB_MICRO_PATH),
                                  "--benchmark_format=json",
                                  "--benchmark_min_time=" + fmtd("%g", c.micro_min_time)};
  if (c.quick)
    cmd.push_back(
        "--benchmark_filter=BM_MallocFree/64$|BM_BatchRandom/32$|BM_CallocReported/1048576$|"
        "BM_ThreadPrivate/real_time/threads:2$");
  return cmd;
}

void run_micro(MicroResults& mr, const Config& c) {
  const auto cmd = micro_cmd(c);
  for (int run = 1; run <= c.runs; ++run) {
    for (const auto* a : mr.allocs) {
      if (mr.failed.count(a->name)) continue;
      m::RunOptions o;
      o.interval_ms = 1000;  // RSS is not what is measured here
      o.capture_output = true;
      o.timeout_s = c.timeout_s;
      fprintf(stderr, "compare: micro run %d/%d under %s\n", run, c.runs, a->name.c_str());
      m::RunResult r = m::run_under(*a, cmd, o);
      auto entries = parse_benchmark_json(r.stdout_tail);
      if (!r.ok || entries.empty()) {
        mr.failed[a->name] = r.ok ? "no benchmark output" : r.status;
        fprintf(stderr, "compare: micro under %s: %s\n%s", a->name.c_str(),
                mr.failed[a->name].c_str(), m::last_lines(r.stderr_tail, 5).c_str());
        continue;
      }
      for (const auto& e : entries) {
        if (std::find(mr.names.begin(), mr.names.end(), e.name) == mr.names.end())
          mr.names.push_back(e.name);
        // An errored benchmark gets -1: shown as ERROR, never as fast.
        mr.ns[a->name][e.name].push_back(e.error.empty() ? e.ns_per_op : -1);
        if (e.name.rfind("BM_CallocReported", 0) == 0 && !e.label.empty())
          mr.release[a->name] = e.label;
      }
    }
  }
}

std::string micro_table(const MicroResults& mr) {
  Table t;
  t.head = {"benchmark (ns/op per thread)"};
  for (const auto* a : mr.allocs) t.head.push_back(a->name);
  auto value = [&](const std::string& alloc, const std::string& bench) -> double {
    auto ai = mr.ns.find(alloc);
    if (ai == mr.ns.end()) return -2;  // no output at all
    auto bi = ai->second.find(bench);
    if (bi == ai->second.end()) return -2;
    for (double v : bi->second)
      if (v < 0) return -1;
    return m::median(bi->second);
  };
  std::map<std::string, std::vector<double>> ratios;
  std::set<std::string> errored;
  for (const auto& b : mr.names) {
    std::vector<std::string> row = {b};
    double base = value(kBaseline, b);
    for (const auto* a : mr.allocs) {
      double v = value(a->name, b);
      if (v == -1) errored.insert(a->name);
      if (v < 0) {
        row.push_back(v == -1 ? "ERROR" : "-");
        continue;
      }
      std::string cell = fmtd(v < 100 ? "%.1f" : "%.0f", v);
      if (base > 0 && a->name != kBaseline) {
        cell += " (" + fmtd("%.2f", v / base) + ")";
        ratios[a->name].push_back(v / base);
      }
      row.push_back(cell);
    }
    t.rows.push_back(row);
  }
  std::vector<std::string> g = {"geometric mean of ×" + std::string(kBaseline)};
  for (const auto* a : mr.allocs) {
    if (mr.failed.count(a->name) || errored.count(a->name))
      g.push_back("FAILED");
    else if (a->name == kBaseline)
      g.push_back("1.00");
    else
      g.push_back(ratios[a->name].empty() ? "-" : fmtd("%.2f", geomean(ratios[a->name])));
  }
  t.rows.push_back(g);
  std::string out = t.render();
  for (const auto& [name, why] : mr.failed) out += "\n" + name + ": FAILED (" + why + ")\n";
  return out;
}

// ---------------------------------------------------------------------------
// Machine, versions, plot, results file
// ---------------------------------------------------------------------------

// First line of a command's output ("" on failure).
std::string command_line_output(const std::string& cmd) {
  std::string out;
  if (FILE* p = popen((cmd + " 2>/dev/null").c_str(), "r")) {
    char buf[512];
    if (fgets(buf, sizeof buf, p)) out = buf;
    pclose(p);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

std::string machine_description() {
  std::string cpu = command_line_output("grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2-");
  std::string mem = command_line_output("awk '/^MemTotal/ {printf \"%.1f GiB\", $2/1048576}' /proc/meminfo");
  std::string os = command_line_output(". /etc/os-release && echo \"$PRETTY_NAME\"");
  utsname u{};
  uname(&u);
  return (cpu.empty() ? "unknown CPU" : cpu.substr(cpu.find_first_not_of(' '))) + ", " +
         std::to_string(sysconf(_SC_NPROCESSORS_ONLN)) + " CPUs online, " + mem + " RAM; " + os +
         ", Linux " + u.release;
}

std::string load_average() { return command_line_output("cut -d' ' -f1-3 /proc/loadavg"); }

// "name version" of the Debian package that holds `path` (or its target).
std::string package_of(const std::string& path) {
  std::string pkg = command_line_output("dpkg -S \"$(readlink -f '" + path + "')\" | cut -d: -f1");
  if (pkg.empty()) pkg = command_line_output("dpkg -S '" + path + "' | cut -d: -f1");
  if (pkg.empty()) return "not from a package";
  return pkg + " " + command_line_output("dpkg-query -W -f='${Version}' " + pkg);
}

std::string versions(const std::vector<const m::Allocator*>& allocs) {
  std::string s;
  std::set<std::string> seen;
  for (const auto* a : allocs) {
    if (a->name == kNoReporter || !seen.insert(a->preload).second) continue;
    std::string v;
    if (a->name == "glibc")
      v = std::string("glibc ") + gnu_get_libc_version();
    else if (a->name == "ebb")
      v = "ebbmalloc, git " +
          command_line_output(std::string("git -C '") + EBB_SOURCE_DIR +
                              "' describe --always --dirty") +
          " (" + shown(a->preload) + ")";
    else
      v = package_of(a->preload);
    s += "- " + a->name + ": " + v + "\n";
  }
  s += "- Google Benchmark: " + package_of("/usr/include/benchmark/benchmark.h") + "\n";
  s += std::string("- compiler: GCC ") + __VERSION__ + "\n";
  return s;
}

bool write_plot(const std::string& path, const WorkloadResults& phase, const Config& c) {
  std::vector<std::string> cmd = phase.cmd;
  cmd[0] = "phase";
  std::vector<const AllocRuns*> series;
  std::vector<std::string> notes;
  for (const auto& cell : phase.cells) {
    series.push_back(&cell.runs);
    notes.push_back(failure(cell.runs));
  }
  return m::write_rss_chart(path, "phase workload: RSS of the process over time, by allocator",
                            "sampled every " + std::to_string(c.interval_ms) +
                                " ms, median-time run of " + std::to_string(c.runs) +
                                "  \u2014  $ " + m::shell_join(cmd),
                            series, notes, "compare");
}

bool write_text(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp";
  FILE* f = fopen(tmp.c_str(), "w");
  bool ok = f && fwrite(text.data(), 1, text.size(), f) == text.size();
  if (f) ok = fclose(f) == 0 && ok;
  if (ok) ok = rename(tmp.c_str(), path.c_str()) == 0;
  if (!ok) {
    fprintf(stderr, "compare: --results: cannot write %s: %s\n", path.c_str(), strerror(errno));
    unlink(tmp.c_str());
  }
  return ok;
}

std::string utc_now() {
  char buf[64];
  time_t t = time(nullptr);
  strftime(buf, sizeof buf, "%Y-%m-%d %H:%M UTC", gmtime(&t));
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  const Config c = parse_args(argc, argv);
  std::string command = "bench/compare";
  for (int i = 1; i < argc; ++i) command += " " + m::shell_join({argv[i]});

  // Allocators: the requested ones that are installed, plus ebb without its
  // reporter for --reporter-cost.
  std::vector<m::Allocator> known = m::known_allocators();
  for (const auto& [alloc, var] : c.env)
    for (auto& a : known)
      if (alloc == "all" || a.name == alloc) a.env.push_back(var);
  std::vector<const m::Allocator*> wanted = m::select_allocators(known, c.allocs);
  if (c.install && !m::install_allocators(wanted, "compare")) return 1;
  std::vector<const m::Allocator*> allocs;
  std::string skipped;
  for (const auto* a : wanted) {
    if (a->installed()) {
      allocs.push_back(a);
    } else {
      fprintf(stderr, "compare: skipping %s: %s not found (%s)\n", a->name.c_str(),
              a->preload.c_str(), a->install_hint.c_str());
      skipped += "- " + a->name + ": skipped, " + a->preload + " not found\n";
    }
  }
  if (allocs.empty()) {
    fprintf(stderr, "compare: none of the requested allocators is installed\n");
    return 1;
  }
  m::Allocator noreporter;
  std::vector<const m::Allocator*> run_allocs = allocs;
  if (const m::Allocator* ebb = m::find_allocator(known, "ebb");
      c.reporter_cost && std::find(allocs.begin(), allocs.end(), ebb) != allocs.end()) {
    noreporter = *ebb;
    noreporter.name = kNoReporter;
    noreporter.env.push_back({"EBBMALLOC_REPORTER", "0"});
    run_allocs.push_back(&noreporter);
  }

  const std::string load_before = load_average();
  const double t_start = static_cast<double>(time(nullptr));

  // Workloads, interleaved: run 1 of every workload under every allocator,
  // then run 2, ... so drift of the machine hits all alike.
  std::vector<WorkloadResults> results;
  for (const auto& name : c.workloads) {
    WorkloadResults wr{find_workload(name), {}, 0, {}};
    wr.cmd = workload_cmd(*wr.w, c);
    wr.limit_mib = workload_limit_mib(*wr.w, c);
    for (const auto* a : run_allocs) wr.cells.push_back({{a, {}}, {}});
    results.push_back(std::move(wr));
  }
  const size_t total = results.size() * run_allocs.size() * static_cast<size_t>(c.runs);
  size_t done = 0;
  for (int run = 1; run <= c.runs; ++run) {
    for (auto& wr : results) {
      for (auto& cell : wr.cells) {
        const m::Allocator& a = *cell.runs.alloc;
        m::RunOptions o;
        o.interval_ms = c.interval_ms;
        o.capture_output = true;
        o.timeout_s = c.timeout_s;
        // ebbmalloc's statistics at exit give its madvise count.
        if (a.preload == m::ebb_library_path()) o.env.push_back({"EBBMALLOC_STATS", "json"});
        if (wr.limit_mib && m::reads_limit_option(a)) o.env.push_back(m::limit_option(wr.limit_mib));
        m::RunResult r = m::run_under(a, wr.cmd, o);
        fprintf(stderr, "compare: [%zu/%zu] %-9s %-14s %6.2f s  %s\n", ++done, total,
                wr.w->name.c_str(), a.name.c_str(), r.wall_s, r.ok ? "" : r.status.c_str());
        if (!r.ok) fputs(m::last_lines(r.stdout_tail + r.stderr_tail, 5).c_str(), stderr);
        cell.runs.runs.push_back(std::move(r));
      }
    }
  }
  for (auto& wr : results) verify(wr);

  // The floor runs: every workload once more under ebbmalloc, its live
  // statistics read at each sample (not timed: see compare_floor.h).
  std::vector<ebb::compare::FloorRun> floors;
  if (const m::Allocator* ebb = m::find_allocator(known, "ebb");
      c.floor && std::find(allocs.begin(), allocs.end(), ebb) != allocs.end()) {
    for (const auto& wr : results) {
      // Under the same limit as the measured runs.
      m::Allocator told = *ebb;
      if (wr.limit_mib) told.env.push_back(m::limit_option(wr.limit_mib));
      floors.push_back(ebb::compare::floor_run(told, wr.w->name, wr.cmd, c.interval_ms, 100, c.timeout_s));
      fprintf(stderr, "compare: floor run %-12s %6.2f s  %s\n", wr.w->name.c_str(), floors.back().run.wall_s,
              floors.back().error.c_str());
    }
  }

  MicroResults micro;
  micro.allocs = allocs;
  bool do_micro = c.micro;
  std::string micro_note;
  if (do_micro && access(micro_cmd(c)[0].c_str(), X_OK) != 0) {
    micro_note = "The micro benchmarks were skipped: " + micro_cmd(c)[0] +
                 " is not built (it needs libbenchmark-dev).\n\n";
    fprintf(stderr, "compare: %s", micro_note.c_str());
    do_micro = false;
  }
  if (do_micro) run_micro(micro, c);
  const double minutes = (static_cast<double>(time(nullptr)) - t_start) / 60;

  // ---- report -----------------------------------------------------------
  std::string out;
  out += "Each workload ran " + std::to_string(c.runs) +
         " time(s) under each allocator, interleaved; medians shown. Workloads: " +
         shown(env_or("EBB_COMPARE_WORKLOAD_DIR", EBB_WORKLOAD_DIR)) +
         "/NAME, each checked by its verification line and checksum. RSS of the process "
         "sampled every " + std::to_string(c.interval_ms) +
         " ms from /proc; cpu (user + system seconds) and minflt from wait4 — on a busy machine "
         "cpu is the steadier of the two times; madvise from ebbmalloc's EBBMALLOC_STATS=json at "
         "exit (\"-\": not known for that allocator). Ratios are to " + kBaseline +
         " (lower is better).\n\n";
  out += "### Geometric mean over the workloads (ratio to " + std::string(kBaseline) + ")\n\n";
  int counted = 0;
  out += geomean_table(results, allocs, &counted);
  out += "\n" + std::to_string(counted) + " of " + std::to_string(results.size()) +
         " workloads counted (those where " + kBaseline + " passed).\n\n";
  for (const auto& wr : results) {
    std::vector<std::string> shown = wr.cmd;
    shown[0] = wr.w->name;
    out += "### " + wr.w->name + "\n\n`" + m::shell_join(shown) + "`\n\n";
    out += workload_table(wr, false) + "\n";
  }
  const WorkloadResults* phase = nullptr;
  for (const auto& wr : results)
    if (wr.w->name == "phase") phase = &wr;
  if (phase) {
    out += "### phase: how fast freed memory goes back\n\n"
           "RSS just after each free phase (first sample after the workload's marker), 0.5 s and 1 s "
           "after it, the lowest RSS "
           "in the idle period that follows, and the seconds from the end of the free phase "
           "until RSS was within 10% of that floor. An allocator that returns nothing is "
           "\"there\" at once.\n\n";
    out += settle_table(*phase) + "\n";
  }
  if (const std::string shapes = shapes_table(results, allocs); !shapes.empty()) {
    out += "### Memory shapes (issue 11): peak RSS against the targets\n\n"
           "Median peak RSS of the process (MiB); the target is ebbmalloc's, against the peer "
           "named (measured in this run); the last column says whether it is met and by how "
           "much (ratio, or MiB over the peer).\n\n";
    out += shapes + "\n";
  }
  for (const auto& wr : results) {
    if (!wr.limit_mib) continue;
    std::vector<ebb::compare::PressureCell> cells;
    for (const auto& cell : wr.cells) cells.push_back({&cell.runs, failure(cell.runs)});
    const ebb::compare::PressureRows pr = ebb::compare::pressure_rows(cells, wr.limit_mib);
    out += "### " + wr.w->name + ": RSS against the limit L = " + std::to_string(wr.limit_mib) +
           " MiB (issue 15)\n\n"
           "The workload's live memory is at most 0.8 L at every moment (bench/workloads/" +
           wr.w->name +
           ".cpp). ebbmalloc's runs are told L (EBBMALLOC_LIMIT_MB); the other allocators have no "
           "such option. Median over the runs: peak RSS of the process, peak ÷ L, and the seconds "
           "the sampled RSS was above L (each sample counted until the next one).\n\n";
    out += Table{pr.head, pr.rows}.render() + "\n";
  }
  if (!floors.empty()) {
    const ebb::compare::FloorRows fr = ebb::compare::floor_rows(floors);
    out += "### ebbmalloc: RSS against the resident floor\n\n"
           "One more run of each workload under ebbmalloc with EBBMALLOC_LIVE_STATS=1 "
           "(published every 100 ms; not timed), the live file read at every sample. The floor "
           "is the bytes of pages holding a live byte (ebb_stats_t version 3): what a non-moving "
           "allocator could reach at best; it is taken at most once per 100 ms and per 100× its "
           "own walk time. \"then\": when the largest floor was taken (RSS read by the process at "
           "that moment; pinned: free object bytes on pages in the floor).\n\n";
    out += Table{fr.head, fr.rows}.render() + "\n";
  }
  if (run_allocs.size() > allocs.size()) {
    out += "### ebbmalloc's own cost: reporter on vs off (EBBMALLOC_REPORTER=0)\n\n";
    out += reporter_table(results) + "\n";
  }
  out += micro_note;
  if (do_micro) {
    std::vector<std::string> micro_shown = micro_cmd(c);
    micro_shown[0] = shown(micro_shown[0]);
    out += "### Micro benchmarks (bench/micro, Google Benchmark, LD_PRELOAD)\n\n`" +
           m::shell_join(micro_shown) + "`, " + std::to_string(c.runs) +
           " run(s), median; ns per operation per thread (in parentheses: ratio to " + kBaseline +
           "). Threaded rows (threads:N) on this machine's " +
           std::to_string(sysconf(_SC_NPROCESSORS_ONLN)) + " CPUs.\n\n";
    out += micro_table(micro);
    if (!micro.release.empty()) {
      out += "\nBM_CallocReported gives free memory back before each calloc with: ";
      std::string sep;
      for (const auto& [name, how] : micro.release) out += sep + name + " " + how, sep = ", ";
      out += ".\n";
    }
    out += "\n";
  }
  if (!skipped.empty()) out += "Not installed (use --install):\n" + skipped + "\n";
  fputs(("\n" + out).c_str(), stdout);
  fflush(stdout);

  bool files_ok = true;
  if (!c.plot.empty() && phase) files_ok &= write_plot(c.plot, *phase, c);
  if (!c.results.empty()) {
    std::string md = "# ebbmalloc against other allocators\n\n";
    md += "Generated by `" + command + "` (" + fmtd("%.1f", minutes) + " minutes) on " +
          utc_now() + ".\n\n";
    md += "Machine: " + machine_description() + ". Load average before the run: " +
          load_before + ", after: " + load_average() + ".\n\nVersions:\n\n" + versions(allocs) +
          "\n";
    if (!c.plot.empty() && phase) {
      // The plot's path as seen from the results file's directory.
      std::string dir = c.results.substr(0, c.results.rfind('/') + 1);
      std::string rel = c.plot.rfind(dir, 0) == 0 ? c.plot.substr(dir.size()) : c.plot;
      md += "![RSS over time, phase workload](" + rel + ")\n\n";
    }
    files_ok &= write_text(c.results, md + out);
    if (files_ok) fprintf(stderr, "compare: wrote %s\n", c.results.c_str());
  }

  bool all_ok = micro.failed.empty();
  for (const auto& wr : results)
    for (const auto& cell : wr.cells) all_ok &= failure(cell.runs).empty();
  for (const auto& [alloc, per] : micro.ns)
    for (const auto& [bench, v] : per)
      for (double x : v) all_ok &= x >= 0;
  return all_ok && files_ok ? 0 : 1;
}
