"""Train a classifier on a label set: patient-level k-fold CV, a held-out test, a fold ensemble.

``run_train(project, params, ctx)`` is the job of kind ``"train"``.  The task is a
label set (never a ``truth:`` set, never ``model`` labels: only human, import and
cluster labels are targets).  Steps:

1. split by patient (``splits.make_split``, checked for leaks) and store the split;
2. for every fold, train from the chosen init (scratch, a DeepCluster run, a weights
   file), optionally with a frozen encoder, with weighted cross-entropy (none,
   inverse frequency, median frequency balancing), SGD/Adam, step/cosine schedule,
   early stopping on validation, keeping the best-validation weights;
3. score each fold on its validation part, the pooled out-of-fold predictions, and
   the fold ensemble (mean of logits) on the hold-out (``evaluate``);
4. choose an out-of-distribution rule: the label set's reject class (``is_reject``)
   when it has examples, else a max-softmax threshold from validation;
5. write one checkpoint blob with every fold's best weights.

A checkpoint is written after every epoch, so ``resume`` (a model run id) continues
a cancelled or crashed run at the next epoch.  With ``cascade`` (the healthy class
name) two classifiers are trained on the same split — healthy vs pathological, then
among the pathological — and the hold-out is scored as one cascade.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import random
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from ..domain import is_truth_set
from ..jobs import Cancelled, JobContext
from . import evaluate as ev
from .classifier import CHECKPOINT_FORMAT, ROI_MARGIN, input_loader, make_classifier
from .splits import check_split, make_split, split_summary

if TYPE_CHECKING:

    from ..store import Project

KIND = "classifier"
TRAIN_SOURCES = ("human", "import", "cluster")  # model labels never become targets

DEFAULTS: dict[str, Any] = {
    "label_set": None,          # name or id (required)
    "arch": "resnet18",         # resnet18 | resnet50 | efficientnet_b0 | swin_t | tinycnn
    "init": "scratch",          # scratch | run:<id> (DeepCluster backbone) | path to a weights file
    "freeze_encoder": False,
    "input": "image",           # image (letterboxed) | roi (square around mask/box + margin)
    "roi_margin": ROI_MARGIN,
    "size": 224,
    "k": 5,
    "holdout": "random",        # random | centre | none
    "test_fraction": 0.2,
    "test_centre": None,
    "epochs": 20,
    "batch_size": 32,
    "optimizer": "adam",        # adam | sgd
    "lr": 1e-3,
    "momentum": 0.9,
    "weight_decay": 1e-4,
    "schedule": "cosine",       # cosine | step | none
    "step_size": 10,
    "gamma": 0.1,
    "loss_weighting": "none",   # none | inverse | median
    "patience": 5,              # epochs without validation improvement before stopping
    "monitor": "val_loss",      # val_loss | val_acc
    "augment": True,
    "reject": "auto",           # auto | class | threshold | none
    "reject_quantile": 0.05,    # threshold = this quantile of validation max-softmax
    "cascade": None,            # name of the healthy class -> two-stage cascade
    "cascade_threshold": 0.5,
    "n_boot": 500,
    "seed": 0,
    "device": "auto",
    "workers": 0,
    "image_ids": None,
    "name": None,
    "resume": None,             # model run id of a classifier run to continue
}


# ---- small pieces (tested by hand) ------------------------------------------------------------
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


def data_hash(labels: dict[int, int], extra: dict[str, Any] | None = None) -> str:
    h = hashlib.sha256(json.dumps(sorted(labels.items())).encode())
    if extra:
        h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _save_blob(project: Project, obj: Any) -> str:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return project.blobs.put_bytes(buf.getvalue())


# ---- the job ------------------------------------------------------------------------------------
def run_train(project: Project, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:

    from .models import load_checkpoint, pick_device

    t_start = time.monotonic()
    resume_state: dict[str, Any] | None = None
    if params.get("resume"):
        run_id = int(params["resume"])
        row = project.models.get(run_id)
        if row is None or row["kind"] != KIND:
            raise ValueError(f"model run {run_id} is not a classifier run")
        p = {**DEFAULTS, **json.loads(row["params"])}
        p.update({k: v for k, v in params.items() if k in ("device", "workers") and v is not None})
        if row["checkpoint_sha"]:
            resume_state = load_checkpoint(project, run_id)
            if resume_state.get("state") == "done":
                raise ValueError(f"model run {run_id} is already finished")
        split = json.loads(row["split"])
        project.models.set_status(run_id, "running", job_id=ctx.job_id)
    else:
        p = {**DEFAULTS, **{k: v for k, v in params.items() if v is not None}}
        run_id, split = None, None
    if p["label_set"] is None:
        raise ValueError("train needs a label set")
    ls_id, ls_name = _resolve_label_set(project, p["label_set"])
    device = pick_device(p["device"])

    # ---- data --------------------------------------------------------------------------------
    allowed = set(project.images.ids())
    if p["image_ids"]:
        allowed &= {int(i) for i in p["image_ids"]}
    labels = {i: c for i, c in project.labels.effective(ls_id, sources=TRAIN_SOURCES).items()
              if i in allowed}
    classes = [r for r in project.labels.classes(ls_id) if r["id"] in set(labels.values())]
    if len(classes) < 2:
        raise ValueError(f"label set {ls_name!r} needs labelled images of at least two classes")
    class_ids = [int(r["id"]) for r in classes]
    class_names = [r["name"] for r in classes]
    reject_ids = [int(r["id"]) for r in classes if r["is_reject"]]
    ids = sorted(labels)
    index_of = {c: j for j, c in enumerate(class_ids)}
    targets = np.asarray([index_of[labels[i]] for i in ids])
    patient_of = project.images.patient_of(ids)

    if split is None:
        centre_of = {int(r["id"]): r["centre"] for r in project.images.table()} \
            if p["holdout"] == "centre" else None
        split = make_split(ids, patient_of, targets, k=p["k"], holdout=p["holdout"],
                           test_fraction=p["test_fraction"], centre_of=centre_of,
                           test_centre=p["test_centre"], seed=p["seed"])
    check_split(split, patient_of)  # also on resume: the labels may have moved since

    parent = None
    if isinstance(p["init"], str) and p["init"].startswith("run:"):
        parent = int(p["init"][4:])
    elif isinstance(p["init"], int):
        parent, p["init"] = int(p["init"]), f"run:{int(p['init'])}"
    if parent is not None:
        p["arch"] = load_checkpoint(project, parent).get("arch", p["arch"])
    if run_id is None:
        run_id = project.models.create(KIND, p["arch"], name=p["name"] or f"{ls_name} {p['arch']}",
                                       params=p, parent_run_id=parent, label_set_id=ls_id,
                                       job_id=ctx.job_id)
        project.models.set_fields(run_id, split=json.dumps(split),
                                  data_hash=data_hash(labels, {"size": p["size"], "input": p["input"]}))
    ctx.log(f"model run {run_id}: {len(ids)} images, {len(class_ids)} classes, "
            f"{len(split['test'])} held out, {len(split['folds'])} folds")

    try:
        return _train_run(project, p, ctx, run_id, ls_name, ids, targets, class_ids, class_names,
                          reject_ids, patient_of, split, parent, resume_state, t_start, device)
    except Cancelled:
        project.models.set_status(run_id, "cancelled", job_id=ctx.job_id)
        raise
    except BaseException:
        project.models.set_status(run_id, "error", job_id=ctx.job_id)
        raise


def _train_run(project, p, ctx, run_id, ls_name, ids, targets, class_ids, class_names, reject_ids,
               patient_of, split, parent, resume_state, t_start, device) -> dict[str, Any]:
    import torch

    random.seed(p["seed"])
    torch.manual_seed(p["seed"])
    base = _Data(project, ids, targets, p, ctx.sub(0.0, 0.05))

    # ---- tasks: one flat classifier or a two-stage cascade -------------------------------------
    if p["cascade"]:
        if p["cascade"] not in class_names:
            raise ValueError(f"cascade: no class {p['cascade']!r} in {ls_name!r}")
        h = class_names.index(p["cascade"])
        sub_names = [n for j, n in enumerate(class_names) if j != h]
        sub_index = {j: s for s, j in enumerate(j for j in range(len(class_names)) if j != h)}
        tasks = [
            ("stage1", [p["cascade"], "pathological"],
             {i: int(t != h) for i, t in zip(ids, targets, strict=True)}),
            ("stage2", sub_names,
             {i: sub_index[int(t)] for i, t in zip(ids, targets, strict=True) if t != h}),
        ]
    else:
        tasks = [("main", class_names, {i: int(t) for i, t in zip(ids, targets, strict=True)})]

    encoder_init = _encoder_init(project, p, parent)
    done: dict[str, list[dict[str, Any]]] = resume_state["done"] if resume_state else {}
    n_units = len(tasks) * len(split["folds"])
    unit = 0
    for task_name, names, task_targets in tasks:
        done.setdefault(task_name, [])
        for f, fold in enumerate(split["folds"]):
            lo = 0.05 + 0.85 * unit / n_units
            hi = 0.05 + 0.85 * (unit + 1) / n_units
            unit += 1
            if f < len(done[task_name]):
                continue
            tr = [i for i in fold["train"] if i in task_targets]
            va = [i for i in fold["val"] if i in task_targets]
            state = None
            if (resume_state and "model" in resume_state and resume_state.get("task") == task_name
                    and resume_state.get("fold") == f):
                state = resume_state
            prefix = f"fold{f}" if task_name == "main" else f"{task_name}/fold{f}"
            result = _train_fold(
                base, tr, va, task_targets, names, p, encoder_init, device, prefix,
                ctx.sub(lo, hi), state,
                save=lambda s, tn=task_name, ff=f: _checkpoint_progress(project, run_id, p, tn, ff, s, done))
            done[task_name].append(result)
            _checkpoint_progress(project, run_id, p, task_name, f + 1, None, done)

    # ---- scoring -------------------------------------------------------------------------------
    ctx.progress(0.9, "scoring")
    t_eval = time.monotonic()
    metrics: dict[str, Any] = {"label_set": ls_name, "classes": class_names,
                               "split": split_summary(split, patient_of,
                                                      dict(zip(ids, targets.tolist(), strict=True)))}
    ckpt: dict[str, Any] = {"format": CHECKPOINT_FORMAT, "state": "done", "params": p,
                            "class_ids": class_ids, "class_names": class_names}
    stage_models: dict[str, list] = {}
    for task_name, names, task_targets in tasks:
        results = done[task_name]
        task_class_ids = class_ids if task_name == "main" else None
        m, models, extra = _score_task(base, split, task_targets, names, results, p, device,
                                       reject_ids, task_class_ids)
        metrics[task_name] = m
        stage_models[task_name] = models
        ckpt[task_name] = {"arch": p["arch"], "size": p["size"], "input": p["input"],
                           "margin": p["roi_margin"], "class_names": names,
                           "class_ids": task_class_ids or list(range(len(names))),
                           "folds": [r["state"] for r in results], **extra}
    if p["cascade"]:
        h = class_names.index(p["cascade"])
        ckpt.update(kind="cascade", healthy_class_id=class_ids[h], healthy_name=p["cascade"],
                    cascade_threshold=p["cascade_threshold"])
        order = [h] + [j for j in range(len(class_names)) if j != h]
        ckpt["class_ids"] = [class_ids[j] for j in order]
        ckpt["class_names"] = [class_names[j] for j in order]
        if split["test"]:
            test = split["test"]
            l1 = _ensemble_logits(base, test, stage_models["stage1"], p, device)
            l2 = _ensemble_logits(base, test, stage_models["stage2"], p, device)
            p_path = _softmax(l1)[:, 1]
            full = {c: k for k, c in enumerate(order)}
            y = [full[int(base.target_of[i])] for i in test]
            metrics["holdout"] = ev.cascade_report(
                y, p_path, _softmax(l2), p["cascade"], ckpt["class_names"][1:],
                threshold=p["cascade_threshold"], n_boot=p["n_boot"], seed=p["seed"])
    else:
        ckpt["kind"] = "flat"
        metrics["holdout"] = metrics["main"].get("holdout")
    metrics["timings"] = {"total_s": round(time.monotonic() - t_start, 2),
                          "scoring_s": round(time.monotonic() - t_eval, 2),
                          "folds_s": {t: [r["seconds"] for r in done[t]] for t in done}}
    sha = _save_blob(project, ckpt)
    project.models.set_checkpoint(run_id, sha, metrics=_jsonable(metrics), params=p)
    project.models.set_status(run_id, "done", job_id=ctx.job_id)
    ctx.progress(1.0, "done")
    hold = metrics.get("holdout") or {}
    return {"model_run_id": run_id, "checkpoint": sha, "classes": class_names,
            "holdout_accuracy": (hold.get("accuracy") or {}).get("value"),
            "holdout_n": hold.get("n", 0), "majority_rate": hold.get("majority_rate"),
            "seconds": metrics["timings"]["total_s"]}


def _resolve_label_set(project: Project, key: Any) -> tuple[int, str]:
    rows = project.labels.label_sets()
    for r in rows:
        if str(r["id"]) == str(key) or r["name"] == key:
            if is_truth_set(r["name"]):
                raise ValueError(f"{r['name']!r} holds ground truth for scoring only; "
                                 "it cannot be a training target")
            return int(r["id"]), r["name"]
    raise ValueError(f"no label set {key!r}")


def _encoder_init(project: Project, p: dict[str, Any], parent: int | None) -> dict | None:
    """Encoder state every fold starts from (None = random init from the seed)."""
    if parent is not None:
        from .models import load_checkpoint

        return load_checkpoint(project, parent)["backbone"]
    init = p["init"]
    if init in (None, "", "scratch"):
        return None
    from .classifier import build_encoder
    from .models import load_weights_file

    enc, _ = build_encoder(p["arch"])
    report = load_weights_file(enc, init)
    if len(report["missing"]) > len(enc.state_dict()) // 2:
        raise ValueError(f"{init}: the weights do not fit {p['arch']} ({len(report['missing'])} missing)")
    return enc.state_dict()


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


class _Data:
    """All labelled images letterboxed once (uint16 in memory), shared by every fold."""

    def __init__(self, project, ids, targets, p, ctx: JobContext):
        from .datasets import AnalysisDataset, Augment

        self.ids = list(ids)
        self.row = {i: k for k, i in enumerate(self.ids)}
        self.target_of = dict(zip(self.ids, np.asarray(targets).tolist(), strict=True))
        self.plain = AnalysisDataset(project, self.ids, p["size"], augment=None, targets=list(targets),
                                     loader=input_loader(project, p["input"], p["roi_margin"]))
        self.plain.ensure_loaded(ctx.progress, ctx.check_cancelled)
        self.augmented = copy.copy(self.plain)
        self.augmented.augment = Augment(p["size"], scale=(0.6, 1.0), vflip=0.0) if p["augment"] else None

    def subset(self, image_ids, task_targets, *, train: bool):
        return _Subset(self.augmented if train else self.plain, [self.row[i] for i in image_ids],
                       [task_targets[i] for i in image_ids])


class _Subset:
    def __init__(self, ds, rows, targets):
        self.ds, self.rows, self.targets = ds, rows, targets

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, k):
        x, _ = self.ds[self.rows[k]]
        return x, self.targets[k]


def _make_optimizer(params, p):
    import torch

    if p["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=p["lr"], momentum=p["momentum"], weight_decay=p["weight_decay"])
    if p["optimizer"] == "adam":
        return torch.optim.AdamW(params, lr=p["lr"], weight_decay=p["weight_decay"])
    raise ValueError(f"unknown optimizer {p['optimizer']!r} (sgd, adam)")


def _make_scheduler(opt, p):
    import torch

    if p["schedule"] == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, int(p["epochs"])))
    if p["schedule"] == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=int(p["step_size"]), gamma=p["gamma"])
    if p["schedule"] in ("none", None):
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0)
    raise ValueError(f"unknown schedule {p['schedule']!r} (cosine, step, none)")


def _train_fold(base: _Data, tr, va, task_targets, names, p, encoder_init, device, prefix,
                ctx: JobContext, state, save) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F


    t0 = time.monotonic()
    fold_seed = p["seed"] + 1000 * (int(prefix.rsplit("fold", 1)[1]) + 1)
    torch.manual_seed(fold_seed)
    random.seed(fold_seed)
    model = make_classifier(p["arch"], len(names))
    if encoder_init is not None:
        missing, _ = model.encoder.load_state_dict(encoder_init, strict=False)
        if missing:
            ctx.log(f"{prefix}: {len(missing)} encoder tensors not in the init weights")
    if p["freeze_encoder"]:
        for q in model.encoder.parameters():
            q.requires_grad_(False)
    model.to(device)
    counts = np.bincount([task_targets[i] for i in tr], minlength=len(names))
    weight = torch.tensor(class_weights(counts, p["loss_weighting"]), dtype=torch.float32, device=device)
    opt = _make_optimizer([q for q in model.parameters() if q.requires_grad], p)
    sched = _make_scheduler(opt, p)
    cuda = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)
    gen = torch.Generator().manual_seed(fold_seed)
    train_loader = torch.utils.data.DataLoader(
        base.subset(tr, task_targets, train=True), batch_size=int(p["batch_size"]), shuffle=True,
        generator=gen, num_workers=int(p["workers"] or 0), pin_memory=cuda,
        drop_last=len(tr) > int(p["batch_size"]))
    val_ds = base.subset(va, task_targets, train=False)
    epoch0, best, bad, history = 0, None, 0, []
    best_state, best_epoch, best_val_logits = None, -1, None
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        epoch0, best, bad = state["epoch"], state["best"], state["bad"]
        history, best_state, best_epoch = state["history"], state["best_state"], state["best_epoch"]
        best_val_logits = state["best_val_logits"]
        ctx.log(f"{prefix}: resuming at epoch {epoch0 + 1}")
    epochs = int(p["epochs"])
    nb = max(1, len(train_loader))
    for epoch in range(epoch0, epochs):
        model.train()
        if p["freeze_encoder"]:
            model.encoder.eval()  # frozen batch-norm statistics too
        tot, n_seen, correct = 0.0, 0, 0
        for b, (x, y) in enumerate(train_loader):
            ctx.check_cancelled()
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device.type, enabled=cuda):
                logits = model(x)
                loss = F.cross_entropy(logits.float(), y, weight=weight)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            tot += float(loss.detach()) * len(y)
            n_seen += len(y)
            correct += int((logits.argmax(1) == y).sum())
            ctx.progress((epoch + (b + 1) / nb) / epochs, f"{prefix} epoch {epoch + 1}/{epochs}")
        sched.step()
        val_logits = _logits(model, val_ds, device, p)
        yv = torch.tensor(val_ds.targets, dtype=torch.long)
        vl = torch.from_numpy(val_logits)
        val_loss = float(F.cross_entropy(vl, yv, weight=weight.cpu())) if len(yv) else float("nan")
        val_acc = float((vl.argmax(1) == yv).float().mean()) if len(yv) else float("nan")
        rec = {"epoch": epoch, "train_loss": tot / max(n_seen, 1), "train_acc": correct / max(n_seen, 1),
               "val_loss": val_loss, "val_acc": val_acc, "lr": opt.param_groups[0]["lr"]}
        history.append(rec)
        for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
            ctx.metric(f"{prefix}/{key}", rec[key], epoch)
        score = -val_loss if p["monitor"] == "val_loss" else val_acc
        if best is None or score > best:
            best, bad, best_epoch = score, 0, epoch
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            best_val_logits = val_logits
        else:
            bad += 1
        stop = bad >= int(p["patience"])
        save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
              "epoch": epoch + 1, "best": best, "bad": bad, "history": history,
              "best_state": best_state, "best_epoch": best_epoch, "best_val_logits": best_val_logits})
        if stop:
            ctx.log(f"{prefix}: early stop after epoch {epoch + 1} (best {best_epoch + 1})")
            break
    ctx.progress(1.0)
    return {"state": best_state, "best_epoch": best_epoch, "epochs_run": len(history),
            "history": history, "val_ids": list(va), "val_logits": best_val_logits,
            "seconds": round(time.monotonic() - t0, 2)}


def _checkpoint_progress(project, run_id, p, task, fold, fold_state, done) -> None:
    obj = {"format": CHECKPOINT_FORMAT, "state": "training", "arch": p["arch"], "task": task,
           "fold": fold, "done": done, **(fold_state or {})}
    project.models.set_checkpoint(run_id, _save_blob(project, obj))


def _logits(model, ds, device, p) -> np.ndarray:
    import torch

    from .datasets import make_loader

    model.eval()
    out = []
    cuda = device.type == "cuda"
    with torch.inference_mode():
        for x, _ in make_loader(ds, batch_size=int(p["batch_size"]) * 2, device=device):
            with torch.autocast(device.type, enabled=cuda):
                out.append(model(x.to(device)).float().cpu().numpy())
    n_out = model.head.out_features
    return np.concatenate(out) if out else np.zeros((0, n_out), np.float32)


def _fold_models(results, names, p, device):
    models = []
    for r in results:
        m = make_classifier(p["arch"], len(names))
        m.load_state_dict(r["state"])
        models.append(m.to(device).eval())
    return models


def _ensemble_logits(base: _Data, ids, models, p, device) -> np.ndarray:
    ds = base.subset(ids, {i: 0 for i in ids}, train=False)
    return np.mean([_logits(m, ds, device, p) for m in models], axis=0)


def _score_task(base: _Data, split, task_targets, names, results, p, device, reject_ids,
                class_ids) -> tuple[dict[str, Any], list, dict[str, Any]]:
    """Per-fold validation, pooled out-of-fold, ensemble hold-out; the reject rule."""
    n_boot = int(p["n_boot"])
    out: dict[str, Any] = {"folds": []}
    oof_y, oof_p = [], []
    for r in results:
        y = [task_targets[i] for i in r["val_ids"]]
        probs = _softmax(np.asarray(r["val_logits"])) if len(y) else np.zeros((0, len(names)))
        out["folds"].append({"val": ev.classification_report(y, probs, names, n_boot=min(n_boot, 200),
                                                              seed=p["seed"]) if len(y) else {"n": 0},
                             "best_epoch": r["best_epoch"], "epochs_run": r["epochs_run"],
                             "history": r["history"], "seconds": r["seconds"]})
        oof_y += y
        oof_p.append(probs)
    oof_probs = np.concatenate(oof_p) if oof_p else np.zeros((0, len(names)))
    out["oof"] = ev.classification_report(oof_y, oof_probs, names, n_boot=n_boot, seed=p["seed"])
    extra: dict[str, Any] = {}
    # Out-of-distribution rule (flat task only: the cascade's stages have no reject class).
    if class_ids is not None:
        reject_index = next((j for j, c in enumerate(class_ids) if c in reject_ids), None)
        mode = p["reject"]
        if mode == "auto":
            mode = "class" if reject_index is not None else "threshold"
        if mode == "class" and reject_index is None:
            raise ValueError("reject = class, but the label set has no labelled reject class")
        extra["reject_index"] = reject_index if mode == "class" else None
        thr = None
        if mode == "threshold" and len(oof_probs):
            thr = float(np.quantile(oof_probs.max(1), float(p["reject_quantile"])))
        extra["threshold"] = thr
        out["reject"] = {"mode": mode, "threshold": thr, "quantile": p["reject_quantile"],
                         "reject_class": names[reject_index] if reject_index is not None else None}
    models = _fold_models(results, names, p, device)
    test = [i for i in split["test"] if i in task_targets]
    if test:
        ds = base.subset(test, task_targets, train=False)
        each = [_logits(m, ds, device, p) for m in models]
        probs = _softmax(np.mean(each, axis=0))
        y = [task_targets[i] for i in test]
        rep = ev.classification_report(y, probs, names, n_boot=n_boot, seed=p["seed"])
        if extra.get("threshold") is not None:
            # Same score as predict: mean of the fold models' own max-softmax.
            confidence = np.mean([_softmax(z).max(1) for z in each], axis=0)
            accepted = confidence >= extra["threshold"]
            hits = int(((probs.argmax(1) == np.asarray(y)) & accepted).sum())
            rep["rejected"] = ev.proportion(int((~accepted).sum()), len(y))
            rep["accuracy_accepted"] = ev.proportion(hits, int(accepted.sum()))
        rep["fold_models"] = [ev.proportion(int((z.argmax(1) == np.asarray(y)).sum()), len(y)) for z in each]
        rep["image_ids"] = list(test)
        rep["probs"] = probs.round(5).tolist()
        rep["y_true"] = list(map(int, y))
        out["holdout"] = rep
    return out, models, extra
