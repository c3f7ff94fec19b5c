"""Nearest-neighbour index over L2-normalised embeddings (faiss).

* Exact inner product (``IndexFlatIP``; cosine similarity on unit vectors) by default.
* Above ``IVF_THRESHOLD`` vectors, where a brute-force scan stops being interactive,
  an ``IndexIVFFlat`` (inner product) whose ``nprobe`` is *measured*: starting at 1
  and doubling until recall@10 against the exact answer on a sample of queries
  reaches ``target_recall`` (0.99).  The measured recall and nprobe are kept on the
  index (``info``) so callers can report them.

Distances returned are cosine *distances* ``1 - similarity`` (0 = identical).

Single queries (the gallery asks one at a time) on the exact index are split over the
*database*: faiss parallelises a search over its queries, so one query would scan all
the vectors (200 MB at 100k × 512) on one core, and its OpenMP threads spin-wait on a
busy machine.  ``search`` instead scans contiguous row blocks on a small pool of threads,
each with one OpenMP thread, and merges the per-block top-k: the same exact answer.
"""

from __future__ import annotations

import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

IVF_THRESHOLD = 200_000        # exact below this: <= 15 ms/query at 100k x 512 on 2 idle cores
TARGET_RECALL = 0.99
SPLIT_MAX_QUERIES = 20          # faiss's own BLAS path (parallel over queries) wins from here
SPLIT_MIN_ROWS = 25_000         # rows per block below which a thread costs more than it saves

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def scan_threads() -> int:
    """Threads for one query's scan: the cores this process may use (at most 8)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


def _scan_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            import faiss

            # omp_set_num_threads is per thread: each block scan stays on its own core.
            _pool = ThreadPoolExecutor(scan_threads(), thread_name_prefix="knn-scan",
                                       initializer=faiss.omp_set_num_threads, initargs=(1,))
        return _pool


def _f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x, np.float32))


def normalise_rows(x: np.ndarray) -> np.ndarray:
    x = _f32(x)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return _f32(x / np.maximum(norms, 1e-12))


def recall_at_k(found: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    """Mean fraction of the true top-k (rows of ``truth``) present in ``found``'s top-k."""
    hits = 0
    for f, t in zip(found[:, :k], truth[:, :k], strict=True):
        hits += len(set(f.tolist()) & set(t.tolist()) - {-1})
    return hits / max(truth[:, :k].size, 1)


@dataclass
class KnnIndex:
    index: Any
    dim: int
    n: int
    kind: str                       # "flat" | "ivf"
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, x: np.ndarray, *, kind: str = "auto", normalise: bool = True,
              ivf_threshold: int = IVF_THRESHOLD, target_recall: float = TARGET_RECALL,
              nlist: int | None = None, sample_queries: int = 500, seed: int = 0) -> KnnIndex:
        """Build over rows of ``x``; ``kind`` "flat", "ivf" or "auto" (ivf above the threshold)."""
        import faiss

        x = normalise_rows(x) if normalise else _f32(x)
        n, d = x.shape
        if kind == "auto":
            kind = "ivf" if n >= ivf_threshold else "flat"
        t0 = time.perf_counter()
        if kind == "flat" or n < 1000:
            index = faiss.IndexFlatIP(d)
            index.add(x)
            return cls(index, d, n, "flat", {"build_s": time.perf_counter() - t0, "recall@10": 1.0})
        if kind != "ivf":
            raise ValueError(f"unknown index kind {kind!r}")
        nlist = int(nlist or max(16, min(4096, round(math.sqrt(n)))))
        rng = np.random.default_rng(seed)
        train_n = min(n, max(nlist * 40, 10_000))
        train = x[rng.choice(n, train_n, replace=False)] if train_n < n else x
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.niter = 10
        index.train(_f32(train))
        index.add(x)
        index.make_direct_map()  # reconstruct(row) for queries by stored image
        built = time.perf_counter() - t0
        out = cls(index, d, n, "ivf", {"build_s": built, "nlist": nlist})
        out.tune_nprobe(x, target_recall=target_recall, n_queries=sample_queries, seed=seed)
        return out

    def tune_nprobe(self, x: np.ndarray, *, target_recall: float = TARGET_RECALL, k: int = 10,
                    n_queries: int = 500, seed: int = 0) -> int:
        """Smallest power-of-two nprobe whose recall@k vs exact (sampled queries) >= target."""
        import faiss

        rng = np.random.default_rng(seed + 1)
        q = _f32(x[rng.choice(len(x), min(n_queries, len(x)), replace=False)])
        exact = faiss.IndexFlatIP(self.dim)
        exact.add(_f32(x))
        _, truth = exact.search(q, k)
        del exact
        nprobe, recall = 1, 0.0
        nlist = self.index.nlist
        while True:
            self.index.nprobe = nprobe
            _, found = self.index.search(q, k)
            recall = recall_at_k(found, truth, k)
            if recall >= target_recall or nprobe >= nlist:
                break
            nprobe = min(nlist, nprobe * 2)
        self.info.update({"nprobe": nprobe, "recall@10": recall, "recall_queries": len(q)})
        return nprobe

    def search(self, q: np.ndarray, k: int, *, normalise: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(cosine distances [m, k], row indices [m, k]); -1 rows where fewer than k exist."""
        q = normalise_rows(np.atleast_2d(q)) if normalise else _f32(np.atleast_2d(q))
        k = int(max(1, min(k, self.n)))
        blocks = self._row_blocks() if len(q) < SPLIT_MAX_QUERIES else []
        sims, idx = self._search_blocks(q, k, blocks) if len(blocks) > 1 else self.index.search(q, k)
        return (1.0 - sims).astype(np.float32), idx

    def _row_blocks(self) -> list[tuple[int, int]]:
        """Contiguous [start, stop) row ranges for a split scan ([] when not worth it)."""
        if self.kind != "flat":
            return []
        parts = min(scan_threads(), self.n // SPLIT_MIN_ROWS)
        if parts < 2:
            return []
        bounds = np.linspace(0, self.n, parts + 1).astype(int)
        return list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))

    def _search_blocks(self, q: np.ndarray, k: int, blocks: list[tuple[int, int]]
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k inner products, each row block scanned on its own thread, then merged."""
        import faiss

        # The flat index's own vectors, viewed without a copy.
        xb = faiss.rev_swig_ptr(self.index.get_xb(), self.n * self.dim).reshape(self.n, self.dim)

        def scan(block: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
            start, stop = block
            sims, rows = faiss.knn(q, xb[start:stop], min(k, stop - start), metric=faiss.METRIC_INNER_PRODUCT)
            return sims, np.where(rows >= 0, rows + start, -1)

        parts = list(_scan_pool().map(scan, blocks))
        sims = np.concatenate([p[0] for p in parts], axis=1)
        rows = np.concatenate([p[1] for p in parts], axis=1)
        best = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(sims, best, axis=1), np.take_along_axis(rows, best, axis=1)

    def save(self, path) -> None:
        import faiss

        faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, path, info: dict[str, Any] | None = None) -> KnnIndex:
        import faiss

        index = faiss.read_index(str(path))
        kind = "ivf" if isinstance(index, faiss.IndexIVF) else "flat"
        if kind == "ivf":
            index = faiss.downcast_index(index)
            if info and info.get("nprobe"):
                index.nprobe = int(info["nprobe"])
            index.make_direct_map()
        return cls(index, index.d, index.ntotal, kind, dict(info or {}))
