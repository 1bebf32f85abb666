#include "api/options.h"

#include <cstdint>
#include <cstring>

#include "common/config.h"
#include "common/log.h"
#include "os/os.h"

extern char** environ;

namespace ebb {

namespace {

// One line on stderr; the caller keeps the default.
void bad_value(OutBuf& out, const char* name, const char* value, const char* expected) {
  out.str("ebbmalloc: ").str(name).str("='").str(value).str("' is not valid (expected ").str(expected);
  out.str("); using the default ");
}
void bad_value(const char* name, const char* value, const char* expected, const char* dflt) {
  OutBuf out(2);
  bad_value(out, name, value, expected);
  out.str(dflt).chr('\n');
}

// Parses a decimal number in [lo, hi]; false on anything else.
bool parse_u64(const char* s, uint64_t lo, uint64_t hi, uint64_t* out) {
  if (!*s) return false;
  uint64_t v = 0;
  for (; *s; ++s) {
    if (*s < '0' || *s > '9') return false;
    if (v > (UINT64_MAX - 9) / 10) return false;
    v = v * 10 + static_cast<uint64_t>(*s - '0');
  }
  if (v < lo || v > hi) return false;
  *out = v;
  return true;
}

bool parse_bool(const char* s, bool* out) {
  if (!strcmp(s, "1") || !strcmp(s, "true") || !strcmp(s, "on") || !strcmp(s, "yes")) {
    *out = true;
    return true;
  }
  if (!strcmp(s, "0") || !strcmp(s, "false") || !strcmp(s, "off") || !strcmp(s, "no")) {
    *out = false;
    return true;
  }
  return false;
}

struct NumOpt {
  const char* name;
  uint32_t Options::*field;
  uint64_t lo, hi;
  const char* expected;
};
struct BoolOpt {
  const char* name;
  bool Options::*field;
};

const NumOpt kNum[] = {
    {"DELAY_MS", &Options::delay_ms, 0, 600000, "milliseconds, 0..600000"},
    {"COLD_MS", &Options::cold_ms, 0, 3600000, "milliseconds, 0..3600000"},
    {"REPORTER_LINGER_MS", &Options::linger_ms, 0, 3600000, "milliseconds, 0..3600000"},
    {"REPORT_ORDER", &Options::report_order, 0, kMaxOrder, "0..13 (4 KiB << order)"},
    {"BATCH", &Options::batch, 1, 1024, "1..1024"},
    {"RESERVE_GB", &Options::reserve_gb, 1, 8192, "GiB of heap, 1..8192"},
    {"REPORT_MARK_KB", &Options::report_mark_kb, 4, 1u << 30, "KiB, 4..1073741824"},
    {"THREAD_CACHE_KB", &Options::thread_cache_kb, 64, 1u << 20, "KiB, 64..1048576"},
    {"LIVE_STATS_MS", &Options::live_stats_ms, 50, 60000, "milliseconds, 50..60000"},
    {"PRESSURE_PCT", &Options::pressure_pct, 1, 100, "percent of the limit, 1..100"},
};
const BoolOpt kBool[] = {
    {"REPORTER", &Options::reporter},
    {"VERBOSE", &Options::verbose},
    {"SPLIT_WARM", &Options::split_warm},
    {"CHECK", &Options::check},
    {"LIVE_STATS", &Options::live_stats},
    {"HARDEN", &Options::harden},
    {"MADVISE_BATCH", &Options::madvise_batch},
};

void apply(Options* o, const char* key, const char* value) {
  char full[64] = "EBBMALLOC_";
  strncat(full, key, sizeof(full) - 11);
  for (const NumOpt& n : kNum) {
    if (strcmp(key, n.name) != 0) continue;
    uint64_t v;
    if (parse_u64(value, n.lo, n.hi, &v)) {
      o->*n.field = static_cast<uint32_t>(v);
    } else {
      OutBuf out(2);
      bad_value(out, full, value, n.expected);
      out.u64(o->*n.field).chr('\n');
    }
    return;
  }
  for (const BoolOpt& b : kBool) {
    if (strcmp(key, b.name) != 0) continue;
    bool v;
    if (parse_bool(value, &v)) o->*b.field = v;
    else bad_value(full, value, "0 or 1", o->*b.field ? "1" : "0");
    return;
  }
  if (!strcmp(key, "LIMIT_MB")) {
    // MiB up to 1 PiB; "auto" (the default) = the cgroup's limit, 0 = none.
    uint64_t v;
    if (!strcmp(value, "auto")) o->limit_mb = kLimitAuto;
    else if (parse_u64(value, 0, uint64_t{1} << 30, &v)) o->limit_mb = static_cast<uint32_t>(v);
    else bad_value(full, value, "MiB 0..1073741824, or auto (0 = no limit)", "auto");
    return;
  }
  if (!strcmp(key, "MADVISE")) {
    if (!strcmp(value, "dontneed")) o->madv_free = false;
    else if (!strcmp(value, "free")) o->madv_free = true;
    else bad_value(full, value, "dontneed or free", o->madv_free ? "free" : "dontneed");
    return;
  }
  if (!strcmp(key, "LIVE_STATS_DIR")) {
    const size_t n = strlen(value);
    if (value[0] == '/' && n < sizeof(o->live_stats_dir)) memcpy(o->live_stats_dir, value, n + 1);
    else bad_value(full, value, "an absolute path of at most 191 bytes", "/dev/shm/ebbmalloc-<uid>");
    return;
  }
  if (!strcmp(key, "STATS")) {
    if (!strcmp(value, "0") || !strcmp(value, "off") || !*value) o->stats = StatsMode::kOff;
    else if (!strcmp(value, "1") || !strcmp(value, "text") || !strcmp(value, "on")) o->stats = StatsMode::kText;
    else if (!strcmp(value, "json")) o->stats = StatsMode::kJson;
    else bad_value(full, value, "0, 1 or json", "0");
    return;
  }
  OutBuf out(2);
  out.str("ebbmalloc: unknown option ").str(full).str(" ignored\n");
}

void scan(Options* o, const char* entry) {
  static const char kPrefix[] = "EBBMALLOC_";
  if (strncmp(entry, kPrefix, sizeof(kPrefix) - 1) != 0) return;
  const char* key = entry + sizeof(kPrefix) - 1;
  const char* eq = strchr(key, '=');
  if (!eq) return;
  char name[48];
  size_t n = static_cast<size_t>(eq - key);
  if (n >= sizeof(name)) n = sizeof(name) - 1;
  memcpy(name, key, n);
  name[n] = 0;
  apply(o, name, eq + 1);
}

// Used only when `environ` is not set up yet (a malloc from the dynamic
// loader before libc's initialisation).
char g_env_buf[64 * 1024];

}  // namespace

void parse_options(Options* o) {
  *o = Options{};
  if (environ) {
    for (char** e = environ; *e; ++e) scan(o, *e);
    return;
  }
  const size_t n = os::read_proc_environ(g_env_buf, sizeof(g_env_buf));
  for (size_t i = 0; i < n;) {
    scan(o, g_env_buf + i);
    i += strlen(g_env_buf + i) + 1;
  }
}

}  // namespace ebb
