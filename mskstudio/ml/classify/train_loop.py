"""The inner loop of classifier training: data for a fold, one fold's training with early
stopping and per-epoch checkpoints, and logits of fold models and their ensemble.

Split out of ``train.py`` (which orchestrates splits, tasks, scoring and the run record)
so that each file fits in a head.
"""

from __future__ import annotations

import copy
import io
import json
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mskstudio.jobs import JobContext
from mskstudio.ml.classify.checkpoint_writer import ImmediateSaver
from mskstudio.ml.classify.classifier import CHECKPOINT_FORMAT, input_loader, make_classifier, model_inputs
from mskstudio.ml.classify.mask_guidance import AttentionMeter, CamTap, attention_loss, has_mask, letterboxed_masks
from mskstudio.ml.scale import ddp

if TYPE_CHECKING:
    from mskstudio.store import Project


def class_weights(counts: np.ndarray, mode: str = "none") -> np.ndarray:
    """Loss weight per class from training counts; a class with no examples gets 0.

    inverse: N / (C * n_c); median: median(f) / f_c with f_c = n_c / N over present classes
    (Eigen & Fergus 2015).
    """
    counts = np.asarray(counts, float)
    present = counts > 0
    w = np.zeros_like(counts)
    if mode == "none":
        return np.where(present, 1.0, 0.0)
    if mode == "inverse":
        w[present] = counts.sum() / (present.sum() * counts[present])
        return w
    if mode == "median":
        freq = counts[present] / counts.sum()
        w[present] = np.median(freq) / freq
        return w
    raise ValueError(f"unknown loss weighting {mode!r} (none, inverse, median)")


def save_blob(project: Project, obj: Any) -> str:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    # The buffer's own memory, not a getvalue() copy: a classifier checkpoint is ~140 MB.
    return project.blobs.put_chunks([buf.getbuffer()])


def jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


class FoldData:
    """All labelled images letterboxed once (uint16 in memory), shared by every fold."""

    def __init__(self, project, ids, targets, p, ctx: JobContext):
        from mskstudio.ml.datasets import AnalysisDataset, Augment

        self.ids = list(ids)
        self.row = {i: k for k, i in enumerate(self.ids)}
        self.target_of = dict(zip(self.ids, np.asarray(targets).tolist(), strict=True))
        self.plain = AnalysisDataset(project, self.ids, p["size"], augment=None, targets=list(targets),
                                     loader=input_loader(project, p["input"], p["roi_margin"]))
        self.plain.ensure_loaded(ctx.progress, ctx.check_cancelled)
        self.augmented = copy.copy(self.plain)
        self.augmented.augment = Augment(p["size"], scale=(0.6, 1.0), vflip=0.0) if p["augment"] else None
        # Lesion masks in input geometry, by row, for mask-guided attention (mask_guidance.py).
        self.masks: dict[int, np.ndarray] | None = None
        if float(p.get("mask_guidance") or 0) > 0:
            by_id = letterboxed_masks(project, self.ids, p["size"], p["input"], p["roi_margin"])
            self.masks = {self.row[i]: m for i, m in by_id.items()}
            ctx.log(f"mask guidance: {len(self.masks)} of {len(self.ids)} images have a lesion mask")
        # Joint fusion: the raw clinical vector of every row (ml/fuse/joint.py), set by the trainer.
        self.clinical: np.ndarray | None = None

    @property
    def clinical_dim(self) -> int:
        return 0 if self.clinical is None else int(self.clinical.shape[1])

    @classmethod
    def from_snapshot(cls, snap, p) -> FoldData:
        """The same data read from a memory-mapped training snapshot (ml/scale/snapshot.py):
        the other ranks of a distributed run, which never open the project."""
        from mskstudio.ml.datasets import AnalysisDataset, Augment

        self = cls.__new__(cls)
        self.ids = snap.ids
        self.row = {i: k for k, i in enumerate(self.ids)}
        self.target_of = dict(zip(self.ids, snap.targets.tolist(), strict=True))
        self.plain = AnalysisDataset(None, self.ids, p["size"], augment=None, targets=snap.targets.tolist(),
                                     preload=True)
        self.plain._cache = snap.images
        self.augmented = copy.copy(self.plain)
        self.augmented.augment = Augment(p["size"], scale=(0.6, 1.0), vflip=0.0) if p["augment"] else None
        self.masks = None  # mask guidance is refused under DDP for now
        self.clinical = None  # set from the broadcast plan (joint fusion)
        return self

    def subset(self, image_ids, task_targets, *, train: bool, with_masks: bool | None = None):
        """Augmented items for training, plain ones otherwise; masks (when guided) for training
        and wherever ``with_masks`` asks (validation scores the attention too)."""
        keep_masks = train if with_masks is None else with_masks
        return Subset(self.augmented if train else self.plain, [self.row[i] for i in image_ids],
                      [task_targets[i] for i in image_ids], masks=self.masks if keep_masks else None,
                      clinical=self.clinical)


