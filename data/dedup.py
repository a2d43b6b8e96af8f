"""Duplicate removal: exact duplicates first, then MinHash near-duplicates of a key.

1. Exact pass: rows that are identical as a whole (same fields, same values; compared by a
   128-bit hash of the row as canonical JSON) keep their first occurrence.
2. Near pass, on the rows left: each row's key (one or more text fields, e.g. prompt+response) is
   normalised (`prefkit.data.shingles`), cut into word n-gram shingles, and MinHashed; LSH banding with
   datasketch's optimal (b, r) proposes candidate pairs; each candidate is confirmed when its
   Jaccard similarity (exact on the shingle sets, or estimated from the signatures) is at or
   above the threshold. Rows whose key gives exactly the same shingles as an earlier row's
   (Jaccard 1) are linked to it directly and skip LSH. Linked rows are clustered (connected
   components, what union-find computes) and each cluster keeps its first row.

Shingles of different key fields never match (each field salts its hashes), so with
`--on chosen+rejected` one row's chosen is compared with other rows' chosen only, never with
any rejected. One n-gram size per field and run (Jaccard of sets cut with different n means
nothing), chosen from the field's median length unless given.

Signatures are computed in chunks of rows on all cores (forked workers); memory is the rows
themselves plus 4*num_perm + 8 bytes per row.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import multiprocessing
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from prefkit.core.errors import ConfigError, DataError
from prefkit.data.dedup_config import DedupConfig
from prefkit.data.minhash import SCHEME, candidate_pairs, estimated_jaccard, lsh_params, signatures
from prefkit.data.shingles import choose_ngram, jaccard, shingle_hashes, word_counts

VERIFY_MODES = ("exact", "estimate")
CHUNK_ROWS = 2_000  # rows per task sent to a worker process
_PARALLEL_MIN_ROWS = 2 * CHUNK_ROWS  # below this, starting processes costs more than it saves
_NGRAM_SAMPLE = 2_000  # rows whose median length picks the n-gram size
_PROGRESS_MIN_ROWS = 10_000
_EXAMPLES = 10  # example clusters in the report
_EXAMPLE_MEMBERS = 5
_PREVIEW_CHARS = 160

# Logical key names for `dedup_file`'s --on, mapped to `prefkit.data.readers.canonical_records` fields.
KEY_NAMES = {
    "prompt": "question",
    "system": "system",
    "chosen": "chosen",
    "rejected": "rejected",
    "response": "response",
    "a": "a",
    "b": "b",
}


ENGINES = ("local", "ray")
_D = DedupConfig()  # every default below is its field's (one place: `prefkit.data.dedup_config`)


class DedupEngine:
    """Where the two steps that grow with the data run: signatures (`chunk_results`, in input
    order, as `_sign_chunk` returns them) and LSH candidates (`candidate_pairs`, the same pairs as
    `prefkit.data.minhash.candidate_pairs`). `prefkit.data.dedup_ray.RayEngine` runs them on a Ray cluster."""

    def chunk_results(
        self, keys: Sequence[Sequence[str]], ngrams: tuple[int, ...], num_perm: int, seed: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        raise NotImplementedError

    def candidate_pairs(self, sigs: np.ndarray, bands: int, rows_per_band: int) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass


def open_engine(engine: str, address: str | None = None, workers: int = 0) -> DedupEngine | None:
    """None for "local" (this machine's cores); a `RayEngine` for "ray" (joins `address`, or starts
    a local Ray instance with `workers` CPUs, all when 0)."""
    if engine == "local":
        if address:
            raise ConfigError("--address is for --engine ray")
        return None
    if engine == "ray":
        from prefkit.data.dedup_ray import RayEngine

        return RayEngine(address=address, num_cpus=workers or None)
    raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")


@dataclass
class RemovedRow:
    """A row left out, and the kept row it duplicates (rows are 0-based input positions)."""

    row: int
    duplicate_of: int  # the kept row of its cluster
    kind: str  # "exact" (the whole row repeats) or "near" (its key is a near-duplicate)
    matched: int  # the row it was matched with directly (its most similar confirmed partner)
    jaccard: float  # similarity with `matched`: 1.0 for exact duplicates
    location: str | None = None  # file:line or file row N, when read from a file
    duplicate_of_location: str | None = None


@dataclass
class DedupReport:
    rows_in: int
    rows_out: int
    exact_removed: int
    near_removed: int
    empty_keys: int  # rows whose key has no words; kept, and compared by the exact pass only
    key_fields: list[str]
    ngram: dict[str, int]
    threshold: float
    num_perm: int
    bands: int
    rows_per_band: int
    seed: int
    scheme: str
    verify: str
    candidate_pairs: int  # LSH candidates among rows with distinct shingle sets
    confirmed_pairs: int  # candidates whose Jaccard reached the threshold
    identical_keys: int  # rows whose key has the same shingles as an earlier row's (Jaccard 1)
    clusters: int  # near-duplicate clusters of two or more rows
    examples: list[dict[str, Any]]
    removed: list[RemovedRow]
    seconds: float
    source: str | None = None
    output: str | None = None
    invalid_skipped: int = 0  # bad rows left out with --skip-invalid (written to the rejected file)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        return (
            f"{self.rows_in} rows -> {self.rows_out} kept: {self.exact_removed} exact duplicates and "
            f"{self.near_removed} near-duplicates removed (key {'+'.join(self.key_fields)}, Jaccard >= "
            f"{self.threshold}, {self.clusters} clusters) in {self.seconds:.1f}s"
        )


# --- per-chunk work (runs in worker processes) ------------------------------------------------


def _row_shingles(keys: Sequence[Sequence[str]], ngrams: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Each row's shingle hashes over all key fields (field-salted): (hashes, offsets)."""
    n_rows = len(keys)
    parts, owners = [], []
    for f, n in enumerate(ngrams):
        h, off = shingle_hashes([k[f] for k in keys], n, field=f)
        parts.append(h)
        owners.append(np.repeat(np.arange(n_rows), np.diff(off)))
    owner = np.concatenate(owners)
    order = np.argsort(owner, kind="stable")
    offsets = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(owner, minlength=n_rows), out=offsets[1:])
    return np.concatenate(parts)[order], offsets


