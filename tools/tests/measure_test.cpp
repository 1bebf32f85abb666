// Unit tests of the measuring core and the SVG writer.
#include <gtest/gtest.h>

#include <csignal>
#include <cstdlib>
#include <string>
#include <vector>

#include <pthread.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "measure.h"
#include "rss_limit.h"
#include "svg_plot.h"

namespace m = ebb::measure;

namespace {

std::string find_var(const std::vector<std::string>& env, const std::string& name) {
  for (const auto& e : env)
    if (e.rfind(name + "=", 0) == 0) return e.substr(name.size() + 1);
  return "<unset>";
}

int count_var(const std::vector<std::string>& env, const std::string& name) {
  int n = 0;
  for (const auto& e : env) n += e.rfind(name + "=", 0) == 0;
  return n;
}

}  // namespace

TEST(Stat, ParsesPastAWeirdCommandName) {
  pid_t ppid = -1;
  unsigned flags = 0;
  char state = 0;
  ASSERT_TRUE(m::parse_stat("1234 (a) b) c) S 77 1234 1 0 -1 4194560 120 0", &ppid, &flags,
                            &state));
  EXPECT_EQ(ppid, 77);
  EXPECT_EQ(flags, 4194560u);
  EXPECT_EQ(state, 'S');
  ASSERT_TRUE(m::parse_stat("1 (init) D 0 1 1 0 -1 4194564 0", &ppid, &flags, nullptr));
  EXPECT_EQ(ppid, 0);
  EXPECT_EQ(flags & 4u, 4u);  // PF_EXITING
  EXPECT_FALSE(m::parse_stat("garbage", &ppid, &flags, &state));
  EXPECT_FALSE(m::parse_stat("1 (x) S 0", &ppid, &flags, &state));
}

TEST(Stat, ZombiesAreNotLive) {
  pid_t child = fork();
  if (child == 0) _exit(0);
  // Wait (without reaping) until it is a zombie.
  siginfo_t info;
  ASSERT_EQ(waitid(P_PID, child, &info, WEXITED | WNOWAIT), 0);
  auto z = m::read_process_memory(child);
  EXPECT_FALSE(z.live);
  EXPECT_EQ(z.rss, 0u);
  waitpid(child, nullptr, 0);
  auto self = m::read_process_memory(getpid());
  EXPECT_TRUE(self.live);
  EXPECT_GT(self.rss, 0u);
}

TEST(Stat, MainThreadExitedButProcessLives) {
  // A process whose main thread called pthread_exit still has memory; it
  // must be read through its other thread.
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t child = fork();
  if (child == 0) {
    pthread_t t;
    pthread_create(
        &t, nullptr,
        [](void*) -> void* {
          pause();
          return nullptr;
        },
        nullptr);
    close(ready[0]);
    close(ready[1]);  // EOF tells the parent that the thread exists
    // Exit just this thread. (Not pthread_exit: its forced unwinding would be
    // caught by GoogleTest in this forked copy of the test.)
    syscall(SYS_exit, 0);
  }
  close(ready[1]);
  char c;
  ASSERT_EQ(read(ready[0], &c, 1), 0);
  close(ready[0]);
  // Give the main thread time to finish exiting.
  for (int i = 0; i < 100; ++i) {
    FILE* f = fopen(("/proc/" + std::to_string(child) + "/stat").c_str(), "r");
    char buf[512] = {};
    if (f) {
      size_t n = fread(buf, 1, sizeof buf - 1, f);
      buf[n] = 0;
      fclose(f);
    }
    char state = 0;
    m::parse_stat(buf, nullptr, nullptr, &state);
    if (state == 'Z') break;
    usleep(10000);
  }
  auto mem = m::read_process_memory(child);
  EXPECT_TRUE(mem.live);
  EXPECT_GT(mem.rss, 0u);
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
}

TEST(Env, PreloadGoesInFrontOfAnExistingLdPreload) {
  m::Allocator a{"x", "/lib/ours.so", {}, ""};
  char v1[] = "HOME=/root", v2[] = "LD_PRELOAD=/lib/theirs.so";
  char* base[] = {v1, v2, nullptr};
  auto env = m::build_child_env(a, {}, base);
  EXPECT_EQ(find_var(env, "LD_PRELOAD"), "/lib/ours.so:/lib/theirs.so");
  EXPECT_EQ(find_var(env, "HOME"), "/root");
  EXPECT_EQ(count_var(env, "LD_PRELOAD"), 1);
}

