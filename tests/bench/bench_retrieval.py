"""kNN query latency and recall on synthetic 512-d embeddings (resnet18's feature size).

    .venv/bin/python tests/bench/bench_retrieval.py [--quick]

Targets: 100k exact (IndexFlatIP) <= 15 ms/query; 1M IVF <= 1 ms/query with recall@10 >= 0.99.
Memory: 1M x 512 float32 = 2 GB for the vectors, about twice that while both the exact
reference and the IVF index are alive.  Embeddings are a Gaussian mixture (real embeddings
are clustered; uniform noise is the worst case for any partitioning index).
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    import faiss

    from mskstudio.ml.knn_index import KnnIndex, recall_at_k

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="20k exact / 200k IVF instead of 100k / 1M")
    ap.add_argument("--dim", type=int, default=512)
    args = ap.parse_args()
    n_exact, n_ivf = (20_000, 200_000) if args.quick else (100_000, 1_000_000)
    d = args.dim
    print(f"faiss {faiss.__version__}, threads {faiss.omp_get_max_threads()}, dim {d}")
    rng = np.random.default_rng(1)

    x = synthetic(n_exact, d)
    q = x[rng.choice(n_exact, 200, replace=False)] + 0.01 * rng.standard_normal((200, d), dtype=np.float32)
    t0 = time.perf_counter()
    flat = KnnIndex.build(x, kind="flat")
    print(f"exact   n={n_exact:>9,}  build {time.perf_counter() - t0:6.2f} s  "
          f"query {time_queries(flat, q):7.3f} ms (single)  {time_queries(flat, q, batch=50):7.3f} ms (batch 50)"
          f"  target <= 15 ms")
    del flat, x

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
