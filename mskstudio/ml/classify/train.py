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

import hashlib
import json
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mskstudio.domain import is_truth_set
from mskstudio.jobs import Cancelled, JobContext
from mskstudio.ml.classify.checkpoint_writer import CheckpointWriter
from mskstudio.ml.classify.classifier import CHECKPOINT_FORMAT
from mskstudio.ml.classify.params import TRAIN_SOURCES, TrainParams
from mskstudio.ml.classify.train_loop import (  # noqa: F401 - class_weights is part of this module's API
    FoldData,
    FoldPlan,
    class_weights,
    ensemble_logits,
    fold_models,
    jsonable,
    logits_of,
    progress_checkpoint,
    save_blob,
    train_fold,
)
from mskstudio.ml.evaluate import metrics as ev
from mskstudio.ml.evaluate.metrics import softmax
from mskstudio.ml.scale import ddp
from mskstudio.ml.scale.accel import oom_guard
from mskstudio.ml.splits import check_split, make_split, split_summary

if TYPE_CHECKING:

    from mskstudio.store import Project

KIND = "classifier"
# The defaults are TrainParams' (ml/classify/params.py), the one place that defines them.
DEFAULTS: dict[str, Any] = TrainParams().to_json()


# ---- small pieces (tested by hand) ------------------------------------------------------------
def data_hash(labels: dict[int, int], extra: dict[str, Any] | None = None) -> str:
    h = hashlib.sha256(json.dumps(sorted(labels.items())).encode())
    if extra:
        h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return h.hexdigest()


