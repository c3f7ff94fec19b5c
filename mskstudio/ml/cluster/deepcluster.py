"""DeepCluster (Caron et al. 2018) on the analysis cache, and the quick "cluster now".

Job kind ``cluster`` -> ``run_cluster(project, params, ctx)``.

``mode="deepcluster"``: per epoch, (1) penultimate features of every image,
(2) PCA-whitening to ``pca_dim`` (<= N-1) + L2 norm, (3) faiss k-means, empty
clusters re-assigned, NMI with the previous epoch's assignment logged as metric
``nmi_consecutive``, (4) a fresh linear head (k outputs), warmed up on the frozen
features (``head_warmup_steps``), (5) one epoch of SGD on ``samples_per_epoch`` x N
images sampled uniformly over clusters with augmentation, (6) BatchNorm statistics
recomputed on the clean images after the epoch (``bn_recalibrate``; before the
first epoch too when the weights came from a file), a checkpoint blob and the
``model_runs`` row (kind 'deepcluster') pointing at it.

Why (4) and (6): on a few thousand images an epoch is a few dozen SGD steps, not the
thousands of an ImageNet epoch.  A head from N(0, 0.01) then stays near chance for the
whole epoch (measured: training accuracy ~0.1 on 30 pseudo-classes after 6 epochs), and
the running BatchNorm statistics, updated from augmented batches, lag behind the
weights, so the features k-means sees next are off.  On the 600-image phantom demo at
96 px the three changes together raised NMI vs the true regions (k = 14) from 0.51 after
6 epochs to 0.58 after 4, and crops of >= 70 % of the area instead of >= 40 % to 0.63;
``tests/bench/bench_cluster.py`` section 4 measures the defaults against "cluster now".

Cancel stops at the next batch; ``resume`` (a model run id, or ``True`` for the latest resumable
one, or ``resume_of`` = an earlier job id) continues after the last complete epoch.
After the last epoch the trained backbone clusters once more and the result is
stored as a cluster run.

Job kind ``recluster`` -> ``run_recluster``: a new k on a run's stored features, no network.

``mode="fast"`` ("cluster now"): features -> PCA -> k-means once with the backbone
named by ``init`` (``"auto"``: the latest finished DeepCluster run, else a random
network, whose features already separate gross anatomy) after optional
``pretrain_epochs`` of DeepCluster.

Input: one channel, letterboxed to ``input_size``, normalised with the constants of
``models.normalise`` (see ``mskstudio.ml.models``).  AMP and channels_last on CUDA.
"""

from __future__ import annotations

import io
import json
import os
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mskstudio.jobs import Cancelled, JobContext
from mskstudio.ml.cluster.epochs import (  # noqa: F401 - reset_head, warm_up_head: the module's API
    EpochPlan,
    jsonable,
    reset_head,
    run_epochs,
    warm_up_head,
    worker_plan,
)
from mskstudio.ml.cluster.features import (
    PCAWhitener,
    default_k,
    extract_features,
    kmeans,
    map_2d,
    merge_clusters,
    truth_metrics,
)
from mskstudio.ml.cluster.params import RECLUSTER_METHODS, ClusterParams, ReclusterParams
from mskstudio.ml.scale import ddp

if TYPE_CHECKING:
    import torch

    from mskstudio.store import Project

KIND = "deepcluster"
# The defaults are ClusterParams' (ml/cluster/params.py), the one place that defines them.
DEFAULTS: dict[str, Any] = ClusterParams().to_json()


