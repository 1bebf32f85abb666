// Reading another process's ebbmalloc live statistics file
// (include/ebbmalloc_live.h) without stopping or slowing it: a read-only
// shared mapping, a seqlock copy, and /proc for what the heap cannot know.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <string>

#include "ebbmalloc_live.h"

namespace ebbtop {

// The process being watched.
struct Target {
  int pid = 0;
  uid_t uid = 0;     // owner of /proc/PID (its effective uid)
  std::string comm;  // /proc/PID/comm, "?" if unreadable
  std::string dir;   // where its file should be
  std::string path;  // dir + "/PID.stats"
};

// Every failure is one message (for "ebbtop: <message>") and an exit code.
struct Error {
  std::string message;
  int exit_code = 1;
};

// Parses a pid argument: digits only, 1 .. 2^31-1.
bool parse_pid(const std::string& s, int* pid);

// Finds the process and where its file should be (`dir_override` if not
// empty, else its EBBMALLOC_LIVE_STATS_DIR, else the default directory).
bool find_target(int pid, const std::string& dir_override, Target* t, Error* err);

class LiveFile {
 public:
  LiveFile() = default;
  ~LiveFile();
  LiveFile(const LiveFile&) = delete;
  LiveFile& operator=(const LiveFile&) = delete;

  // Opens and validates the file (no symlink, a regular file of the
  // process's owner, magic, layout, pid). On ENOENT explains why the file is
  // missing (no ebbmalloc, no opt-in, refused at start-up).
  bool open(const Target& t, Error* err);
  // A consistent copy of the snapshot; false (with err) if it stayed torn.
  bool read(ebb_live_file_t* out, Error* err) const;
  // The file was removed (the process exited or is exiting).
  bool removed() const;

 private:
  int fd_ = -1;
  const ebb_live_file_t* map_ = nullptr;
};

// True while the process exists.
bool process_alive(int pid);
// The process's resident set from /proc/PID/statm, in bytes; -1 if gone.
int64_t process_rss(int pid);
uint64_t monotonic_ms();
void sleep_ms(unsigned ms);

}  // namespace ebbtop
