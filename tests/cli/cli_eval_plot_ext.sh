#!/usr/bin/env bash
# eval --plot refuses a file name whose format it cannot write (it writes
# .svg, .png and .pdf, any case), up front (before the benchmark is loaded or
# scored), names the cause, and leaves an existing file of that name
# untouched. Usage: cli_eval_plot_ext.sh ROUTESCORE
set -u
bin=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
mkdir -p "$tmp/noext.svg" "$tmp/d.png"
for name in plot.jpg plot.ps plot.eps plot plot.svg.txt noext.svg/x d.png/x .png; do
  printf 'keep' > "$tmp/$name" 2>/dev/null || true
  err=$("$bin" eval --benchmark gsm8k --data "$tmp/no-such-data" --scores "$tmp/none.jsonl" --plot "$tmp/$name" 2>&1 >/dev/null)
  rc=$?
  if [[ $rc -ne 2 || "$err" != *"cannot write that format"* ]]; then
    echo "FAIL: --plot $name: rc=$rc err=$err"; fail=1
  fi
  if [[ -f "$tmp/$name" && "$(cat "$tmp/$name")" != keep ]]; then echo "FAIL: $name was changed"; fail=1; fi
done
# the names it writes (any case) pass the check and fail later, on the missing data
for name in p.SVG p.svg p.png p.PNG p.pdf p.Pdf; do
  err=$("$bin" eval --benchmark gsm8k --data "$tmp/no-such-data" --scores "$tmp/none.jsonl" --plot "$tmp/$name" 2>&1 >/dev/null)
  rc=$?
  if [[ $rc -eq 0 || "$err" == *"cannot write that format"* ]]; then echo "FAIL: $name refused or run passed: rc=$rc $err"; fail=1; fi
  if [[ -e "$tmp/$name" ]]; then echo "FAIL: $name written by a failed run"; fail=1; fi
done
[[ $fail -eq 0 ]] && echo "ok: bad --plot extensions refused up front"
exit $fail
