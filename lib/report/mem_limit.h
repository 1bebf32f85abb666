// The memory limit the process runs under, and how close it is to it.
//
// The kernel's free page reporting exists so that a host under pressure
// gets a guest's free pages back; ebbmalloc's host is the cgroup its service
// runs in. This file finds that cgroup's limit and reads its usage, for the
// reporter (report/reporter.cpp), which gives free memory back when the
// usage nears the limit (see "Memory pressure" in docs/DESIGN.md).
//
// Discovery (once, when report/pressure.h says; then the reporter re-reads
// the limit files now and then, since a limit can change at run time):
//   - cgroup v1 if /proc/self/cgroup names a `memory` controller whose
//     hierarchy is mounted (a "cgroup" line of /proc/self/mountinfo with
//     `memory` in its super options); else cgroup v2 (the "0::" line and a
//     "cgroup2" mount);
//   - the process's directory = mount point + its cgroup path relative to
//     the mount's root (a path outside the mount's root, as in a cgroup
//     namespace or a container that mounts its own cgroup: the mount point);
//   - the limit = the smallest finite value of memory.high and memory.max
//     (v2), memory.soft_limit_in_bytes and memory.limit_in_bytes (v1), over
//     that directory and each parent up to the mount point: a parent's limit
//     binds its children. "max", values of 2^60 bytes or more (v1's
//     "unlimited" is 2^63 - 4096), missing and unreadable files mean no limit
//     at that level; garbage is ignored likewise.
//
// Usage = the limiting cgroup's memory.current (v2) / memory.usage_in_bytes
// (v1), minus its inactive file pages (memory.stat `inactive_file` / v1
// `total_inactive_file`), which the kernel reclaims before anything else: a
// service that reads files would otherwise look full of page cache for ever,
// and lose its warm free memory for nothing. memory.stat is read only when
// the usage alone reaches the caller's mark (it is the costly file).
//
// Nothing here allocates: fixed buffers, raw system calls (os layer).
#pragma once
#include <cstddef>
#include <cstdint>

namespace ebb {

enum class LimitSource : uint32_t {
  kNone = 0,
  kOption = 1,        // EBBMALLOC_LIMIT_MB
  kCgroup2High = 2,   // memory.high
  kCgroup2Max = 3,    // memory.max
  kCgroup1Soft = 4,   // memory.soft_limit_in_bytes
  kCgroup1Hard = 5,   // memory.limit_in_bytes
};
// "none", "option", "memory.high", "memory.max", "memory.soft_limit_in_bytes",
// "memory.limit_in_bytes".
const char* limit_source_name(LimitSource s);

// Where discovery reads; tests point these at fake files (the mount points
// in a fake mountinfo then name fake directories).
struct CgroupFiles {
  const char* proc_cgroup = "/proc/self/cgroup";
  const char* mountinfo = "/proc/self/mountinfo";
};

constexpr size_t kCgroupPathMax = 256;

struct CgroupLimit {
  uint32_t version = 0;            // 1 or 2; 0: no memory cgroup found
  uint64_t limit_bytes = 0;        // 0: no limit at any level
  LimitSource source = LimitSource::kNone;
  char leaf[kCgroupPathMax] = {};  // the process's cgroup directory
  size_t mount_len = 0;            // leaf[0, mount_len) is the mount point
  char limit_dir[kCgroupPathMax] = {};  // the directory whose file set the limit ("" if none)
};

// Finds the process's memory cgroup and its limit. False if there is no
// memory cgroup (files missing or unparseable, path too long); *out is then
// left with version 0 and no limit.
bool discover_cgroup(const CgroupFiles& files, CgroupLimit* out);
// Walks leaf up to the mount point again, reading the limit files (a limit
// can be raised, lowered or removed while the process runs): updates
// limit_bytes, source and limit_dir. False if the leaf is not readable any
// more (then the limit is kept as it was).
bool reread_cgroup_limit(CgroupLimit* l);
// The limiting cgroup's usage as above, in bytes; memory.stat is read only
// if the raw usage is >= `stat_mark`. 0 if unreadable.
uint64_t cgroup_usage(const CgroupLimit& l, uint64_t stat_mark);

// Parsers, exposed for tests. A size file: "max\n" or a decimal number of
// bytes; true with *bytes = UINT64_MAX for no limit (max, >= 2^60), false for
// garbage or an empty file.
bool parse_limit_value(const char* text, uint64_t* bytes);
// The value of `key` in memory.stat text ("key value\n" lines); false if absent.
bool parse_stat_value(const char* text, const char* key, uint64_t* value);

}  // namespace ebb