TEST(Env, PreloadAloneWhenNoneOrEmpty) {
  m::Allocator a{"x", "/lib/ours.so", {}, ""};
  char* none[] = {nullptr};
  EXPECT_EQ(find_var(m::build_child_env(a, {}, none), "LD_PRELOAD"), "/lib/ours.so");
  char v[] = "LD_PRELOAD=";
  char* empty[] = {v, nullptr};
  EXPECT_EQ(find_var(m::build_child_env(a, {}, empty), "LD_PRELOAD"), "/lib/ours.so");
}

TEST(Env, GlibcLeavesLdPreloadAlone) {
  m::Allocator a{"glibc", "", {}, ""};
  char v[] = "LD_PRELOAD=/lib/theirs.so";
  char* base[] = {v, nullptr};
  EXPECT_EQ(find_var(m::build_child_env(a, {}, base), "LD_PRELOAD"), "/lib/theirs.so");
  char* none[] = {nullptr};
  EXPECT_EQ(find_var(m::build_child_env(a, {}, none), "LD_PRELOAD"), "<unset>");
}

TEST(Env, ExtrasOverrideAllocatorVariablesButNotThePreload) {
  m::Allocator a{"x", "/lib/ours.so", {{"MALLOC_CONF", "a:1"}}, ""};
  char v[] = "MALLOC_CONF=inherited";
  char* base[] = {v, nullptr};
  auto env = m::build_child_env(a, {}, base);
  EXPECT_EQ(find_var(env, "MALLOC_CONF"), "a:1");
  env = m::build_child_env(a, {{"MALLOC_CONF", "b:2"}, {"LD_PRELOAD", "/lib/user.so"}}, base);
  EXPECT_EQ(find_var(env, "MALLOC_CONF"), "b:2");
  EXPECT_EQ(count_var(env, "MALLOC_CONF"), 1);
  EXPECT_EQ(find_var(env, "LD_PRELOAD"), "/lib/ours.so:/lib/user.so");
}

TEST(Registry, KnownAllocatorsAndTheirSettings) {
  auto all = m::known_allocators();
  std::vector<std::string> names;
  for (const auto& a : all) names.push_back(a.name);
  EXPECT_EQ(names, (std::vector<std::string>{"glibc", "ebb", "mimalloc", "jemalloc",
                                             "jemalloc-bg", "tcmalloc"}));
  const auto* bg = m::find_allocator(all, "jemalloc-bg");
  ASSERT_NE(bg, nullptr);
  ASSERT_EQ(bg->env.size(), 1u);
  EXPECT_EQ(bg->env[0].name, "MALLOC_CONF");
  EXPECT_EQ(bg->env[0].value, "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0");
  EXPECT_EQ(bg->preload, m::find_allocator(all, "jemalloc")->preload);
  EXPECT_TRUE(m::find_allocator(all, "glibc")->installed());
  EXPECT_EQ(m::find_allocator(all, "nope"), nullptr);
}

TEST(Registry, EbbLibraryCanBeOverridden) {
  setenv("EBBRUN_EBB_LIB", "/tmp/some/libebbmalloc.so", 1);
  EXPECT_EQ(m::ebb_library_path(), "/tmp/some/libebbmalloc.so");
  EXPECT_EQ(m::find_allocator(m::known_allocators(), "ebb")->preload,
            "/tmp/some/libebbmalloc.so");
  EXPECT_FALSE(m::find_allocator(m::known_allocators(), "ebb")->installed());
  unsetenv("EBBRUN_EBB_LIB");
  EXPECT_NE(m::ebb_library_path(), "/tmp/some/libebbmalloc.so");
}

