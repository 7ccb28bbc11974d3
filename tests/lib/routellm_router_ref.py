"""routellm_router_ref — numpy renderings of RouteLLM's routers, the references
the router tests check routescore against and the generators of tests/data use:

  * pred_win_rate: MFModel.pred_win_rate (routellm/routers/matrix_factorization/
    model.py): sigmoid(l[0] - l[1]) of classifier(normalize(P[[a, b]]) * text_proj(e));
  * compute_elo_mle_with_tie, compute_tiers: SWRankingRouter's Elo fit and tier
    split (routellm/routers/similarity_weighted/); tools/gen/gen_sw_ranking.py
    says how they follow RouteLLM's;
  * save_safetensors: a router's weights as a safetensors file, written by hand.

Used by tools/gen/gen_mf_routellm.py, tools/gen/gen_sw_ranking.py,
tests/quality/local_encoder_routers.py and tests/server/server_embeddings.py.
"""
import json
import math
import struct

import numpy as np


def save_safetensors(path, tensors):
    """The safetensors format by hand: u64 header length, JSON header, data."""
    header, blobs, off = {}, [], 0
    for name, arr in tensors.items():
        b = np.ascontiguousarray(arr, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def normalize(x):  # torch.nn.functional.normalize(p=2, dim=1, eps=1e-12)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def pred_win_rate(P, W, c, a, b, e):
    model_embed = normalize(P[[a, b]].astype(np.float64))
    prompt_embed = W.astype(np.float64) @ e.astype(np.float64)  # text_proj: Linear(text_dim, dim, bias=False)
    logits = (model_embed * prompt_embed) @ c.astype(np.float64).T  # classifier: Linear(dim, 1, bias=False)
    logits = logits.squeeze()
    return float(1.0 / (1.0 + np.exp(-(logits[0] - logits[1]))))



def compute_elo_mle_with_tie(model_a, model_b, winner, sample_weight=None, SCALE=400, BASE=10, INIT_RATING=1000):
    models = list(dict.fromkeys(list(model_a) + list(model_b)))  # pd.concat(...).unique()
    col = {m: i for i, m in enumerate(models)}
    a = np.concatenate([model_a, model_a])
    b = np.concatenate([model_b, model_b])
    w = np.concatenate([winner, winner])
    n, p = len(a), len(models)
    X = np.zeros([n, p])
    X[np.arange(n), [col[m] for m in a]] = +math.log(BASE)
    X[np.arange(n), [col[m] for m in b]] = -math.log(BASE)
    Y = np.zeros(n)
    Y[w == "model_a"] = 1.0
    tie_idx = (w == "tie") | (w == "tie (bothbad)")
    tie_idx[len(tie_idx) // 2:] = False
    Y[tie_idx] = 1.0
    sw = np.ones(n) if sample_weight is None else np.concatenate([sample_weight, sample_weight])
    beta = np.zeros(p)
    for _ in range(200):  # IRLS / Newton, minimum-norm steps
        s = 1 / (1 + np.exp(-X @ beta))
        g = X.T @ (sw * (Y - s))
        H = (X * (sw * s * (1 - s))[:, None]).T @ X
        step = np.linalg.pinv(H, rcond=1e-13) @ g
        beta += step
        if np.max(np.abs(step)) < 1e-13:
            break
    elo = SCALE * beta + INIT_RATING
    order = np.argsort(-elo, kind="stable")  # sort_values(ascending=False)
    return [(models[i], elo[i]) for i in order]


def compute_tiers(model_ratings, num_tiers):
    n, m = len(model_ratings), num_tiers
    r = [v for _, v in model_ratings]
    dp = np.zeros((n, n, m))
    dp_split = np.zeros((n, n, m))
    for i in range(n):
        for j in range(i + 1, n):
            dp[i][j][0] = np.var(r[i:j + 1])
    for tier in range(1, m):
        for i in range(n):
            for j in range(i + 1, n):
                dp[i][j][tier] = 1000000000
                for l in range(i, j):
                    if dp[i][j][tier] > dp[i][l][tier - 1] + dp[l + 1][j][0]:
                        dp_split[i][j][tier] = l
                        dp[i][j][tier] = dp[i][l][tier - 1] + dp[l + 1][j][0]
    cur_n, split_idx = n, []
    for tier in range(m - 1, 0, -1):
        split = int(dp_split[0][cur_n - 1][tier])
        split_idx.append(split)
        cur_n = split + 1
    split_idx = split_idx[::-1] + [n - 1]
    model2tier, cur_idx = {}, 0
    for i in range(len(split_idx)):
        for j in range(cur_idx, split_idx[i] + 1):
            model2tier[model_ratings[j][0]] = i
        cur_idx = split_idx[i] + 1
    return model2tier
