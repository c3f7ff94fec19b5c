"""DeepCluster's epochs, on one process or on every rank of a torchrun launch.

Split from ``deepcluster`` (the job: runs, resume, checkpoints, the final clustering), which
calls ``run_epochs``; ranks above 0 enter through ``cluster_worker`` and never open the
project (they read the memory-mapped snapshot rank 0 writes).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mskstudio.jobs import JobContext
from mskstudio.ml.cluster.features import (
    PCAWhitener,
    UniformClusterSampler,
    extract_features,
    kmeans,
    nmi,
    recalibrate_batchnorm,
)
from mskstudio.ml.scale import ddp
from mskstudio.ml.scale.accel import accel_for, maybe_compile, oom_guard

if TYPE_CHECKING:
    import torch


@dataclass
class EpochPlan:
    """The state the DeepCluster epochs start from (the same on every rank of a distributed run)."""

    ids: list[int]
    dataset: Any                   # AnalysisDataset over ``ids`` (rank 0's, or one over the snapshot)
    backbone: Any
    start: int                     # first epoch to run
    epochs: int
    opt_state: dict | None
    prev: np.ndarray | None        # the previous epoch's assignment (NMI between epochs)
    history: list[float]
    device: Any


def run_epochs(plan: EpochPlan, p: dict[str, Any], ctx: JobContext, *, save=None, truth=None):
    """Run DeepCluster epochs ``plan.start .. plan.epochs - 1``; returns the backbone.

    Under torchrun every rank runs this: each extracts the features of its share of the
    images, rank 0 runs PCA + k-means on the gathered features and warms up the new head,
    every rank receives the assignment and the head, draws the same uniform-over-clusters
    sample and trains its slice of it under DistributedDataParallel.  ``save`` and ``truth``
    (checkpoint, agreement with labels) are rank 0's only.
    """
    import torch
    import torch.nn as nn

    from mskstudio.ml.datasets import Augment, make_loader
    from mskstudio.ml.models import normalise

    ids, dataset, backbone, device = plan.ids, plan.dataset, plan.backbone, plan.device
    start, epochs, prev, history = plan.start, plan.epochs, plan.prev, plan.history
    dist, n_ranks, lead = ddp.active(), ddp.world_size() if ddp.active() else 1, ddp.rank() == 0
    mine = shard_dataset(dataset) if dist else dataset  # the images this rank embeds
    dim = backbone.fc.in_features if hasattr(backbone.fc, "in_features") else None
    dim = dim or feature_dim(backbone, p["input_size"])
    # bf16/fp16 autocast on CUDA; channels-last on CUDA and on the CPU too, where it made the
    # DeepCluster epoch 1.18x faster (tests/bench/bench_bare_loop.py, 200 images at 96 px,
    # resnet18, 1 thread: 7.8 -> 9.2 images/s; issue 29 measured the bare loop 40 -> 48).
    ax = accel_for(device, channels_last=True)
    backbone = ax.module(backbone)
    forward = maybe_compile(backbone, ctx.log) if not dist else backbone
    opt = torch.optim.SGD(backbone.parameters(), lr=p["lr"], momentum=p["momentum"],
                          weight_decay=p["weight_decay"])
    if plan.opt_state:
        opt.load_state_dict(plan.opt_state)
    scaler = ax.scaler()
    loss_fn = nn.CrossEntropyLoss()
    augment = Augment(p["input_size"], scale=(float(p["crop_scale"]), 1.0))
    batch_size = max(1, int(p["batch_size"]) // n_ranks)  # the same global batch as one process
    total = max(epochs - start, 1)
    for epoch in range(start, epochs):
        ddp.maybe_die(epoch)
        ectx = ctx.sub((epoch - start) / total, (epoch - start + 1) / total)
        t0 = time.perf_counter()
        dataset.augment = None
        if p["bn_recalibrate"] and epoch == start and p.get("init_report") is not None:
            # Only a weights file brings statistics of other images.  A random network's
            # BatchNorm (mean 0, variance 1) passes the image's own contrast through, and
            # recalibrating it first made the first clustering worse (2,000-image phantom
            # project, 96 px, k = 50: NMI vs true regions 0.61 -> 0.38).
            recalibrate(backbone, mine, p, device, ctx)
        feats = extract_features(None, backbone, mine.ids, ectx.sub(0.0, 0.35), size=p["input_size"],
                                 batch_size=p["batch_size"], device=str(device),
                                 workers=p["workers"], dataset=mine)
        if dist:
            feats = ddp.gather_sharded_rows(feats, len(ids))
        head = reset_head(dim, p["k"]).to(device)
        if lead:
            x = PCAWhitener.fit(feats, p["pca_dim"]).transform(feats)
            km = kmeans(x, p["k"], niter=p["kmeans_iter"], seed=p["seed"] + epoch)
            assign = km.assign
            ectx.progress(0.4, f"epoch {epoch + 1}/{epochs}: k-means done")
            if prev is not None:
                history.append(nmi(prev, assign))
                ctx.metric("nmi_consecutive", history[-1], epoch)
            ctx.metric("empty_clusters_reassigned", km.n_reassigned, epoch)
            # Agreement with the labels a person (or the import) gave, per epoch: the curve tells a
            # reviewer whether more epochs still help.  The labels never reach the training.
            for name, m in (truth(assign) if truth else {}).items():
                ctx.metric(f"{name}/nmi_per_epoch", m["nmi"], epoch)
                ctx.metric(f"{name}/purity_per_epoch", m["purity"], epoch)
            # A new head for the new pseudo-labels (DeepCluster resets the top layer).
            if p["head_warmup_steps"]:
                acc = warm_up_head(head, feats, assign, int(p["head_warmup_steps"]), device,
                                   seed=p["seed"] + epoch)
                ctx.metric("head_warmup_accuracy", acc, epoch)
        if dist:  # rank 0's clustering and head, on every rank
            assign, head_state = ddp.broadcast((assign, {k: v.cpu() for k, v in head.state_dict().items()})
                                               if lead else None)
            head.load_state_dict(head_state)
        head_opt = torch.optim.SGD(head.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
        dataset.set_targets(assign.tolist())
        dataset.augment = augment
        n_samples = max(1, round(float(p["samples_per_epoch"]) * len(ids)))
        sampler = UniformClusterSampler(assign, n_samples=n_samples, seed=p["seed"] + epoch)
        if dist:
            sampler = ddp.RankSlice(sampler)
        loader = make_loader(dataset, batch_size=batch_size, sampler=sampler, workers=p["workers"],
                             device=device, drop_last=len(sampler) > batch_size)
        net = ddp.wrap(nn.Sequential(backbone, head), device) if dist else None
        backbone.train()
        n_batches, losses = len(loader), []
        tctx = ectx.sub(0.4, 0.97)
        with oom_guard(p["batch_size"], device):
            for b, (xb, yb) in enumerate(loader):
                ctx.check_cancelled()
                xb = normalise(ax.batch(xb))
                yb = yb.to(device, non_blocking=True)
                with ax.autocast():
                    loss = loss_fn(net(xb) if net is not None else head(forward(xb)), yb)
                opt.zero_grad(set_to_none=True)
                head_opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.step(head_opt)
                scaler.update()
                losses.append(float(loss.detach()))
                tctx.progress((b + 1) / n_batches, f"epoch {epoch + 1}/{epochs} loss {losses[-1]:.3f}")
        dataset.augment = None
        if p["bn_recalibrate"]:  # the checkpoint (and the next epoch's k-means) get clean statistics
            recalibrate(backbone, mine, p, device, ctx)
        mean_loss = float(np.mean(losses)) if losses else float("nan")
        if dist:
            mean_loss = ddp.all_reduce_mean(mean_loss, len(losses))
        epoch_s = time.perf_counter() - t0
        prev = assign
        if lead and save is not None:
            state = {"arch": p["arch"], "backbone": {k: v.detach().cpu() for k, v in
                                                     backbone.state_dict().items()},
                     "optimizer": opt.state_dict(), "epoch": epoch, "input_size": p["input_size"],
                     "in_chans": 1, "nmi_history": history, "assign": assign.tolist(),
                     "image_ids": ids, "params": jsonable({**p, "epochs": epochs})}
            save(epoch, state, {"epoch": epoch, "epochs": epochs, "nmi_history": history,
                                "loss": mean_loss if losses else None, "epoch_seconds": epoch_s,
                                "processes": n_ranks})
            # After the checkpoint: a kill before it trains (and reports) this epoch again.
            ctx.metric("loss", mean_loss, epoch)
            ctx.metric("epoch_seconds", epoch_s, epoch)
            ectx.progress(1.0, f"epoch {epoch + 1}/{epochs} saved")
    dataset.augment = None
    return backbone


def shard_dataset(dataset):
    """This rank's share of an AnalysisDataset (rows r, r + n, ...), sharing its in-memory cache."""
    from mskstudio.ml.datasets import AnalysisDataset

    r, n = ddp.rank(), ddp.world_size()
    part = AnalysisDataset(dataset.project, dataset.ids[r::n], dataset.size, loader=dataset._load, preload=False)
    if dataset._cache is not None:
        part._cache = dataset._cache[r::n]
    return part


