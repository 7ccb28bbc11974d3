#!/usr/bin/env bash
# bearer_ct.sh BIN — runs test_bearer_ct plainly, then under valgrind's memcheck (the constant-time
# check: a branch on the secret tokens is an error). Exit 77 (skip) without valgrind.
set -u
bin="$1"
"$bin" || exit 1
command -v valgrind >/dev/null || { echo "SKIP: valgrind not installed (constant-time part)"; exit 77; }
valgrind -q --error-exitcode=3 --track-origins=yes "$bin"
