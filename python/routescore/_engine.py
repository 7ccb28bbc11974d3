"""ctypes binding of engine.h (libroutescore_engine.so).

The structures below mirror engine.h field for field; load() checks their
sizes against the library's own rs_abi_sizeof_* so a header change that this
file has not followed fails at import instead of reading wrong offsets.

ctypes.CDLL releases the GIL for the duration of every foreign call, so a
score call on one thread lets other Python threads run.
"""
import ctypes
import glob
import os

RS_MAX_LABELS = 8
ABI_VERSION = 1

# rs_status, in engine order (status.h).
STATUS_NAMES = (
    "RS_OK",
    "RS_ERR_INVALID_ARG",
    "RS_ERR_IO",
    "RS_ERR_FORMAT",
    "RS_ERR_UNSUPPORTED",
    "RS_ERR_NOT_FOUND",
    "RS_ERR_NOMEM",
    "RS_ERR_UTF8",
    "RS_ERR_TOO_LARGE",
    "RS_ERR_BACKEND",
    "RS_ERR_INTERNAL",
)


class EngineOpts(ctypes.Structure):
    _fields_ = [
        ("n_threads", ctypes.c_int),
        ("max_batch_tokens", ctypes.c_int),
        ("max_tokens", ctypes.c_int),
        ("backend", ctypes.c_char_p),
        ("device", ctypes.c_int),
        ("precision", ctypes.c_char_p),
    ]


class Score(ctypes.Structure):
    _fields_ = [
        ("status", ctypes.c_int),
        ("win_prob", ctypes.c_float),
        ("route_strong", ctypes.c_int),
        ("n_labels", ctypes.c_int),
        ("label_probs", ctypes.c_float * RS_MAX_LABELS),
        ("tokens", ctypes.c_int),
        ("truncated", ctypes.c_int),
        ("error", ctypes.c_char * 160),
    ]


class RouterInfo(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("kind", ctypes.c_char_p),
        ("architecture", ctypes.c_char_p),
        ("strong_model", ctypes.c_char_p),
        ("weak_model", ctypes.c_char_p),
        ("threshold", ctypes.c_float),
        ("max_tokens", ctypes.c_int),
        ("embed_dim", ctypes.c_int),
        ("n_labels", ctypes.c_int),
        ("vocab_size", ctypes.c_int),
        ("client_embed_dim", ctypes.c_int),
    ]


class Err(ctypes.Structure):
    _fields_ = [("msg", ctypes.c_char * 512)]


def _candidates():
    env = os.environ.get("ROUTESCORE_LIBRARY")
    if env:
        return [env]
    here = os.path.dirname(os.path.abspath(__file__))
    return sorted(glob.glob(os.path.join(here, "libroutescore_engine.so*")), key=len)


def load():
    paths = _candidates()
    if not paths:
        raise ImportError(
            "routescore: libroutescore_engine.so not found beside the package; install it with "
            "`pip install .` from a routescore checkout, or set ROUTESCORE_LIBRARY to the library "
            "(build/libroutescore_engine.so after a CMake build)")
    lib = ctypes.CDLL(paths[0])
    lib.rs_abi_version.restype = ctypes.c_int
    for f in ("score", "router_info", "engine_opts", "err"):
        getattr(lib, "rs_abi_sizeof_" + f).restype = ctypes.c_size_t
    lib.rs_abi_max_labels.restype = ctypes.c_size_t
    got = lib.rs_abi_version()
    if got != ABI_VERSION:
        raise ImportError(f"routescore: {paths[0]} has engine ABI {got}, this package speaks {ABI_VERSION}")
    for name, cls in (("score", Score), ("router_info", RouterInfo), ("engine_opts", EngineOpts), ("err", Err)):
        n = getattr(lib, "rs_abi_sizeof_" + name)()
        if n != ctypes.sizeof(cls):
            raise ImportError(f"routescore: {paths[0]}: sizeof(rs_{name}) is {n}, the binding has "
                              f"{ctypes.sizeof(cls)}: the package and the library are out of step")
    if lib.rs_abi_max_labels() != RS_MAX_LABELS:
        raise ImportError(f"routescore: {paths[0]}: RS_MAX_LABELS differs from the binding's")

    P = ctypes.POINTER
    vp = ctypes.c_void_p
    lib.rs_engine_opts_default.argtypes = [P(EngineOpts)]
    lib.rs_engine_opts_default.restype = None
    lib.rs_engine_open.argtypes = [ctypes.c_char_p, P(EngineOpts), P(vp), P(Err)]
    lib.rs_engine_open.restype = ctypes.c_int
    lib.rs_engine_close.argtypes = [vp]
    lib.rs_engine_close.restype = None
    lib.rs_engine_info.argtypes = [vp, P(RouterInfo)]
    lib.rs_engine_info.restype = None
    lib.rs_engine_score.argtypes = [vp, P(ctypes.c_char_p), P(ctypes.c_size_t), ctypes.c_size_t,
                                    ctypes.c_float, P(Score), P(Err)]
    lib.rs_engine_score.restype = ctypes.c_int
    lib.rs_engine_backend.argtypes = [vp]
    lib.rs_engine_backend.restype = ctypes.c_char_p
    lib.rs_engine_lost.argtypes = [vp]
    lib.rs_engine_lost.restype = ctypes.c_int
    lib.rs_status_str.argtypes = [ctypes.c_int]
    lib.rs_status_str.restype = ctypes.c_char_p
    lib.path = paths[0]
    return lib
