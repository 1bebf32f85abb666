// An empty shared library: a harmless stand-in for an allocator in tests
// that check how ebbrun builds LD_PRELOAD.
extern "C" int ebbrun_dummy_preload_marker() { return 42; }
