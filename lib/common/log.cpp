#include "common/log.h"

#include <stdlib.h>
#include <unistd.h>

#include <cstring>

namespace ebb {

void OutBuf::put(const char* s, size_t n) {
  while (n > 0) {
    if (len_ == sizeof(buf_)) flush();
    size_t k = sizeof(buf_) - len_;
    if (k > n) k = n;
    memcpy(buf_ + len_, s, k);
    len_ += k;
    s += k;
    n -= k;
  }
}

void OutBuf::flush() {
  size_t off = 0;
  while (off < len_) {
    ssize_t w = ::write(fd_, buf_ + off, len_ - off);
    if (w <= 0) break;  // nothing sensible to do about a failing stderr
    off += static_cast<size_t>(w);
  }
  len_ = 0;
}

OutBuf& OutBuf::str(const char* s) {
  size_t n = strlen(s);
  for (unsigned i = static_cast<unsigned>(n); i < width_; ++i) put(" ", 1);
  width_ = 0;
  put(s, n);
  return *this;
}

OutBuf& OutBuf::json_str(const char* s) {
  static const char kHex[] = "0123456789abcdef";
  for (; *s; ++s) {
    const unsigned char c = static_cast<unsigned char>(*s);
    if (c == '"' || c == '\\') {
      const char e[2] = {'\\', static_cast<char>(c)};
      put(e, 2);
    } else if (c < 0x20) {
      const char e[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 15]};
      put(e, 6);
    } else {
      put(s, 1);
    }
  }
  return *this;
}

OutBuf& OutBuf::chr(char c) {
  put(&c, 1);
  return *this;
}

OutBuf& OutBuf::u64(uint64_t v) {
  char tmp[24];
  int i = 23;
  tmp[i] = 0;
  do {
    tmp[--i] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v);
  return str(tmp + i);
}

OutBuf& OutBuf::i64(int64_t v) {
  if (v < 0) {
    chr('-');
    return u64(static_cast<uint64_t>(-(v + 1)) + 1);
  }
  return u64(static_cast<uint64_t>(v));
}

OutBuf& OutBuf::hex(uint64_t v) {
  char tmp[20];
  int i = 19;
  tmp[i] = 0;
  do {
    tmp[--i] = "0123456789abcdef"[v & 15];
    v >>= 4;
  } while (v);
  return str(tmp + i);
}

OutBuf& OutBuf::bytes(uint64_t v) {
  static const char* const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  unsigned u = 0;
  uint64_t scaled10 = v * 10;  // tenths
  while (u < 4 && scaled10 >= 10240) {
    scaled10 /= 1024;
    ++u;
  }
  unsigned w = width_;
  width_ = 0;
  char tmp[40];
  OutBuf* self = this;
  // Format "<int>.<tenth> <unit>" into tmp, then pad as one string.
  char num[24];
  int i = 23;
  num[i] = 0;
  uint64_t whole = scaled10 / 10;
  do {
    num[--i] = static_cast<char>('0' + whole % 10);
    whole /= 10;
  } while (whole);
  size_t n = 0;
  for (const char* s = num + i; *s; ++s) tmp[n++] = *s;
  if (u > 0) {
    tmp[n++] = '.';
    tmp[n++] = static_cast<char>('0' + scaled10 % 10);
  }
  tmp[n++] = ' ';
  for (const char* s = units[u]; *s; ++s) tmp[n++] = *s;
  tmp[n] = 0;
  width_ = w;
  return self->str(tmp);
}

void log_line(const char* msg) {
  OutBuf out(2);
  out.str("ebbmalloc: ").str(msg).chr('\n');
}

void fatal_pointer(const char* what, const void* p, const char* why) {
  {
    OutBuf out(2);
    out.str("ebbmalloc: ").str(what).str(" ").ptr(p).str(": ").str(why).str(" (aborting)\n");
  }
  abort();
}

const char* fn_name(Fn fn) {
  switch (fn) {
    case Fn::kFree: return "free";
    case Fn::kDelete: return "operator delete";
    case Fn::kFreeSized: return "free_sized";
    case Fn::kFreeAlignedSized: return "free_aligned_sized";
    case Fn::kRealloc: return "realloc";
    case Fn::kUsableSize: return "malloc_usable_size";
    case Fn::kMalloc: return "malloc";
    case Fn::kNone: return "ebbmalloc";
  }
  return "?";
}

const char* fn_invalid_pointer(Fn fn) {
  switch (fn) {
    case Fn::kFree: return "free(): invalid pointer";
    case Fn::kDelete: return "operator delete(): invalid pointer";
    case Fn::kFreeSized: return "free_sized(): invalid pointer";
    case Fn::kFreeAlignedSized: return "free_aligned_sized(): invalid pointer";
    case Fn::kRealloc: return "realloc(): invalid pointer";
    case Fn::kUsableSize: return "malloc_usable_size(): invalid pointer";
    case Fn::kMalloc: return "malloc(): invalid pointer";
    case Fn::kNone: return "invalid pointer";
  }
  return "invalid pointer";
}

void fatal_misuse(Fn fn, const char* what, const void* p, const char* why) {
  {
    OutBuf out(2);
    out.str("ebbmalloc: ").str(fn_name(fn)).str("(): ").str(what).str(" ").ptr(p).str(": ").str(why);
    out.str(" (aborting)\n");
  }
  abort();
}

void fatal_size_mismatch(Fn fn, const void* p, uint64_t given, uint64_t lo, uint64_t hi) {
  {
    OutBuf out(2);
    out.str("ebbmalloc: ").str(fn_name(fn)).str("(): size mismatch for ").ptr(p).str(": ").u64(given);
    out.str(" bytes given, the block was allocated with ");
    if (lo == hi) out.u64(lo);
    else out.u64(lo).str("..").u64(hi);
    out.str(" bytes (aborting)\n");
  }
  abort();
}

void fatal(const char* msg) {
  {
    OutBuf out(2);
    out.str("ebbmalloc: fatal: ").str(msg).str(" (aborting)\n");
  }
  abort();
}

void CheckErrors::bad(const char* what, uint64_t a, uint64_t b) {
  if (print_ && errors_ < 10) {
    OutBuf o(2);
    o.str("ebbmalloc: heap check: ").str(scope_);
    if (id_ != ~uint64_t{0}) o.u64(id_).str(": ");
    o.str(what).str(" (").u64(a).str(", ").u64(b).str(")\n");
  }
  ++errors_;
}

}  // namespace ebb
