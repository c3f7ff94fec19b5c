"""kNN query latency and recall on synthetic 512-d embeddings (resnet18's feature size).

    .venv/bin/python tests/bench/bench_retrieval.py [--quick] [--exact-only]

Targets: 100k exact (IndexFlatIP) <= 15 ms/query; 1M IVF <= 1 ms/query with recall@10 >= 0.99.

The exact section times, on the same vectors and queries in one run, the search as it
was (``IndexFlatIP.search`` with faiss's default OpenMP threads), ``KnnIndex.search``
as it is now (row blocks on a thread each) and the other options considered: one
OpenMP thread, ``faiss.IndexShards``, numpy/BLAS sgemv + argpartition, and float16
storage (exhaustive but lossy, so its recall@10 against the float32 answer is printed),
alone and with a float32 re-rank of its top 4k (``IndexRefineFlat``).  Single-query
times are per query, median (and best) of 200; timings on a shared machine are noisy,
so compare rows of one run, not runs.
Memory: 1M x 512 float32 = 2 GB for the vectors, about twice that while both the exact
reference and the IVF index are alive.  Embeddings are a Gaussian mixture (real embeddings
are clustered; uniform noise is the worst case for any partitioning index).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def synthetic(n: int, d: int, seed: int = 0, centres: int = 2000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, d), dtype=np.float32)
    x = np.empty((n, d), np.float32)
    step = 100_000
    for i in range(0, n, step):
        m = min(step, n - i)
        x[i:i + m] = c[rng.integers(0, centres, m)] + 0.6 * rng.standard_normal((m, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def time_queries(index, q: np.ndarray, k: int = 10, batch: int = 1) -> float:
    index.search(q[:batch], k)  # warm
    t0 = time.perf_counter()
    for i in range(0, len(q), batch):
        index.search(q[i:i + batch], k)
    return (time.perf_counter() - t0) * 1000 / len(q)


def time_single(search, q: np.ndarray, k: int = 10) -> tuple[float, float]:
    """(median, best) ms of one-query searches over the rows of ``q``."""
    search(q[:1], k)  # warm
    times = []
    for i in range(len(q)):
        t0 = time.perf_counter()
        search(q[i:i + 1], k)
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times)), float(np.min(times))


def compare_exact(x: np.ndarray, q: np.ndarray, k: int = 10) -> None:
    """Every exact-scan option on the same data, one row each (see the module docstring)."""
    import faiss

    from mskstudio.ml.retrieve.knn_index import KnnIndex, normalise_rows, recall_at_k, scan_threads

    qn = normalise_rows(q)
    index = KnnIndex.build(x, kind="flat")
    flat = index.index
    xb = faiss.rev_swig_ptr(flat.get_xb(), index.n * index.dim).reshape(index.n, index.dim)
    _, truth = flat.search(qn, k)
    default_threads = faiss.omp_get_max_threads()

    def one_omp_thread(a, kk):
        faiss.omp_set_num_threads(1)  # per calling thread
        try:
            return flat.search(a, kk)
        finally:
            faiss.omp_set_num_threads(default_threads)

    shards = faiss.IndexShards(index.dim, True, True)  # threaded, successive ids
    for rows in np.array_split(np.arange(index.n), scan_threads()):
        part = faiss.IndexFlatIP(index.dim)
        part.add(xb[rows])
        shards.add_shard(part)

    def sgemv(a, kk):
        sims = xb @ a[0]
        top = np.argpartition(-sims, kk)[:kk]
        return sims[top], top[np.argsort(-sims[top])]

    fp16 = faiss.IndexScalarQuantizer(index.dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    fp16.add(xb)
    refined = faiss.IndexRefineFlat(fp16, faiss.swig_ptr(xb))
    refined.k_factor = 4
    options = [
        ("before: IndexFlatIP.search", flat.search, flat, f"faiss default, {default_threads} OpenMP threads"),
        ("now: KnnIndex.search", lambda a, kk: index.search(a, kk, normalise=False), index,
         f"{len(index._row_blocks()) or 1} row blocks, 1 OpenMP thread each"),
        ("IndexFlatIP, 1 OpenMP thread", one_omp_thread, None, "exact"),
        ("faiss.IndexShards (threaded)", shards.search, shards, f"{shards.count()} shards, exact"),
        ("numpy sgemv + argpartition", sgemv, None, "exact, BLAS threads"),
        ("float16 scan (SQ fp16)", fp16.search, fp16, "lossy"),
        ("float16 scan + float32 re-rank", refined.search, refined, "top 4k re-ranked"),
    ]
    print(f"exact options, n={index.n:,}, d={index.dim}, k={k}, {len(q)} single queries "
          f"(load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} cores):")
    for name, search, batchable, note in options:
        med, best = time_single(search, qn, k)
        if name.startswith("numpy"):
            found = np.stack([search(qn[i:i + 1], k)[1] for i in range(len(qn))])
        else:
            found = search(qn, k)[1]
        batch = f"{time_queries(batchable, qn, k, batch=50):6.2f}" if batchable is not None else "     -"
        print(f"  {name:<32} single {med:6.2f} ms (best {best:6.2f})  batch-50 {batch} ms/query  "
              f"recall@10 {recall_at_k(found, truth, k):.4f}  [{note}]")


def main() -> None:
    import faiss

    from mskstudio.ml.retrieve.knn_index import KnnIndex, recall_at_k

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="20k exact / 200k IVF instead of 100k / 1M")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--exact-only", action="store_true", help="skip the IVF part (2 GB, minutes)")
    args = ap.parse_args()
    n_exact, n_ivf = (20_000, 200_000) if args.quick else (100_000, 1_000_000)
    d = args.dim
    print(f"faiss {faiss.__version__}, threads {faiss.omp_get_max_threads()}, dim {d}")
    rng = np.random.default_rng(1)

    x = synthetic(n_exact, d)
    q = x[rng.choice(n_exact, 200, replace=False)] + 0.01 * rng.standard_normal((200, d), dtype=np.float32)
    compare_exact(x, q)
    print("  target <= 15 ms for one query")
    del x
    if args.exact_only:
        return

    x = synthetic(n_ivf, d)
    print(f"vectors {x.nbytes / 2**30:.2f} GiB")
    q = x[rng.choice(n_ivf, 500, replace=False)] + 0.01 * rng.standard_normal((500, d), dtype=np.float32)
    t0 = time.perf_counter()
    ivf = KnnIndex.build(x, kind="auto")
    build = time.perf_counter() - t0
    exact = faiss.IndexFlatIP(d)
    exact.add(x)
    _, truth = exact.search(np.ascontiguousarray(q / np.linalg.norm(q, axis=1, keepdims=True)), 10)
    del exact
    _, found = ivf.search(q, 10)
    print(f"{ivf.kind:<7} n={n_ivf:>9,}  build+tune {build:6.2f} s  nlist {ivf.info.get('nlist')} "
          f"nprobe {ivf.info.get('nprobe')}  tuned recall@10 {ivf.info['recall@10']:.4f}  "
          f"held-out recall@10 {recall_at_k(found, truth, 10):.4f}")
    print(f"        query {time_queries(ivf, q):7.3f} ms (single)  {time_queries(ivf, q, batch=50):7.3f} ms "
          f"(batch 50)  target <= 1 ms, recall >= 0.99")


if __name__ == "__main__":
    main()
