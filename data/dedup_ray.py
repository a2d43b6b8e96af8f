"""`prefkit data dedup --engine ray`: the two steps that grow with the data, on Ray Data.

1. Signatures: the key texts go into Ray Data blocks of `CHUNK_ROWS` rows; `map_batches` runs the
   local engine's own chunk function (`prefkit.data.dedup._sign_chunk`: shingles, MinHash signature,
   shingle-set digest, empty flag) on each block, wherever the cluster has a CPU.
2. Candidates: `map_batches` cuts each signature into its LSH bands and emits one
   (band, bucket key, row) record per band; a Ray group-by on the band and a hash part of the
   bucket key gathers whole buckets in (band x CPUs) groups, and `map_groups` lists their pairs
   with `prefkit.data.minhash.bucket_pairs`, the rule of the local engine (every member with the bucket's
   first row and with its next WINDOW-1 members, in row order). A group per bucket would call
   Python once per bucket, and almost every bucket holds one row.

Verification, clustering and the report stay on the driver (`prefkit.data.dedup._run`), so the kept rows
and the report are those of `--engine local` on the same input, settings and seed.

Without an address the engine starts a local Ray instance (and stops it when done); with one it
joins that cluster. Either way the job ships this `data` package to the workers (`py_modules`);
the nodes need its dependencies (`pip install 'prefkit[ray]'` installs them all).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from prefkit.core.errors import ConfigError
from prefkit.data.dedup import CHUNK_ROWS, DedupEngine, _sign_chunk
from prefkit.data.minhash import bucket_pairs, row_keys, unique_pairs


def _sign_batch(
    batch: dict[str, np.ndarray], n_fields: int, ngrams: tuple[int, ...], num_perm: int, seed: int
) -> dict[str, np.ndarray]:
    keys = list(zip(*(batch[f"k{f}"].tolist() for f in range(n_fields)), strict=True))
    sigs, digests, empty = _sign_chunk((keys, ngrams, num_perm, seed))
    return {"row": batch["row"], "sig": sigs, "digest": digests, "empty": empty}


def _band_keys(batch: dict[str, np.ndarray], bands: int, rows_per_band: int, parts: int) -> dict[str, np.ndarray]:
    data = batch["data"]
    pos, sigs = data[:, 0].astype(np.int64), data[:, 1:]
    keys = [row_keys(sigs[:, b * rows_per_band : (b + 1) * rows_per_band]) for b in range(bands)]
    key = np.concatenate(keys) if keys else np.empty(0, dtype=np.uint64)
    return {
        "band": np.repeat(np.arange(bands, dtype=np.int32), len(pos)),
        "part": (key % np.uint64(parts)).astype(np.int32),  # a hash part of the bucket key
        "key": key,
        "pos": np.tile(pos, bands),
    }


def _group_pairs(group: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The candidate pairs of one group (one band, one hash part of its bucket keys): whole
    buckets, bucketed as `candidate_pairs` does."""
    pairs = bucket_pairs(group["key"].astype(np.uint64), group["pos"].astype(np.int64))
    return {"i": pairs[:, 0], "j": pairs[:, 1]}


def _collect(ds: Any, columns: Sequence[str]) -> dict[str, np.ndarray]:
    parts: dict[str, list[np.ndarray]] = {c: [] for c in columns}
    for batch in ds.iter_batches(batch_format="numpy", batch_size=None):
        for c in columns:
            parts[c].append(np.asarray(batch[c]))
    return {c: np.concatenate(p) if p else np.empty(0) for c, p in parts.items()}


