"""routescore — the routescore engine from Python.

    import routescore
    r = routescore.Router("models/routers/minilm-mf")
    s = r.score(["Prove that sqrt(2) is irrational.", "hi there"])
    s.win_prob, s.route, s.tokens, s.truncated      # numpy arrays, one row per prompt

The engine (libroutescore_engine.so, engine.h's C API) is loaded with ctypes;
every call into it releases the GIL.

Threads: a Router is safe to share between threads. Its calls are serialised
by a lock, because one engine scores one batch at a time and already uses all
of its `threads` cores inside that call. For parallel scoring open one Router
per thread (or per process, per Ray actor), each with its own `threads`.
"""
import ctypes
import math
import threading
from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

import numpy as np

from . import _engine

__all__ = ["Router", "Scores", "RouteScoreError", "PromptError", "last_user_message"]
__version__ = "0.1.0"

_lib = None
_lib_lock = threading.Lock()


def _library():
    global _lib
    with _lib_lock:
        if _lib is None:
            _lib = _engine.load()
        return _lib


class RouteScoreError(Exception):
    """An engine call failed. `status` is the rs_status name (e.g.
    "RS_ERR_NOT_FOUND"), `code` its number, `message` the engine's text."""

    def __init__(self, status: str, message: str, code: int = -1):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.code = code
        self.message = message


class PromptError(RouteScoreError):
    """A prompt could not be scored (errors="raise"); `index` is its row."""

    def __init__(self, status: str, message: str, index: int, code: int = -1):
        super().__init__(status, f"prompt {index}: {message}", code)
        self.index = index


def _status_name(code: int) -> str:
    names = _engine.STATUS_NAMES
    return names[code] if 0 <= code < len(names) else f"RS_STATUS_{code}"


@dataclass
class Scores:
    """One row per prompt. Rows that could not be scored (errors="mark") have
    win_prob NaN, route "", tokens 0 and their reason in `error` (None for a
    scored row)."""

    win_prob: np.ndarray      # float32
    route: np.ndarray         # "strong" | "weak" (| "" for an error row)
    tokens: np.ndarray        # int32, ids fed to the model, specials included
    truncated: np.ndarray     # bool
    label_probs: np.ndarray   # float32 (n, n_labels); n_labels 0 for mf heads
    error: np.ndarray         # object: None or the message

    def __len__(self):
        return len(self.win_prob)


def last_user_message(messages) -> str:
    """The prompt of an OpenAI-style conversation, as `routescore label` takes
    it: the content of the LAST message whose role is "user"; a content list
    joins the "text" of its "text" parts with "\\n". ValueError when there is
    none."""
    if not isinstance(messages, (list, tuple)):
        raise ValueError("messages is not a list")
    for m in reversed(messages):
        if not isinstance(m, dict) or m.get("role") != "user":
            continue
        c = m.get("content")
        if isinstance(c, str):
            return c
        if isinstance(c, (list, tuple)):
            parts = [p["text"] for p in c
                     if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)]
            if parts:
                return "\n".join(parts)
            raise ValueError("the last user message has no text part")
        raise ValueError("the last user message has no string or list content")
    raise ValueError("no user message")


