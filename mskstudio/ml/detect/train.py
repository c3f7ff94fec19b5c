"""Job ``train-det``: a lesion detector (FCOS, ``model.py``) trained on the project's boxes.

1. ground truth: boxes and mask boxes (``data.truth_boxes``); images without either are
   lesion-free;
2. patient-level split (``ml.splits``): a hold-out test part and k folds, stratified by
   "has a lesion"; checked for leaks before training and on resume;
3. each fold trains from the chosen init (scratch, ``run:ID`` of a DeepCluster or classifier
   run, or a weights file) for ``epochs`` epochs (AdamW, one-cycle; autocast + grad scaling on
   CUDA), a checkpoint after every epoch so ``resume`` continues where a cancel stopped;
   the last epoch is kept (no early stopping: the one-cycle schedule ends annealed);
4. each fold predicts its validation patients (with TTA): the out-of-fold predictions choose
   the operating threshold (highest hit rate at IoU > 0.2 with at most ``fp_budget`` false
   positives per image) and the study-level threshold (Youden), never the test part;
5. the fold ensemble (+ flip TTA, fused by WBF or NMS) scores the held-out patients: hit rate
   at IoU > 0.2 and > 0.5, missed lesions, false positives per image and per lesion-free image,
   FROC, COCO AP, study-level sensitivity and specificity.
"""

from __future__ import annotations

import json
import random
import time
from typing import TYPE_CHECKING, Any

from mskstudio.ml.detect import metrics as M
from mskstudio.ml.detect.params import TrainDetParams
from mskstudio.ml.detect.predict import (
    CHECKPOINT_FORMAT,
    MODEL_KIND,
    make_decoder,
    predict_images,
    torch_raws,
)
from mskstudio.ml.scale import ddp
from mskstudio.ml.scale.accel import accel_for, oom_guard

if TYPE_CHECKING:
    from mskstudio.jobs import JobContext
    from mskstudio.store import Project

DEFAULTS: dict[str, Any] = TrainDetParams().to_json()  # defined once, in ml/detect/params.py


def _save(project: Project, obj: dict) -> str:
    from mskstudio.ml.classify.train_loop import save_blob

    return save_blob(project, obj)


