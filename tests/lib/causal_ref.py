"""causal_ref — RouteLLM's causal_llm router (docs/ROUTERS.md) in Python, shared by
tools/gen/gen_causal_tiny.py (the tiny test router and its golden outputs) and
benchmarks/causal_bench.py (a SmolLM2-sized router and the HF peer):

- the router directory routescore reads: a tokenizer with the Llama 3 header
  specials and the 5 rating tokens added (in that order, so the ratings are
  the last 5 ids: RouteLLM's orig_vocab_size = len(tokenizer) - 5), the two
  prompt files, routescore.json (the caller saves the model itself);
- the model input: system header + stripped system file, user header +
  stripped classifier file with {question} replaced, no assistant header;
- the scorer on HF `generate` (greedy, max_new_tokens 6, output_scores): the
  first generated id >= orig_vocab is the rating, p = 1 - (p4 + p5) of the
  softmax of the 5 rating logits at that step; 1.0 when none comes.

torch is imported only by the scoring functions, so the tokenizer half also
works under an interpreter without torch (the SmolLM2 tokenizer.json needs
tokenizers >= 0.20, newer than Debian's: see benchmarks/causal_bench.py)."""
import json
import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
SPECIALS = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
RATINGS = ["[[1]]", "[[2]]", "[[3]]", "[[4]]", "[[5]]"]
PROMPT_FILES = ("system_ft_v5.txt", "classifier_ft_v5.txt")


def default_prompt_dir():
    """RouteLLM's two prompt files in ../shared/data (RS_SHARED_DATA overrides)."""
    root = os.environ.get("RS_SHARED_DATA") or os.path.join(HERE, "..", "..", "..", "shared", "data")
    return os.path.join(root, "routellm", "routers", "causal_llm")


def read_prompt_files(src):
    """(system, classifier) texts, unstripped, as RouteLLM reads them."""
    return tuple(open(os.path.join(src, f), encoding="utf-8").read() for f in PROMPT_FILES)


def prompt_text(system, classifier, question):
    return ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" + system.strip() + "<|eot_id|>"
            + "<|start_header_id|>user<|end_header_id|>\n\n" + classifier.replace("{question}", question).strip()
            + "<|eot_id|>")


def add_router_tokens(tok):
    """Adds the header specials and rating tokens to a tokenizers.Tokenizer;
    returns orig_vocab (the id of [[1]])."""
    tok.add_special_tokens(SPECIALS + RATINGS)
    orig_vocab = tok.token_to_id("[[1]]")
    assert tok.get_vocab_size() == orig_vocab + 5, (tok.get_vocab_size(), orig_vocab)
    return orig_vocab


def write_router_files(router, src, manifest, tok=None):
    """The router directory's non-model files: prompt files, routescore.json
    and (when given) the tokenizer."""
    os.makedirs(router, exist_ok=True)
    for f in PROMPT_FILES:
        shutil.copy(os.path.join(src, f), router)
    with open(os.path.join(router, "routescore.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    if tok is not None:
        tok.save(os.path.join(router, "tokenizer.json"))


def rating(gen, scores, orig_vocab, row=0):
    """(win_prob, rating_probs or None) from generated ids and per-step
    scores (generate's output_scores; row: the batch row)."""
    import torch
    idx = next((i for i, x in enumerate(gen) if x >= orig_vocab), None)
    if idx is None:
        return 1.0, None
    sm = torch.softmax(scores[idx][row][orig_vocab:orig_vocab + 5].double(), 0)
    return float(1.0 - (sm[3] + sm[4])), sm.tolist()


def route(model, ids, orig_vocab, pad_id, max_new_tokens=6, **gen_kwargs):
    """RouteLLM's scorer on one prompt: (win_prob, generated ids, rating_probs).
    The explicit all-ones mask matters: without it, generate masks out every
    input id equal to pad_id (here <|eot_id|>, which the template contains)
    whenever pad_id is not an end-of-sequence id."""
    import torch
    ids = torch.tensor([ids])
    with torch.no_grad():
        o = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                           do_sample=False, pad_token_id=pad_id, output_scores=True, return_dict_in_generate=True,
                           **gen_kwargs)
    gen = o.sequences[0][ids.shape[1]:].tolist()
    p, sm = rating(gen, o.scores, orig_vocab)
    return p, gen, sm


def route_batch(model, batch_ids, orig_vocab, pad_id, max_new_tokens=6, **gen_kwargs):
    """The same scorer on a left-padded batch: [(win_prob, generated ids, rating_probs)]."""
    import torch
    width = max(len(x) for x in batch_ids)
    ids = torch.full((len(batch_ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch_ids), width), dtype=torch.long)
    for b, x in enumerate(batch_ids):
        ids[b, width - len(x):] = torch.tensor(x)
        mask[b, width - len(x):] = 1
    with torch.no_grad():
        o = model.generate(ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                           pad_token_id=pad_id, output_scores=True, return_dict_in_generate=True, **gen_kwargs)
    out = []
    for b in range(len(batch_ids)):
        gen = o.sequences[b][width:].tolist()
        p, sm = rating(gen, o.scores, orig_vocab, b)
        out.append((p, gen, sm))
    return out
