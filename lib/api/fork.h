// fork() support: the pthread_atfork handlers (see fork.cpp for the lock
// order against libc's stdio locks and the kinds of fork).
#pragma once

namespace ebb {

// Registers the handlers; once, from the library constructor.
void fork_handlers_install();

}  // namespace ebb