def run_train_det(project: Project, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    import torch

    from mskstudio.jobs import Cancelled
    from mskstudio.ml.detect.data import DetImages, truth_boxes
    from mskstudio.ml.models import load_checkpoint, pick_device
    from mskstudio.ml.splits import check_split, make_split

    params = params or {}
    TrainDetParams.from_json(params).check(project)  # one line, before any run row
    resume_state = None
    if params.get("resume"):
        run_id = int(params["resume"])
        row = project.models.get(run_id)
        if row is None or row["kind"] != MODEL_KIND:
            raise ValueError(f"model run {run_id} is not a detector run")
        p = {**DEFAULTS, **json.loads(row["params"])}
        p.update({k: v for k, v in params.items() if k in ("device", "threads") and v is not None})
        if row["checkpoint_sha"]:
            resume_state = load_checkpoint(project, run_id)
            if resume_state.get("state") == "done":
                raise ValueError(f"detector run {run_id} is already finished")
        split = json.loads(row["split"])
        project.models.set_status(run_id, "running", job_id=ctx.job_id)
    else:
        p = {**DEFAULTS, **{k: v for k, v in params.items() if v is not None}}
        run_id, split = None, None
    if p["threads"]:
        torch.set_num_threads(int(p["threads"]))
    t0, cpu0 = time.time(), time.process_time()
    device = pick_device(p["device"])
    if ddp.launched():  # under torchrun: this is rank 0 (the others run scale.worker.worker_main)
        device = ddp.init_from_env(device.type)

    ids = sorted(set(project.images.ids()) & ({int(i) for i in p["image_ids"]} if p["image_ids"]
                                              else set(project.images.ids())))
    truth_classes: dict[int, list[str]] = {}
    truth, class_id = truth_boxes(project, ids, p["class"], classes_out=truth_classes)
    positive = {i: len(truth[i]) > 0 for i in ids}
    n_pos = sum(positive.values())
    if n_pos < 4:
        raise ValueError(f"train-det needs at least 4 images with a lesion box or mask, the project has {n_pos}")
    patient_of = project.images.patient_of(ids)
    if split is None:
        split = make_split(ids, patient_of, [int(positive[i]) for i in ids], k=int(p["k"]),
                           holdout=p["holdout"], test_fraction=float(p["test_fraction"]), seed=int(p["seed"]))
    check_split(split, patient_of)
    if run_id is None:
        run_id = project.models.create(MODEL_KIND, p["arch"], params=p, job_id=ctx.job_id,
                                       name=p["name"] or f"detector {p['arch']} {p['size']} px")
        project.models.set_fields(run_id, split=json.dumps(split))
    ctx.log(f"detector run {run_id}: {len(ids)} images ({n_pos} with lesions), "
            f"{len(split['test'])} held out, {len(split['folds'])} folds")
    try:
        images = DetImages(project, ids, truth, int(p["size"]), ctx.sub(0.0, 0.05))
        return _train_and_score(project, p, ctx, run_id, images, split, positive, class_id,
                                resume_state, device, t0, cpu0, truth_classes)
    except Cancelled:
        project.models.set_status(run_id, "cancelled", job_id=ctx.job_id)
        raise
    except BaseException:
        project.models.set_status(run_id, "error", job_id=ctx.job_id)
        raise
    finally:
        ddp.shutdown()


def train_fold(images, train_ids, p, init_state, device, ctx, state, save, fold: int):
    """One fold model's state dict after ``epochs`` epochs (resuming from ``state`` if given).

    Under torchrun every rank trains its DistributedSampler share (global batch ``batch_size``);
    ``save`` is a no-op on ranks above 0."""
    import torch

    from mskstudio.ml.detect.data import RadiographAugment, TrainSet, collate
    from mskstudio.ml.detect.model import build_detector, load_backbone_state

    seed = int(p["seed"]) + 1000 * (fold + 1)
    torch.manual_seed(seed)
    random.seed(seed)
    crop = int(p["crop"]) if p.get("crop") else None
    # trained on crop windows, the model's transform must not resize them up to ``size``; the
    # weights are the same, and the scoring model is built at ``size`` from this state dict
    model = build_detector(p["arch"], size=crop or int(p["size"]), fpn_channels=int(p["fpn_channels"]),
                           score_thresh=float(p["score_thresh"]), nms_thresh=float(p["nms_thresh"]),
                           detections=int(p["detections"]), head_convs=int(p.get("head_convs") or 4))
    missing = load_backbone_state(model, init_state)
    if missing:
        ctx.log(f"fold{fold}: {len(missing)} backbone tensors not in the init weights")
    acc = accel_for(device)  # bf16/fp16 autocast and channels-last on CUDA
    model = acc.module(model)
    aug = RadiographAugment(int(p["size"]), seed=seed) if p["augment"] else None
    data = TrainSet(images, train_ids, aug, crop=crop, seed=seed)
    loader, sampler = ddp.shuffled_loader(data, int(p["batch_size"]), seed=seed,
                                          generator=torch.Generator().manual_seed(seed), device=device,
                                          workers=int(p["workers"] or 0), collate_fn=collate)
    net = ddp.wrap(model, device)  # the model itself on one process
    epochs, nb = int(p["epochs"]), max(1, len(loader))
    opt = torch.optim.AdamW(model.parameters(), lr=float(p["lr"]), weight_decay=float(p["weight_decay"]))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=float(p["lr"]), total_steps=epochs * nb,
                                                pct_start=0.15)
    scaler = acc.scaler()
    epoch0, history = 0, []
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        epoch0, history = int(state["epoch"]), list(state["history"])
        ctx.log(f"fold{fold}: resuming at epoch {epoch0 + 1}")
    for epoch in range(epoch0, epochs):
        ddp.maybe_die(epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
            if aug is not None:  # other augmentations on every rank
                aug.rng.seed((seed * 1_000_003 + epoch) * 31 + ddp.rank())
        model.train()
        sums: dict[str, float] = {}
        with oom_guard(p["batch_size"], device):
            for b, (xs, targets) in enumerate(loader):
                ctx.check_cancelled()
                xs = [x.to(device, non_blocking=True) for x in xs]
                targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
                with acc.autocast():
                    losses = net(xs, targets)
                    loss = sum(losses.values())
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
                scaler.step(opt)
                scaler.update()
                sched.step()
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach())
                ctx.progress((epoch + (b + 1) / nb) / epochs, f"fold{fold} epoch {epoch + 1}/{epochs}")
        if sampler is not None:  # the losses of every rank's share, not rank 0's alone
            keys = sorted(sums)
            sums = dict(zip(keys, (v / ddp.world_size() for v in ddp.all_reduce_sums([sums[k] for k in keys])),
                            strict=True))
        rec = {"epoch": epoch, **{k: v / nb for k, v in sums.items()}}
        rec["loss"] = sum(v for k, v in rec.items() if k != "epoch")
        history.append(rec)
        save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
              "epoch": epoch + 1, "history": history})
        # After the checkpoint: a kill before it trains (and reports) this epoch again.
        for k, v in rec.items():
            if k != "epoch":
                ctx.metric(f"fold{fold}/{k}", v, epoch)
    if crop is not None:  # the scoring model sees whole ``size`` squares
        from mskstudio.ml.detect.predict import model_from_state

        model = model_from_state(p, {k: v.detach().cpu() for k, v in model.state_dict().items()}).to(device)
    return model.eval(), history


