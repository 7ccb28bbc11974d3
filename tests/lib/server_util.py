"""server_util.py — what the live-server tests share.

- a router to serve: the real default router (models/routers/minilm-mf) when it
  exists, else one built here at test time on the fetched MiniLM encoder with a
  seeded random mf head (so the tests never wait on the trained router);
- Python stubs for the protos, generated at test time with grpc_tools into a
  temporary directory (the health and reflection protos are compiled under
  private module names so they never clash with grpcio's own `grpc` package);
- a Server: `routescore serve` on 127.0.0.1 with port 0 (admission by time
  off unless the test passes --max-queue-wait-ms), ports read from its
  JSON "listening" log line, ready when Health/Check says SERVING; stop() sends
  SIGTERM and returns the exit code; serving() runs one for a `with` block and
  checks that it exits 0;
- setup() for a test's start (Check, temporary directory, router, stubs),
  prompts_for_test() (64 prompts of every shape, for Score calls),
  code_of() for the status a call ends with, f32() for float32 rounding,
  same_score() / same_scores() for one prompt's scores across batch
  compositions (within SCORE_TOL, not bit for bit);
- load: callers() (threads, each a run of one-prompt Score calls; the
  replica tests), and the asyncio closed_loop() (N callers, one call in flight
  each) and open_loop() (Poisson arrivals) of server_admission.py and
  benchmarks/server_bench.py, which return every call's code and latency.

A test that cannot run here (no grpcio, no encoder weights, no binary) exits
77 so CTest reports it as skipped.
"""
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

SKIP = 77
SRC = os.environ.get("RS_SOURCE_DIR") or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def skip(why):
    print(f"SKIP: {why}")
    sys.exit(SKIP)


# xds-protos (Envoy's generated protos, for the ext_proc clients) lives in a
# directory of its own, not the shared site-packages: it ships an
# `opentelemetry` package that shadows the real one, which Ray needs.
# .ci/setup installs it there (tests/requirements-xds.txt).
XDS_DIR = os.environ.get("RS_XDS_PYTHONPATH") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "build-pydeps", "xds")
XDS_HINT = f"pip install --no-deps --target {XDS_DIR} -r tests/requirements-xds.txt"


def use_xds():
    """Puts xds-protos' directory first on sys.path (before importing envoy.*)."""
    if os.path.isdir(XDS_DIR) and XDS_DIR not in sys.path:
        sys.path.insert(0, XDS_DIR)


try:
    import grpc  # noqa: E402
    from grpc_tools import protoc  # noqa: E402
except ImportError as e:  # pragma: no cover
    skip(f"grpcio / grpcio-tools not installed ({e}); pip install -r tests/requirements-ci.txt")


def binary():
    b = os.environ.get("RS_BIN")
    if b and os.path.exists(b):
        return b
    for cand in ("build-srv/routescore", "build/routescore"):
        p = os.path.join(SRC, cand)
        if os.path.exists(p):
            return p
    skip("no routescore binary (set RS_BIN)")


def model_cache():
    return os.environ.get("RS_MODEL_CACHE") or os.path.join(SRC, "models", "cache")


def write_safetensors(path, tensors):
    """tensors: name -> (list of floats, shape). F32 little-endian."""
    header, blobs, off = {}, [], 0
    for name, (vals, shape) in tensors.items():
        raw = struct.pack(f"<{len(vals)}f", *vals)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def make_router(dirpath, seed=1234, threshold=0.5, name="test-mf", scale=3.0):
    """An mf router on the fetched MiniLM encoder with a seeded random head."""
    enc = os.path.join(model_cache(), "all-minilm-l6-v2")
    if not os.path.exists(os.path.join(enc, "model.safetensors")):
        skip(f"encoder weights missing in {enc} (run: bash models/fetch.sh)")
    import random
    rng = random.Random(seed)
    w = [rng.gauss(0.0, scale) for _ in range(384)]
    os.makedirs(dirpath, exist_ok=True)
    write_safetensors(os.path.join(dirpath, "head.safetensors"), {"mf.weight": (w, [384]), "mf.bias": ([0.0], [1])})
    with open(os.path.join(dirpath, "routescore.json"), "w") as f:
        json.dump({"name": name, "kind": "mf", "encoder": os.path.abspath(enc), "head": "head.safetensors",
                   "pooling": "mean", "normalize": True, "threshold": threshold,
                   "strong_model": "strong-llm", "weak_model": "weak-llm"}, f)
    return dirpath


def prompts_for_test():
    """64 prompts: models/example_prompts.jsonl, edge cases (non-ASCII, one truncated
    to max_tokens, one character), then numbered questions."""
    ps = []
    with open(os.path.join(SRC, "models", "example_prompts.jsonl")) as f:
        for line in f:
            rec = json.loads(line) if line.strip() else {}
            if "prompt" in rec:
                ps.append(rec["prompt"])
    ps += [
        "Ünïcödé prompt — with accents, 中文字符 and emoji 🎉",
        "word " * 600,  # truncated to max_tokens
        "x",
        "Translate 'good morning' into French, German, Japanese and Swahili.",
    ]
    i = 0
    while len(ps) < 64:
        ps.append(f"Question {i}: what is {i} * {i + 3}, and why does multiplication distribute over addition?")
        i += 1
    return ps[:64]