# ---- the job ------------------------------------------------------------------------------------
def run_train(project: Project, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:

    from mskstudio.ml.models import load_checkpoint, pick_device

    t_start = time.monotonic()
    TrainParams.from_json(params).check(project)  # before any run row is written
    resume_state: dict[str, Any] | None = None
    if params.get("resume"):
        run_id = int(params["resume"])
        run = project.models.record(run_id)
        if run is None or run.kind != KIND:
            raise ValueError(f"model run {run_id} is not a classifier run")
        p = {**DEFAULTS, **run.params}
        p.update({k: v for k, v in params.items() if k in ("device", "workers") and v is not None})
        if run.checkpoint_sha:
            resume_state = load_checkpoint(project, run_id)
            if resume_state.get("state") == "done":
                raise ValueError(f"model run {run_id} is already finished")
        split = run.split
        project.models.set_status(run_id, "running", job_id=ctx.job_id)
    else:
        p = {**DEFAULTS, **{k: v for k, v in params.items() if v is not None}}
        run_id, split = None, None
    if p["label_set"] is None:
        raise ValueError("train needs a label set")
    if float(p["mask_guidance"] or 0) < 0:
        raise ValueError(f"mask guidance must be 0 (off) or positive, not {p['mask_guidance']}")
    ls_id, ls_name = _resolve_label_set(project, p["label_set"])
    device = pick_device(p["device"])
    if ddp.launched():  # under torchrun: this is rank 0 (the others run scale.worker.worker_main)
        if float(p["mask_guidance"] or 0) > 0:
            raise ValueError("mask guidance is not available in distributed training yet")
        device = ddp.init_from_env(device.type)

    # ---- data --------------------------------------------------------------------------------
    allowed = set(project.images.ids())
    if p["image_ids"]:
        allowed &= {int(i) for i in p["image_ids"]}
    if p.get("exclude_burned_in"):  # recorded in the run's params: a resume leaves them out too
        burned = allowed & project.images.burned_in_ids()
        allowed -= burned
        ctx.log(f"{len(burned)} images with burned-in annotation left out of training and testing")
    labels = {i: c for i, c in project.labels.effective(ls_id, sources=TRAIN_SOURCES).items()
              if i in allowed}
    classes = [r for r in project.labels.classes(ls_id) if r.id in set(labels.values())]
    if len(classes) < 2:
        raise ValueError(f"label set {ls_name!r} needs labelled images of at least two classes")
    class_ids = [r.id for r in classes]
    class_names = [r.name for r in classes]
    reject_ids = [r.id for r in classes if r.is_reject]
    ids = sorted(labels)
    index_of = {c: j for j, c in enumerate(class_ids)}
    targets = np.asarray([index_of[labels[i]] for i in ids])
    patient_of = project.images.patient_of(ids)

    if split is None:
        centre_of = {int(r["id"]): r["centre"] for r in project.images.table()} \
            if p["holdout"] == "centre" or p["external_centres"] else None
        split = make_split(ids, patient_of, targets, k=p["k"], holdout=p["holdout"],
                           test_fraction=p["test_fraction"], centre_of=centre_of,
                           test_centre=p["test_centre"], external_centres=p["external_centres"],
                           seed=p["seed"])
    check_split(split, patient_of)  # also on resume: the labels may have moved since
    clinical = _joint_clinical(project, p, ids, split)

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
        extra = {"size": p["size"], "input": p["input"]}
        if clinical is not None:
            extra["clinical"] = clinical[0]
        project.models.set_fields(run_id, split=json.dumps(split), data_hash=data_hash(labels, extra))
    ctx.log(f"model run {run_id}: {len(ids)} images, {len(class_ids)} classes, "
            f"{len(split['test'])} held out, {len(split['folds'])} folds")

    try:
        return _train_run(project, p, ctx, TrainPlan(run_id, ls_name, ids, targets, class_ids, class_names,
                                                     reject_ids, patient_of, split, parent, resume_state,
                                                     t_start, device, clinical))
    except Cancelled:
        project.models.set_status(run_id, "cancelled", job_id=ctx.job_id)
        raise
    except BaseException:
        project.models.set_status(run_id, "error", job_id=ctx.job_id)
        raise


@dataclass
class TrainPlan:
    """What the training of one run needs besides the parameters (was 16 positional arguments)."""

    run_id: int
    ls_name: str
    ids: list[int]                 # labelled images, sorted
    targets: np.ndarray            # class index of each image in ``ids``
    class_ids: list[int]
    class_names: list[str]
    reject_ids: list[int]          # the label set's reject classes among ``class_ids``
    patient_of: dict[int, int]
    split: dict[str, Any]          # patient-level folds and hold-out (splits.make_split)
    parent: int | None             # DeepCluster run the encoder starts from
    resume_state: dict | None      # checkpoint of an interrupted run
    t_start: float
    device: Any
    clinical: tuple[dict, np.ndarray] | None = None  # joint fusion: (spec, raw vector per row of ids)


def _train_run(project, p, ctx, plan: TrainPlan) -> dict[str, Any]:
    run_id, ls_name, ids, targets = plan.run_id, plan.ls_name, plan.ids, plan.targets
    class_ids, class_names, reject_ids, patient_of = plan.class_ids, plan.class_names, plan.reject_ids, plan.patient_of
    split, parent, resume_state, t_start, device = plan.split, plan.parent, plan.resume_state, plan.t_start, plan.device
    import torch

    random.seed(p["seed"])
    torch.manual_seed(p["seed"])
    base = FoldData(project, ids, targets, p, ctx.sub(0.0, 0.05))
    spec = None
    if plan.clinical is not None:
        spec, base.clinical = plan.clinical

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
    if ddp.active():  # rank 0 of a torchrun job: hand the other ranks their data and plan
        ddp.broadcast(_worker_plan(project, base, p, tasks, split, encoder_init, done, resume_state))
    writer = CheckpointWriter(project, run_id, lambda s, tn, ff: progress_checkpoint(p, tn, ff, s, done))
    try:
        _fold_loop(base, p, tasks, split, encoder_init, done, resume_state, device, ctx, save=writer)
    finally:
        writer.close()
    ddp.shutdown()  # the other ranks are done; scoring below is rank 0's alone

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
        if spec is not None:
            ckpt[task_name]["clinical"] = spec
    if spec is not None:
        metrics["clinical"] = spec
    if p["cascade"]:
        h = class_names.index(p["cascade"])
        ckpt.update(kind="cascade", healthy_class_id=class_ids[h], healthy_name=p["cascade"],
                    cascade_threshold=p["cascade_threshold"])
        order = [h] + [j for j in range(len(class_names)) if j != h]
        ckpt["class_ids"] = [class_ids[j] for j in order]
        ckpt["class_names"] = [class_names[j] for j in order]
        if split["test"]:
            test = split["test"]
            l1 = ensemble_logits(base, test, stage_models["stage1"], p, device)
            l2 = ensemble_logits(base, test, stage_models["stage2"], p, device)
            p_path = softmax(l1)[:, 1]
            full = {c: k for k, c in enumerate(order)}
            y = [full[int(base.target_of[i])] for i in test]
            metrics["holdout"] = ev.cascade_report(
                y, p_path, softmax(l2), p["cascade"], ckpt["class_names"][1:],
                threshold=p["cascade_threshold"], n_boot=p["n_boot"], seed=p["seed"])
    else:
        ckpt["kind"] = "flat"
        metrics["holdout"] = metrics["main"].get("holdout")
        if metrics["main"].get("external"):
            metrics["external"] = metrics["main"]["external"]
    metrics["timings"] = {"total_s": round(time.monotonic() - t_start, 2),
                          "scoring_s": round(time.monotonic() - t_eval, 2),
                          "folds_s": {t: [r["seconds"] for r in done[t]] for t in done}}
    sha = save_blob(project, ckpt)
    project.models.set_checkpoint(run_id, sha, metrics=jsonable(metrics), params=p)
    project.models.set_status(run_id, "done", job_id=ctx.job_id)
    ctx.progress(1.0, "done")
    hold = metrics.get("holdout") or {}
    return {"model_run_id": run_id, "checkpoint": sha, "classes": class_names,
            "holdout_accuracy": (hold.get("accuracy") or {}).get("value"),
            "holdout_n": hold.get("n", 0), "majority_rate": hold.get("majority_rate"),
            "seconds": metrics["timings"]["total_s"]}


def _fold_loop(base, p, tasks, split, encoder_init, done, resume_state, device, ctx, save) -> None:
    """Train every fold of every task not yet in ``done`` (the same on every rank)."""
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
            with oom_guard(p["batch_size"], device):  # one line naming a batch size that fits
                result = train_fold(
                    FoldPlan(base, tr, va, task_targets, names, encoder_init, prefix, state), p, device,
                    ctx.sub(lo, hi), save=fold_saver(save, task_name, f))
            done[task_name].append(result)
            save(None, task_name, f + 1)


def fold_saver(save, task_name: str, fold: int):
    """The per-epoch saver of one fold: the checkpoint writer's (written on a thread), or
    ``save`` (a ``save(state, task, fold)`` callable) bound to the fold."""
    if hasattr(save, "for_fold"):
        return save.for_fold(task_name, fold)
    return lambda s: save(s, task_name, fold)


def _worker_plan(project, base, p, tasks, split, encoder_init, done, resume_state) -> dict[str, Any]:
    """What a rank > 0 needs: the snapshot folder and the plan, never the project."""
    from mskstudio.ml.scale.snapshot import write_snapshot

    if base.plain._cache is None:
        base.plain.preload()
    snap = write_snapshot(project.cache_dir / "snapshots", base.ids, base.plain._cache,
                          np.asarray([base.target_of[i] for i in base.ids]),
                          {"input": p["input"], "roi_margin": p["roi_margin"], "label_set": p["label_set"],
                           "split": split})
    state = {k: v for k, v in (resume_state or {}).items() if k != "done"} or None
    return {"kind": "train", "snapshot": str(snap), "p": p, "tasks": tasks, "split": split,
            "encoder_init": encoder_init, "done": {t: len(r) for t, r in done.items()},
            "clinical": base.clinical,
            "resume_state": state, "device": str(pick_device_kind(p))}


def pick_device_kind(p) -> str:
    from mskstudio.ml.models import pick_device

    return pick_device(p["device"]).type


def train_worker(plan: dict[str, Any], ctx: JobContext) -> None:
    """Rank > 0 of a distributed classifier run: train the broadcast plan on the snapshot."""
    import torch

    from mskstudio.ml.scale.ddp import init_from_env
    from mskstudio.ml.scale.snapshot import locate, open_snapshot

    p = plan["p"]
    random.seed(p["seed"])
    torch.manual_seed(p["seed"])
    base = FoldData.from_snapshot(open_snapshot(locate(plan["snapshot"])), p)
    base.clinical = plan.get("clinical")
    done = {t: [None] * n for t, n in plan["done"].items()}
    _fold_loop(base, p, plan["tasks"], plan["split"], plan["encoder_init"], done, plan["resume_state"],
               init_from_env(plan["device"]), ctx, save=lambda *_: None)


def _joint_clinical(project: Project, p: dict[str, Any], ids: list[int],
                    split: dict[str, Any]) -> tuple[dict, np.ndarray] | None:
    """Joint fusion: the clinical spec (layout from the CV rows) and the raw vector of every image."""
    if not p.get("clinical"):
        return None
    from mskstudio.ml.fuse.features import clinical_table, parse_fields
    from mskstudio.ml.fuse.joint import clinical_spec, encode_raw

    if p["cascade"]:
        raise ValueError("joint fusion with a two-stage cascade is not available yet")
    if float(p["mask_guidance"] or 0) > 0:
        raise ValueError("joint fusion with mask guidance is not available yet")
    p["clinical"] = parse_fields(p["clinical"], project)
    table = clinical_table(project, ids, p["clinical"])
    held = set(split["test"]) | {i for part in (split.get("external") or {}).values() for i in part}
    spec = clinical_spec(table, [k for k, i in enumerate(ids) if i not in held])
    return spec, encode_raw(table, spec)


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
        from mskstudio.ml.models import load_checkpoint

        return load_checkpoint(project, parent)["backbone"]
    init = p["init"]
    if init in (None, "", "scratch"):
        return None
    from mskstudio.ml.classify.classifier import build_encoder
    from mskstudio.ml.models import load_weights_file

    enc, _ = build_encoder(p["arch"])
    report = load_weights_file(enc, init)
    if len(report["missing"]) > len(enc.state_dict()) // 2:
        raise ValueError(f"{init}: the weights do not fit {p['arch']} ({len(report['missing'])} missing)")
    return enc.state_dict()


def _score_task(base: FoldData, split, task_targets, names, results, p, device, reject_ids,
                class_ids) -> tuple[dict[str, Any], list, dict[str, Any]]:
    """Per-fold validation, pooled out-of-fold, ensemble hold-out; the reject rule."""
    n_boot = int(p["n_boot"])
    out: dict[str, Any] = {"folds": []}
    oof_ids, oof_y, oof_p = [], [], []
    for r in results:
        y = [task_targets[i] for i in r["val_ids"]]
        probs = softmax(np.asarray(r["val_logits"])) if len(y) else np.zeros((0, len(names)))
        out["folds"].append({"val": ev.classification_report(y, probs, names, n_boot=min(n_boot, 200),
                                                              seed=p["seed"]) if len(y) else {"n": 0},
                             "best_epoch": r["best_epoch"], "epochs_run": r["epochs_run"],
                             "history": r["history"], "seconds": r["seconds"]})
        oof_ids += list(r["val_ids"])
        oof_y += y
        oof_p.append(probs)
    oof_probs = np.concatenate(oof_p) if oof_p else np.zeros((0, len(names)))
    out["oof"] = ev.classification_report(oof_y, oof_probs, names, n_boot=n_boot, seed=p["seed"])
    # Per-image out-of-fold probabilities, like the hold-out's: the dashboard lists the cases
    # of a confusion cell and draws ROC curves from either report.
    out["oof"].update(image_ids=[int(i) for i in oof_ids], probs=oof_probs.round(5).tolist(),
                      y_true=list(map(int, oof_y)))
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
    models = fold_models(results, names, p, device, base.clinical_dim)
    test = [i for i in split["test"] if i in task_targets]
    if test:
        ds = base.subset(test, task_targets, train=False)
        each = [logits_of(m, ds, device, p) for m in models]
        probs = softmax(np.mean(each, axis=0))
        y = [task_targets[i] for i in test]
        rep = ev.classification_report(y, probs, names, n_boot=n_boot, seed=p["seed"])
        if extra.get("threshold") is not None:
            # Same score as predict: mean of the fold models' own max-softmax.
            confidence = np.mean([softmax(z).max(1) for z in each], axis=0)
            accepted = confidence >= extra["threshold"]
            hits = int(((probs.argmax(1) == np.asarray(y)) & accepted).sum())
            rep["rejected"] = ev.proportion(int((~accepted).sum()), len(y))
            rep["accuracy_accepted"] = ev.proportion(hits, int(accepted.sum()))
        rep["fold_models"] = [ev.proportion(int((z.argmax(1) == np.asarray(y)).sum()), len(y)) for z in each]
        rep["image_ids"] = list(test)
        rep["probs"] = probs.round(5).tolist()
        rep["y_true"] = list(map(int, y))
        out["holdout"] = rep
    for centre, ext_ids in (split.get("external") or {}).items():
        ext = [i for i in ext_ids if i in task_targets]
        if ext:
            out.setdefault("external", {})[centre] = _score_test_set(base, ext, task_targets, names, models,
                                                                     p, device)
    return out, models, extra


def _score_test_set(base: FoldData, ids, task_targets, names, models, p, device) -> dict[str, Any]:
    """One external test set scored like the hold-out: the fold ensemble's mean logits."""
    ds = base.subset(ids, task_targets, train=False)
    probs = softmax(np.mean([logits_of(m, ds, device, p) for m in models], axis=0))
    y = [task_targets[i] for i in ids]
    rep = ev.classification_report(y, probs, names, n_boot=int(p["n_boot"]), seed=p["seed"])
    rep.update(image_ids=list(ids), probs=probs.round(5).tolist(), y_true=list(map(int, y)))
    return rep