def _train_and_score(project, p, ctx, run_id, images, split, positive, class_id, resume_state,
                     device, t0, cpu0, truth_classes=None) -> dict[str, Any]:
    from mskstudio.ml.detect.model import backbone_state
    from mskstudio.ml.detect.predict import model_from_state
    from mskstudio.ml.segment.data import run_minutes

    init_state = backbone_state(project, p["init"])
    done: list[dict[str, Any]] = resume_state["done"] if resume_state else []
    if ddp.active():  # the other ranks get the snapshot and the plan, never the project
        ddp.broadcast(_worker_plan(project, p, images, split, init_state, len(done), resume_state, device))
    k = trained_folds(p, split)
    oof: dict[int, Any] = {}
    for d in done:
        oof.update({int(i): v for i, v in d["val_preds"].items()})
    for f, fold in enumerate(split["folds"][:k]):
        if f < len(done):
            continue
        lo, hi = 0.05 + 0.8 * f / k, 0.05 + 0.8 * (f + 1) / k
        state = resume_state if (resume_state and "model" in resume_state
                                 and resume_state.get("fold") == f) else None

        def save(s, ff=f):
            project.models.set_checkpoint(run_id, _save(project, {
                "format": CHECKPOINT_FORMAT, "state": "training", "fold": ff, "done": done, **s}))

        model, history = train_fold(images, fold["train"], p, init_state, device, ctx.sub(lo, hi - 0.02),
                                    state, save, f)
        decoder = make_decoder(model.cpu(), p)
        val_preds = predict_images(torch_raws([model], device), decoder, images, fold["val"], p,
                                   ctx.sub(hi - 0.02, hi))
        oof.update(val_preds)
        done.append({"state": {kk: v.detach().cpu().clone() for kk, v in model.state_dict().items()},
                     "history": history, "val_preds": val_preds})
        project.models.set_checkpoint(run_id, _save(project, {
            "format": CHECKPOINT_FORMAT, "state": "training", "fold": f + 1, "done": done}))

    ddp.shutdown()  # the other ranks are done; scoring is rank 0's
    ctx.progress(0.86, "scoring the held-out patients")
    models = [model_from_state(p, d["state"]) for d in done]
    test_preds = predict_images(torch_raws(models, device), make_decoder(models[0], p), images,
                                split["test"], p, ctx.sub(0.86, 0.98))
    study_of = {int(r["id"]): int(r["study_id"]) for r in project.db.query("SELECT id, study_id FROM images")}
    cv_ids = sorted(oof)
    oof_truth = {i: images.boxes[i] for i in cv_ids}
    threshold = operating_threshold(oof_truth, oof, float(p["fp_budget"]))
    oof_scores = M.image_scores(oof, cv_ids)
    study_thr = M.youden_threshold(oof_scores, {i: positive[i] for i in cv_ids}, study_of)
    metrics: dict[str, Any] = {
        "threshold": threshold, "study_threshold": study_thr, "fusion": p["fusion"], "tta": bool(p["tta"]),
        "oof": report(oof_truth, oof, threshold, study_thr, positive, study_of),
        "n_folds": k, "n_images": len(images.ids), "device": str(device),
    }
    from mskstudio.ml.detect import aggregate as A

    keys, x_oof = A.study_features(oof, cv_ids, study_of)
    aggregator = A.fit_aggregator(x_oof, A.study_truth(keys, positive, cv_ids, study_of))
    metrics["study_aggregator"] = aggregator
    if split["test"]:
        test_truth = {i: images.boxes[i] for i in split["test"]}
        metrics["holdout"] = report(test_truth, test_preds, threshold, study_thr, positive, study_of)
        if truth_classes and len({c for i in split["test"] for c in truth_classes.get(i, [])}) > 1:
            metrics["holdout"]["per_class"] = {str(iou): M.per_class_hit_rate(
                test_truth, truth_classes, test_preds, threshold=threshold, iou_thr=iou) for iou in (0.2, 0.5)}
        if aggregator is not None:  # fitted on out-of-fold studies, scored on held-out ones
            keys, x_test = A.study_features(test_preds, split["test"], study_of)
            metrics["holdout"]["study_learned"] = A.learned_study_calls(
                aggregator, x_test, A.study_truth(keys, positive, split["test"], study_of))
    metrics.update(run_minutes(t0, cpu0))
    ckpt = {"format": CHECKPOINT_FORMAT, "state": "done", "params": p, "arch": p["arch"],
            "size": int(p["size"]), "folds": [d["state"] for d in done], "class_id": class_id,
            "threshold": threshold, "study_threshold": study_thr,
            "store_threshold": float(p["store_threshold"] if p["store_threshold"] is not None
                                     else min(threshold, 0.3)),
            "history": [d["history"] for d in done]}
    from mskstudio.ml.classify.train_loop import jsonable

    project.models.set_checkpoint(run_id, _save(project, ckpt), metrics=jsonable(metrics))
    project.models.set_status(run_id, "done", job_id=ctx.job_id)
    hold = metrics.get("holdout") or metrics["oof"]
    hit = hold["lesion"]["0.2"]["hit_rate"]
    ctx.progress(1.0, f"hold-out hit rate at IoU > 0.2: {hit['value']:.3f} (n={hit['n']})")
    return {"model_run_id": run_id, "threshold": threshold,
            "hit_rate_iou20": hit["value"], "fp_per_image": hold["lesion"]["0.2"]["fp_per_image"]["value"],
            "cpu_minutes": metrics["cpu_minutes"], "wall_minutes": metrics["wall_minutes"]}