def router_dir(tmp):
    """The default router if it exists, else a test-time one."""
    real = os.path.join(SRC, "models", "routers", "minilm-mf")
    if os.path.exists(os.path.join(real, "routescore.json")):
        return real
    return make_router(os.path.join(tmp, "test-mf"))


class Stubs:
    """Generated modules: scorer_pb2(_grpc), health_pb2(_grpc), reflection_pb2(_grpc)."""

    def __init__(self, tmp):
        out = os.path.join(tmp, "stubs")
        os.makedirs(os.path.join(out, "rsproto"), exist_ok=True)
        proto = os.path.join(SRC, "proto")
        srcs = {"scorer.proto": "routescore/v1/scorer.proto", "health.proto": "grpc/health/v1/health.proto",
                "reflection.proto": "grpc/reflection/v1alpha/reflection.proto"}
        for dst, src in srcs.items():
            shutil.copy(os.path.join(proto, src), os.path.join(out, "rsproto", dst))
        open(os.path.join(out, "rsproto", "__init__.py"), "w").close()
        for dst in srcs:
            rc = protoc.main(["protoc", f"-I{out}", f"--python_out={out}", f"--grpc_python_out={out}", f"rsproto/{dst}"])
            if rc != 0:
                raise RuntimeError(f"grpc_tools.protoc failed on {dst}")
        sys.path.insert(0, out)
        import importlib
        self.scorer = importlib.import_module("rsproto.scorer_pb2")
        self.scorer_grpc = importlib.import_module("rsproto.scorer_pb2_grpc")
        self.health = importlib.import_module("rsproto.health_pb2")
        self.health_grpc = importlib.import_module("rsproto.health_pb2_grpc")
        self.refl = importlib.import_module("rsproto.reflection_pb2")
        self.refl_grpc = importlib.import_module("rsproto.reflection_pb2_grpc")


