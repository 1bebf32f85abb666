// ebbrun — run a command under several malloc implementations and report how
// much memory each one kept (RSS of the whole process tree over time).
//
//   ebbrun [options] -- CMD [ARGS...]
//   ebbrun demo [options]
//
// Exit status: 0 when every run exited 0; 1 when any run failed (non-zero
// exit, signal, command not found) or nothing could be run; 2 for usage
// errors and unwritable output paths (nothing was run then).
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "measure.h"
#include "rss_limit.h"
#include "svg_plot.h"

namespace m = ebb::measure;
using m::AllocRuns;
using m::fmtd;
using m::shell_join;
using m::split;

namespace {

constexpr const char* kUsage =
    "usage: ebbrun [--alloc A,B,...] [--runs N] [--interval MS] [--plot FILE.svg]\n"
    "              [--csv FILE] [--env ALLOC:VAR=VALUE] [--quiet[=FILE]] [--install]\n"
    "              [--timeout S] [--limit-mb L] -- CMD [ARGS...]\n"
    "       ebbrun demo [same options, no command]\n"
    "allocators: glibc, ebb, mimalloc, jemalloc, jemalloc-bg, tcmalloc (default: all)\n"
    "--limit-mb L: EBBMALLOC_LIMIT_MB=L for the ebb runs, and the columns 'over L s'\n"
    "              (seconds the RSS was above L MiB) and 'peak/L'\n";

constexpr double kMiB = 1024.0 * 1024.0;

// The demo's idle periods (ms), passed to the phase workload.
constexpr int kDemoIdleMs = 4000;
constexpr int kDemoTailIdleMs = 2000;

struct Config {
  bool demo = false;
  std::vector<std::string> allocs;  // empty = all known
  int runs = 1;
  int interval_ms = 50;
  double timeout_s = 0;
  // --limit-mb: a memory limit L in MiB (0: none) told to ebbmalloc and
  // measured against for every allocator (rss_limit.h).
  long limit_mb = 0;
  std::string plot, csv;
  std::vector<std::pair<std::string, m::EnvVar>> env;  // (allocator or "all", var)
  bool quiet = false;
  std::string quiet_file;  // with --quiet=FILE
  bool install = false;
  std::vector<std::string> cmd;
};

// A usage error: one line on stderr, exit 2.
[[noreturn]] void usage_error(const std::string& msg) {
  fprintf(stderr, "ebbrun: %s (see ebbrun --help)\n", msg.c_str());
  exit(2);
}

// Strict integer parse: all of `s` must be digits, value in [lo, hi].
int parse_int(const std::string& opt, const std::string& s, long lo, long hi) {
  long v;
  if (!m::parse_int(s, lo, hi, &v))
    usage_error(opt + " needs a whole number from " + std::to_string(lo) + " to " +
                std::to_string(hi) + ", got '" + s + "'");
  return static_cast<int>(v);
}

double parse_seconds(const std::string& opt, const std::string& s) {
  double v;
  if (!m::parse_positive(s, &v))
    usage_error(opt + " needs a positive number of seconds, got '" + s + "'");
  return v;
}

bool valid_env_name(const std::string& n) {
  if (n.empty() || isdigit(static_cast<unsigned char>(n[0]))) return false;
  for (char c : n)
    if (!isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  return true;
}

Config parse_args(int argc, char** argv, const std::vector<m::Allocator>& known) {
  Config c;
  int i = 1;
  if (argc > 1 && std::string(argv[1]) == "demo") {
    c.demo = true;
    i = 2;
  }
  bool saw_dashdash = false;
  for (; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--") {
      saw_dashdash = true;
      for (++i; i < argc; ++i) c.cmd.push_back(argv[i]);
      break;
    }
    // Options take "--opt VALUE" or "--opt=VALUE".
    const m::CliOption opt = m::split_option(a, kUsage);
    const std::string& name = opt.name;
    const bool has_value = opt.has_value;
    auto need_value = [&] { return opt.need_value(argc, argv, &i, usage_error); };
    if (name == "--alloc") {
      c.allocs.clear();
      for (const auto& n : split(need_value(), ',')) {
        if (n.empty()) continue;
        if (!m::find_allocator(known, n))
          usage_error("unknown allocator '" + n +
                      "' (known: glibc, ebb, mimalloc, jemalloc, jemalloc-bg, tcmalloc)");
        if (std::find(c.allocs.begin(), c.allocs.end(), n) == c.allocs.end())
          c.allocs.push_back(n);
      }
      if (c.allocs.empty()) usage_error("--alloc needs at least one allocator");
    } else if (name == "--runs") {
      c.runs = parse_int("--runs", need_value(), 1, 1000);
    } else if (name == "--interval") {
      c.interval_ms = parse_int("--interval", need_value(), 1, 60000);
    } else if (name == "--timeout") {
      c.timeout_s = parse_seconds("--timeout", need_value());
    } else if (name == "--limit-mb") {
      c.limit_mb = parse_int("--limit-mb", need_value(), 1, 1 << 20);
    } else if (name == "--plot") {
      c.plot = need_value();
      if (c.plot.empty()) usage_error("--plot needs a file name");
    } else if (name == "--csv") {
      c.csv = need_value();
      if (c.csv.empty()) usage_error("--csv needs a file name");
    } else if (name == "--env") {
      // ALLOC:VAR=VALUE (VALUE may be empty and may contain ':' and '=').
      std::string spec = need_value();
      size_t colon = spec.find(':'), eq = spec.find('=', colon == std::string::npos ? 0 : colon);
      if (colon == std::string::npos || eq == std::string::npos)
        usage_error("--env needs ALLOC:VAR=VALUE, got '" + spec + "'");
      std::string alloc = spec.substr(0, colon), var = spec.substr(colon + 1, eq - colon - 1);
      if (alloc != "all" && !m::find_allocator(known, alloc))
        usage_error("--env: unknown allocator '" + alloc + "' (or use 'all')");
      if (!valid_env_name(var)) usage_error("--env: bad variable name '" + var + "'");
      c.env.push_back({alloc, {var, spec.substr(eq + 1)}});
    } else if (name == "--quiet") {
      c.quiet = true;
      if (has_value) {
        if (opt.value.empty()) usage_error("--quiet= needs a file name");
        c.quiet_file = opt.value;
      }
    } else if (name == "--install" && !has_value) {
      c.install = true;
    } else if (a.rfind("-", 0) == 0) {
      usage_error("unknown option '" + a + "'");
    } else if (c.demo) {
      usage_error("unexpected argument '" + a + "': 'ebbrun demo' takes no command");
    } else {
      usage_error("missing '--' before the command '" + a + "'");
    }
  }
  if (c.demo) {
    if (saw_dashdash) usage_error("'ebbrun demo' takes no command");
  } else if (!saw_dashdash) {
    usage_error("missing '-- CMD [ARGS...]'");
  } else if (c.cmd.empty()) {
    usage_error("no command after '--'");
  }
  return c;
}

// Fails (usage error) unless `path` can be written: checked before anything
// runs so a long measurement isn't lost at the end. Creates and removes
// path + ".tmp", which is also how the files are written later.
void check_writable(const std::string& opt, const std::string& path) {
  std::string err = m::writable_error(path);
  if (!err.empty()) usage_error(opt + ": " + err);
}

void print_table(const std::vector<AllocRuns>& all, const Config& c) {
  const AllocRuns* glibc = nullptr;
  for (const auto& a : all)
    if (a.alloc->name == "glibc" && a.any_started()) glibc = &a;

  std::vector<std::string> head = {"allocator", "time s", "peak MiB", "final MiB",
                                   "mean MiB",  "MiB·s",  "minflt"};
  const uint64_t limit = m::limit_bytes(static_cast<uint64_t>(c.limit_mb));
  if (limit) {
    auto h = m::limit_heads();
    head.insert(head.end(), h.begin(), h.end());
  }
  head.push_back("status");
  if (glibc) {
    head.push_back("time/glibc");
    head.push_back("mean/glibc");
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& a : all) {
    std::vector<std::string> row = {a.alloc->name};
    if (a.any_started()) {
      row.push_back(fmtd("%.2f", a.time()));
      row.push_back(fmtd("%.1f", a.peak() / kMiB));
      row.push_back(fmtd("%.1f", a.final_rss() / kMiB));
      row.push_back(fmtd("%.1f", a.mean() / kMiB));
      row.push_back(fmtd("%.1f", a.integral()));
      row.push_back(fmtd("%.0f", a.faults()));
    } else {
      for (int k = 0; k < 6; ++k) row.push_back("-");
    }
    if (limit) {
      auto cells = m::limit_cells(a, limit);
      row.insert(row.end(), cells.begin(), cells.end());
    }
    row.push_back(a.status());
    if (glibc) {
      bool have = a.any_started() && glibc->time() > 0 && glibc->mean() > 0;
      row.push_back(have ? fmtd("%.2f", a.time() / glibc->time()) : "-");
      row.push_back(have ? fmtd("%.2f", a.mean() / glibc->mean()) : "-");
    }
    rows.push_back(row);
  }
  std::vector<size_t> w(head.size());
  for (size_t k = 0; k < head.size(); ++k) {
    w[k] = m::display_width(head[k]);
    for (const auto& r : rows) w[k] = std::max(w[k], m::display_width(r[k]));
  }
  // Text columns (allocator, status) left-aligned, numbers right-aligned.
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (size_t k = 0; k < cells.size(); ++k) {
      bool left = k == 0 || head[k] == "status";
      std::string pad(w[k] - m::display_width(cells[k]), ' ');
      if (k) out += "  ";
      out += left ? cells[k] + pad : pad + cells[k];
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    printf("%s\n", out.c_str());
  };
  line(head);
  for (const auto& r : rows) line(r);
  fflush(stdout);
}

bool write_plot(const std::string& path, const std::vector<AllocRuns>& all,
                const Config& c) {
  // The command as the subtitle shows it: the program's base name is enough
  // (the table above names it in full).
  std::vector<std::string> short_cmd = c.cmd;
  short_cmd[0] = short_cmd[0].substr(short_cmd[0].rfind('/') + 1);
  std::vector<const AllocRuns*> series;
  std::vector<std::string> notes;
  for (const auto& a : all) {
    series.push_back(&a);
    notes.push_back(a.all_ok() ? "" : a.status());
  }
  return m::write_rss_chart(
      path, "Memory of the process tree (RSS) over time, by allocator",
      "sampled every " + std::to_string(c.interval_ms) + " ms" +
          (c.runs > 1 ? ", median-time run of " + std::to_string(c.runs) : "") +
          "  \u2014  $ " + shell_join(short_cmd),
      series, notes, "ebbrun");
}

bool write_csv(const std::string& path, const std::vector<AllocRuns>& all) {
  std::string tmp = path + ".tmp";
  FILE* f = fopen(tmp.c_str(), "w");
  bool ok = f != nullptr;
  if (f) {
    fprintf(f, "allocator,run,t_seconds,rss_bytes\n");
    for (const auto& a : all)
      for (size_t run = 0; run < a.runs.size(); ++run)
        for (const auto& s : a.runs[run].samples)
          fprintf(f, "%s,%zu,%.4f,%llu\n", a.alloc->name.c_str(), run + 1, s.t,
                  static_cast<unsigned long long>(s.rss));
    ok = fflush(f) == 0 && !ferror(f);
    ok = fclose(f) == 0 && ok;
  }
  if (ok) ok = rename(tmp.c_str(), path.c_str()) == 0;
  if (!ok) {
    fprintf(stderr, "ebbrun: --csv: cannot write %s: %s\n", path.c_str(), strerror(errno));
    unlink(tmp.c_str());
    return false;
  }
  fprintf(stderr, "ebbrun: wrote %s\n", path.c_str());
  return true;
}

// ---------------------------------------------------------------------------
// demo
// ---------------------------------------------------------------------------

std::string pct_vs(double mine, double theirs) {
  if (theirs <= 0) return "n/a";
  double d = (mine / theirs - 1) * 100;
  char buf[64];
  if (std::fabs(d) < 0.5)
    snprintf(buf, sizeof buf, "about the same as");
  else
    snprintf(buf, sizeof buf, "%.0f%% %s than", std::fabs(d), d < 0 ? "lower" : "higher");
  return buf;
}

// "least: X (A MiB), most: Y (B MiB), ebb: C MiB" over (name, bytes) pairs.
std::string least_most(std::vector<std::pair<std::string, double>> v) {
  if (v.empty()) return "no data";
  std::sort(v.begin(), v.end(), [](auto& a, auto& b) { return a.second < b.second; });
  char buf[256];
  snprintf(buf, sizeof buf, "%s held the least (%.1f MiB)", v.front().first.c_str(),
           v.front().second / kMiB);
  std::string s = buf;
  if (v.size() > 1) {
    snprintf(buf, sizeof buf, ", %s the most (%.1f MiB)", v.back().first.c_str(),
             v.back().second / kMiB);
    s += buf;
  }
  for (size_t i = 1; i + 1 < v.size(); ++i)
    if (v[i].first == "ebb") {
      snprintf(buf, sizeof buf, ", ebb %.1f MiB", v[i].second / kMiB);
      s += buf;
    }
  return s;
}

// A few plain sentences reading the demo's table: who held the least memory
// at the end of each idle period of the phase workload (read from its
// markers, else the final sample), and ebb's mean RSS against the others.
void print_reading(const std::vector<AllocRuns>& all, double idle_s, double tail_s) {
  std::vector<std::pair<std::string, double>> idle_end, tail_end;
  const AllocRuns* ebb = nullptr;
  std::vector<const AllocRuns*> good;
  for (const auto& a : all) {
    const m::RunResult* r = a.representative();
    if (!r || !a.all_ok()) continue;
    good.push_back(&a);
    if (a.alloc->name == "ebb") ebb = &a;
    double idle = m::rss_at_end_of(*r, m::marker_time(r->stderr_tail, "phase", "idle done"));
    double tail = m::rss_at_end_of(*r, m::marker_time(r->stderr_tail, "phase", "tail-idle done"));
    if (idle >= 0) idle_end.push_back({a.alloc->name, idle});
    tail_end.push_back({a.alloc->name, tail >= 0 ? tail : double(r->final_rss)});
  }
  printf("\nReading:\n");
  if (good.empty()) {
    printf("  No allocator completed the workload, so there is nothing to compare.\n");
  } else {
    if (!idle_end.empty())
      printf("  After 90%% of the memory was freed and the program idled %g s: %s.\n", idle_s,
             least_most(idle_end).c_str());
    printf("  After everything was freed and the program idled %g s more: %s.\n", tail_s,
           least_most(tail_end).c_str());
    if (ebb && good.size() > 1) {
      std::string s;
      for (const auto* a : good) {
        if (a == ebb) continue;
        s += (s.empty() ? "" : ", ") + pct_vs(ebb->mean(), a->mean()) + " " + a->alloc->name;
      }
      printf("  Over the whole run, ebb's mean RSS (%.1f MiB) was %s.\n", ebb->mean() / kMiB,
             s.c_str());
    } else if (!ebb) {
      printf("  ebb did not complete a run (not built, skipped or failed), so its mean RSS "
             "can't be compared.\n");
    }
  }
  std::string failed;
  for (const auto& a : all)
    if (!a.all_ok())
      failed += (failed.empty() ? "" : ", ") + a.alloc->name + " (" + a.status() + ")";
  if (!failed.empty()) printf("  Failed: %s.\n", failed.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<m::Allocator> known = m::known_allocators();
  Config c = parse_args(argc, argv, known);

  if (c.demo) {
    std::string phase = m::phase_workload_path();
    if (access(phase.c_str(), X_OK) != 0) {
      fprintf(stderr, "ebbrun demo: the phase workload is missing: %s not found (%s)\n",
              phase.c_str(), m::phase_workload_hint().c_str());
      return 1;
    }
    // Sized so the whole demo (six allocators) takes about a minute on two
    // cores: ~0.5 GiB peak, ~8 s per run. The tail idle is long enough for
    // jemalloc-bg's 1 s decay to show.
    c.cmd = {phase, "--scale", "0.5", "--threads", "2", "--idle-ms",
             std::to_string(kDemoIdleMs), "--tail-idle-ms", std::to_string(kDemoTailIdleMs)};
    if (c.plot.empty()) c.plot = "ebbrun-demo.svg";
  }

  // Everything that can fail is checked before the first run.
  if (!c.plot.empty()) check_writable("--plot", c.plot);
  if (!c.csv.empty()) check_writable("--csv", c.csv);
  int output_fd = -1;
  if (c.quiet) {
    const char* path = c.quiet_file.empty() ? "/dev/null" : c.quiet_file.c_str();
    output_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (output_fd < 0)
      usage_error(std::string("--quiet: cannot write ") + path + ": " + strerror(errno));
  }

  std::vector<const m::Allocator*> wanted = m::select_allocators(known, c.allocs);
  if (c.install && !m::install_allocators(wanted, "ebbrun")) return 1;

  std::vector<AllocRuns> all;
  for (const auto* a : wanted) {
    if (a->installed()) {
      all.push_back({a, {}});
    } else {
      fprintf(stderr, "ebbrun: skipping %s: %s not found (%s)\n", a->name.c_str(),
              a->preload.c_str(), a->install_hint.c_str());
    }
  }
  if (all.empty()) {
    fprintf(stderr, "ebbrun: none of the requested allocators is installed\n");
    return 1;
  }

  // Interleaved: run 1 of every allocator, then run 2 of every allocator, ...
  // so slow drift of the machine (thermal, other load) hits all alike.
  const size_t total = all.size() * static_cast<size_t>(c.runs);
  size_t done = 0;
  for (int run = 1; run <= c.runs; ++run) {
    for (auto& a : all) {
      m::RunOptions o;
      o.interval_ms = c.interval_ms;
      o.output_fd = output_fd;
      o.timeout_s = c.timeout_s;
      // The demo keeps the workload's output to check its verify line and
      // read its phase markers; it is shown only when a run fails.
      o.capture_output = c.demo;
      // The limit first, so that an --env of the same variable wins.
      if (c.limit_mb && m::reads_limit_option(*a.alloc))
        o.env.push_back(m::limit_option(static_cast<uint64_t>(c.limit_mb)));
      for (const auto& [who, var] : c.env)
        if (who == "all" || who == a.alloc->name) o.env.push_back(var);
      ++done;
      fprintf(stderr, "ebbrun: [%zu/%zu] %s%s%s\n", done, total, a.alloc->name.c_str(),
              a.alloc->preload.empty() ? "" : " (LD_PRELOAD ",
              a.alloc->preload.empty() ? "" : (a.alloc->preload + ")").c_str());
      m::RunResult r = m::run_under(*a.alloc, c.cmd, o);
      if (c.demo) m::check_verify_line(r);
      if (!r.ok) {
        fprintf(stderr, "ebbrun: %s: %s\n", a.alloc->name.c_str(), r.status.c_str());
        if (c.demo) fputs(m::last_lines(r.stderr_tail + r.stdout_tail, 5).c_str(), stderr);
      }
      a.runs.push_back(std::move(r));
    }
  }
  if (output_fd >= 0) close(output_fd);

  printf("\nebbrun: %s\n", shell_join(c.cmd).c_str());
  printf("%d run%s per allocator%s, RSS of the whole process tree sampled every %d ms\n\n",
         c.runs, c.runs > 1 ? "s" : "", c.runs > 1 ? " (interleaved; medians shown)" : "",
         c.interval_ms);
  if (c.limit_mb)
    printf(
        "Limit L = %ld MiB, given to ebbmalloc's runs as EBBMALLOC_LIMIT_MB=%ld (the other\n"
        "allocators have no such option); over L s: seconds the sampled RSS was above L\n\n",
        c.limit_mb, c.limit_mb);
  print_table(all, c);

  bool files_ok = true;
  if (!c.csv.empty()) files_ok &= write_csv(c.csv, all);
  if (!c.plot.empty()) files_ok &= write_plot(c.plot, all, c);
  if (c.demo) print_reading(all, kDemoIdleMs / 1000.0, kDemoTailIdleMs / 1000.0);

  bool all_ok = std::all_of(all.begin(), all.end(), [](const auto& a) { return a.all_ok(); });
  return all_ok && files_ok ? 0 : 1;
}