class RayEngine(DedupEngine):
    """Signatures and LSH candidates on Ray Data (a local instance, or the cluster at `address`)."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        try:
            import ray
            import ray.data
        except ImportError:
            raise ConfigError("engine ray needs Ray Data: pip install 'prefkit[ray]'") from None
        self.ray = ray
        self._started = False
        if not ray.is_initialized():
            import prefkit

            # The workers run this very `prefkit` package (shipped with the job), not whatever an
            # installed prefkit on a node or first on a worker's path would give.
            kw: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "logging_level": "ERROR",
                "runtime_env": {"py_modules": [str(Path(prefkit.__file__).parent)]},
            }
            try:
                if address:
                    ray.init(address=address, **kw)
                else:
                    ray.init(num_cpus=num_cpus, **kw)
            except (ConnectionError, ValueError, RuntimeError) as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise ConfigError(
                    f"engine ray: cannot {'join ' + repr(address) if address else 'start Ray'} ({first})"
                ) from None
            self._started = True
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # no per-dataset INFO lines on stderr
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False

    def chunk_results(
        self, keys: Sequence[Sequence[str]], ngrams: tuple[int, ...], num_perm: int, seed: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        import pyarrow as pa

        n, n_fields = len(keys), len(ngrams)
        if n == 0:
            return
        tables = []
        for lo in range(0, n, CHUNK_ROWS):
            chunk = keys[lo : lo + CHUNK_ROWS]
            cols = {"row": pa.array(np.arange(lo, lo + len(chunk), dtype=np.int64))}
            for f in range(n_fields):
                cols[f"k{f}"] = pa.array([k[f] for k in chunk], type=pa.large_string())
            tables.append(pa.table(cols))
        # ray types `fn` as taking the batch alone (fn_kwargs passes the rest): typed Any here, not
        # with a `type: ignore` that the formatter could move off the line mypy reports
        sign: Any = _sign_batch
        ds = self.ray.data.from_arrow(tables).map_batches(
            sign,
            batch_format="numpy",
            batch_size=None,
            fn_kwargs={"n_fields": n_fields, "ngrams": tuple(ngrams), "num_perm": num_perm, "seed": seed},
        )
        got = _collect(ds, ("row", "sig", "digest", "empty"))
        order = np.argsort(got["row"], kind="stable")
        if not np.array_equal(got["row"][order], np.arange(n)):
            raise RuntimeError(f"engine ray: signatures came back for {len(got['row'])} of {n} rows")
        yield (
            got["sig"][order].astype(np.uint32, copy=False),
            got["digest"][order].astype(np.uint64, copy=False),
            got["empty"][order].astype(bool, copy=False),
        )

    def candidate_pairs(self, sigs: np.ndarray, bands: int, rows_per_band: int) -> np.ndarray:
        n = len(sigs)
        if n < 2:
            return np.empty((0, 2), dtype=np.int64)
        table = np.concatenate([np.arange(n, dtype=np.uint32)[:, None], sigs.astype(np.uint32)], axis=1)
        blocks = [table[lo : lo + CHUNK_ROWS] for lo in range(0, n, CHUNK_ROWS)]
        from ray.data.context import DataContext, ShuffleStrategy

        parts = max(1, self._cpus())  # groups per band: bands x parts groups in all
        # Sort-based shuffle: the hash shuffle's aggregator actors cost ~10 s more here (measured).
        ctx = DataContext.get_current()
        before, ctx.shuffle_strategy = ctx.shuffle_strategy, ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
        try:
            got = self._pairs(blocks, bands, rows_per_band, parts)
        finally:
            ctx.shuffle_strategy = before
        return unique_pairs(np.stack([got["i"], got["j"]], axis=1) if len(got["i"]) else np.empty((0, 2)), n)

    def _pairs(self, blocks: list[np.ndarray], bands: int, rows_per_band: int, parts: int) -> dict[str, np.ndarray]:
        # ray types `fn` as taking (and returning) its own batch union: these take fn_kwargs and
        # numpy batches (batch_format="numpy"), which its types cannot say (so Any, as above)
        band_keys: Any = _band_keys
        group_pairs: Any = _group_pairs
        ds = (
            self.ray.data.from_numpy(blocks)
            .map_batches(
                band_keys,
                batch_format="numpy",
                batch_size=None,
                fn_kwargs={"bands": bands, "rows_per_band": rows_per_band, "parts": parts},
            )
            .groupby(["band", "part"], num_partitions=min(bands * parts, 2 * self._cpus()))
            .map_groups(group_pairs, batch_format="numpy")
        )
        return _collect(ds, ("i", "j"))

    def _cpus(self) -> int:
        # ray leaves cluster_resources unannotated
        return int(self.ray.cluster_resources().get("CPU", 1))  # type: ignore[no-untyped-call]

    def close(self) -> None:
        if self._started and self.ray.is_initialized():
            self.ray.shutdown()
        self._started = False