class Server:
    def __init__(self, args, env=None, wait_ready=True, timeout=120):
        args = list(args)
        if "--max-queue-wait-ms" not in args:
            # Admission by time is sized for production traffic; tests that send bursts and compare answers
            # must not be shed by it on a slow shared machine. server_admission.py tests it.
            args += ["--max-queue-wait-ms", "0"]
        self.cmd = [binary(), "serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"] + args
        self.logs = []
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=env or os.environ.copy())
        self.port = self.metrics_port = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._out = []
        threading.Thread(target=lambda: self._out.extend(self.proc.stdout), daemon=True).start()
        t0 = time.time()
        while self.port is None:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {self.log_text()}")
            if time.time() - t0 > timeout:
                raise RuntimeError("server did not log 'listening'")
            time.sleep(0.02)
        self.addr = f"127.0.0.1:{self.port}"
        if wait_ready:
            self.wait_event("serving", timeout)

    def _read(self):
        for line in self.proc.stderr:
            try:
                rec = json.loads(line)
            except ValueError:
                rec = {"raw": line.rstrip("\n")}
            with self.lock:
                self.logs.append(rec)
            if rec.get("event") == "listening":
                self.metrics_port = rec.get("metrics_port")
                self.port = rec.get("port")

    def log_text(self):
        with self.lock:
            return "\n".join(json.dumps(r) for r in self.logs)

    def events(self, name):
        with self.lock:
            return [r for r in self.logs if r.get("event") == name]

    def wait_event(self, name, timeout=60):
        t0 = time.time()
        while not self.events(name):
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode} before '{name}': {self.log_text()}")
            if time.time() - t0 > timeout:
                raise RuntimeError(f"no '{name}' event after {timeout}s: {self.log_text()}")
            time.sleep(0.02)
        return self.events(name)[-1]

    def channel(self, **kw):
        return grpc.insecure_channel(self.addr, **kw)

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
            return r.read().decode()

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout, on_timeout):
        """The exit code if the process ends by itself within `timeout` s; else kill it, return `on_timeout`."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return on_timeout

    def stop(self, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
            raise RuntimeError("server did not exit after SIGTERM")
        self._reader.join(timeout=5)
        return rc


@contextlib.contextmanager
def serving(check, args, what="exit 0", **kw):
    """A Server for the `with` block; stopped with SIGTERM after it, then checks exit 0 (`what`)."""
    srv = Server(args, **kw)
    try:
        yield srv
    finally:
        rc = srv.stop()
    check(rc == 0, f"{what} ({rc})")


def callers(srv, st, prompts, n_callers, n_calls, timeout=60, make_req=None):
    """n_callers threads, each on its own channel making n_calls unary Score calls; caller k's j-th call scores
    the one prompt prompts[(k * n_calls + j) % len(prompts)], or, given make_req(k, j) -> (key, ScoreRequest),
    that request. Returns ({(k, j): (prompt index or key, win_prob of the first score)}, [codes of errors])."""
    got, errs = {}, []

    def request(k, j):
        if make_req:
            return make_req(k, j)
        i = (k * n_calls + j) % len(prompts)
        return i, st.scorer.ScoreRequest(prompts=[prompts[i]])

    def caller(k):
        try:
            with srv.channel() as ch:
                stub = st.scorer_grpc.ScorerStub(ch)
                for j in range(n_calls):
                    key, req = request(k, j)
                    got[(k, j)] = (key, stub.Score(req, timeout=timeout).scores[0].win_prob)
        except grpc.RpcError as e:
            errs.append(e.code())

    ts = [threading.Thread(target=caller, args=(k,)) for k in range(n_callers)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return got, errs


def replica_batches(srv):
    """The forwards each replica of the (first) router ran, from the "drained" log line ([] if none)."""
    drained = srv.events("drained")
    per = drained[-1].get("replica_batches", {}) if drained else {}
    return per, next(iter(per.values()), [])


async def closed_loop(addr, st, request, conc, duration, timeout=60, backoff=None):
    """conc asyncio callers, each with one Score call in flight, for `duration` s; call number i (over all callers:
    caller k makes calls k, k + conc, ...) sends request(i). After an error whose code is in `backoff`
    ({code: seconds}) the caller sleeps that long (a shed call: the loop is already at capacity).
    Returns ([(code, seconds)] of every call, elapsed seconds)."""
    out = []
    async with grpc.aio.insecure_channel(addr) as ch:
        stub = st.scorer_grpc.ScorerStub(ch)
        stop = time.perf_counter() + duration

        async def worker(k):
            i = k
            while time.perf_counter() < stop:
                t = time.perf_counter()
                try:
                    await stub.Score(request(i), timeout=timeout)
                    out.append((grpc.StatusCode.OK, time.perf_counter() - t))
                except grpc.aio.AioRpcError as e:
                    out.append((e.code(), time.perf_counter() - t))
                    if backoff and e.code() in backoff:
                        await asyncio.sleep(backoff[e.code()])
                i += conc

        t0 = time.perf_counter()
        await asyncio.gather(*[worker(k) for k in range(conc)])
        return out, time.perf_counter() - t0


async def open_loop(addr, st, request, rate, duration, seed=1, timeout=60):
    """Poisson arrivals at `rate` calls/s for `duration` s, call number i sending request(i), each on its own
    task whatever the others do. Returns ([(code, seconds)] of every call, elapsed seconds)."""
    out = []
    rng = random.Random(seed)
    async with grpc.aio.insecure_channel(addr) as ch:
        stub = st.scorer_grpc.ScorerStub(ch)

        async def one(i):
            t = time.perf_counter()
            try:
                await stub.Score(request(i), timeout=timeout)
                out.append((grpc.StatusCode.OK, time.perf_counter() - t))
            except grpc.aio.AioRpcError as e:
                out.append((e.code(), time.perf_counter() - t))

        tasks, i = [], 0
        t0 = time.perf_counter()
        nxt = t0
        while nxt < t0 + duration:
            d = nxt - time.perf_counter()
            if d > 0:
                await asyncio.sleep(d)
            tasks.append(asyncio.create_task(one(i)))
            i += 1
            nxt += rng.expovariate(rate)
        await asyncio.gather(*tasks)
        return out, time.perf_counter() - t0


def code_of(fn):
    """The status code the call fn() ends with: OK, or its RpcError's code."""
    try:
        fn()
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code()


def f32(x):
    """x rounded to float32."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


# One prompt's win_prob in two different batch compositions (other
# neighbours, other batch sizes) agrees to within SCORE_TOL, not bit for bit:
# on the fp32 CPU backend oneDNN's sgemm computes some rows of a GEMM with
# other micro-kernels depending on the batch's row count (docs/SERVING.md,
# "Batch composition"; measured up to 6e-8 on AVX2). The same composition is
# bit-identical, and tests that repeat one still compare with ==.
SCORE_TOL = 1e-6


def same_score(a, b):
    return abs(f32(a) - f32(b)) <= SCORE_TOL


def same_scores(a, b):
    a, b = list(a), list(b)
    return len(a) == len(b) and all(same_score(x, y) for x, y in zip(a, b))


def metric_value(text, name, labels=None):
    """Sum of the samples of `name` whose labels include `labels`."""
    total, found = 0.0, False
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        key, _, val = line.rpartition(" ")
        mname, _, lab = key.partition("{")
        if mname != name:
            continue
        if labels and not all(f'{k}="{v}"' in lab for k, v in labels.items()):
            continue
        total += float(val)
        found = True
    return total if found else None


class Check:
    """Collects failures so one run reports all of them; exit 1 if any."""

    def __init__(self):
        self.failures = 0

    def __call__(self, cond, what):
        print(("ok   " if cond else "FAIL ") + what, flush=True)
        if not cond:
            self.failures += 1
        return cond

    def done(self):
        print(f"{self.failures} failure(s)")
        sys.exit(1 if self.failures else 0)


def tmpdir():
    return tempfile.mkdtemp(prefix="rs-srv-test-")


def setup():
    """A test's start: (Check, temporary directory, router to serve, Stubs)."""
    tmp = tmpdir()
    router = router_dir(tmp)
    return Check(), tmp, router, Stubs(tmp)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p