class Subset:
    """(x, target) per item; with ``masks`` (row -> uint8 square) (x, target, mask [1, S, S]);
    with ``clinical`` (joint fusion: [rows of the dataset, D] raw vectors) ((x, c), target)."""

    def __init__(self, ds, rows, targets, masks: dict[int, np.ndarray] | None = None,
                 clinical: np.ndarray | None = None):
        self.ds, self.rows, self.targets, self.masks, self.clinical = ds, rows, targets, masks, clinical

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, k):
        if self.masks is None:
            x, _ = self.ds[self.rows[k]]
            if self.clinical is not None:
                import torch

                return (x, torch.from_numpy(self.clinical[self.rows[k]])), self.targets[k]
            return x, self.targets[k]
        import torch

        row = self.rows[k]
        x = torch.from_numpy(self.ds.square(row))[None]
        m = self.masks.get(row)
        mask = torch.zeros_like(x) if m is None else torch.from_numpy(m.astype(np.float32) / 255.0)[None]
        if self.ds.augment is not None:
            x, mask = self.ds.augment(x, mask)
        return x, self.targets[k], mask


# Joint fusion: the metadata MLP (a few standardised columns, ~1,000 weights) learns at this
# multiple of the learning rate. At the CNN's rate it moves too little in a short run to
# matter beside the image features: on the 800-image phantom bench (6 epochs, lr 1e-3) the
# joint model without it scored no better than image-only while a logistic regression on the
# same fields beat both.
CLINICAL_LR_MULT = 10.0


def param_groups(net, p) -> list[dict[str, Any]]:
    """The trainable parameters; a joint-fusion model's metadata MLP in a group of its own."""
    meta = getattr(net, "meta", None)
    meta_ids = {id(q) for q in meta.parameters()} if meta is not None else set()
    base = [q for q in net.parameters() if q.requires_grad and id(q) not in meta_ids]
    groups = [{"params": base}]
    if meta_ids:
        groups.append({"params": [q for q in meta.parameters() if q.requires_grad],
                       "lr": float(p["lr"]) * CLINICAL_LR_MULT})
    return groups


def make_optimizer(params, p):
    import torch

    if p["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=p["lr"], momentum=p["momentum"], weight_decay=p["weight_decay"])
    if p["optimizer"] == "adam":
        return torch.optim.AdamW(params, lr=p["lr"], weight_decay=p["weight_decay"])
    raise ValueError(f"unknown optimizer {p['optimizer']!r} (sgd, adam)")


def make_scheduler(opt, p):
    import torch

    if p["schedule"] == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, int(p["epochs"])))
    if p["schedule"] == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=int(p["step_size"]), gamma=p["gamma"])
    if p["schedule"] in ("none", None):
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0)
    raise ValueError(f"unknown schedule {p['schedule']!r} (cosine, step, none)")


