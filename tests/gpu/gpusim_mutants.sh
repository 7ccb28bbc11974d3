#!/usr/bin/env bash
# gpusim_mutants.sh — proof that the CUDA simulation tier can fail: applies
# known bugs, one at a time, to a copy of the tree (never to the checkout),
# rebuilds the simulation tier there and runs the GPU test that must catch
# each. Exit 0 when every mutant is caught (and the unmutated copy passes),
# 1 otherwise.
#
#   bash tests/gpu/gpusim_mutants.sh [KEEP_DIR]     (about 7 minutes on 2 cores)
#   MUTANTS="missing-barrier wrong-transpose" bash tests/gpu/gpusim_mutants.sh   (only those)
#
# The mutants: swapped mma fragment registers, an off-by-one attention mask,
# a missing tail guard, a missing __syncthreads, a cross-stream race (weight
# vectors copied on the legacy stream), a wrong cuBLASLt transpose.
set -euo pipefail
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
W=${1:-$(mktemp -d /tmp/rs-mutants.XXXXXX)}
mkdir -p "$W/tree"
cd "$SRC"
git ls-files -co --exclude-standard -z | tar --null -T - -cf - | tar -xmf - -C "$W/tree" # -m: fresh mtimes, so a kept build dir rebuilds what a mutant touched
cd "$W/tree"
echo "mutants: building the simulation tier in $W (Release)"
cmake -S . -B build -DRS_CUDA_SIM=ON -DCMAKE_BUILD_TYPE=Release -DPython3_EXECUTABLE="$(command -v python3)" >/dev/null
build() { cmake --build build -j"$(nproc)" --target test_gpu_ops >"$W/build.log" 2>&1; }
runtest() { # the op test, its log kept; returns its exit status
    RS_TEST_DATA="$PWD/tests/data" timeout 600 build/tests/test_gpu_ops >"$W/$1.log" 2>&1
}
build || { echo "mutants: the unmutated tree does not build (see $W/build.log)"; exit 1; }
if ! runtest baseline; then echo "mutants: the unmutated tree fails test_gpu_ops (see $W/baseline.log)"; exit 1; fi
echo "mutants: baseline passes"

# mutate NAME FILE OLD NEW: replace the one occurrence of OLD in FILE.
failed=0
mutate() {
    local name=$1 file=$2 old=$3 new=$4 t0 rc=0
    # MUTANTS="a b": only those
    if [ -n "${MUTANTS:-}" ] && [[ " $MUTANTS " != *" $name "* ]]; then return; fi
    cp "$file" "$W/orig"
    python3 - "$file" "$old" "$new" <<'EOF'
import sys
p, old, new = sys.argv[1:4]
s = open(p).read()
if s.count(old) != 1:
    sys.exit(f"mutants: '{old}' occurs {s.count(old)} times in {p}")
open(p, "w").write(s.replace(old, new))
EOF
    t0=$(date +%s)
    if ! build; then
        echo "mutant $name: does not compile (see $W/build.log): not a valid mutant"
        failed=1
    else
        runtest "$name" || rc=$?
        if [ "$rc" = 0 ]; then
            echo "mutant $name: NOT caught (test_gpu_ops passed)"
            failed=1
        else
            why=$(grep -m1 -E "RULE VIOLATION|CHECK failed|deadlock|cudasim" "$W/$name.log" | cut -c1-160 || true)
            echo "mutant $name: caught (exit $rc, $(( $(date +%s) - t0 )) s): $why"
        fi
    fi
    cp "$W/orig" "$file"
}

mutate swapped-fragments src/kernels/flash_tile.cuh \
    $'qf[kk][1] = lds_pair(&sQ[r + 8][col]);\n        qf[kk][2] = lds_pair(&sQ[r][col + 8]);' \
    $'qf[kk][2] = lds_pair(&sQ[r + 8][col]);\n        qf[kk][1] = lds_pair(&sQ[r][col + 8]);'
mutate off-by-one-mask src/kernels/attention_varlen.cu 'return key < L;' 'return key <= L;'
# (a write loop's bound one past the row: reads gamma past its end, writes
# into the next row; activation buffers are allocated at fp32 size, so a
# tail overrun of a bf16 output alone can stay inside its allocation)
mutate missing-tail-guard src/kernels/embed_layernorm.cu \
    $'for (int i = lane; i < hidden; i += 32) {\n            float v = (__bfloat162float(we[i]) + __bfloat162float(pe[i])) + __bfloat162float(te[i]);\n            o[i]' \
    $'for (int i = lane; i <= hidden; i += 32) {\n            float v = (__bfloat162float(we[i]) + __bfloat162float(pe[i])) + __bfloat162float(te[i]);\n            o[i]'
mutate missing-barrier src/kernels/attention_varlen.cu \
    '        __syncthreads(); /* before the next tile overwrites sK / sV */' ''
mutate cross-stream-race src/kernels/backend_cuda.cu \
    'if (st == RS_OK && w->f32) st = upload(c, w->f32, data, n, 0);' \
    'if (st == RS_OK && w->f32 && cudaMemcpy(w->f32, data, n * sizeof(float), cudaMemcpyHostToDevice) != cudaSuccess) st = RS_ERR_BACKEND;'
mutate wrong-transpose src/kernels/linear.cu 'ta = CUBLAS_OP_T, tb = CUBLAS_OP_N' 'ta = CUBLAS_OP_N, tb = CUBLAS_OP_N'

if [ "$failed" = 0 ]; then echo "mutants: all caught"; else echo "mutants: some were not caught"; fi
[ -n "${1:-}" ] || rm -rf "$W"
exit "$failed"
