#!/usr/bin/env bash
# eval --plot refuses a file name whose format it cannot write, up front
# (before the benchmark is loaded or scored), names the cause, and leaves an
# existing file of that name untouched. Usage: cli_eval_plot_ext.sh ROUTESCORE
set -u
bin=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
for name in plot.png plot.pdf plot noext.svg/x plot.svg.txt; do
  mkdir -p "$tmp/noext.svg"
  printf 'keep' > "$tmp/$name" 2>/dev/null || true
  err=$("$bin" eval --benchmark gsm8k --data "$tmp/no-such-data" --scores "$tmp/none.jsonl" --plot "$tmp/$name" 2>&1 >/dev/null)
  rc=$?
  if [[ $rc -ne 2 || "$err" != *"cannot write that format"* ]]; then
    echo "FAIL: --plot $name: rc=$rc err=$err"; fail=1
  fi
  if [[ -f "$tmp/$name" && "$(cat "$tmp/$name")" != keep ]]; then echo "FAIL: $name was changed"; fail=1; fi
done
# an .svg name (any case) passes the check and fails later, on the missing data
err=$("$bin" eval --benchmark gsm8k --data "$tmp/no-such-data" --scores "$tmp/none.jsonl" --plot "$tmp/p.SVG" 2>&1 >/dev/null)
rc=$?
if [[ $rc -eq 0 || "$err" == *"cannot write that format"* ]]; then echo "FAIL: .SVG refused or run passed: rc=$rc $err"; fail=1; fi
[[ $fail -eq 0 ]] && echo "ok: bad --plot extensions refused up front"
exit $fail
