// locate.cpp — see locate.h.
#include "locate.h"

#include <climits>
#include <cstdlib>
#include <vector>

#include <unistd.h>

#if defined(EBB_INSTALLED)
#if !defined(EBB_LIB_RELPATH) || !defined(EBB_PHASE_RELPATH)
#error "the installed flavour needs EBB_LIB_RELPATH and EBB_PHASE_RELPATH (relative to bin/)"
#endif
#else
#ifndef EBB_LIB_PATH
#define EBB_LIB_PATH "lib/libebbmalloc.so"
#endif
#ifndef EBB_PHASE_PATH
#define EBB_PHASE_PATH "bench/workloads/phase"
#endif
#endif

namespace ebb::measure {

std::string join_lexically(const std::string& base, const std::string& rel) {
  std::vector<std::string> parts;
  auto add = [&](const std::string& path) {
    size_t i = 0;
    while (i <= path.size()) {
      size_t j = path.find('/', i);
      if (j == std::string::npos) j = path.size();
      std::string seg = path.substr(i, j - i);
      if (seg == "..") {
        if (!parts.empty()) parts.pop_back();
      } else if (!seg.empty() && seg != ".") {
        parts.push_back(seg);
      }
      i = j + 1;
    }
  };
  if (!rel.empty() && rel[0] == '/') {
    add(rel);  // an absolute LIBDIR: used as it is
  } else {
    add(base);
    add(rel);
  }
  std::string out;
  for (const auto& p : parts) out += "/" + p;
  return out.empty() ? "/" : out;
}

namespace {

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = getenv(name);
  return v && *v ? v : fallback;
}

#if defined(EBB_INSTALLED)
// The directory of the running program, "" if /proc is not there.
std::string program_dir() {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "";
  std::string exe(buf, static_cast<size_t>(n));
  size_t slash = exe.rfind('/');
  return slash == std::string::npos ? "" : exe.substr(0, slash);
}

std::string installed(const char* rel) {
  const std::string dir = program_dir();
  return dir.empty() ? rel : join_lexically(dir, rel);
}
#endif

}  // namespace

#if defined(EBB_INSTALLED)
std::string ebb_library_path() { return env_or("EBBRUN_EBB_LIB", installed(EBB_LIB_RELPATH)); }
std::string ebb_library_hint() {
  return "it is installed with this ebbrun: reinstall ebbmalloc, or point EBBRUN_EBB_LIB at it";
}
std::string phase_workload_path() { return env_or("EBBRUN_PHASE_BIN", installed(EBB_PHASE_RELPATH)); }
std::string phase_workload_hint() {
  return "it is installed with ebbrun when ebbmalloc is built with EBB_BUILD_BENCH=ON; "
         "or point EBBRUN_PHASE_BIN at a phase workload";
}
#else
std::string ebb_library_path() { return env_or("EBBRUN_EBB_LIB", EBB_LIB_PATH); }
std::string ebb_library_hint() {
  return "build it: cmake --build build/release --target ebbmalloc, or point EBBRUN_EBB_LIB at it";
}
std::string phase_workload_path() { return env_or("EBBRUN_PHASE_BIN", EBB_PHASE_PATH); }
std::string phase_workload_hint() { return "build it: cmake --build build/release --target wl_phase"; }
#endif

}  // namespace ebb::measure