@dataclass
class FoldPlan:
    """One fold of one task (was 12 positional arguments of ``train_fold``)."""

    base: FoldData
    train_ids: list[int]
    val_ids: list[int]
    task_targets: dict[int, int]   # image id -> class index of this task
    names: list[str]               # the task's class names
    encoder_init: dict | None      # encoder state every fold starts from (None: random)
    prefix: str                    # "fold2" or "stage1/fold2": metric names and messages
    state: dict | None = None      # a checkpointed fold to resume


def train_fold(plan: FoldPlan, p: dict[str, Any], device, ctx: JobContext, save) -> dict[str, Any]:
    base, tr, va, task_targets, names = plan.base, plan.train_ids, plan.val_ids, plan.task_targets, plan.names
    encoder_init, prefix, state = plan.encoder_init, plan.prefix, plan.state
    import torch
    import torch.nn.functional as F


    t0 = time.monotonic()
    fold_seed = p["seed"] + 1000 * (int(prefix.rsplit("fold", 1)[1]) + 1)
    torch.manual_seed(fold_seed)
    random.seed(fold_seed)
    model = make_classifier(p["arch"], len(names), base.clinical_dim)
    if base.clinical is not None:  # the fold's imputation and scaling: its training rows only
        model.fit_clinical(base.clinical[[base.row[i] for i in tr]])
    if encoder_init is not None:
        missing, _ = model.encoder.load_state_dict(encoder_init, strict=False)
        if missing:
            ctx.log(f"{prefix}: {len(missing)} encoder tensors not in the init weights")
    if p["freeze_encoder"]:
        for q in model.encoder.parameters():
            q.requires_grad_(False)
    model.to(device)
    net, n_ranks = model, 1  # ``net``: the bare module (weights, evaluation); ``model`` trains
    if ddp.active():
        # Every rank starts from rank 0's weights (DDP broadcasts them); each rank then sees
        # 1/N of every batch, so the global batch and the learning rate stay those of one process.
        model = torch.nn.parallel.DistributedDataParallel(model)
        n_ranks = ddp.world_size()
        torch.manual_seed(fold_seed + ddp.rank())  # different augmentations per rank
    counts = np.bincount([task_targets[i] for i in tr], minlength=len(names))
    weight = torch.tensor(class_weights(counts, p["loss_weighting"]), dtype=torch.float32, device=device)
    opt = make_optimizer(param_groups(net, p), p)
    sched = make_scheduler(opt, p)
    cuda = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)
    gen = torch.Generator().manual_seed(fold_seed)
    train_ds = base.subset(tr, task_targets, train=True)
    sampler = None
    if n_ranks > 1:
        sampler = torch.utils.data.distributed.DistributedSampler(train_ds, shuffle=True, seed=fold_seed)
    batch_size = max(1, int(p["batch_size"]) // n_ranks)
    train_loader = torch.utils.data.DataLoader(
        train_ds, batch_size=batch_size, shuffle=sampler is None, sampler=sampler,
        generator=gen if sampler is None else None, num_workers=int(p["workers"] or 0), pin_memory=cuda,
        drop_last=len(tr) // n_ranks > batch_size)
    guidance = float(p.get("mask_guidance") or 0) if base.masks is not None else 0.0
    val_ds = base.subset(va, task_targets, train=False, with_masks=guidance > 0)
    tap = CamTap(net, p["arch"]) if guidance > 0 else None
    epoch0, best, bad, history = 0, None, 0, []
    best_state, best_epoch, best_val_logits = None, -1, None
    if state is not None:
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        epoch0, best, bad = state["epoch"], state["best"], state["bad"]
        history, best_state, best_epoch = state["history"], state["best_state"], state["best_epoch"]
        if best_state is None and best_epoch >= 0:  # checkpointed at its best epoch: the weights are the model's
            best_state = {k: v.detach().cpu().clone() for k, v in state["model"].items()}
        best_val_logits = state["best_val_logits"]
        ctx.log(f"{prefix}: resuming at epoch {epoch0 + 1}")
    epochs = int(p["epochs"])
    nb = max(1, len(train_loader))
    # The checkpoint is written on a thread while the next epoch trains (checkpoint_writer.py);
    # a plain ``save(state)`` callable (tests, the other ranks) saves at once.
    saver = save if hasattr(save, "poll") else ImmediateSaver(save)
    try:
        for epoch in range(epoch0, epochs):
            t_epoch = time.monotonic()
            if sampler is not None:
                ddp.maybe_die(epoch)
                sampler.set_epoch(epoch)
            model.train()
            if p["freeze_encoder"]:
                net.encoder.eval()  # frozen batch-norm statistics too
            ce_sum, objective_sum, n_seen, correct, att_sum, n_guided = 0.0, 0.0, 0, 0, 0.0, 0
            for b, batch in enumerate(train_loader):
                saver.poll()  # commits the previous epoch's checkpoint once written, reports its figures
                ctx.check_cancelled()
                inputs, y = model_inputs(batch[0], device), batch[1].to(device, non_blocking=True)
                with torch.autocast(device.type, enabled=cuda):
                    logits = model(*inputs)
                    ce = F.cross_entropy(logits.float(), y, weight=weight)
                    loss = ce
                    if tap is not None:
                        att = attention_loss(tap.output, net.head.weight, y, batch[2].to(device))
                        loss = ce + guidance * att
                        guided = int(has_mask(batch[2]).sum())  # the images the term averaged over
                        att_sum += float(att.detach()) * guided
                        n_guided += guided
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                # The logged training loss is the cross-entropy alone, the same quantity as val_loss;
                # the guided objective's attention term is logged apart as train_attention.
                ce_sum += float(ce.detach()) * len(y)
                objective_sum += float(loss.detach()) * len(y)
                n_seen += len(y)
                correct += int((logits.argmax(1) == y).sum())
                ctx.progress((epoch + (b + 1) / nb) / epochs, f"{prefix} epoch {epoch + 1}/{epochs}")
            sched.step()
            meter = AttentionMeter(tap) if tap is not None else None
            if n_ranks > 1:
                # Sums over ranks, and validation logits of every rank's share put back in order:
                # every rank then takes the same early-stopping decision.
                ce_sum, objective_sum, n_seen, correct = ddp.all_reduce_sums([ce_sum, objective_sum, n_seen, correct])
                mine = Subset(val_ds.ds, ddp.shard(val_ds.rows), ddp.shard(val_ds.targets), clinical=val_ds.clinical)
                val_logits = ddp.gather_sharded_rows(logits_of(net, mine, device, p), len(val_ds))
            else:
                val_logits = logits_of(net, val_ds, device, p, meter)
            yv = torch.tensor(val_ds.targets, dtype=torch.long)
            vl = torch.from_numpy(val_logits)
            val_loss = float(F.cross_entropy(vl, yv, weight=weight.cpu())) if len(yv) else float("nan")
            val_acc = float((vl.argmax(1) == yv).float().mean()) if len(yv) else float("nan")
            rec = {"epoch": epoch, "train_loss": ce_sum / max(n_seen, 1), "train_acc": correct / max(n_seen, 1),
                   "val_loss": val_loss, "val_acc": val_acc, "lr": opt.param_groups[0]["lr"]}
            monitored = val_loss
            if tap is not None:
                rec["train_objective"] = objective_sum / max(n_seen, 1)
                if n_guided:  # per masked image, as the validation meter counts it
                    rec["train_attention"] = att_sum / n_guided
                if meter.n:
                    # Early stopping and the kept checkpoint follow the objective being trained:
                    # cross-entropy alone stops a guided model before it has learnt where to look.
                    rec["val_attention"] = meter.mean
                    monitored = val_loss + guidance * meter.mean
            history.append(rec)
            score = -monitored if p["monitor"] == "val_loss" else val_acc
            if best is None or score > best:
                best, bad, best_epoch = score, 0, epoch
                best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
                best_val_logits = val_logits
            else:
                bad += 1
            stop = bad >= int(p["patience"])
            # The best weights are stored apart only when they are not this epoch's: at an improving
            # epoch they equal "model" and a second copy is a quarter of the checkpoint's bytes
            # (resnet18: weights 45 MB, AdamW moments 90 MB), written and fsynced every epoch.
            saver({"model": net.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                   "epoch": epoch + 1, "best": best, "bad": bad, "history": history,
                   "best_state": None if best_epoch == epoch else best_state, "best_epoch": best_epoch,
                   "best_val_logits": best_val_logits}, after=report_epoch(ctx, prefix, rec, epoch))
            # Wall seconds of the epoch, its checkpoint included, for the bench (which compares the
            # epochs after the first with the bare torch loop).  Set after the save: the record in
            # the checkpoint lacks it, and a resumed run's history lacks it for that epoch.
            rec["seconds"] = round(time.monotonic() - t_epoch, 3)
            if stop:
                ctx.log(f"{prefix}: early stop after epoch {epoch + 1} (best {best_epoch + 1})")
                break
    finally:
        saver.flush()  # the last epoch's checkpoint committed, its figures reported
    if tap is not None:
        tap.remove()
    ctx.progress(1.0)
    return {"state": best_state, "best_epoch": best_epoch, "epochs_run": len(history),
            "history": history, "val_ids": list(va), "val_logits": best_val_logits,
            "seconds": round(time.monotonic() - t0, 2)}


def report_epoch(ctx: JobContext, prefix: str, rec: dict[str, Any], epoch: int):
    """The epoch's figures, reported once its checkpoint is the run's: a kill in between would
    otherwise leave the figures of an epoch that the resumed run trains again."""
    rec = dict(rec)

    def report() -> None:
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "train_attention", "val_attention"):
            if key in rec:
                ctx.metric(f"{prefix}/{key}", rec[key], epoch)
    return report


def progress_checkpoint(p, task, fold, fold_state, done) -> dict[str, Any]:
    """The checkpoint of a run in training: the folds done and the fold in progress."""
    return {"format": CHECKPOINT_FORMAT, "state": "training", "arch": p["arch"], "task": task,
            "fold": fold, "done": done, **(fold_state or {})}


def logits_of(model, ds, device, p, attention: AttentionMeter | None = None) -> np.ndarray:
    """Logits of every item of ``ds``; ``attention`` also scores the masked items' CAMs."""
    import torch

    from mskstudio.ml.datasets import make_loader

    model.eval()
    out = []
    cuda = device.type == "cuda"
    with torch.inference_mode():
        for batch in make_loader(ds, batch_size=int(p["batch_size"]) * 2, device=device):
            with torch.autocast(device.type, enabled=cuda):
                out.append(model(*model_inputs(batch[0], device)).float().cpu().numpy())
            if attention is not None and len(batch) > 2:
                attention.add(model.head.weight, batch[1].to(device), batch[2].to(device))
    n_out = model.head.out_features
    return np.concatenate(out) if out else np.zeros((0, n_out), np.float32)


def fold_models(results, names, p, device, clinical_dim: int = 0):
    models = []
    for r in results:
        m = make_classifier(p["arch"], len(names), clinical_dim)
        m.load_state_dict(r["state"])
        models.append(m.to(device).eval())
    return models


def ensemble_logits(base: FoldData, ids, models, p, device) -> np.ndarray:
    ds = base.subset(ids, {i: 0 for i in ids}, train=False)
    return np.mean([logits_of(m, ds, device, p) for m in models], axis=0)
