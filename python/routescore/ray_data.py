"""routescore on Ray Data (and Spark): label a table column by column batch.

    import ray, routescore.ray_data as rrd
    ds = ray.data.read_parquet("s3://lake/gateway/2026-12/")
    ds = ds.map_batches(rrd.RouteScorer, fn_constructor_kwargs={"model": "/models/minilm-mf"},
                        batch_format="pyarrow", batch_size=1024,
                        compute=ray.data.ActorPoolStrategy(size=8), num_gpus=1)
    ds.write_parquet("s3://lake/labels/2026-12/")

or in one call: rrd.label_parquet(src, dst, model=..., column="prompt", actors=8, num_gpus=1).

One engine per actor: the class opens its Router in __init__, once per actor
process, and reuses it for every batch. With num_gpus=1 Ray gives each actor
its own GPU through CUDA_VISIBLE_DEVICES, so device=0 is that GPU. Output
batches are the input batches with the label columns appended, every input
column kept. A row that cannot be scored (empty or null prompt, no user
message) gets null scores and its reason in the error column; the batch goes
on.
"""
import os
from typing import Optional

import numpy as np

from . import Router

LABEL_COLUMNS = ("win_prob", "route", "tokens", "truncated", "error")


class RouteScorer:
    """Callable class for Dataset.map_batches (batch_format "pyarrow",
    "pandas" or "numpy") and for Spark's mapInPandas (see map_pandas).

    column: the prompt column: strings, or OpenAI-style conversations (lists
    of {"role", "content"}) scored by their last user message. prefix: put
    before the label column names (win_prob, route, tokens, truncated,
    error); a name the input already has is refused."""

    def __init__(self, model: str, column: str = "prompt", backend: str = "auto", device: int = 0,
                 threads: Optional[int] = None, max_tokens: Optional[int] = None,
                 threshold: Optional[float] = None, prefix: str = "", batch_size: int = 64):
        self.column = column
        self.threshold = threshold
        self.names = {c: prefix + c for c in LABEL_COLUMNS}
        self.router = Router(model, backend=backend, device=device, threads=threads, max_tokens=max_tokens,
                             batch_size=batch_size)

    def _check_columns(self, names):
        if self.column not in names:
            raise KeyError(f"routescore: no column {self.column!r} in the batch (columns: {list(names)})")
        clash = [n for n in self.names.values() if n in names]
        if clash:
            raise ValueError(f"routescore: the input already has column(s) {clash}: pass prefix= to name "
                             "the label columns apart")

    def _score_values(self, values):
        """values: a Python list of str/None or of conversations/None."""
        is_conv = any(isinstance(v, (list, tuple, np.ndarray)) for v in values)
        if is_conv:
            values = [list(v) if isinstance(v, np.ndarray) else v for v in values]
            s = self.router.score_messages([v if v is not None else [] for v in values],
                                           threshold=self.threshold, errors="mark")
        else:
            s = self.router.score([v if v is not None else 0 for v in values], threshold=self.threshold,
                                  errors="mark")
        null = np.array([v is None for v in values], dtype=bool)
        err = s.error.copy()
        err[null] = f"{self.column} is null"
        return s, err

    def _arrow(self, table):
        import pyarrow as pa
        self._check_columns(table.column_names)
        s, err = self._score_values(table.column(self.column).to_pylist())
        bad = np.array([e is not None for e in err], dtype=bool)
        cols = {
            "win_prob": pa.array(s.win_prob, type=pa.float32(), mask=bad),
            "route": pa.array(s.route.tolist(), type=pa.string(), mask=bad),
            "tokens": pa.array(s.tokens, type=pa.int32(), mask=bad),
            "truncated": pa.array(s.truncated, type=pa.bool_(), mask=bad),
            "error": pa.array(err.tolist(), type=pa.string()),
        }
        for c in LABEL_COLUMNS:
            table = table.append_column(self.names[c], cols[c])
        return table

    def _pandas(self, df):
        import pandas as pd
        self._check_columns(list(df.columns))
        s, err = self._score_values(df[self.column].tolist())
        bad = pd.Series([e is not None for e in err], index=df.index)
        out = df.copy()
        out[self.names["win_prob"]] = pd.Series(s.win_prob, index=df.index, dtype="Float32").mask(bad)
        out[self.names["route"]] = pd.Series(s.route, index=df.index, dtype="string").mask(bad)
        out[self.names["tokens"]] = pd.Series(s.tokens, index=df.index, dtype="Int32").mask(bad)
        out[self.names["truncated"]] = pd.Series(s.truncated, index=df.index, dtype="boolean").mask(bad)
        out[self.names["error"]] = pd.Series(err.tolist(), index=df.index, dtype="string")
        return out

    def _numpy(self, batch):
        self._check_columns(list(batch.keys()))
        s, err = self._score_values(list(batch[self.column]))
        out = dict(batch)
        out[self.names["win_prob"]] = s.win_prob
        out[self.names["route"]] = s.route.astype(object)
        out[self.names["tokens"]] = s.tokens
        out[self.names["truncated"]] = s.truncated
        out[self.names["error"]] = err
        return out

    def __call__(self, batch):
        try:
            import pyarrow as pa
            if isinstance(batch, pa.Table):
                return self._arrow(batch)
        except ImportError:
            pass
        if isinstance(batch, dict):
            return self._numpy(batch)
        try:
            import pandas as pd
            if isinstance(batch, pd.DataFrame):
                return self._pandas(batch)
        except ImportError:
            pass
        raise TypeError(f"routescore: unsupported batch type {type(batch).__name__} "
                        "(use batch_format 'pyarrow', 'pandas' or 'numpy')")

    def map_pandas(self, frames):
        """For Spark: df.mapInPandas(scorer.map_pandas, schema) — an iterator of
        pandas DataFrames in, the same frames with the label columns out."""
        for df in frames:
            yield self._pandas(df)