// The installed ebbrun joins its directory with a relative LIBDIR path.
TEST(Locate, JoinsLexically) {
  EXPECT_EQ(m::join_lexically("/usr/bin", "../lib/x86_64-linux-gnu/libebbmalloc.so.0"),
            "/usr/lib/x86_64-linux-gnu/libebbmalloc.so.0");
  EXPECT_EQ(m::join_lexically("/opt/e/bin", "../libexec/ebbmalloc/phase"), "/opt/e/libexec/ebbmalloc/phase");
  EXPECT_EQ(m::join_lexically("/a/./b/", "./c//d"), "/a/b/c/d");
  EXPECT_EQ(m::join_lexically("/bin", "../../x"), "/x");  // no higher than /
  EXPECT_EQ(m::join_lexically("/usr/bin", "/abs/libebbmalloc.so.0"), "/abs/libebbmalloc.so.0");
  EXPECT_EQ(m::join_lexically("/", ""), "/");
}

TEST(Status, DescribesExitsAndSignals) {
  EXPECT_EQ(m::describe_wait_status(0), "0");
  EXPECT_EQ(m::describe_wait_status(3 << 8), "exit 3");
  pid_t pid = fork();
  if (pid == 0) {
    signal(SIGTERM, SIG_DFL);
    raise(SIGTERM);
    _exit(0);
  }
  int ws;
  waitpid(pid, &ws, 0);
  EXPECT_EQ(m::describe_wait_status(ws), "signal SIGTERM");
}

TEST(Summary, StepIntegralMeanPeakFinal) {
  m::RunResult r;
  r.samples = {{0.0, 100}, {1.0, 300}, {2.0, 200}};
  r.wall_s = 4.0;  // the last sample holds for 2 s
  m::summarize(r);
  EXPECT_EQ(r.peak, 300u);
  EXPECT_EQ(r.final_rss, 200u);
  EXPECT_DOUBLE_EQ(r.integral_mib_s, (100 + 300 + 2 * 200) / (1024.0 * 1024.0));
  EXPECT_DOUBLE_EQ(r.mean_rss, 800 / 4.0);
}

TEST(Summary, KernelMaxRssRaisesThePeak) {
  m::RunResult r;
  r.samples = {{0.0, 100}};
  r.peak = 5000;  // ru_maxrss saw a spike between samples
  r.wall_s = 0.5;
  m::summarize(r);
  EXPECT_EQ(r.peak, 5000u);
  EXPECT_DOUBLE_EQ(r.mean_rss, 100);
}

TEST(Limit, SecondsOverAndPeakPerLimit) {
  m::RunResult r;
  r.started = r.ok = true;
  // Above 250 from t = 1 to 2 and from t = 3 to the exit at 4.5; a sample
  // equal to the limit is not above it.
  r.samples = {{0.0, 100}, {1.0, 300}, {2.0, 250}, {3.0, 400}};
  r.wall_s = 4.5;
  m::summarize(r);
  EXPECT_DOUBLE_EQ(m::seconds_over(r, 250), 2.5);
  EXPECT_DOUBLE_EQ(m::seconds_over(r, 400), 0);
  const auto known = m::known_allocators();
  m::AllocRuns a{m::find_allocator(known, "glibc"), {r}};
  EXPECT_DOUBLE_EQ(m::median_seconds_over(a, 250), 2.5);
  EXPECT_DOUBLE_EQ(m::peak_per_limit(a, 200), 2.0);
  EXPECT_EQ(m::limit_cells(a, 200), (std::vector<std::string>{"3.50", "2.00"}));
  m::AllocRuns none{a.alloc, {}};
  EXPECT_EQ(m::limit_cells(none, 200), (std::vector<std::string>{"-", "-"}));
}

TEST(Limit, OnlyEbbmallocReadsTheOption) {
  for (const auto& a : m::known_allocators())
    EXPECT_EQ(m::reads_limit_option(a), a.name == "ebb" || a.name == "ebb-baseline") << a.name;
  m::Allocator variant{"ebb-noreporter", "", {}, ""};
  EXPECT_TRUE(m::reads_limit_option(variant));
  EXPECT_EQ(m::limit_option(256).name, "EBBMALLOC_LIMIT_MB");
  EXPECT_EQ(m::limit_option(256).value, "256");
}

TEST(Tree, SeesGrandchildren) {
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t child = fork();
  if (child == 0) {
    if (fork() == 0) {  // grandchild
      close(ready[0]);
      if (write(ready[1], "x", 1) != 1) _exit(1);
      pause();
      _exit(0);
    }
    pause();
    _exit(0);
  }
  close(ready[1]);
  char c;
  ASSERT_EQ(read(ready[0], &c, 1), 1);
  close(ready[0]);
  auto tree = m::process_tree(child);
  EXPECT_EQ(tree.size(), 2u);
  EXPECT_EQ(tree[0], child);
  EXPECT_GT(m::tree_rss(child), m::process_rss(child));
  for (pid_t p : tree) kill(p, SIGKILL);
  waitpid(child, nullptr, 0);
}