def trained_folds(p: dict[str, Any], split: dict[str, Any]) -> int:
    """``train_folds`` < k trains only the first folds (a CPU budget): the threshold comes from
    their validation patients, the ensemble is those fold models, the hold-out is unchanged."""
    return min(len(split["folds"]), int(p.get("train_folds") or len(split["folds"])))


def _worker_plan(project, p, images, split, init_state, n_done, resume_state, device) -> dict[str, Any]:
    """What a rank > 0 needs: the snapshot (letterboxed squares; boxes in the manifest) and the plan."""
    from mskstudio.ml.scale.snapshot import write_snapshot

    boxes = {str(i): images.boxes[i].tolist() for i in images.ids}
    snap = write_snapshot(project.cache_dir / "snapshots", images.ids, images.squares, None,
                          {"trainer": "detector", "size": images.size, "boxes": boxes})
    state = {k: v for k, v in (resume_state or {}).items() if k != "done"} or None
    return {"kind": "train-det", "snapshot": str(snap), "p": p, "split": split, "init_state": init_state,
            "done": n_done, "resume_state": state, "device": device.type}


def detect_worker(plan: dict[str, Any], ctx: JobContext) -> None:
    """Rank > 0 of a distributed detector run: the folds rank 0 trains, on the snapshot."""
    from mskstudio.ml.detect.data import DetImages
    from mskstudio.ml.scale.snapshot import locate, open_snapshot

    snap = open_snapshot(locate(plan["snapshot"]))
    images = DetImages.from_arrays(snap.ids, snap.images,
                                   {int(i): b for i, b in snap.manifest["boxes"].items()})
    device, state = ddp.init_from_env(plan["device"]), plan["resume_state"]
    for f, fold in enumerate(plan["split"]["folds"][:trained_folds(plan["p"], plan["split"])]):
        if f < plan["done"]:
            continue
        train_fold(images, fold["train"], plan["p"], plan["init_state"], device, ctx,
                   state if state and "model" in state and state.get("fold") == f else None,
                   lambda s: None, f)


def operating_threshold(truth, preds, fp_budget: float) -> float:
    """The score threshold with the best hit rate (IoU > 0.2) at <= ``fp_budget`` FP per image."""
    curve = M.froc(truth, preds, iou_thr=0.2)["points"]
    ok = [(sens, thr) for fppi, sens, thr in curve if fppi <= fp_budget]
    if not ok:
        return 0.5
    best = max(s for s, _ in ok)
    return float(min(t for s, t in ok if s == best))


def report(truth, preds, threshold, study_thr, positive, study_of) -> dict[str, Any]:
    ids = list(truth)
    return {
        "lesion": {str(iou): M.lesion_metrics(truth, preds, threshold=threshold, iou_thr=iou) for iou in (0.2, 0.5)},
        "froc": M.froc(truth, preds, iou_thr=0.2),
        "coco": M.coco_map(truth, preds),
        "study": M.study_calls(M.image_scores(preds, ids), {i: positive[i] for i in ids},
                               study_of, study_thr),
    }
