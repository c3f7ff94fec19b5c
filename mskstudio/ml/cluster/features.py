"""Batched feature extraction, PCA-whitening, faiss k-means and clustering metrics.

These are the shared pieces of DeepCluster, "cluster now", retrieval and the
classifier's feature probes:

* ``extract_features(project, model_or_run_id, image_ids, ctx)`` -> float32 [N, D]
* ``PCAWhitener.fit(x, dim)`` / ``.transform(x)``: centre, project on the top
  components, divide by sqrt(eigenvalue), then L2-normalise (Caron et al. 2018).
* ``kmeans(x, k)`` -> ``KMeansResult`` (faiss, on the GPU when faiss has one),
  ``reassign_empty`` so every cluster has members, ``UniformClusterSampler``.
* ``nmi``, ``truth_metrics`` (NMI/ARI/purity), ``map_2d`` (scikit-learn PCA).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mskstudio.jobs import JobContext

if TYPE_CHECKING:
    from pathlib import Path

    import torch

    from mskstudio.store import Project


# ---- feature extraction ------------------------------------------------------------
def _load_partial(path: Path, n: int, batch_size: int) -> tuple[np.ndarray | None, int]:
    """(rows array [n, D] with the first ``done`` rows filled, done) from a partial file."""
    try:
        with np.load(path) as z:
            rows, bs = z["rows"], int(z["batch_size"])
    except (OSError, ValueError, KeyError):
        return None, 0
    if bs != batch_size or len(rows) > n or len(rows) % batch_size:
        return None, 0
    out = np.empty((n, rows.shape[1]), np.float32)
    out[:len(rows)] = rows
    return out, len(rows)


def _save_partial(path: Path, out: np.ndarray, done: int, batch_size: int) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, rows=out[:done], batch_size=batch_size)
    tmp.replace(path)


def extract_features(project: Project, model: int | torch.nn.Module, image_ids: Sequence[int],
                     ctx: JobContext | None = None, *, size: int | None = None,
                     batch_size: int = 64, device: str | None = None, workers: int = 0,
                     dataset: Any = None, partial: Path | None = None) -> np.ndarray:
    """Penultimate-layer features of ``image_ids`` (rows in the given order).

    ``model`` is a model run id (its checkpoint's backbone is loaded) or a module
    mapping [B, 1, S, S] to [B, D].  ``size`` defaults to the run's input size, else 224.
    A prepared ``AnalysisDataset`` may be passed to reuse its in-memory cache.

    ``partial``: a file that keeps the rows computed so far (written about ten times per
    call, at batch boundaries, deleted at the end).  A call that finds it — a killed job
    resumed with the same model, images and batch size — starts after those rows, and as
    the batches are the same ones, the result is that of an uninterrupted call.
    """
    import torch

    from mskstudio.ml.datasets import AnalysisDataset, make_loader
    from mskstudio.ml.models import load_backbone, normalise, pick_device

    ctx = ctx or JobContext.null()
    if isinstance(model, (int, np.integer)):
        model = load_backbone(project, int(model))
    size = size or getattr(model, "input_size", None) or 224
    dev = pick_device(device)
    if dataset is None:
        dataset = AnalysisDataset(project, image_ids, size, augment=None)
    elif list(dataset.ids) != [int(i) for i in image_ids]:
        raise ValueError("the dataset does not hold the requested image ids")
    was_training = model.training
    model = model.to(dev).eval()
    cuda = dev.type == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    out: np.ndarray | None = None
    n, done = len(dataset), 0
    if partial is not None:
        out, done = _load_partial(partial, n, batch_size)
        if done:
            ctx.log(f"resuming: the features of {done} of {n} images were kept from the stopped job")
    loader = make_loader(dataset, batch_size=batch_size, workers=workers, device=dev,
                         sampler=range(done, n) if done else None)
    every = max(1, -(-n // (10 * batch_size)))  # batches between two writes of ``partial``
    with torch.inference_mode():
        for b, (x, _) in enumerate(loader):
            ctx.check_cancelled()
            x = normalise(x.to(dev, non_blocking=True))
            if cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(dev.type, enabled=cuda):
                f = model(x)
            f = f.float().cpu().numpy()
            if out is None:
                out = np.empty((n, f.shape[1]), np.float32)
            out[done:done + len(f)] = f
            done += len(f)
            ctx.progress(done / max(n, 1), f"features {done}/{n}")
            if partial is not None and (b + 1) % every == 0 and done < n:
                _save_partial(partial, out, done, batch_size)
    if partial is not None:  # with a temporary file a kill may have left behind
        partial.unlink(missing_ok=True)
        partial.with_name(partial.name + ".tmp.npz").unlink(missing_ok=True)
    model.train(was_training)
    if out is None:
        dim = getattr(model, "feature_dim", 0)
        out = np.zeros((0, dim), np.float32)
    return out


def recalibrate_batchnorm(model: torch.nn.Module, dataset: Any, *, batch_size: int = 64,
                          device: str | None = None, workers: int = 0, check=None) -> int:
    """Replace BatchNorm running statistics by their average over ``dataset`` (clean images, no augmentation).

    Training updates the running statistics from augmented batches with momentum 0.1,
    so eval-mode features (what k-means, retrieval and the classifier see) are computed
    with statistics that lag behind the weights and describe other inputs; after a few
    SGD steps they can be far off (Caron et al. extract features with the trained
    network, whose statistics have converged over a long ImageNet epoch).  One no-grad
    pass in train mode with ``momentum=None`` (equal-weight average of the batch statistics) fixes them.
    Returns the number of BatchNorm layers recalibrated.
    """
    import torch

    from mskstudio.ml.datasets import make_loader
    from mskstudio.ml.models import normalise, pick_device

    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns or len(dataset) == 0:
        return 0
    dev = pick_device(device)
    saved = [m.momentum for m in bns]
    was_training = model.training
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.to(dev).train()
    cuda = dev.type == "cuda"
    try:
        with torch.no_grad():
            for x, _ in make_loader(dataset, batch_size=batch_size, workers=workers, device=dev):
                if check:
                    check()
                x = normalise(x.to(dev, non_blocking=True))
                if cuda:
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(dev.type, enabled=cuda):
                    model(x)
    finally:
        for m, mom in zip(bns, saved, strict=True):
            m.momentum = mom
        model.train(was_training)
    return len(bns)


# ---- PCA whitening -------------------------------------------------------------------
@dataclass
class PCAWhitener:
    mean: np.ndarray          # [D]
    components: np.ndarray    # [D, d]
    scale: np.ndarray         # [d]  1 / sqrt(eigenvalue + eps)

    @property
    def dim(self) -> int:
        return int(self.components.shape[1])

    @classmethod
    def fit(cls, x: np.ndarray, dim: int = 256, eps: float = 1e-5) -> PCAWhitener:
        """Fit on [N, D]; the output dimension is ``effective_dim(dim, N, D)``."""
        x = np.asarray(x, np.float32)
        n, d = x.shape
        dim = effective_dim(dim, n, d)
        mean = x.mean(0)
        xc = x - mean
        if d <= n:
            cov = (xc.T @ xc).astype(np.float64) / max(n - 1, 1)
            vals, vecs = np.linalg.eigh(cov)
            order = np.argsort(vals)[::-1][:dim]
            vals, vecs = vals[order], vecs[:, order]
        else:  # few samples, many dims: the Gram matrix is the small one
            u, s, vt = np.linalg.svd(xc.astype(np.float64), full_matrices=False)
            vals = (s[:dim] ** 2) / max(n - 1, 1)
            vecs = vt[:dim].T
        vals = np.clip(vals, 0.0, None)
        scale = 1.0 / np.sqrt(vals + eps * max(float(vals.max(initial=0.0)), 1e-12))
        return cls(mean.astype(np.float32), vecs.astype(np.float32), scale.astype(np.float32))

    def transform(self, x: np.ndarray) -> np.ndarray:
        y = (np.asarray(x, np.float32) - self.mean) @ self.components
        y *= self.scale
        return l2_normalise(y)


def effective_dim(dim: int, n: int, d: int) -> int:
    """min(dim, D, N // 40), at least 2 (or D if smaller).

    Whitening gives every kept direction unit variance, noise included, so keeping
    too many makes the points nearly equidistant and blurs the clusters.  Measured on
    2,000 phantom radiographs (DeepCluster ResNet-18 after 12 epochs, 96 px, k = 50):
    purity vs the true regions 0.958 at 32 dimensions, 0.957 at 48, 0.916 at 96 and
    0.824 at 200 (the former N // 10 cap); NMI 0.754, 0.754, 0.726, 0.656.  Forty
    images per kept dimension keeps small projects in that range; from about 10,000
    images on, the 256 dimensions of Caron et al. are used.
    """
    return int(max(1, min(dim, d, max(2, n // 40), max(n - 1, 1))))


def l2_normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def pca_whiten(x: np.ndarray, dim: int = 256) -> np.ndarray:
    return PCAWhitener.fit(x, dim).transform(x)


# ---- k-means ---------------------------------------------------------------------------
@dataclass
class KMeansResult:
    assign: np.ndarray       # [N] int64
    distance: np.ndarray     # [N] float32, Euclidean distance to the assigned centroid
    centroids: np.ndarray    # [k, d] float32
    n_reassigned: int = 0


def faiss_has_gpu() -> bool:
    try:
        import faiss

        return hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0
    except Exception:  # pragma: no cover - faiss without GPU bindings
        return False


def kmeans(x: np.ndarray, k: int, *, niter: int = 20, seed: int = 0, nredo: int | None = None,
           max_points_per_centroid: int | None = None, gpu: bool | None = None,
           reassign: bool = True) -> KMeansResult:
    """faiss k-means on [N, d]; empty clusters get members (``reassign_empty``).

    ``max_points_per_centroid`` subsamples the training set (faiss default 256);
    ``None`` trains on every point as DeepCluster does.
    """
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    k = int(max(1, min(k, n)))
    gpu = faiss_has_gpu() if gpu is None else gpu
    if nredo is None:  # restarts are cheap on small problems and steady the result
        nredo = 3 if n * k * d < 50_000_000 else 1
    km = faiss.Kmeans(d, k, niter=niter, seed=seed, nredo=nredo, gpu=bool(gpu), verbose=False,
                      max_points_per_centroid=max_points_per_centroid or max(n, 1),
                      min_points_per_centroid=1)
    km.train(x)
    centroids = np.ascontiguousarray(km.centroids, dtype=np.float32)
    assign, dist = assign_to_centroids(x, centroids)
    n_fixed = 0
    if reassign:
        assign, centroids, n_fixed = reassign_empty(x, assign, centroids, seed=seed)
        if n_fixed:
            dist = np.linalg.norm(x - centroids[assign], axis=1).astype(np.float32)
    return KMeansResult(assign, dist, centroids, n_fixed)


def merge_clusters(x: np.ndarray, assign: np.ndarray, centroids: np.ndarray, k: int) -> KMeansResult:
    """Coarser clusters as unions of the given ones: average linkage of the centroids'
    cosine distances (scipy), cut at ``k`` groups.

    Over-cluster, then merge: k-means with k near the number of classes splits large
    classes and joins small ones (it wants clusters of equal variance), while unions of
    fine, pure clusters keep their purity.  On a 2,000-image phantom project (14
    regions, DeepCluster features, 50 clusters) merging into 14 gave NMI 0.813 where
    k-means with k = 14 gave 0.734 (``recluster --merge``; tests/bench/bench_cluster.py
    section 4 prints both).  Average linkage beat Ward there (0.668 at 14).  The
    members' features give each group its centroid and distances.
    """
    from scipy.cluster.hierarchy import fcluster, linkage

    x = np.ascontiguousarray(x, dtype=np.float32)
    present = np.unique(assign)
    k = int(max(1, min(k, len(present))))
    if k == len(present):
        groups = np.arange(len(present))
    else:
        unit = centroids[present] / np.maximum(np.linalg.norm(centroids[present], axis=1, keepdims=True), 1e-12)
        groups = fcluster(linkage(unit.astype(np.float64), method="average", metric="cosine"), k,
                          criterion="maxclust") - 1
        groups = np.unique(groups, return_inverse=True)[1]
    group_of = np.zeros(int(assign.max()) + 1, np.int64)
    group_of[present] = groups
    new_assign = group_of[assign]
    merged = np.stack([x[new_assign == g].mean(0) for g in range(int(new_assign.max()) + 1)]).astype(np.float32)
    dist = np.linalg.norm(x - merged[new_assign], axis=1).astype(np.float32)
    return KMeansResult(new_assign, dist, merged, 0)


def assign_to_centroids(x: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    d2, idx = index.search(np.ascontiguousarray(x, dtype=np.float32), 1)
    return idx[:, 0].astype(np.int64), np.sqrt(np.maximum(d2[:, 0], 0)).astype(np.float32)


def reassign_empty(x: np.ndarray, assign: np.ndarray, centroids: np.ndarray, *, seed: int = 0,
                   eps: float = 1e-4) -> tuple[np.ndarray, np.ndarray, int]:
    """Give every empty cluster members by splitting a non-empty one (Caron et al. 2018).

    For each empty cluster a cluster with at least 2 members is drawn (probability
    by size), its centroid is copied with a small symmetric perturbation, and its
    members go to the nearer of the two; if that leaves the new one empty, the
    member farthest from the old centroid moves.  Returns (assign, centroids, n_fixed).
    """
    rng = np.random.default_rng(seed)
    assign = assign.copy()
    centroids = centroids.copy()
    k = len(centroids)
    counts = np.bincount(assign, minlength=k)
    empty = np.flatnonzero(counts == 0)
    for e in empty:
        donors = np.flatnonzero(counts >= 2)
        if len(donors) == 0:
            break
        c = int(rng.choice(donors, p=counts[donors] / counts[donors].sum()))
        members = np.flatnonzero(assign == c)
        noise = rng.standard_normal(centroids.shape[1]).astype(np.float32) * eps
        centroids[e] = centroids[c] + noise
        centroids[c] = centroids[c] - noise
        pts = x[members]
        to_e = (np.linalg.norm(pts - centroids[e], axis=1) < np.linalg.norm(pts - centroids[c], axis=1))
        if to_e.all() or not to_e.any():
            to_e = np.zeros(len(members), bool)
            to_e[np.argmax(np.linalg.norm(pts - centroids[c], axis=1))] = True
        assign[members[to_e]] = e
        centroids[e] = x[members[to_e]].mean(0)
        centroids[c] = x[members[~to_e]].mean(0)
        counts[e], counts[c] = int(to_e.sum()), int((~to_e).sum())
    return assign, centroids, int(len(empty))


def default_k(n: int) -> int:
    """A cluster a reviewer can judge from one montage: about 40 images each."""
    return int(max(2, min(1000, round(n / 40)))) if n >= 4 else max(1, n)


# ---- sampling ----------------------------------------------------------------------------
class UniformClusterSampler:
    """Indices drawn uniformly over pseudo-classes (DeepCluster's ``UnifLabelSampler``).

    Each non-empty cluster contributes about N / k_nonempty indices (with replacement
    when it is smaller), shuffled and cut to ``n_samples`` (default N).
    """

    def __init__(self, assign: Sequence[int], n_samples: int | None = None, seed: int = 0):
        self.assign = np.asarray(assign)
        self.n = int(n_samples or len(self.assign))
        self.seed = seed
        self.epoch = 0

    def indices(self) -> np.ndarray:
        rng = np.random.default_rng(self.seed + self.epoch)
        groups = [np.flatnonzero(self.assign == c) for c in np.unique(self.assign)]
        per = self.n // max(len(groups), 1) + 1
        parts = [rng.choice(g, per, replace=len(g) < per) for g in groups if len(g)]
        idx = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        rng.shuffle(idx)
        return idx[: self.n].astype(np.int64)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return self.n


# ---- metrics and maps -----------------------------------------------------------------------
def nmi(a: Sequence[int], b: Sequence[int]) -> float:
    from sklearn.metrics import normalized_mutual_info_score

    return float(normalized_mutual_info_score(np.asarray(a), np.asarray(b)))


def purity(pred: Sequence[int], truth: Sequence[int]) -> float:
    pred, truth = np.asarray(pred), np.asarray(truth)
    if len(pred) == 0:
        return 0.0
    total = 0
    for c in np.unique(pred):
        _, counts = np.unique(truth[pred == c], return_counts=True)
        total += counts.max()
    return float(total / len(pred))


def truth_metrics(pred: Sequence[int], truth: Sequence[int]) -> dict[str, float]:
    from sklearn.metrics import adjusted_rand_score

    return {"nmi": nmi(pred, truth), "ari": float(adjusted_rand_score(truth, pred)),
            "purity": purity(pred, truth), "n": int(len(pred))}


def map_2d(x: np.ndarray, centroids: np.ndarray | None = None, seed: int = 0
           ) -> tuple[np.ndarray, np.ndarray | None]:
    """2-D coordinates of rows (and centroids) by a PCA fitted on the rows."""
    from sklearn.decomposition import PCA

    if len(x) < 3 or x.shape[1] < 2:
        pts = np.zeros((len(x), 2), np.float32)
        return pts, None if centroids is None else np.zeros((len(centroids), 2), np.float32)
    pca = PCA(n_components=2, random_state=seed, svd_solver="randomized" if len(x) > 5000 else "auto")
    pts = pca.fit_transform(x).astype(np.float32)
    cen = None if centroids is None else pca.transform(centroids).astype(np.float32)
    return pts, cen
