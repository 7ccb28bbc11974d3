#!/usr/bin/env bash
# run_gpu_tests.sh — the GPU test tier: builds the CUDA backend (if no build
# directory is given), runs the `gpu` CTest label, then the op test under
# compute-sanitizer's memcheck and racecheck (synccheck and initcheck too),
# then the decoder op test under memcheck and racecheck and the causal
# router's end-to-end test under memcheck.
#
#   tests/gpu/run_gpu_tests.sh [BUILD_DIR]      (default: build-cuda)
#
# Exit status: 0 all passed, 77 no GPU here (everything skipped), else the
# first failure's. Meant for a machine with an NVIDIA GPU (benchmarks/gpu/
# README.md says how to run it on the lent device); without one the tests
# report themselves skipped and so does this script.
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build-cuda}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}

if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release || exit 2
fi
cmake --build "$BUILD" -j"$JOBS" --target test_gpu_ops test_gpu_e2e test_gpu_lost test_gpu_llama_ops test_gpu_causal test_gpu_llama_embed test_gpu_views routescore || exit 2
grep -q "RS_HAVE_CUDA" "$BUILD/CMakeFiles/rs_host.dir/flags.make" 2>/dev/null ||
    { echo "run_gpu_tests: $BUILD has no CUDA backend (no nvcc at configure time?)"; exit 2; }
# This script is the real-GPU tier; the simulation tier (-DRS_CUDA_SIM=ON)
# runs with `ctest -L gpusim` in its own build directory.
if grep -q "^RS_CUDA_SIM:BOOL=ON" "$BUILD/CMakeCache.txt" 2>/dev/null; then
    echo "run_gpu_tests: $BUILD is a simulation-tier build (RS_CUDA_SIM=ON): use ctest -L gpusim there"
    exit 2
fi
if command -v nvidia-smi >/dev/null 2>&1; then
    echo "run_gpu_tests: tier: real GPU: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)"
else
    echo "run_gpu_tests: tier: real GPU build (nvidia-smi not found; the tests say whether a device is visible)"
fi

rc=0
(cd "$BUILD" && ctest -L gpu --output-on-failure) || rc=$?
# ctest returns 0 when all tests were skipped: tell the two apart.
if "$BUILD/tests/test_gpu_ops" >/dev/null 2>&1; then :; else
    r=$?
    if [ "$r" = 77 ]; then
        echo "run_gpu_tests: SKIP: no CUDA device here; compute-sanitizer not run"
        exit 77
    fi
fi
[ "$rc" = 0 ] || { echo "run_gpu_tests: ctest -L gpu failed"; exit "$rc"; }

SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
if [ ! -x "$SAN" ]; then
    echo "run_gpu_tests: compute-sanitizer not found; sanitizer runs skipped"
    exit 0
fi
export RS_TEST_DATA="$PWD/tests/data"

# sanitize TOOL TEST [advisory]: one compute-sanitizer run, its log in
# $BUILD/sanitizer_TEST_TOOL.log; a failure sets rc unless advisory.
sanitize() {
    local tool=$1 test=$2 advisory=${3:-} log="$BUILD/sanitizer_$2_$1.log" r=0
    echo "== compute-sanitizer --tool $tool $test"
    "$SAN" --tool "$tool" --error-exitcode 99 --print-limit 20 "$BUILD/tests/$test" > "$log" 2>&1 || r=$?
    tail -3 "$log"
    if [ "$r" != 0 ]; then
        echo "run_gpu_tests: compute-sanitizer $tool of $test failed (exit $r); log in $log"
        if [ -n "$advisory" ]; then echo "run_gpu_tests: ($tool is advisory)"; else rc=$r; fi
    fi
}

# test_gpu_lost is left out: its illegal address is deliberate. memcheck and
# racecheck must pass; synccheck and initcheck are reported only (initcheck
# can flag library code, e.g. cuBLASLt reading its own workspace).
sanitize memcheck test_gpu_ops
sanitize racecheck test_gpu_ops
sanitize synccheck test_gpu_ops advisory
sanitize initcheck test_gpu_ops advisory
sanitize memcheck test_gpu_e2e
# The decoder ops: memcheck and racecheck must pass (attention_kv's
# shared tiles and barriers are what racecheck is for); then the tiny causal
# router end to end under memcheck (every op of a real forward, the KV cache
# slots and the prefix included).
sanitize memcheck test_gpu_llama_ops
sanitize racecheck test_gpu_llama_ops
sanitize memcheck test_gpu_causal
sanitize memcheck test_gpu_llama_embed
sanitize memcheck test_gpu_views
[ "$rc" = 0 ] && echo "run_gpu_tests: all GPU tests and sanitizer runs passed"
exit "$rc"
