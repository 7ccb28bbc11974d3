#!/usr/bin/env bash
# bench_gpu.sh — on a machine with an NVIDIA GPU: build routescore with the
# CUDA backend, run the GPU tests (tests/gpu/run_gpu_tests.sh: ctest -L gpu
# plus compute-sanitizer), then measure the XLM-R-base-shaped router against
# PyTorch (bench_gpu.py); optionally the causal_llm router at Llama-3-8B shape
# against HF generate (bench_llama.py). See README.md here for running it on
# the lent device.
#
#   benchmarks/gpu/bench_gpu.sh [--quick] [bench_gpu.py flags...]
#
# Environment: BUILD (default build-cuda), SKIP_TESTS=1 to go straight to the
# benchmark, OUT (the device tool's output folder; logs and results land there),
# LLAMA=1 to run the Llama-3-8B step after the XLM-R sweep, LLAMA=only for that
# step alone (it writes ~16 GB of random weights to LLAMA_DIR, default
# /tmp/rs_llama3_8b_random, and needs models/cache/llama3/tokenizer.model).
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build-cuda}
OUTDIR=${OUT:-benchmarks/out/gpu}
mkdir -p "$OUTDIR"

# Carried build dependencies (fetch_deps.sh), unpacked beside, not into, /.
if [ -d .gpudeps ] && ls .gpudeps/*.deb >/dev/null 2>&1; then
    D=/tmp/rsdeps
    mkdir -p "$D"
    for f in .gpudeps/*.deb; do dpkg -x "$f" "$D"; done
    L="$D/usr/lib/x86_64-linux-gnu"
    export PATH="$D/usr/bin:$PATH"
    export PKG_CONFIG="$D/usr/bin/pkgconf"
    export PKG_CONFIG_LIBDIR="$L/pkgconfig:$D/usr/share/pkgconfig"
    export PKG_CONFIG_SYSROOT_DIR="$D"
    export LD_LIBRARY_PATH="$L${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export CMAKE_PREFIX_PATH="$D/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
    export LDFLAGS="-Wl,-rpath-link,$L -L$L ${LDFLAGS:-}"
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

set -o pipefail
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release 2>&1 | tee "$OUTDIR/configure.log" | tail -3 || exit 2
cmake --build "$BUILD" -j"$(nproc)" 2>&1 | tee "$OUTDIR/build.log" | grep -E "error|warning|Built target routescore" || true
[ -x "$BUILD/routescore" ] || { echo "bench_gpu: build failed (see $OUTDIR/build.log)"; exit 2; }

if [ "${SKIP_TESTS:-0}" != 1 ]; then
    tests/gpu/run_gpu_tests.sh "$BUILD" 2>&1 | tee "$OUTDIR/gpu_tests.log" | tail -25
    rc=${PIPESTATUS[0]}
    [ "$rc" = 0 ] || echo "bench_gpu: GPU tests exit $rc (see gpu_tests.log); benchmarking anyway"
fi

QUICK=""
if [ "${1:-}" = "--quick" ]; then QUICK=--quick; shift; fi
rc=0
if [ "${LLAMA:-0}" != only ]; then
    PYTHONUNBUFFERED=1 python3 benchmarks/gpu/bench_gpu.py --bin "$BUILD/routescore" --out "$OUTDIR" $QUICK "$@" \
        2>&1 | tee "$OUTDIR/bench.log"
    rc=${PIPESTATUS[0]}
fi
if [ "${LLAMA:-0}" != 0 ]; then
    # Optional: the causal_llm router at Llama-3-8B shape vs HF generate
    # (make_llama.py draws the weights on the GPU; a few minutes in all).
    PYTHONUNBUFFERED=1 python3 benchmarks/gpu/bench_llama.py --bin "$BUILD/routescore" --out "$OUTDIR" \
        --model "${LLAMA_DIR:-/tmp/rs_llama3_8b_random}" 2>&1 | tee "$OUTDIR/llama.log"
    r=${PIPESTATUS[0]}
    [ "$r" = 0 ] || { echo "bench_gpu: bench_llama.py exit $r (see llama.log)"; rc=$r; }
fi
exit "$rc"
