// Reads the EBBMALLOC_* environment variables into Options, without
// allocating and without getenv (this runs inside the first malloc, which
// may come before libc finished initialising).
#pragma once
#include "common/options.h"

namespace ebb {
void parse_options(Options* o);
}
