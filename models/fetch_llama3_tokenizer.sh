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
cache="$here/cache"
wheels="$cache/wheels"
dest="$cache/llama3"
out="$dest/tokenizer.model"

pkg="llama-models"
ver="0.3.0"
whl_name="llama_models-${ver}-py3-none-any.whl"
whl_sha="7f77f78ff13fca09f70d76a376aff6414cd901623fb9d57e69c2f8367a73032f"
member="models/llama3/tokenizer.model"
file_sha="82e9d31979e92ab929cd544440f129d9ecd797b69e327f80f17e1c50d5551b55"

py="${PYTHON:-python3}"
command -v "$py" >/dev/null 2>&1 || py=/usr/bin/python3
sha_of() { sha256sum "$1" | cut -d' ' -f1; }

if [[ -f "$out" && "$(sha_of "$out")" == "$file_sha" ]]; then
  echo "fetch: $out already present and verified; nothing to do"
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

tmp="$(mktemp "$dest/.tokenizer.model.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
"$py" - "$whl" "$member" "$tmp" <<'PY'
import sys, zipfile
whl, member, out = sys.argv[1:]
with zipfile.ZipFile(whl) as z, z.open(member) as src, open(out, "wb") as dst:
    while chunk := src.read(1 << 20):
        dst.write(chunk)
PY
got="$(sha_of "$tmp")"
if [[ "$got" != "$file_sha" ]]; then
  echo "fetch: REFUSING $member: sha256 $got, expected $file_sha" >&2
  exit 1
fi
chmod 644 "$tmp"
mv "$tmp" "$out"
trap - EXIT
echo "fetch: ready: $out"
