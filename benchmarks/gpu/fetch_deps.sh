#!/usr/bin/env bash
# fetch_deps.sh — run HERE (a Debian machine with apt), not on the device:
# downloads the .debs of routescore's build dependencies into .gpudeps/ at
# the repository root (ignored by git through .git/info/exclude) so that a
# device run can carry them (`carry: [".gpudeps"]`; the device image has
# CUDA, cmake, gcc and PyTorch but not oneDNN, cJSON, utf8proc, PCRE2, gRPC,
# protobuf-c or libmicrohttpd). bench_gpu.sh unpacks them under /tmp/rsdeps
# (never into /) and points pkg-config, CMake and the loader there.
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.gpudeps/' .git/info/exclude 2>/dev/null || echo '/.gpudeps/' >> .git/info/exclude
mkdir -p .gpudeps
cd .gpudeps
PKGS="libdnnl2 libdnnl-dev ocl-icd-libopencl1 libcjson1 libcjson-dev libutf8proc2 libutf8proc-dev
      libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3 libpcre2-dev zlib1g-dev
      libgrpc29 libgrpc-dev libabsl20220623 libabsl-dev libc-ares2 libc-ares-dev libre2-9 libre2-dev
      libssl3 libssl-dev libprotobuf32 libprotoc32 libprotobuf-c1 libprotobuf-c-dev protobuf-c-compiler
      libmicrohttpd12 libmicrohttpd-dev libgnutls30 libnettle8 libhogweed6 libidn2-0 libunistring2
      libtasn1-6 libp11-kit0 libffi8 libgmp10 pkgconf pkgconf-bin libpkgconf3"
apt-get download $PKGS
du -sh .