TEST(Run, ReportsExitCodeOutputAndMissingCommand) {
  m::Allocator glibc{"glibc", "", {}, ""};
  m::RunOptions o;
  o.interval_ms = 10;
  o.capture_output = true;
  auto r = m::run_under(glibc, {"sh", "-c", "echo hello; echo oops >&2; sleep 0.1; exit 3"}, o);
  EXPECT_TRUE(r.started);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.status, "exit 3");
  EXPECT_EQ(r.stdout_tail, "hello\n");
  EXPECT_EQ(r.stderr_tail, "oops\n");
  EXPECT_FALSE(r.samples.empty());
  EXPECT_GT(r.peak, 0u);
  EXPECT_GE(r.wall_s, 0.1);

  r = m::run_under(glibc, {"/nonexistent/ebbrun-no-such-command"}, o);
  EXPECT_FALSE(r.started);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.status, "command not found");
}

TEST(Run, SetsExtraEnvironment) {
  m::Allocator glibc{"glibc", "", {{"EBBRUN_T1", "from-alloc"}}, ""};
  m::RunOptions o;
  o.env = {{"EBBRUN_T2", "from-user"}};
  auto r = m::run_under(
      glibc, {"sh", "-c", "test \"$EBBRUN_T1\" = from-alloc && test \"$EBBRUN_T2\" = from-user"},
      o);
  EXPECT_EQ(r.status, "0");
  EXPECT_TRUE(r.ok);
}

TEST(Run, TimeoutKillsTheTree) {
  m::Allocator glibc{"glibc", "", {}, ""};
  m::RunOptions o;
  o.interval_ms = 10;
  o.timeout_s = 0.3;
  auto r = m::run_under(glibc, {"sh", "-c", "sleep 30; true"}, o);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.status.find("timeout"), std::string::npos);
  EXPECT_LT(r.wall_s, 5.0);
}

TEST(Svg, NiceTicks) {
  EXPECT_EQ(ebb::svg::nice_ticks(7.3, 6), (std::vector<double>{0, 2, 4, 6, 8}));
  EXPECT_EQ(ebb::svg::nice_ticks(200, 5), (std::vector<double>{0, 50, 100, 150, 200}));
  auto t = ebb::svg::nice_ticks(0.0);
  EXPECT_EQ(t.front(), 0);
  EXPECT_GE(t.back(), 1);
  t = ebb::svg::nice_ticks(0.7, 7);
  EXPECT_DOUBLE_EQ(t[1], 0.1);
  EXPECT_DOUBLE_EQ(t.back(), 0.7);
}

TEST(Svg, EscapesAndDrawsEverySeries) {
  EXPECT_EQ(ebb::svg::xml_escape("a<b & \"c\">"), "a&lt;b &amp; &quot;c&quot;&gt;");
  ebb::svg::Chart c;
  c.title = "x < y";
  c.x_label = "time (s)";
  c.y_label = "RSS (MiB)";
  c.series = {{"one", "#111111", {{0, 1}, {1, 2}}, ""},
              {"two", "#222222", {{0, 3}, {2, 0}}, "signal SIGSEGV"},
              {"none", "#333333", {}, "command not found"}};
  std::string s = ebb::svg::render(c);
  EXPECT_EQ(s.rfind("<svg", 0), 0u);
  EXPECT_NE(s.find("x &lt; y"), std::string::npos);
  EXPECT_NE(s.find("time (s)"), std::string::npos);
  EXPECT_NE(s.find("RSS (MiB)"), std::string::npos);
  size_t polylines = 0;
  for (size_t p = s.find("<polyline"); p != std::string::npos; p = s.find("<polyline", p + 1))
    ++polylines;
  EXPECT_EQ(polylines, 2u);
  EXPECT_NE(s.find(">signal SIGSEGV<"), std::string::npos);
  EXPECT_NE(s.find(">none<"), std::string::npos);
  EXPECT_NE(s.find("</svg>"), std::string::npos);
}

