#include "report/mem_limit.h"

#include <cstring>

#include "os/os.h"

namespace ebb {

namespace {

// v1 writes "unlimited" as 2^63 - 4096 (the largest page multiple); no real
// limit comes near 2^60 bytes, and anything above it is as good as none.
constexpr uint64_t kNoLimitFrom = uint64_t{1} << 60;
// Room for a directory of kCgroupPathMax and "/memory.soft_limit_in_bytes".
constexpr size_t kFilePathMax = kCgroupPathMax + 32;

// The lines of a file, read in chunks through one fixed buffer: a line that
// ends past the end of a chunk is carried over to the front, and a line
// longer than the whole buffer is skipped (its remainder too), never cut
// into lines of its own. Lines come without their '\n', NUL-terminated in
// the buffer, and are the caller's to modify until the next call.
class LineReader {
 public:
  explicit LineReader(const char* path) : fd_(os::open_read(path)) {}
  ~LineReader() {
    if (fd_ >= 0) os::close_fd(fd_);
  }
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  bool ok() const { return fd_ >= 0; }

  // The next line, or nullptr at the end of the file (or a read error).
  char* next() {
    if (fd_ < 0) return nullptr;
    for (;;) {
      char* nl = static_cast<char*>(memchr(buf_ + pos_, '\n', len_ - pos_));
      if (nl) {
        char* line = buf_ + pos_;
        *nl = 0;
        pos_ = static_cast<size_t>(nl - buf_) + 1;
        if (skipping_) {
          skipping_ = false;  // the rest of a long line: drop it
          continue;
        }
        return line;
      }
      if (eof_) {
        // A last line without '\n'.
        if (pos_ == len_ || skipping_) return nullptr;
        char* line = buf_ + pos_;
        buf_[len_] = 0;
        pos_ = len_;
        return line;
      }
      memmove(buf_, buf_ + pos_, len_ - pos_);
      len_ -= pos_;
      pos_ = 0;
      if (len_ == kCap) {
        skipping_ = true;  // no '\n' in a full buffer: too long a line
        len_ = 0;
      }
      const long r = os::read_fd(fd_, buf_ + len_, kCap - len_);
      if (r <= 0) eof_ = true;  // an error ends the file, like its end
      else len_ += static_cast<size_t>(r);
    }
  }

