"""Clustering benchmarks (prints figures; not a pass/fail test).

    python tests/bench/bench_cluster.py [--n 10000] [--size 64] [--dc-images 200] [--dc-size 128]

1. "cluster now" on N synthetic images from scratch: frozen random ResNet-18
   features (torch) + PCA-whitening + faiss k-means k=250, stored as a cluster run.
2. re-cluster 50,000 cached 256-d features into 1,000 clusters (target <= 1.5 s):
   full k-means (every point, 10 iterations) and the subsampled fast path.
3. one DeepCluster epoch (features + k-means + training) on CPU, per 1,000 images.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def bench_cluster_now(n: int, size: int, tmp: Path) -> None:
    from mskstudio.jobs import JobContext
    from mskstudio.ml.deepcluster import run_cluster
    from mskstudio.ml.synthetic import add_synthetic_images
    from mskstudio.store import Project

    project = Project.create(tmp / "bench.mskproj")
    t = time.perf_counter()
    add_synthetic_images(project, n, seed=0, size=max(size * 2, 96), thumbnails=False)
    print(f"  made {n} synthetic images in {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    result = run_cluster(project, {"mode": "fast", "init": "scratch", "k": 250, "input_size": size,
                                   "batch_size": 128}, JobContext.null())
    total = time.perf_counter() - t
    truth = result["metrics"]["truth"].get("region", {})
    print(f"1. cluster now, {n} images from scratch at {size} px, k=250: {total:.1f} s total "
          f"({result['metrics']['seconds']:.1f} s features+PCA+k-means+map after loading); "
          f"vs truth NMI {truth.get('nmi', float('nan')):.3f} purity {truth.get('purity', float('nan')):.3f}")
    project.close()


def bench_recluster() -> None:
    from mskstudio.ml.features import kmeans, l2_normalise

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(1000, 256)).astype(np.float32)
    x = l2_normalise(centres[rng.integers(0, 1000, 50_000)] + rng.normal(0, 0.7, (50_000, 256)).astype(
        np.float32))
    for label, kw in [("full (all points, 10 iter)", {"niter": 10, "max_points_per_centroid": None}),
                      ("fast (16 pts/centroid, 10 iter)", {"niter": 10, "max_points_per_centroid": 16})]:
        t = time.perf_counter()
        res = kmeans(x, 1000, seed=0, nredo=1, **kw)
        dt = time.perf_counter() - t
        print(f"2. re-cluster 50,000 x 256 into 1,000, {label}: {dt:.2f} s "
              f"(empty re-assigned {res.n_reassigned})")


def bench_deepcluster_epoch(n: int, size: int, tmp: Path) -> None:
    from mskstudio.jobs import JobContext, RecordingSink
    from mskstudio.ml.deepcluster import run_cluster
    from mskstudio.ml.synthetic import add_synthetic_images
    from mskstudio.store import Project

    project = Project.create(tmp / "dc.mskproj")
    add_synthetic_images(project, n, seed=1, size=max(size * 2, 96), thumbnails=False)
    sink = RecordingSink()
    run_cluster(project, {"mode": "deepcluster", "epochs": 1, "init": "scratch", "k": max(2, n // 40),
                          "input_size": size, "batch_size": 64}, JobContext(sink))
    epoch_s = [v for name, v, _ in sink.metrics if name == "epoch_seconds"][0]
    print(f"3. one DeepCluster epoch at {size} px on CPU: {epoch_s:.1f} s for {n} images "
          f"= {epoch_s * 1000 / n:.0f} s per 1,000 images (features + k-means + training + checkpoint)")
    project.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--dc-images", type=int, default=200)
    ap.add_argument("--dc-size", type=int, default=128)
    ap.add_argument("--skip", default="", help="comma list of 1,2,3 to skip")
    args = ap.parse_args()
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, "
          f"cuda={torch.cuda.is_available()}")
    skip = set(args.skip.split(","))
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if "2" not in skip:
            bench_recluster()
        if "3" not in skip:
            bench_deepcluster_epoch(args.dc_images, args.dc_size, tmp)
        if "1" not in skip:
            bench_cluster_now(args.n, args.size, tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