def worker_plan(project, p, ids, dataset, backbone, opt_state, start, epochs, prev, history,
                 device) -> dict[str, Any]:
    """What a rank > 0 needs: the snapshot folder and the starting state, never the project."""
    from mskstudio.ml.scale.snapshot import write_snapshot

    dataset.preload()  # the snapshot holds the letterboxed images every rank reads
    snap = write_snapshot(project.cache_dir / "snapshots", ids, dataset._cache, None,
                          {"trainer": "deepcluster", "input_size": int(p["input_size"])})
    return {"kind": "cluster", "snapshot": str(snap), "p": jsonable(p) | {"init_report": p.get("init_report")},
            "arch": p["arch"], "backbone": {k: v.detach().cpu() for k, v in backbone.state_dict().items()},
            "opt_state": opt_state, "start": start, "epochs": epochs,
            "prev": None if prev is None else np.asarray(prev), "history": list(history),
            "device": device.type}


def cluster_worker(plan: dict[str, Any], ctx: JobContext) -> None:
    """Rank > 0 of a distributed DeepCluster run: the broadcast plan on the memory-mapped snapshot."""
    import torch

    from mskstudio.ml.datasets import AnalysisDataset
    from mskstudio.ml.models import build_backbone
    from mskstudio.ml.scale.snapshot import locate, open_snapshot

    p = plan["p"]
    random.seed(p["seed"] + ddp.rank())
    torch.manual_seed(p["seed"] + ddp.rank())  # other augmentations than rank 0's
    snap = open_snapshot(locate(plan["snapshot"]))
    dataset = AnalysisDataset(None, snap.ids, int(snap.manifest["input_size"]), preload=False,
                              loader=_no_project)
    dataset._cache = snap.images
    backbone, _ = build_backbone(plan["arch"])
    backbone.load_state_dict(plan["backbone"])
    run_epochs(EpochPlan(snap.ids, dataset, backbone, plan["start"], plan["epochs"], plan["opt_state"],
                      plan["prev"], plan["history"], ddp.init_from_env(plan["device"])), p, ctx)