 private:
  static constexpr size_t kCap = 4095;  // and the NUL of a last line
  int fd_;
  size_t len_ = 0, pos_ = 0;
  bool skipping_ = false, eof_ = false;
  char buf_[kCap + 1];
};

// Whether the comma-separated list [s, end) holds `word` as one item.
bool list_has(const char* s, const char* end, const char* word) {
  const size_t n = strlen(word);
  while (s < end) {
    const char* comma = static_cast<const char*>(memchr(s, ',', static_cast<size_t>(end - s)));
    const char* item_end = comma ? comma : end;
    if (static_cast<size_t>(item_end - s) == n && memcmp(s, word, n) == 0) return true;
    s = item_end + 1;
  }
  return false;
}

// Copies the mountinfo field `s`, decoding the kernel's octal escapes
// (`\040` for a space; tab, newline and backslash likewise), into
// dst[cap]: false if it does not fit or decodes to a NUL.
bool decode_field(const char* s, char* dst, size_t cap, size_t* len) {
  size_t n = 0;
  while (*s) {
    char c = *s++;
    if (c == '\\' && s[0] >= '0' && s[0] <= '3' && s[1] >= '0' && s[1] <= '7' && s[2] >= '0' && s[2] <= '7') {
      c = static_cast<char>((s[0] - '0') * 64 + (s[1] - '0') * 8 + (s[2] - '0'));
      s += 3;
      if (c == 0) return false;
    }
    if (n + 1 >= cap) return false;
    dst[n++] = c;
  }
  dst[n] = 0;
  *len = n;
  return true;
}

// The fields of a mountinfo line that discovery needs, split in place:
//   id parent maj:min root mountpoint options [optional...] - fstype source superoptions
struct MountLine {
  char* root = nullptr;
  char* point = nullptr;
  char* fstype = nullptr;
  char* super = nullptr;
};

bool split_mount_line(char* line, MountLine* m) {
  // Fields are separated by single spaces (the kernel escapes those in
  // paths); the optional fields end at a lone "-".
  int field = 0;
  int after_dash = -1;  // fields seen after the "-", once it was seen
  char* p = line;
  while (*p) {
    char* f = p;
    while (*p && *p != ' ') ++p;
    if (*p) *p++ = 0;
    if (after_dash >= 0) {
      if (after_dash == 0) m->fstype = f;
      else if (after_dash == 2) m->super = f;
      ++after_dash;
    } else if (field == 3) {
      m->root = f;
    } else if (field == 4) {
      m->point = f;
    } else if (field >= 6 && strcmp(f, "-") == 0) {
      after_dash = 0;
    }
    ++field;
  }
  return m->root && m->point && m->fstype && m->super;
}

// The process's path in one hierarchy, from /proc/self/cgroup.
struct ProcPath {
  bool found = false;
  bool fits = false;
  char path[kCgroupPathMax] = {};
};

// The best mount of one hierarchy: the one whose root holds the process's
// path (the longest such root), else the first one. `found` even if none
// fits the buffers: the hierarchy is mounted, and choosing it then fails.
struct Mount {
  bool found = false;
  bool fits = false;
  bool holds = false;  // root is the process's path or one of its parents
  size_t root_len = 0;
  char root[kCgroupPathMax] = {};
  char point[kCgroupPathMax] = {};
};

// Whether `path` has a ".." component: a process outside its cgroup
// namespace's root sees such a path, which no mount's root holds.
bool has_dotdot(const char* path) {
  for (const char* p = strstr(path, "/.."); p; p = strstr(p + 1, "/.."))
    if (p[3] == '/' || p[3] == 0) return true;
  return false;
}

// Whether `root` (a mount's root in its hierarchy) is `path` or a parent of it.
bool root_holds(const char* root, size_t root_len, const char* path) {
  if (has_dotdot(path)) return false;
  if (root_len == 1 && root[0] == '/') return path[0] == '/';
  return strncmp(root, path, root_len) == 0 && (path[root_len] == '/' || path[root_len] == 0);
}

void consider_mount(const MountLine& m, const ProcPath& proc, Mount* best, Mount* scratch) {
  best->found = true;
  size_t point_len = 0;
  if (!decode_field(m.root, scratch->root, sizeof(scratch->root), &scratch->root_len) ||
      !decode_field(m.point, scratch->point, sizeof(scratch->point), &point_len)) {
    return;
  }
  scratch->holds = proc.fits && root_holds(scratch->root, scratch->root_len, proc.path);
  if (best->fits && (!scratch->holds || (best->holds && scratch->root_len <= best->root_len))) return;
  memcpy(best->root, scratch->root, sizeof(best->root));
  memcpy(best->point, scratch->point, sizeof(best->point));
  best->root_len = scratch->root_len;
  best->holds = scratch->holds;
  best->fits = true;
}

// Reads /proc/self/cgroup: the v1 memory line and the v2 line. False if
// the file cannot be read.
bool read_proc_cgroup(const char* file, ProcPath* v1, ProcPath* v2) {
  LineReader lines(file);
  if (!lines.ok()) return false;
  while (char* line = lines.next()) {
    // hierarchy-ID:controller-list:path; the path may hold ':' itself.
    char* c1 = strchr(line, ':');
    if (!c1) continue;
    char* c2 = strchr(c1 + 1, ':');
    if (!c2) continue;
    ProcPath* dst = nullptr;
    if (c1 - line == 1 && line[0] == '0' && c2 == c1 + 1) dst = v2;
    else if (list_has(c1 + 1, c2, "memory")) dst = v1;
    if (!dst || dst->found) continue;
    const char* path = c2 + 1;
    const size_t n = strlen(path);
    dst->found = true;
    dst->fits = path[0] == '/' && n < sizeof(dst->path);
    if (dst->fits) memcpy(dst->path, path, n + 1);
  }
  return true;
}

// Reads /proc/self/mountinfo: the best mount of the v1 memory hierarchy and
// of the v2 hierarchy. False if the file cannot be read.
bool read_mounts(const char* file, const ProcPath& v1_path, const ProcPath& v2_path, Mount* v1, Mount* v2) {
  LineReader lines(file);
  if (!lines.ok()) return false;
  Mount scratch;
  while (char* line = lines.next()) {
    MountLine m;
    if (!split_mount_line(line, &m)) continue;
    if (strcmp(m.fstype, "cgroup") == 0 && list_has(m.super, m.super + strlen(m.super), "memory")) {
      consider_mount(m, v1_path, v1, &scratch);
    } else if (strcmp(m.fstype, "cgroup2") == 0) {
      consider_mount(m, v2_path, v2, &scratch);
    }
  }
  return true;
}

// leaf = the mount point + the process's path below the mount's root (or
// the mount point alone if the path is not below it). False if too long.
bool build_leaf(const Mount& m, const ProcPath& proc, CgroupLimit* out) {
  const char* rel = "";
  if (m.holds) rel = m.root_len == 1 ? proc.path : proc.path + m.root_len;
  if (strcmp(rel, "/") == 0) rel = "";
  size_t point_len = strlen(m.point);
  // A hierarchy mounted at "/": its subdirectories are "/x", not "//x".
  if (point_len == 1 && m.point[0] == '/' && rel[0]) point_len = 0;
  const size_t rel_len = strlen(rel);
  if (point_len + rel_len >= sizeof(out->leaf)) return false;
  memcpy(out->leaf, m.point, point_len);
  memcpy(out->leaf + point_len, rel, rel_len + 1);
  out->mount_len = point_len ? point_len : 1;
  return true;
}

// dir[0, dir_len) + "/" + name into path[kFilePathMax].
bool file_path(char* path, const char* dir, size_t dir_len, const char* name) {
  const size_t n = strlen(name);
  if (dir_len + 1 + n >= kFilePathMax) return false;
  memcpy(path, dir, dir_len);
  path[dir_len] = '/';
  memcpy(path + dir_len + 1, name, n + 1);
  return true;
}

// A plain decimal number (a usage file), with an optional '\n'.
bool parse_decimal(const char* s, uint64_t* out) {
  if (*s < '0' || *s > '9') return false;
  uint64_t v = 0;
  for (; *s >= '0' && *s <= '9'; ++s) {
    if (v > (UINT64_MAX - 9) / 10) return false;
    v = v * 10 + static_cast<uint64_t>(*s - '0');
  }
  while (*s == '\n' || *s == ' ') ++s;
  if (*s) return false;
  *out = v;
  return true;
}

// The limit a size file sets; false for none (no limit, unreadable, garbage).
bool read_limit_file(const char* path, uint64_t* bytes) {
  char buf[64];
  if (os::read_file(path, buf, sizeof(buf)) <= 0) return false;
  uint64_t v;
  // 0 bytes is no limit a running process lives under, and limit_bytes 0
  // means none: taken as none.
  if (!parse_limit_value(buf, &v) || v == UINT64_MAX || v == 0) return false;
  *bytes = v;
  return true;
}

struct LimitFile {
  const char* name;
  LimitSource source;
};
// At each level the soft limit first: it wins a tie with the hard one.
constexpr LimitFile kV2Files[] = {{"memory.high", LimitSource::kCgroup2High}, {"memory.max", LimitSource::kCgroup2Max}};
constexpr LimitFile kV1Files[] = {{"memory.soft_limit_in_bytes", LimitSource::kCgroup1Soft},
                                  {"memory.limit_in_bytes", LimitSource::kCgroup1Hard}};

// The smallest limit over the leaf and its parents up to the mount point:
// limit_bytes, source, limit_dir of *l.
void walk_limits(CgroupLimit* l) {
  const LimitFile* files = l->version == 1 ? kV1Files : kV2Files;
  uint64_t best = 0;
  LimitSource source = LimitSource::kNone;
  size_t best_len = 0;
  char path[kFilePathMax];
  size_t len = strlen(l->leaf);
  for (;;) {
    for (int i = 0; i < 2; ++i) {
      uint64_t v;
      if (!file_path(path, l->leaf, len, files[i].name) || !read_limit_file(path, &v)) continue;
      // Strictly smaller: the level nearest the leaf wins a tie.
      if (best == 0 || v < best) {
        best = v;
        source = files[i].source;
        best_len = len;
      }
    }
    if (len <= l->mount_len) break;
    // The parent: drop the last component (and its '/'), not past the mount.
    size_t k = len;
    while (k > l->mount_len && l->leaf[k - 1] != '/') --k;
    if (k > l->mount_len) --k;
    len = k > l->mount_len ? k : l->mount_len;
  }
  l->limit_bytes = best;
  l->source = source;
  memcpy(l->limit_dir, l->leaf, best_len);
  l->limit_dir[best_len] = 0;
}

}  // namespace

const char* limit_source_name(LimitSource s) {
  switch (s) {
    case LimitSource::kNone:
      return "none";
    case LimitSource::kOption:
      return "option";
    case LimitSource::kCgroup2High:
      return "memory.high";
    case LimitSource::kCgroup2Max:
      return "memory.max";
    case LimitSource::kCgroup1Soft:
      return "memory.soft_limit_in_bytes";
    case LimitSource::kCgroup1Hard:
      return "memory.limit_in_bytes";
  }
  return "none";
}

bool discover_cgroup(const CgroupFiles& files, CgroupLimit* out) {
  *out = CgroupLimit{};
  ProcPath v1_path, v2_path;
  if (!read_proc_cgroup(files.proc_cgroup, &v1_path, &v2_path)) return false;
  if (!v1_path.found && !v2_path.found) return false;
  Mount v1, v2;
  if (!read_mounts(files.mountinfo, v1_path, v2_path, &v1, &v2)) return false;
  // v1 memory wins on a hybrid system when its hierarchy is mounted: the
  // v2 hierarchy then has no memory controller.
  const bool use_v1 = v1_path.found && v1.found;
  const ProcPath& proc = use_v1 ? v1_path : v2_path;
  const Mount& mount = use_v1 ? v1 : v2;
  if (!proc.found || !mount.found || !proc.fits || !mount.fits) return false;
  if (!build_leaf(mount, proc, out) || !os::is_directory(out->leaf)) {
    *out = CgroupLimit{};
    return false;
  }
  out->version = use_v1 ? 1 : 2;
  walk_limits(out);
  return true;
}

bool reread_cgroup_limit(CgroupLimit* l) {
  if (l->version == 0 || !os::is_directory(l->leaf)) return false;
  walk_limits(l);
  return true;
}

uint64_t cgroup_usage(const CgroupLimit& l, uint64_t stat_mark) {
  if (l.version == 0) return 0;
  // Without a limit, the process's own cgroup.
  const char* dir = l.limit_dir[0] ? l.limit_dir : l.leaf;
  const size_t dir_len = strlen(dir);
  char path[kFilePathMax];
  char buf[64];
  uint64_t usage;
  if (!file_path(path, dir, dir_len, l.version == 1 ? "memory.usage_in_bytes" : "memory.current") ||
      os::read_file(path, buf, sizeof(buf)) <= 0 || !parse_decimal(buf, &usage)) {
    return 0;
  }
  if (usage < stat_mark || !file_path(path, dir, dir_len, "memory.stat")) return usage;
  // memory.stat is some fifty lines (v1 with the total_ ones: seventy): by lines.
  const char* key = l.version == 1 ? "total_inactive_file" : "inactive_file";
  LineReader lines(path);
  while (const char* line = lines.next()) {
    uint64_t inactive;
    if (parse_stat_value(line, key, &inactive)) return usage > inactive ? usage - inactive : 0;
  }
  return usage;
}

bool parse_limit_value(const char* text, uint64_t* bytes) {
  const char* s = text;
  uint64_t v = 0;
  if (strncmp(s, "max", 3) == 0) {
    v = UINT64_MAX;
    s += 3;
  } else {
    if (*s < '0' || *s > '9') return false;
    for (; *s >= '0' && *s <= '9'; ++s) {
      // Saturates: anything from 2^60 on is no limit, however many digits.
      if (v < kNoLimitFrom) v = v * 10 + static_cast<uint64_t>(*s - '0');
    }
    if (v >= kNoLimitFrom) v = UINT64_MAX;
  }
  while (*s == '\n' || *s == ' ') ++s;
  if (*s) return false;
  *bytes = v;
  return true;
}

bool parse_stat_value(const char* text, const char* key, uint64_t* value) {
  const size_t n = strlen(key);
  for (const char* line = text; *line;) {
    const char* end = strchr(line, '\n');
    if (!end) end = line + strlen(line);
    // "key value": the key whole, not the start of a longer one.
    if (static_cast<size_t>(end - line) > n && memcmp(line, key, n) == 0 && line[n] == ' ') {
      const char* s = line + n + 1;
      if (*s < '0' || *s > '9') return false;
      uint64_t v = 0;
      for (; s < end && *s >= '0' && *s <= '9'; ++s) {
        if (v > (UINT64_MAX - 9) / 10) return false;
        v = v * 10 + static_cast<uint64_t>(*s - '0');
      }
      if (s != end) return false;
      *value = v;
      return true;
    }
    line = *end ? end + 1 : end;
  }
  return false;
}

}  // namespace ebb
