// Output that never allocates: a fixed buffer formatted by hand and written
// with write(2). Used for errors, verbose logging and the stats printer, all
// of which may run inside malloc.
#pragma once
#include <cstddef>
#include <cstdint>

namespace ebb {

class OutBuf {
 public:
  explicit OutBuf(int fd) : fd_(fd) {}
  ~OutBuf() { flush(); }
  OutBuf(const OutBuf&) = delete;
  OutBuf& operator=(const OutBuf&) = delete;

  OutBuf& str(const char* s);
  // s as the inside of a JSON string: quotes, backslashes and control
  // characters escaped.
  OutBuf& json_str(const char* s);
  OutBuf& chr(char c);
  OutBuf& u64(uint64_t v);
  OutBuf& i64(int64_t v);
  OutBuf& hex(uint64_t v);
  OutBuf& ptr(const void* p) { return str("0x").hex(reinterpret_cast<uintptr_t>(p)); }
  // Bytes in a human unit with one decimal (e.g. "12.5 MiB").
  OutBuf& bytes(uint64_t v);
  // Left-pads the next number to `w` characters.
  OutBuf& pad(unsigned w) { width_ = w; return *this; }
  void flush();

 private:
  void put(const char* s, size_t n);
  int fd_;
  unsigned width_ = 0;
  size_t len_ = 0;
  char buf_[512];
};

// "ebbmalloc: <msg>\n" on stderr.
void log_line(const char* msg);

// What an invariant checker found: counts the problems and prints the first
// ten as "ebbmalloc: heap check: <scope>what (a, b)".
class CheckErrors {
 public:
  // `scope` (may be empty) and `id` (printed after it unless ~0) name the part checked.
  CheckErrors(bool print, const char* scope, uint64_t id = ~uint64_t{0}) : print_(print), scope_(scope), id_(id) {}
  void bad(const char* what, uint64_t a, uint64_t b);
  unsigned count() const { return errors_; }

 private:
  bool print_;
  const char* scope_;
  uint64_t id_;
  unsigned errors_ = 0;
};
// Prints "ebbmalloc: <what> <ptr>: <why>" and aborts. Never returns.
[[noreturn]] void fatal_pointer(const char* what, const void* p, const char* why);

// The API function a misuse was detected in, for the message.
enum class Fn : uint8_t {
  kFree, kDelete, kFreeSized, kFreeAlignedSized, kRealloc, kUsableSize, kMalloc,
  kNone,  // found outside any call (the reporter thread)
};
const char* fn_name(Fn fn);
// "<fn>(): invalid pointer", for fatal_pointer's `what`.
const char* fn_invalid_pointer(Fn fn);
// Prints "ebbmalloc: <fn>(): <what> <ptr>: <why> (aborting)" and aborts: the
// one line every detected misuse gets, written before any state changes.
[[noreturn]] void fatal_misuse(Fn fn, const char* what, const void* p, const char* why);
// The same with the sizes of a sized free that does not match its block:
// "... size mismatch for <ptr>: <given> bytes given, the block holds <lo>..<hi>".
[[noreturn]] void fatal_size_mismatch(Fn fn, const void* p, uint64_t given, uint64_t lo, uint64_t hi);
[[noreturn]] void fatal(const char* msg);

}  // namespace ebb
