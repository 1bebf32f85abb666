#!/bin/bash
# Runs rlimit_prog under an address-space limit (RLIMIT_AS, ulimit -v in KiB).
set -u
prog="$1"
limit_kb="${2:-1048576}"
ulimit -v "$limit_kb" || exit 1
exec "$prog"
