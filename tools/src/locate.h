// locate.h — where ebbrun finds libebbmalloc.so and the phase workload.
//
// One source, compiled in two flavours (tools/CMakeLists.txt):
//   build tree (ebbrun-bin, compare-bin, the unit tests): the absolute paths
//     of the build ebbrun was built in (EBB_LIB_PATH, EBB_PHASE_PATH);
//   installed (the ebbrun of `cmake --install` and of the .deb,
//     EBB_INSTALLED): paths relative to the directory of the running program
//     (/proc/self/exe), e.g. bin/../lib/<multiarch>/libebbmalloc.so.0, so the
//     installed tree works under any prefix and carries no build-tree path.
// In both, $EBBRUN_EBB_LIB and $EBBRUN_PHASE_BIN (set and non-empty) win.
#pragma once

#include <string>

namespace ebb::measure {

// Where libebbmalloc.so is.
std::string ebb_library_path();
// How to get it when it is not there (for "skipping ebb: ... not found (HINT)").
std::string ebb_library_hint();

// Where the phase workload of `ebbrun demo` is, and how to get it.
std::string phase_workload_path();
std::string phase_workload_hint();

// `base` joined with the relative path `rel`, with "." and "dir/.."
// segments removed lexically (base is canonical, as /proc/self/exe is, so
// ".." is its parent; symlinks in `rel` are kept: the preload names the
// library by its soname link).
std::string join_lexically(const std::string& base, const std::string& rel);

}  // namespace ebb::measure