def run_cluster(project: Project, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    import torch

    from mskstudio.ml.models import pick_device

    ClusterParams.from_json(params).check(project)  # before any run row is written
    p = {**DEFAULTS, **{k: v for k, v in params.items() if v is not None}}
    ids = [int(i) for i in (p["image_ids"] or project.images.ids())]
    if len(ids) < 2:
        raise ValueError("clustering needs at least two images")
    p["k"] = int(p["k"] or default_k(len(ids)))
    if p["k"] > len(ids):
        raise ValueError(f"k = {p['k']} is larger than the number of images ({len(ids)})")
    job_id = ctx.job_id
    device = pick_device(p["device"])
    if ddp.launched():  # under torchrun: this is rank 0 (the others run scale.worker.worker_main)
        device = ddp.init_from_env(device.type)
    if p["workers"] is None:
        p["workers"] = min(8, os.cpu_count() or 1) if device.type == "cuda" else 0
    random.seed(p["seed"])
    torch.manual_seed(p["seed"])

    resume, restart = _resume_run(project, p), None
    if resume and not (project.models.get(resume) or {"checkpoint_sha": None})["checkpoint_sha"]:
        # Killed before its first epoch was saved: the same run starts again from epoch 1.
        ctx.log(f"model run {resume} has no checkpoint yet: it starts again from epoch 1")
        restart, resume = resume, None
    if resume or restart:  # the run's own architecture, k and input size win over the new params
        saved = project.models.params(resume or restart)
        p.update({k: saved[k] for k in ("arch", "k", "input_size", "pca_dim") if saved.get(k)})

    from mskstudio.ml.datasets import AnalysisDataset

    dataset = AnalysisDataset(project, ids, p["input_size"])
    dataset.ensure_loaded(ctx.sub(0.0, 0.05).progress, ctx.check_cancelled)
    nmi_history: list[float] = []
    if p["mode"] == "fast" and not resume:
        backbone, model_run_id = _initial_backbone(project, p)
        epochs = int(p["pretrain_epochs"] or 0)
        if epochs:
            backbone, model_run_id, nmi_history = _train(project, p, PretrainPlan(
                ids, dataset, backbone, model_run_id, epochs, device, job_id,
                reuse_run=restart), ctx.sub(0.05, 0.8))
    elif p["mode"] in ("deepcluster", "fast"):
        if resume:
            backbone, model_run_id = None, resume
        else:
            backbone, model_run_id = _initial_backbone(project, p)
        epochs = int(p["epochs"] if p["mode"] == "deepcluster" else p["pretrain_epochs"] or 0)
        backbone, model_run_id, nmi_history = _train(project, p, PretrainPlan(
            ids, dataset, backbone, model_run_id, epochs, device, job_id, resume,
            reuse_run=restart), ctx.sub(0.05, 0.85))
    else:
        raise ValueError(f"unknown clustering mode {p['mode']!r} (deepcluster or fast)")
    if ddp.active():  # nothing was trained (cluster now without pretraining): release the other ranks
        ddp.broadcast({"kind": "none"})
        ddp.shutdown()
    return cluster_and_store(project, backbone, ids, p, ctx.sub(0.85, 1.0), dataset=dataset,
                             model_run_id=model_run_id, nmi_history=nmi_history, job_id=job_id,
                             device=device)


# ---- the pieces ---------------------------------------------------------------------------
def _resume_run(project: Project, p: dict[str, Any]) -> int | None:
    if p.get("resume_of"):
        row = project.models.for_job(int(p["resume_of"]), KIND)
        if row is not None and row["checkpoint_sha"]:
            return int(row["id"])
    r = p.get("resume")
    if r is True or (isinstance(r, str) and r.lower() in ("true", "latest")):
        row = project.models.latest_resumable(KIND)
        if row is None:
            raise ValueError("no DeepCluster run to resume")
        return int(row["id"])
    return int(r) if r else None


def _initial_backbone(project: Project, p: dict[str, Any]) -> tuple[torch.nn.Module, int | None]:
    """(backbone, model run id it came from or None) according to ``init``."""
    from mskstudio.ml.models import build_backbone, load_backbone, load_weights_file

    init = str(p["init"] or "scratch")
    if init == "auto":
        done = [r for r in project.models.list(KIND) if r["status"] == "done" and r["checkpoint_sha"]
                and r["arch"] == p["arch"]]
        init = f"run:{done[0]['id']}" if done else "scratch"
    if init.startswith("run:") or init.isdigit():
        run_id = int(init.removeprefix("run:"))
        backbone = load_backbone(project, run_id)
        p["arch"] = backbone.arch
        return backbone, run_id
    backbone, _ = build_backbone(p["arch"])
    if init != "scratch":
        report = load_weights_file(backbone, init)
        p["init_report"] = {k: len(v) for k, v in report.items()}
    return backbone, None


def _checkpoint_bytes(state: dict[str, Any]) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


@dataclass
class PretrainPlan:
    """What one DeepCluster training needs besides the parameters (was 11 positional arguments)."""

    ids: list[int]
    dataset: Any                   # AnalysisDataset over ``ids``, already loaded
    backbone: Any                  # the starting network (None when resuming: rebuilt from the run)
    parent_run_id: int | None      # the model run the backbone came from
    epochs: int
    device: Any
    job_id: int | None
    resume: int | None = None      # model run to continue
    reuse_run: int | None = None   # a run killed before its first checkpoint: start it again


def _train(project: Project, p: dict[str, Any], plan: PretrainPlan, ctx: JobContext):
    """DeepCluster epochs; returns (backbone, model run id, NMI history)."""
    ids, dataset, backbone, parent_run_id = plan.ids, plan.dataset, plan.backbone, plan.parent_run_id
    epochs, device, job_id, resume = plan.epochs, plan.device, plan.job_id, plan.resume
    reuse_run = plan.reuse_run
    from mskstudio.ml.models import build_backbone, load_checkpoint

    start, prev, history, opt_state = 0, None, [], None
    if resume:
        ckpt = load_checkpoint(project, resume)
        backbone, _ = build_backbone(ckpt["arch"])
        backbone.load_state_dict(ckpt["backbone"])
        p.update({k: ckpt["params"][k] for k in ("arch", "k", "input_size", "pca_dim")
                  if k in ckpt.get("params", {})})
        start, history, opt_state = ckpt["epoch"] + 1, list(ckpt.get("nmi_history", [])), ckpt["optimizer"]
        if list(ckpt.get("image_ids", [])) == ids:
            prev = np.asarray(ckpt["assign"])
        run_id = resume
        epochs = max(epochs, int(ckpt.get("params", {}).get("epochs", epochs)))
        project.models.set_status(run_id, "running", job_id=job_id)
    elif reuse_run:
        run_id = reuse_run
        project.models.set_status(run_id, "running", job_id=job_id)
    else:
        run_id = project.models.create(KIND, p["arch"], name=p["name"] or f"DeepCluster {p['arch']}",
                                       params=jsonable(p), parent_run_id=parent_run_id, job_id=job_id)
    if ddp.active():  # rank 0 of a torchrun job: the other ranks get the snapshot and the plan
        ddp.broadcast(worker_plan(project, p, ids, dataset, backbone, opt_state, start, epochs, prev,
                                   history, device))

    def save(epoch: int, state: dict[str, Any], metrics: dict[str, Any]) -> None:
        sha = project.blobs.put_bytes(_checkpoint_bytes(state))
        project.models.set_checkpoint(run_id, sha, metrics=metrics)

    try:
        backbone = run_epochs(EpochPlan(ids, dataset, backbone, start, epochs, opt_state, prev, history, device),
                           p, ctx, save=save, truth=lambda assign: ground_truth_metrics(project, ids, assign))
    except Cancelled:
        project.models.set_status(run_id, "cancelled")
        raise
    except BaseException:
        project.models.set_status(run_id, "error")
        raise
    finally:
        dataset.augment = None
        ddp.shutdown()  # the other ranks are done; the final clustering is rank 0's alone
    project.models.set_status(run_id, "done")
    backbone.input_size = p["input_size"]
    return backbone.eval(), run_id, history


def cluster_and_store(project: Project, backbone, ids: list[int], p: dict[str, Any], ctx: JobContext,
                      *, dataset=None, model_run_id: int | None = None,
                      nmi_history: list[float] | None = None, job_id: int | None = None,
                      device=None) -> dict[str, Any]:
    """Features -> PCA-whitening -> k-means -> 2-D map -> a stored cluster run."""
    t0 = time.perf_counter()
    feats = extract_features(project, backbone, ids, ctx.sub(0.0, 0.8), size=p["input_size"],
                             batch_size=p["batch_size"], device=str(device) if device else None,
                             workers=p.get("workers") or 0, dataset=dataset,
                             partial=_partial_features(project, ids, p, model_run_id, job_id))
    x = PCAWhitener.fit(feats, p["pca_dim"]).transform(feats)
    ctx.check_cancelled()
    km = kmeans(x, p["k"], niter=p["kmeans_iter"], seed=p["seed"])
    return _store_run(project, ids, x, km, p, ctx, t0, model_run_id=model_run_id,
                      nmi_history=nmi_history, job_id=job_id)


def _partial_features(project: Project, ids: list[int], p: dict[str, Any], model_run_id: int | None,
                      job_id: int | None):
    """Where a job's final feature pass keeps its rows so far: a killed "cluster now"
    (or the last pass of DeepCluster), resumed, starts after them.  Named by everything the
    features depend on (the network's weights or seed, the images, size and batch), so
    only the same computation can pick them up."""
    import hashlib

    if job_id is None:
        return None
    sha = project.models.get(model_run_id)["checkpoint_sha"] if model_run_id else None
    key = json.dumps({"checkpoint": sha, "arch": p["arch"], "seed": p["seed"], "init": p.get("init"),
                      "ids": ids, "size": p["input_size"], "batch": p["batch_size"]}, default=str)
    return project.cache_path("resume", f"features-{hashlib.sha256(key.encode()).hexdigest()[:20]}.npz")


# k-means settings of a re-clustering: every point assigned, centroids trained for
# RECLUSTER_ITER iterations on a sample of RECLUSTER_SAMPLE points (at least
# RECLUSTER_MIN_PER_CENTROID per centroid), so a reviewer who wants coarser or finer
# clusters gets them in about a second.  tests/bench/bench_cluster.py section 2 compares
# them with full k-means against 1,000 known clusters (50,000 x 256, 2 cores): 6 iterations
# on 16 points a centroid reached the same NMI (0.985) and mean squared distance as 10, in
# 1.3 s instead of 1.9 s; 20 iterations on every point gave NMI 0.987 in 4.8 s.
RECLUSTER_SAMPLE = 10_000
RECLUSTER_MIN_PER_CENTROID = 16
RECLUSTER_ITER = 6


def recluster_points_per_centroid(k: int) -> int:
    return max(RECLUSTER_MIN_PER_CENTROID, -(-RECLUSTER_SAMPLE // k))


def run_recluster(project: Project, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Job ``recluster``: a new run with ``k`` clusters from the stored features of cluster ``run``.

    ``method="kmeans"`` (default) runs k-means with the new k; ``method="merge"`` joins
    the run's own clusters into ``k`` groups (``features.merge_clusters``), so each new
    cluster is a union of old ones.  No network runs: the features the run was made from
    are reused, so the new run has the same backbone (``model_run_id``) and label set.
    Cluster labels belong to their run, so the new run starts unlabelled; individual
    human labels stay where they are.
    """
    t0 = time.perf_counter()
    rp = ReclusterParams.from_json(params).check(project)
    source = int(rp.cluster_run_id)
    row = project.clusters.run(source)
    if row is None:
        raise ValueError(f"no cluster run {source}")
    stored = project.clusters.features(source)
    if stored is None:
        raise ValueError(f"cluster run {source} has no stored features (its cache was cleared); "
                         "cluster again instead")
    feats, rows = stored
    ids = sorted(rows, key=rows.get)
    k = int(params.get("k") or default_k(len(ids)))
    if not 2 <= k <= len(ids):
        raise ValueError(f"k must be between 2 and the number of images ({len(ids)}), not {k}")
    method = params.get("method") or "kmeans"
    if method not in RECLUSTER_METHODS:
        raise ValueError(f"unknown re-cluster method {method!r} ({', '.join(RECLUSTER_METHODS)})")
    p = {**DEFAULTS, **json.loads(row["params"] or "{}"), "k": k, "reclustered_from": source,
         "recluster_method": method, "seed": int(params.get("seed") or 0)}
    if method == "merge":
        # The run's clusters as they are now, after the reviewer's own merges and splits.
        cluster_of = project.clusters.assignment(source)
        _, old = np.unique([cluster_of[i] for i in ids], return_inverse=True)
        if k >= old.max() + 1:
            raise ValueError(f"merging needs fewer groups than run {source} has clusters ({old.max() + 1}), "
                             f"not {k}")
        ctx.progress(0.1, f"merging the {old.max() + 1} clusters of run {source} into {k}")
        centroids = np.stack([feats[old == c].mean(0) for c in range(old.max() + 1)]).astype(np.float32)
        km = merge_clusters(feats, old, centroids, k)
    else:
        ctx.progress(0.1, f"k-means of {len(ids)} images into {k}")
        km = kmeans(feats, k, niter=RECLUSTER_ITER, seed=p["seed"],
                    max_points_per_centroid=recluster_points_per_centroid(k))
    return _store_run(project, ids, feats, km, p, ctx, t0, model_run_id=row["model_run_id"],
                      label_set_id=row["label_set_id"], job_id=ctx.job_id)


def _store_run(project: Project, ids: list[int], x: np.ndarray, km, p: dict[str, Any], ctx: JobContext,
               t0: float, *, model_run_id: int | None, nmi_history: list[float] | None = None,
               label_set_id: int | None = None, job_id: int | None = None) -> dict[str, Any]:
    """2-D map, agreement with existing labels, and the stored cluster run of one k-means."""
    pts, cen = map_2d(x, km.centroids, seed=p["seed"])
    metrics = {"truth": ground_truth_metrics(project, ids, km.assign), "seconds": time.perf_counter() - t0}
    if label_set_id is None and p.get("label_set"):
        ls = p["label_set"]
        label_set_id = project.labels.label_set(ls) if isinstance(ls, str) else int(ls)
    run_id = project.clusters.create_run(
        image_ids=ids, assign=km.assign, distance=km.distance, member_xy=pts, centroid_xy=cen,
        features=x, model_run_id=model_run_id, label_set_id=label_set_id, k=p["k"],
        params=jsonable(p), nmi_history=nmi_history or [], metrics=metrics, job_id=job_id)
    for name, m in metrics["truth"].items():
        for key in ("nmi", "ari", "purity"):
            ctx.metric(f"{name}/{key}", m[key], 0)
    ctx.progress(1.0, f"{len(set(km.assign.tolist()))} clusters stored (run {run_id})")
    return {"cluster_run_id": run_id, "model_run_id": model_run_id, "k": p["k"], "n": len(ids),
            "nmi_history": nmi_history or [], "metrics": metrics}


def ground_truth_metrics(project: Project, ids: list[int], assign: np.ndarray) -> dict[str, Any]:
    """NMI/ARI/purity against every image label set that has human or import labels."""
    out: dict[str, Any] = {}
    pos = {i: r for r, i in enumerate(ids)}
    for ls in project.labels.label_sets("image"):
        truth = project.labels.effective(ls["id"], sources=("human", "import"))
        common = [i for i in ids if i in truth]
        if len(common) < 2 or len({truth[i] for i in common}) < 2:
            continue
        out[ls["name"]] = truth_metrics([int(assign[pos[i]]) for i in common], [truth[i] for i in common])
    return out