def label_parquet(src, dst, model: str, column: str = "prompt", actors: int = 2,
                  num_gpus: Optional[float] = None, num_cpus: Optional[float] = None,
                  batch_size: int = 1024, backend: str = "auto", threads: Optional[int] = None,
                  max_tokens: Optional[int] = None, threshold: Optional[float] = None, prefix: str = "",
                  preserve_order: bool = True, scorer=None, **read_kwargs):
    """Reads Parquet at src, labels `column` on `actors` Ray actors (one engine
    each; num_gpus=1 puts each on its own GPU), and writes Parquet to the
    directory dst with every input column kept and the label columns added.
    Starts a local Ray instance when none is running. scorer: a subclass of
    RouteScorer to use instead (same constructor). An actor that dies is
    restarted and its batch retried (Ray Data's default for actor pools);
    preserve_order keeps rows in input order while no actor dies, but with
    Ray 2.60 a retried block comes out after the blocks that finished
    meanwhile (whole and in order itself): keep an id column to join on.
    read_kwargs go to ray.data.read_parquet: a single-row-group file is one
    block, which only one actor can take; pass override_num_blocks (or write
    smaller row groups) to spread it. Returns dst."""
    import ray

    if not ray.is_initialized():
        # The actors hold their CPUs for the whole run; reading and writing
        # need at least one more, or the pipeline waits forever.
        cpus = os.cpu_count() or 1
        ray.init(ignore_reinit_error=True, log_to_driver=False,
                 num_cpus=max(cpus, actors * int(num_cpus or 1) + 1) if not num_gpus else None)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = bool(preserve_order)
    if threads is None and num_cpus:
        threads = max(1, int(num_cpus))
    if threads is None and not num_gpus:
        threads = 1  # an actor's default CPU share is one core
    ds = ray.data.read_parquet(src, **read_kwargs)
    names = ds.schema().names
    if column not in names:
        raise KeyError(f"routescore: {src}: no column {column!r} (columns: {names})")
    remote = {}
    if num_gpus:
        remote["num_gpus"] = num_gpus
    if num_cpus:
        remote["num_cpus"] = num_cpus
    ds = ds.map_batches(
        scorer or RouteScorer,
        fn_constructor_kwargs=dict(model=os.path.abspath(model) if os.path.exists(model) else model,
                                   column=column, backend=backend, threads=threads, max_tokens=max_tokens,
                                   threshold=threshold, prefix=prefix),
        batch_format="pyarrow", batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=actors),
        **remote)
    ds.write_parquet(dst)
    return dst
