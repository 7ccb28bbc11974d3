#!/usr/bin/env bash
# The plot library stays out of the engine: libroutescore_engine.so (what
# the Python package loads) has no libcairo NEEDED entry, while the
# routescore executable, which draws `eval --plot`, has one (so the check
# reads what it claims to). Usage: engine_so_deps.sh ENGINE_SO ROUTESCORE
set -u
so=$1 bin=$2
fail=0
command -v readelf >/dev/null || { echo "skipped: no readelf"; exit 77; }
so_needed=$(readelf -d "$so" | awk '/\(NEEDED\)/ {print $NF}')
bin_needed=$(readelf -d "$bin" | awk '/\(NEEDED\)/ {print $NF}')
if [[ -z "$so_needed" ]]; then echo "FAIL: no NEEDED entries read from $so"; fail=1; fi
if grep -qi 'libcairo' <<<"$so_needed"; then echo "FAIL: $so needs cairo: $so_needed"; fail=1; fi
if ! grep -qi '^\[libcairo\.so' <<<"$bin_needed"; then echo "FAIL: $bin does not need libcairo: $bin_needed"; fail=1; fi
[[ $fail -eq 0 ]] && echo "ok: $(basename "$so") needs $(echo $so_needed | tr -d '[]'); no cairo"
exit $fail