class Router:
    """A router directory opened on an engine.

    backend: "cpu", "cuda" or "auto" (cuda when a GPU is present); device:
    GPU index; threads: engine threads (None: all online cores); max_tokens:
    per-prompt truncation (None: the router's own); batch_size: prompts per
    engine call — 64, as `routescore label --batch`, gives the same bytes as
    the CLI (a prompt's last bits may depend on its batch-mates); precision:
    the CPU GEMMs' ("fp32", "bf16", "bf16-emulated"; None: the router's
    manifest, else fp32), as `--precision`."""

    def __init__(self, path, backend: str = "auto", device: int = 0, threads: Optional[int] = None,
                 max_tokens: Optional[int] = None, batch_size: int = 64, precision: Optional[str] = None):
        if backend not in ("cpu", "cuda", "auto"):
            raise ValueError(f"backend must be 'cpu', 'cuda' or 'auto', not {backend!r}")
        if threads is not None and (int(threads) != threads or threads < 0):
            raise ValueError(f"threads must be an integer >= 0, not {threads!r}")
        if max_tokens is not None and (int(max_tokens) != max_tokens or max_tokens < 3):
            raise ValueError(f"max_tokens must be an integer >= 3, not {max_tokens!r}")
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, not {batch_size!r}")
        if precision is not None and precision not in ("fp32", "bf16", "bf16-emulated"):
            raise ValueError(f"precision must be 'fp32', 'bf16' or 'bf16-emulated', not {precision!r}")
        if int(device) != device or device < 0:
            raise ValueError(f"device must be an integer >= 0, not {device!r}")
        self._lib = _library()
        self._lock = threading.Lock()
        self._eng = ctypes.c_void_p()
        self.batch_size = int(batch_size)
        self.path = str(path)
        opts = _engine.EngineOpts()
        self._lib.rs_engine_opts_default(ctypes.byref(opts))
        opts.n_threads = int(threads or 0)
        opts.max_tokens = int(max_tokens or 0)
        self._backend_arg = backend.encode()
        opts.backend = self._backend_arg
        opts.device = int(device)
        self._precision_arg = precision.encode() if precision else None
        opts.precision = self._precision_arg
        err = _engine.Err()
        st = self._lib.rs_engine_open(self.path.encode(), ctypes.byref(opts), ctypes.byref(self._eng),
                                      ctypes.byref(err))
        if st != 0:
            self._eng = ctypes.c_void_p()
            raise RouteScoreError(_status_name(st), err.msg.decode(errors="replace"), st)
        info = _engine.RouterInfo()
        self._lib.rs_engine_info(self._eng, ctypes.byref(info))

        def s(b):
            return b.decode(errors="replace") if b is not None else None

        self._info = {
            "name": s(info.name), "kind": s(info.kind), "architecture": s(info.architecture),
            "strong_model": s(info.strong_model), "weak_model": s(info.weak_model),
            "threshold": float(info.threshold), "max_tokens": info.max_tokens, "embed_dim": info.embed_dim,
            "n_labels": info.n_labels, "vocab_size": info.vocab_size,
            "client_embed_dim": info.client_embed_dim,
            "backend": s(self._lib.rs_engine_backend(self._eng)), "path": self.path,
            "library": self._lib.path,
        }

    # -- lifetime
    def close(self):
        with self._lock:
            if self._eng:
                self._lib.rs_engine_close(self._eng)
                self._eng = ctypes.c_void_p()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __reduce__(self):
        raise TypeError("a Router holds an engine and cannot be pickled: open one per process "
                        "(routescore.ray_data.RouteScorer does this per Ray actor)")

    # -- queries
    def info(self) -> dict:
        """The router's identity and settings (name, kind, threshold, max_tokens,
        ...) and the backend it runs on ("cpu" or "cuda")."""
        return dict(self._info)

    @property
    def lost(self) -> bool:
        """True once the backend hit an unrecoverable device fault: open a new Router."""
        with self._lock:
            return bool(self._eng) and bool(self._lib.rs_engine_lost(self._eng))

    # -- scoring
    def score(self, prompts: Sequence[Union[str, bytes]], threshold: Optional[float] = None,
              errors: str = "raise") -> Scores:
        """Scores the prompts (str, or UTF-8 bytes). threshold: route strong when
        win_prob >= threshold (None: the router's). errors="raise" raises
        PromptError for the first prompt that cannot be scored (empty, invalid
        UTF-8, not a string); errors="mark" gives that row an `error` instead."""
        if errors not in ("raise", "mark"):
            raise ValueError(f"errors must be 'raise' or 'mark', not {errors!r}")
        if isinstance(prompts, (str, bytes)):
            raise TypeError("score takes a list of prompts, not one string")
        thr = math.nan if threshold is None else float(threshold)
        if threshold is not None and not (0.0 <= thr <= 1.0):
            raise ValueError(f"threshold must be in [0, 1], not {threshold!r}")
        prompts = list(prompts)
        n = len(prompts)
        pre_err: List[Optional[str]] = [None] * n
        enc: List[bytes] = [b""] * n
        for i, p in enumerate(prompts):
            if isinstance(p, str):
                enc[i] = p.encode("utf-8", "surrogatepass")  # lone surrogates: the engine refuses them
            elif isinstance(p, (bytes, bytearray, memoryview)):
                enc[i] = bytes(p)
            else:
                pre_err[i] = f"prompt is a {type(p).__name__}, not a string"
                if errors == "raise":
                    raise PromptError("RS_ERR_INVALID_ARG", pre_err[i], i, 1)
        return self._score_encoded(enc, pre_err, thr, errors)

    def score_messages(self, conversations, threshold: Optional[float] = None, errors: str = "raise") -> Scores:
        """Scores OpenAI-style conversations (lists of {"role", "content"}) by
        their last user message, as `routescore label` does for a "messages"
        record. A conversation without one is a prompt error."""
        if errors not in ("raise", "mark"):
            raise ValueError(f"errors must be 'raise' or 'mark', not {errors!r}")
        convs = list(conversations)
        enc: List[bytes] = [b""] * len(convs)
        pre_err: List[Optional[str]] = [None] * len(convs)
        for i, c in enumerate(convs):
            try:
                enc[i] = last_user_message(c).encode("utf-8", "surrogatepass")
            except ValueError as e:
                pre_err[i] = str(e)
                if errors == "raise":
                    raise PromptError("RS_ERR_NOT_FOUND", pre_err[i], i, 5) from None
        thr = math.nan if threshold is None else float(threshold)
        if threshold is not None and not (0.0 <= thr <= 1.0):
            raise ValueError(f"threshold must be in [0, 1], not {threshold!r}")
        return self._score_encoded(enc, pre_err, thr, errors)

    def _score_encoded(self, enc, pre_err, thr, errors) -> Scores:
        n = len(enc)
        nl = self._info["n_labels"]
        win = np.full(n, np.nan, dtype=np.float32)
        route = np.full(n, "", dtype="<U6")
        tokens = np.zeros(n, dtype=np.int32)
        trunc = np.zeros(n, dtype=bool)
        probs = np.full((n, nl), np.nan, dtype=np.float32)
        error = np.full(n, None, dtype=object)
        B = self.batch_size
        # Batches are fixed by position, as the CLI's are: batch j is rows
        # [j*B, (j+1)*B), and its engine call gets those of them that are
        # strings (rows refused here keep their slot but are not sent).
        for i in range(n):
            if pre_err[i] is not None:
                error[i] = pre_err[i]
        for start in range(0, n, B):
            rows = [i for i in range(start, min(n, start + B)) if pre_err[i] is None]
            k = len(rows)
            if k == 0:
                continue
            ptrs = (ctypes.c_char_p * k)(*[enc[i] for i in rows])
            lens = (ctypes.c_size_t * k)(*[len(enc[i]) for i in rows])
            out = (_engine.Score * k)()
            err = _engine.Err()
            with self._lock:
                if not self._eng:
                    raise RouteScoreError("RS_ERR_INVALID_ARG", "the router is closed", 1)
                st = self._lib.rs_engine_score(self._eng, ptrs, lens, k, ctypes.c_float(thr), out,
                                               ctypes.byref(err))
            if st != 0:
                raise RouteScoreError(_status_name(st), err.msg.decode(errors="replace"), st)
            for j, i in enumerate(rows):
                s = out[j]
                if s.status != 0:
                    msg = s.error.decode(errors="replace") or self._lib.rs_status_str(s.status).decode()
                    if errors == "raise":
                        raise PromptError(_status_name(s.status), msg, i, s.status)
                    error[i] = msg
                    continue
                win[i] = s.win_prob
                route[i] = "strong" if s.route_strong else "weak"
                tokens[i] = s.tokens
                trunc[i] = bool(s.truncated)
                for L in range(min(nl, s.n_labels)):
                    probs[i, L] = s.label_probs[L]
        return Scores(win, route, tokens, trunc, probs, error)