_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, default=str)  # ASCII output: no re-encoding cost


def _row_digest(row: Mapping[str, Any]) -> bytes:
    return xxhash.xxh3_128_digest(_CANONICAL_JSON.encode(row).encode())


def _set_digests(hashes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """A 64-bit digest of each row's shingles: the wrapping sum of their hashes. Equal digests
    mean the same shingles, repeats included (collisions ~2^-64), hence Jaccard 1; rows with the
    same set but other repeat counts are left to LSH, which confirms them at Jaccard 1 too."""
    out = np.zeros(len(offsets) - 1, dtype=np.uint64)
    nonempty = offsets[1:] > offsets[:-1]
    if len(hashes):
        out[nonempty] = np.add.reduceat(hashes, offsets[:-1][nonempty])
    return out


def _sign_chunk(
    task: tuple[Sequence[Sequence[str]], tuple[int, ...], int, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MinHash signatures, shingle-set digests and empty-key flags of one chunk of keys."""
    keys, ngrams, num_perm, seed = task
    hashes, offsets = _row_shingles(keys, ngrams)
    return signatures(hashes, offsets, num_perm, seed), _set_digests(hashes, offsets), np.diff(offsets) == 0


# --- the pipeline -----------------------------------------------------------------------------


def _check_settings(threshold: float, num_perm: int, ngram: int, verify: str, workers: int) -> None:
    if not 0.0 < threshold <= 1.0:
        raise ConfigError(f"threshold must be in (0, 1], got {threshold}")
    if num_perm < 2:
        raise ConfigError(f"num_perm must be at least 2, got {num_perm}")
    if ngram < 0:
        raise ConfigError(f"ngram must be 0 (choose from length) or a size >= 1, got {ngram}")
    if verify not in VERIFY_MODES:
        raise ConfigError(f"verify must be one of {', '.join(VERIFY_MODES)}, got {verify!r}")
    if workers < 0:
        raise ConfigError(f"workers must be 0 (all cores) or more, got {workers}")


def _ngram_sizes(keys: Sequence[Sequence[str]], n_fields: int, ngram: int) -> tuple[int, ...]:
    if ngram:
        return (ngram,) * n_fields
    step = max(1, len(keys) // _NGRAM_SAMPLE)  # evenly spaced sample: deterministic
    sample = keys[::step]
    return tuple(
        choose_ngram(float(np.median(word_counts([k[f] for k in sample]))) if sample else 0.0) for f in range(n_fields)
    )


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# The keys of the run in progress, for forked workers: they inherit this list at fork time, so a
# task is just a row range and no key text is pickled to them.
_fork_keys: Sequence[Sequence[str]] = ()


def _sign_range(task: tuple[int, int, tuple[int, ...], int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    start, stop, ngrams, num_perm, seed = task
    return _sign_chunk((_fork_keys[start:stop], ngrams, num_perm, seed))


def _chunk_results(
    keys: Sequence[Sequence[str]],
    ngrams: tuple[int, ...],
    num_perm: int,
    seed: int,
    workers: int,
    progress: bool,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    global _fork_keys
    from tqdm import tqdm

    ranges = [(i, min(i + CHUNK_ROWS, len(keys)), ngrams, num_perm, seed) for i in range(0, len(keys), CHUNK_ROWS)]
    workers = workers or _cpu_count()
    with tqdm(
        total=len(keys), unit="row", desc="minhash", disable=not progress or len(keys) < _PROGRESS_MIN_ROWS
    ) as bar:
        if workers == 1 or len(keys) < _PARALLEL_MIN_ROWS:
            for start, stop, *_ in ranges:
                yield _sign_chunk((keys[start:stop], ngrams, num_perm, seed))
                bar.update(stop - start)
            return
        # Forked workers share the parent's memory (rows, keys) until they write to it; frozen
        # objects are skipped by their garbage collector, which would otherwise touch, and so
        # copy, every page holding them.
        _fork_keys = keys
        gc.freeze()
        try:
            with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork")) as pool:
                for (start, stop, *_), res in zip(ranges, pool.map(_sign_range, ranges), strict=True):
                    bar.update(stop - start)
                    yield res
        finally:
            gc.unfreeze()
            _fork_keys = ()


def _exact_jaccard(keys: Sequence[Sequence[str]], ngrams: tuple[int, ...], pairs: np.ndarray) -> np.ndarray:
    """Jaccard of the (64-bit hashed) shingle sets of each pair's two rows."""
    involved = np.unique(pairs)
    hashes, offsets = _row_shingles([keys[i] for i in involved], ngrams)
    sets = {int(r): np.unique(hashes[offsets[k] : offsets[k + 1]]) for k, r in enumerate(involved)}
    out = np.empty(len(pairs), dtype=np.float64)
    for p, (i, j) in enumerate(pairs.tolist()):
        a, b = sets[i], sets[j]
        inter = len(np.intersect1d(a, b, assume_unique=True))
        out[p] = inter / (len(a) + len(b) - inter)
    return out


def _best_partners(n: int, pairs: np.ndarray, sims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row, its most similar confirmed partner (-1 if none) and that similarity."""
    rows = np.concatenate([pairs[:, 0], pairs[:, 1]])
    partner = np.concatenate([pairs[:, 1], pairs[:, 0]])
    sim = np.concatenate([sims, sims])
    order = np.lexsort((partner, -sim, rows))  # per row: highest similarity, then lowest partner
    rows, partner, sim = rows[order], partner[order], sim[order]
    first = np.ones(len(rows), dtype=bool)
    first[1:] = rows[1:] != rows[:-1]
    best = np.full(n, -1, dtype=np.int64)
    best_sim = np.zeros(n, dtype=np.float64)
    best[rows[first]] = partner[first]
    best_sim[rows[first]] = sim[first]
    return best, best_sim


def _preview(key: Sequence[str]) -> str:
    text = " | ".join(" ".join(k.split()) for k in key)
    return text if len(text) <= _PREVIEW_CHARS else text[: _PREVIEW_CHARS - 1] + "…"


def _sign_all(
    keys: Sequence[Sequence[str]],
    ngrams: tuple[int, ...],
    num_perm: int,
    seed: int,
    workers: int,
    progress: bool,
    engine: DedupEngine | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every row's MinHash signature, shingle-set digest and empty-key flag, in input order, from
    `engine` (None: this machine's cores)."""
    chunks = (
        engine.chunk_results(keys, ngrams, num_perm, seed)
        if engine is not None
        else _chunk_results(keys, ngrams, num_perm, seed, workers, progress)
    )
    sig_parts, digest_parts, empty_parts = [], [], []
    for s, d, e in chunks:
        sig_parts.append(s)
        digest_parts.append(d)
        empty_parts.append(e)
    sigs = np.concatenate(sig_parts) if sig_parts else np.empty((0, num_perm), dtype=np.uint32)
    set_digest = np.concatenate(digest_parts) if digest_parts else np.empty(0, dtype=np.uint64)
    empty = np.concatenate(empty_parts) if empty_parts else np.empty(0, dtype=bool)
    return sigs, set_digest, empty


def _exact_pass(rows: Sequence[Mapping[str, Any]], set_digest: np.ndarray, alive: np.ndarray) -> list[RemovedRow]:
    """1. Exact duplicates: whole rows. Identical rows have identical keys, hence identical
    shingle digests, so only rows whose digest repeats are hashed as a whole. Marks the removed
    rows not `alive`; returns them."""
    _, inverse, counts = np.unique(set_digest, return_inverse=True, return_counts=True)
    first_seen: dict[bytes, int] = {}
    removed: list[RemovedRow] = []
    for i in np.flatnonzero(counts[inverse] > 1).tolist():
        k = first_seen.setdefault(_row_digest(rows[i]), i)
        if k != i:
            alive[i] = False
            removed.append(RemovedRow(row=i, duplicate_of=k, kind="exact", matched=k, jaccard=1.0))
    return removed


@dataclass
class _NearPairs:
    pairs: np.ndarray  # (m, 2) linked rows: confirmed candidates, then same-shingle links
    sims: np.ndarray  # their Jaccard similarities (1.0 for same-shingle links)
    candidates: int  # LSH candidates among rows with distinct shingle sets
    confirmed: int  # candidates at or above the threshold
    identical_keys: int  # rows linked to an earlier row with the same shingles


def _near_pairs(
    keys: Sequence[Sequence[str]],
    ngrams: tuple[int, ...],
    sigs: np.ndarray,
    set_digest: np.ndarray,
    active: np.ndarray,
    *,
    threshold: float,
    bands: int,
    rows_per_band: int,
    verify: str,
    engine: DedupEngine | None,
) -> _NearPairs:
    """2. Near duplicates among the `active` rows (left by the exact pass, key with words). Rows
    with the same shingles (Jaccard 1: e.g. the same prompt in many pairs) are linked to the first
    such row directly; only those first rows go through LSH and verification."""
    _, first_of_set, set_of = np.unique(set_digest[active], return_index=True, return_inverse=True)
    same_set = np.stack([active[first_of_set[set_of]], active], axis=1)
    same_set = same_set[same_set[:, 0] != same_set[:, 1]]
    reps = active[np.sort(first_of_set)]
    pairs = (engine.candidate_pairs if engine is not None else candidate_pairs)(sigs[reps], bands, rows_per_band)
    pairs = reps[pairs] if len(pairs) else pairs
    if verify == "exact" and len(pairs):
        sims = _exact_jaccard(keys, ngrams, pairs)
    else:
        sims = estimated_jaccard(sigs, pairs)
    n_candidates, confirmed = len(pairs), sims >= threshold
    n_confirmed = int(np.count_nonzero(confirmed))
    pairs = np.concatenate([pairs[confirmed], same_set]).astype(np.int64, copy=False)
    sims = np.concatenate([sims[confirmed], np.ones(len(same_set))])
    return _NearPairs(pairs, sims, n_candidates, n_confirmed, len(same_set))


def _clusters(n: int, pairs: np.ndarray) -> list[np.ndarray]:
    """The linked rows' clusters (connected components of the `pairs` graph over `n` rows), each
    with its rows ascending, so its first row is the one kept."""
    clusters: list[np.ndarray] = []
    if len(pairs):
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
        _, labels = connected_components(graph, directed=False)
        linked = np.unique(pairs)
        order = linked[np.argsort(labels[linked], kind="stable")]  # by cluster, rows ascending
        bounds = np.flatnonzero(np.diff(labels[order])) + 1
        clusters = np.split(order, bounds)
    return clusters


def _near_removed(
    clusters: list[np.ndarray], best: np.ndarray, best_sim: np.ndarray, alive: np.ndarray
) -> list[RemovedRow]:
    """Every cluster's rows but its first, marked not `alive`, each with its best partner."""
    removed: list[RemovedRow] = []
    for members in clusters:
        head = int(members[0])
        for r in members[1:].tolist():
            alive[r] = False
            removed.append(
                RemovedRow(
                    row=r, duplicate_of=head, kind="near", matched=int(best[r]), jaccard=round(float(best_sim[r]), 4)
                )
            )
    return removed


def _examples(
    clusters: list[np.ndarray], keys: Sequence[Sequence[str]], best: np.ndarray, best_sim: np.ndarray
) -> list[dict[str, Any]]:
    """The report's example clusters: the largest first, a few members each with a preview."""
    return [
        {
            "kept": int(members[0]),
            "size": len(members),
            "members": [
                {
                    "row": int(r),
                    "key": _preview(keys[r]),
                    **({"matched": int(best[r]), "jaccard": round(float(best_sim[r]), 4)} if k else {}),
                }
                for k, r in enumerate(members[:_EXAMPLE_MEMBERS])
            ],
        }
        for members in sorted(clusters, key=lambda m: (-len(m), int(m[0])))[:_EXAMPLES]
    ]


def _run(
    rows: Sequence[Mapping[str, Any]],
    keys: Sequence[Sequence[str]],
    key_fields: list[str],
    *,
    threshold: float,
    num_perm: int,
    ngram: int,
    seed: int,
    verify: str,
    workers: int,
    progress: bool,
    engine: DedupEngine | None = None,
) -> tuple[list[int], DedupReport]:
    """The whole pipeline: signatures, the exact pass, near pairs, clusters, the report. `engine`
    computes the signatures and the LSH candidates (the two steps that grow with the data); None
    is this machine's cores. Everything else runs here, so every engine gives the same kept rows
    and the same report."""
    started = time.perf_counter()
    try:
        bands, rows_per_band = lsh_params(threshold, num_perm)
    except ValueError as e:  # e.g. a threshold so high that the optimum has a single band
        raise ConfigError(f"no LSH banding for threshold {threshold} with num_perm {num_perm}: {e}") from None
    n = len(rows)
    ngrams = _ngram_sizes(keys, len(key_fields), ngram)
    sigs, set_digest, empty = _sign_all(keys, ngrams, num_perm, seed, workers, progress, engine)

    alive = np.ones(n, dtype=bool)
    removed = _exact_pass(rows, set_digest, alive)
    exact_removed = len(removed)
    near = _near_pairs(
        keys,
        ngrams,
        sigs,
        set_digest,
        np.flatnonzero(alive & ~empty),
        threshold=threshold,
        bands=bands,
        rows_per_band=rows_per_band,
        verify=verify,
        engine=engine,
    )
    best, best_sim = _best_partners(n, near.pairs, near.sims)
    clusters = _clusters(n, near.pairs)
    removed += _near_removed(clusters, best, best_sim, alive)
    removed.sort(key=lambda r: r.row)

    kept = np.flatnonzero(alive).tolist()
    report = DedupReport(
        rows_in=n,
        rows_out=len(kept),
        exact_removed=exact_removed,
        near_removed=len(removed) - exact_removed,
        empty_keys=int(np.count_nonzero(empty)),
        key_fields=list(key_fields),
        ngram=dict(zip(key_fields, ngrams, strict=True)),
        threshold=threshold,
        num_perm=num_perm,
        bands=bands,
        rows_per_band=rows_per_band,
        seed=seed,
        scheme=SCHEME,
        verify=verify,
        candidate_pairs=near.candidates,
        confirmed_pairs=near.confirmed,
        identical_keys=near.identical_keys,
        clusters=len(clusters),
        examples=_examples(clusters, keys, best, best_sim),
        removed=removed,
        seconds=round(time.perf_counter() - started, 3),
    )
    return kept, report


def _raise_bad_record(records: Sequence[Any], key_fields: Sequence[str]) -> None:
    for i, rec in enumerate(records):
        for f in key_fields:
            if not isinstance(rec, Mapping):
                raise DataError(f"expected a record, got {type(rec).__name__}", row=i, field=f)
            value = rec.get(f)
            if not isinstance(value, str):
                raise DataError(
                    "missing field" if value is None else f"must be text, got {type(value).__name__}", row=i, field=f
                )


def dedup_records(
    records: list[dict[str, Any]],
    key_fields: list[str],
    *,
    threshold: float = _D.threshold,
    num_perm: int = _D.num_perm,
    ngram: int = _D.ngram,
    seed: int = _D.seed,
    verify: str = _D.verify,
    workers: int = _D.workers,
    progress: bool = False,
    engine: str | DedupEngine = _D.engine,
    address: str | None = _D.address,
) -> tuple[list[int], DedupReport]:
    """Deduplicate `records` on the text fields `key_fields`; returns the kept indices (input
    order) and the report. A missing or non-text key field raises `DataError` naming the row.

    `engine` "ray" computes signatures and candidates on Ray (`address`, else a local instance);
    an open `DedupEngine` is used as is (and left open)."""
    if not key_fields:
        raise ConfigError("no key fields to compare")
    _check_settings(threshold, num_perm, ngram, verify, workers)
    try:
        get = itemgetter(*key_fields)
        keys = list(map(get, records)) if len(key_fields) > 1 else [(v,) for v in map(get, records)]
    except (KeyError, TypeError):
        keys = []
    if len(keys) != len(records) or not set(map(type, chain.from_iterable(keys))) <= {str}:
        _raise_bad_record(records, key_fields)
    done: tuple[list[int], DedupReport] = _with_engine(
        engine,
        address,
        workers,
        lambda eng: _run(
            records,
            keys,
            list(key_fields),
            threshold=threshold,
            num_perm=num_perm,
            ngram=ngram,
            seed=seed,
            verify=verify,
            workers=workers,
            progress=progress,
            engine=eng,
        ),
    )
    return done


def _with_engine(engine: str | DedupEngine, address: str | None, workers: int, work: Any) -> Any:
    """`work(engine)` with the engine `engine` names, opened (and closed) here unless given open."""
    if isinstance(engine, DedupEngine) or engine is None:
        return work(engine)
    eng = open_engine(engine, address, workers)
    try:
        return work(eng)
    finally:
        if eng is not None:
            eng.close()


def near_duplicate_pairs(
    texts_a: Sequence[str], texts_b: Sequence[str], threshold: float = 0.8, ngram: int = 0
) -> list[bool]:
    """For each (a, b), whether their shingle sets' exact Jaccard is at or above `threshold`
    (n-gram size from the pair's mean length unless given; two empty texts are duplicates)."""
    if len(texts_a) != len(texts_b):
        raise ValueError(f"texts_a has {len(texts_a)} texts, texts_b {len(texts_b)}")
    return [jaccard(a, b, ngram) >= threshold for a, b in zip(texts_a, texts_b, strict=True)]


# --- files ------------------------------------------------------------------------------------


def resolve_key(on: str, fmt: str) -> list[str]:
    """`--on` (e.g. "prompt+response", or "auto") as `canonical_records` fields for `fmt`."""
    from prefkit.data.formats import LABELLED_FORMATS

    available = {
        "judgements": [],
        "pairs": ["prompt", "a", "b", "system"],
        "alpaca": ["prompt", "response"],
        "prompt_response": ["prompt", "response", "system"],
        "prompts": ["prompt", "system"],
    }.get(fmt, ["prompt", "chosen", "rejected", "system"] if fmt in LABELLED_FORMATS else [])
    if not available:
        raise ConfigError(f"format {fmt!r} has no text to deduplicate")
    if on == "auto":
        # Preference data: one row per prompt; instruction data: the same instruction may
        # legitimately come with different answers, so both parts form the key.
        names = ["prompt", "response"] if "response" in available else ["prompt"]
    else:
        names = [part.strip() for part in on.split("+")]
    for name in names:
        if name not in available:
            raise ConfigError(f"--on {on!r}: {fmt} data has no {name!r} (choose from {', '.join(available)})")
    if len(set(names)) != len(names):
        raise ConfigError(f"--on {on!r} names a field twice")
    return names


def _report_path(out: Path) -> Path:
    """`kept.jsonl` -> `kept.dedup-report.json`, beside it."""
    from prefkit.core.writers import output_suffix

    name = out.name
    suffix = output_suffix(out)
    return out.with_name(name[: len(name) - len(suffix)] + ".dedup-report.json")


def dedup_file(
    source: str | Path,
    out: str | Path,
    on: str = _D.on,
    threshold: float = _D.threshold,
    num_perm: int = _D.num_perm,
    ngram: int = _D.ngram,
    seed: int = _D.seed,
    verify: str = _D.verify,
    workers: int = _D.workers,
    report: str | Path | None = _D.report,
    progress: bool = False,
    *,
    invalid: list[DataError] | None = None,
    rejected: str | Path | None = None,
    marker: str | None = None,
    engine: str | DedupEngine = _D.engine,
    address: str | None = _D.address,
    columns: Mapping[str, str] | None = None,
) -> DedupReport:
    """Deduplicate a file (any format `prefkit.data.readers` reads) into `out` (.jsonl, .jsonl.gz, .json or
    .parquet), rows unchanged and in input order, and write the report as JSON beside it (or to
    `report`). Nothing is written when reading fails.

    With `invalid` (a list), bad rows are collected there and left out instead of stopping the
    run, and written with their reasons to `rejected`. OUT, the report and the rejected file are
    committed as one unit (`prefkit.core.atomic.atomic_files`): a run killed while writing never leaves a
    new OUT beside a previous run's report. `marker` (the command's name) marks each output as
    written by that command (`prefkit.core.outputs`).
    """
    from prefkit.core.atomic import atomic_files
    from prefkit.core.rejects import nothing_valid, rejected_rows
    from prefkit.core.writers import output_suffix, write_rows_to
    from prefkit.data.readers import raw_and_canonical_records

    _check_settings(threshold, num_perm, ngram, verify, workers)
    if isinstance(engine, str) and engine not in ENGINES:
        raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    out = Path(out)
    suffix = output_suffix(out)  # an unwritable output type fails before the source is read
    fmt, records = raw_and_canonical_records(source, errors=invalid, columns=columns)
    names = resolve_key(on, fmt)
    fields = [KEY_NAMES[name] for name in names]
    rows: list[dict[str, Any]] = []
    locations: list[str] = []
    keys: list[list[str]] = []
    for loc, row, texts in records:
        rows.append(row)
        locations.append(str(loc))
        keys.append([texts.get(f) or "" for f in fields])  # an absent system prompt is empty
    if not rows:
        raise nothing_valid(source, invalid)
    done: tuple[list[int], DedupReport] = _with_engine(
        engine,
        address,
        workers,
        lambda eng: _run(
            rows,
            keys,
            names,
            threshold=threshold,
            num_perm=num_perm,
            ngram=ngram,
            seed=seed,
            verify=verify,
            workers=workers,
            progress=progress,
            engine=eng,
        ),
    )
    kept, rep = done
    for r in rep.removed:
        r.location, r.duplicate_of_location = locations[r.row], locations[r.duplicate_of]
    rep.source, rep.output = str(source), str(out)
    rep.invalid_skipped = len(invalid or ())
    report_path = Path(report) if report is not None else _report_path(out)
    targets = [out, report_path] + ([Path(rejected)] if rejected is not None else [])
    with atomic_files(targets, marker=marker) as temps:
        write_rows_to((rows[i] for i in kept), temps[0], suffix)
        temps[1].write_text(
            json.dumps(rep.to_dict(), indent=1, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
        )
        if rejected is not None:
            write_rows_to(rejected_rows(invalid or []), temps[2], ".jsonl")
    return rep