TEST(Svg, LongTitlesAreCutToFit) {
  ebb::svg::Chart c;
  c.title = std::string(500, 'x');
  c.subtitle = std::string(500, 'y');
  std::string s = ebb::svg::render(c);
  EXPECT_EQ(s.find(std::string(200, 'x')), std::string::npos);
  EXPECT_NE(s.find("x\u2026<"), std::string::npos);
  EXPECT_NE(s.find("y\u2026<"), std::string::npos);
  EXPECT_NE(s.find("no samples"), std::string::npos);
}

// ---- helpers shared by the drivers ------------------------------------------

TEST(Drivers, VerifyLineChecksumAndFailures) {
  m::RunResult ok;
  ok.ok = true;
  ok.status = "0";
  ok.stdout_tail = "noise\nverify churn checksum=00ab OK\n";
  EXPECT_EQ(m::check_verify_line(ok), "00ab");
  EXPECT_TRUE(ok.ok);

  m::RunResult silent = ok;
  silent.stdout_tail = "exited 0 but said nothing\n";
  EXPECT_EQ(m::check_verify_line(silent), "");
  EXPECT_FALSE(silent.ok);
  EXPECT_EQ(silent.status, "no 'verify ... OK' line");

  m::RunResult failed;
  failed.status = "exit 1";
  failed.stdout_tail = "verify phase FAILED: byte 3 is 0x00\n";
  EXPECT_EQ(m::check_verify_line(failed), "");
  EXPECT_EQ(failed.status, "exit 1 (FAILED: byte 3 is 0x00)");
}

TEST(Drivers, MarkerTimeMatchesWholeWordsOnly) {
  const std::string err =
      "[phase] t=1.500 free90 done live=3.0MiB frees=10\n"
      "[phase] t=2.000 idle done\n"
      "[phase] t=5.250 tail-idle done\n"
      "[churn] t=9.000 idle done\n";
  EXPECT_DOUBLE_EQ(m::marker_time(err, "phase", "free90 done"), 1.5);
  EXPECT_DOUBLE_EQ(m::marker_time(err, "phase", "idle done"), 2.0);
  EXPECT_DOUBLE_EQ(m::marker_time(err, "phase", "tail-idle done"), 5.25);
  EXPECT_DOUBLE_EQ(m::marker_time(err, "churn", "idle done"), 9.0);
  EXPECT_EQ(m::marker_time(err, "phase", "free9"), -1);  // not a whole word
  EXPECT_EQ(m::marker_time(err, "phase", "grow done"), -1);
}

TEST(Drivers, MediansAndStatusOverRuns) {
  EXPECT_EQ(m::median({}), 0);
  EXPECT_EQ(m::median({3, 1, 2}), 2);
  EXPECT_EQ(m::median({4, 1, 3, 2}), 2.5);
  const auto known = m::known_allocators();
  m::AllocRuns a{m::find_allocator(known, "glibc"), {}};
  for (double t : {3.0, 1.0, 2.0}) {
    m::RunResult r;
    r.started = r.ok = true;
    r.status = "0";
    r.wall_s = t;
    a.runs.push_back(r);
  }
  EXPECT_EQ(a.time(), 2.0);
  EXPECT_EQ(a.representative()->wall_s, 2.0);
  EXPECT_EQ(a.status(), "0");
  a.runs[0].ok = false;
  a.runs[0].status = "signal SIGSEGV";
  EXPECT_EQ(a.status(), "signal SIGSEGV (1/3 runs)");
}

TEST(Drivers, ParsesAndQuotes) {
  long v;
  EXPECT_TRUE(m::parse_int("12", 1, 100, &v));
  EXPECT_EQ(v, 12);
  EXPECT_FALSE(m::parse_int("0", 1, 100, &v));
  EXPECT_FALSE(m::parse_int("1x", 1, 100, &v));
  double d;
  EXPECT_TRUE(m::parse_positive("0.25", &d));
  EXPECT_FALSE(m::parse_positive("-1", &d));
  EXPECT_FALSE(m::parse_positive("nan", &d));
  EXPECT_EQ(m::shell_join({"a", "b c", "it's"}), "a 'b c' 'it'\\''s'");
  EXPECT_EQ(m::split("a,,b", ','), (std::vector<std::string>{"a", "", "b"}));
}