def _no_project(image_id: int):
    raise RuntimeError(f"image {image_id} is not in the training snapshot")


def reset_head(dim: int, k: int) -> torch.nn.Linear:
    """A freshly initialised linear classifier (weights N(0, 0.01), bias 0)."""
    import torch.nn as nn

    head = nn.Linear(dim, k)
    nn.init.normal_(head.weight, 0.0, 0.01)
    nn.init.zeros_(head.bias)
    return head


def warm_up_head(head: torch.nn.Linear, feats: np.ndarray, assign: np.ndarray, steps: int, device,
                 *, max_rows: int = 8192, seed: int = 0) -> float:
    """Fit a fresh head to the pseudo-labels on the frozen features (full-batch Adam); returns accuracy.

    Caron et al. train one long ImageNet epoch per clustering, so a head starting from
    N(0, 0.01) has thousands of steps to learn; on a few thousand radiographs an epoch is
    a few dozen steps, and a random head sends mostly noise back into the backbone for the
    whole epoch.  Starting from a head that already separates the clusters on clean
    features, every step teaches the backbone to keep augmented views in their cluster.
    """
    import torch
    import torch.nn.functional as F

    rows = np.arange(len(feats))
    if len(rows) > max_rows:
        rows = np.random.default_rng(seed).choice(rows, max_rows, replace=False)
    x = torch.as_tensor(feats[rows], dtype=torch.float32, device=device)
    y = torch.as_tensor(np.asarray(assign)[rows], dtype=torch.long, device=device)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    with torch.enable_grad():
        for _ in range(steps):
            loss = F.cross_entropy(head(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with torch.no_grad():
        return float((head(x).argmax(1) == y).float().mean())


def recalibrate(backbone, dataset, p: dict[str, Any], device, ctx: JobContext) -> None:
    dataset.augment = None
    recalibrate_batchnorm(backbone, dataset, batch_size=p["batch_size"], device=str(device),
                          workers=p["workers"], check=ctx.check_cancelled)


def feature_dim(backbone, size: int) -> int:
    import torch

    with torch.no_grad():
        return int(backbone.eval()(torch.zeros(1, 1, size, size)).shape[1])


def jsonable(p: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in p.items() if k != "image_ids" and isinstance(v, (str, int, float, bool,
                                                                               type(None), list, dict))}
