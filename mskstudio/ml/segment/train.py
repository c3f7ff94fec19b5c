"""Lesion segmentation: train a U-Net / UNet++ on the project's masks, pre-label the rest.

Jobs (``JOB_KINDS``):

* ``train-seg``  ``run_train_seg(project, params, ctx)``: images with a human, imported or
  adjudicated mask (adjudicated > human > import per image; classes merged into one
  "lesion" channel unless ``class`` is given), split by *patient* into train / val / test
  (or ``folds`` >= 2 patient folds, each fold tested once), Dice + BCE, best-val
  checkpoint stored as a blob on a ``model_runs`` row of kind ``segmenter``.
* ``prelabel``   ``run_prelabel(project, params, ctx)``: every image without a human /
  adjudicated mask gets a ``model`` mask (annotator ``model``, ``run_id`` of the segmenter);
  with a box-segmenter (``segment_roi``, job ``train-seg-box``) each region the whole-image
  model finds is re-segmented inside its box at full resolution (two-stage cascade).

Preprocessing as in the seed study: crop the background (rows/cols darker than a
threshold at the film edges), pad to a square, resize to ``size`` (256 by default),
normalise with the shared input constants.  ``Geometry`` remembers the crop and the
letterbox so a prediction maps back onto the full DICOM grid.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mskstudio.io.analysis import load_analysis
from mskstudio.ml.scale import ddp
from mskstudio.ml.scale.accel import accel_for, maybe_compile, oom_guard

# Re-exported: the public segmentation API lives in one place for callers.
from mskstudio.ml.segment.data import (  # noqa: F401
    SOURCE_ORDER,
    Geometry,
    JointAugment,
    SegDataset,
    background_crop,
    dice_bce_loss,
    images_by_part,
    iou_dice_batch,
    mark_stopped,
    patient_folds,
    patient_split,
    prepare,
    resize_mask,
    run_minutes,
    store_finished_run,
    training_masks,
    unprepare,
    unprepare_probability,
)
from mskstudio.ml.segment.params import PrelabelParams, TrainSegParams

if TYPE_CHECKING:
    from mskstudio.jobs import JobContext
    from mskstudio.store import Project

# The defaults are TrainSegParams' (ml/segment/params.py), the one place that defines them.
DEFAULTS: dict[str, Any] = TrainSegParams().to_json()


# ---- training -----------------------------------------------------------------------------------
def _stack(
    project: Project,
    ids: Sequence[int],
    masks: dict[int, np.ndarray],
    size: int,
    threshold: float,
    ctx: JobContext,
) -> tuple[np.ndarray, np.ndarray]:
    xs = np.empty((len(ids), size, size), np.uint16)
    ms = np.empty((len(ids), size, size), bool)
    for k, i in enumerate(ids):
        if k % 16 == 0:
            ctx.check_cancelled()
        x, m, _ = prepare(
            load_analysis(project, i),
            masks[i],
            size,
            full=project.images.record(i).shape,
            threshold=threshold,
        )
        xs[k] = np.round(x * 65535)
        ms[k] = m > 0.5
        ctx.progress((k + 1) / len(ids), "preparing images")
    return xs, ms


def predict_squares(model, squares: np.ndarray, device, batch_size: int = 8) -> np.ndarray:
    """Sigmoid probabilities [N, S, S] for uint16 or float squares [N, S, S]."""
    import torch

    from mskstudio.ml.models import normalise

    model.eval()
    out = []
    with torch.no_grad():
        for a in range(0, len(squares), batch_size):
            b = squares[a : a + batch_size]
            x = torch.from_numpy(b.astype(np.float32) / (65535.0 if b.dtype == np.uint16 else 1.0))[:, None]
            out.append(model(normalise(x.to(device))).sigmoid()[:, 0].cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0,) + squares.shape[1:], np.float32)


def evaluate(model, xs: np.ndarray, ms: np.ndarray, device, threshold: float = 0.5) -> dict[str, float]:
    if len(xs) == 0:
        return {"iou": float("nan"), "dice": float("nan"), "n": 0}
    prob = predict_squares(model, xs, device)
    ious, dices = iou_dice_batch(prob > threshold, ms)
    empty_ious, _ = iou_dice_batch(np.zeros_like(ms), ms)
    return {
        "iou": float(np.mean(ious)),
        "dice": float(np.mean(dices)),
        "n": int(len(xs)),
        "empty_baseline_iou": float(np.mean(empty_ious)),
    }


def _fit(
    arch: str,
    data: dict[str, tuple[np.ndarray, np.ndarray]],
    p: dict[str, Any],
    device,
    ctx: JobContext,
    encoder_state: dict | None,
    tag: str,
    resume: dict | None = None,
    save=None,
) -> tuple[dict, dict[str, Any]]:
    """Train one model; returns (best state dict, metrics).

    ``resume``: an epoch checkpoint to continue from; ``save(state)`` is called after
    every epoch with what a resume needs (``segment.resume``).

    Under torchrun every rank runs this on its DistributedSampler share of the training
    images (global batch ``batch_size``, DistributedDataParallel averaging the gradients);
    only rank 0 validates, keeps the best state and saves; the others return (None, {}).
    """
    import torch

    from mskstudio.ml.models import normalise
    from mskstudio.ml.segment import resume as rs
    from mskstudio.ml.segment.unet import build_segmenter

    torch.manual_seed(p["seed"])
    model = build_segmenter(arch)
    if encoder_state is not None:
        model.encoder.load_backbone_state(encoder_state)
    acc = accel_for(device)  # bf16/fp16 autocast and channels-last on CUDA
    model = acc.module(model)
    xs, ms = data["train"]
    aug = JointAugment(rng=random.Random(p["seed"])) if p["augment"] else None
    generator = torch.Generator().manual_seed(p["seed"])
    loader, sampler = ddp.shuffled_loader(SegDataset(xs, ms, aug), p["batch_size"], seed=p["seed"],
                                          generator=generator, device=device)
    lead = ddp.rank() == 0
    net = ddp.wrap(model, device) if ddp.active() else maybe_compile(model, ctx.log)
    opt = torch.optim.AdamW(model.parameters(), lr=p["lr"], weight_decay=1e-4)
    epochs = int(p["epochs"])
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=p["lr"], total_steps=max(1, epochs * len(loader)), pct_start=0.2
    )
    scaler = acc.scaler()
    start, best_state, best_val, best_epoch = rs.restore(resume, model, opt, sched)
    val_x, val_m = data["val"] if len(data["val"][0]) else data["train"]
    for epoch in range(start, epochs):
        ddp.maybe_die(epoch)
        rs.reseed(epoch, int(p["seed"]), generator, aug.rng if aug else None)
        if sampler is not None:
            sampler.set_epoch(epoch)
            if aug is not None:  # other augmentations on every rank
                aug.rng.seed((int(p["seed"]) * 1_000_003 + epoch) * 31 + ddp.rank())
        model.train()
        losses = []
        with oom_guard(p["batch_size"], device):
            for x, m in loader:
                ctx.check_cancelled()
                x, m = acc.batch(x), m.to(device, non_blocking=True)
                with acc.autocast():
                    logits = net(normalise(x))
                loss = dice_bce_loss(logits.float(), m, pos_weight=p["pos_weight"])
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                sched.step()
                losses.append(float(loss.detach()))
        if not lead:  # validation, the best state and the checkpoint are rank 0's
            continue
        val = evaluate(model, val_x, val_m, device, p["threshold"])
        score = val["dice"] if val["dice"] == val["dice"] else 0.0  # nan-safe
        if best_state is None or score > best_val:
            best_val, best_epoch = score, epoch
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        if save is not None:  # before the figures: a killed epoch is trained (and reported) again
            save(rs.epoch_state(model, opt, sched, epoch, best_state, best_val, best_epoch))
        ctx.metric(f"{tag}loss", float(np.mean(losses)), epoch)
        ctx.metric(f"{tag}val_dice", val["dice"], epoch)
        ctx.progress(
            (epoch + 1) / epochs,
            f"{tag}epoch {epoch + 1}/{epochs} loss {np.mean(losses):.3f} val dice {val['dice']:.3f}",
        )
    if not lead:
        return None, {}
    model.load_state_dict(best_state)
    metrics = {
        "best_epoch": best_epoch,
        "val": evaluate(model, val_x, val_m, device, p["threshold"]),
        "test": evaluate(model, *data["test"], device, p["threshold"]),
    }
    return best_state, metrics


def run_train_seg(project: Project, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:

    from mskstudio.ml.models import load_checkpoint, pick_device
    from mskstudio.ml.segment import resume as rs

    TrainSegParams.from_json(params).check(project)  # before any run row is written
    p, run_id, resume = rs.open_run(project, params, DEFAULTS, "segmenter", ctx)
    t0, cpu0 = time.time(), time.process_time()
    device = pick_device(p["device"])
    if ddp.launched():  # under torchrun: this is rank 0 (the others run scale.worker.worker_main)
        device = ddp.init_from_env(device.type)
    masks = training_masks(project, p["class"])
    ids = sorted(masks)
    if p["max_images"]:
        ids = ids[: int(p["max_images"])]
    if len(ids) < 3:
        raise ValueError(f"segmentation needs at least 3 images with masks, the project has {len(ids)}")
    patients = project.images.patient_of(ids)
    encoder_state = None
    if p["encoder_run_id"]:
        ckpt = load_checkpoint(project, int(p["encoder_run_id"]))
        depth = p["arch"].rsplit("resnet", 1)[1]
        if ckpt["arch"] != f"resnet{depth}":
            raise ValueError(f"encoder run is {ckpt['arch']}, {p['arch']} needs resnet{depth}")
        encoder_state = ckpt["backbone"]
    xs, ms = _stack(project, ids, masks, int(p["size"]), p["background_threshold"], ctx.sub(0.0, 0.1))
    folds = int(p["folds"] or 1)
    splits = (
        patient_folds(patients, folds, p["seed"])
        if folds >= 2
        else [patient_split(patients, p["val_fraction"], p["test_fraction"], p["seed"])]
    )
    if run_id is None:
        run_id = project.models.create(
            "segmenter", p["arch"], params=p, job_id=ctx.job_id, name=f"segmenter {p['arch']} {len(ids)} images"
        )
    try:
        rs.check_same_images(resume, ids, run_id)
        folds_done = list(resume["folds_done"]) if resume else []
        if ddp.active():  # the other ranks get the snapshot and the plan, never the project
            ddp.broadcast(_worker_plan(project, p, ids, xs, ms, patients, splits, encoder_state,
                                       len(folds_done), resume, device))
        fold_metrics, best = [], None
        for f, part in enumerate(splits):
            if f < len(folds_done):  # finished before the run was stopped
                state, m = folds_done[f]["state"], folds_done[f]["metrics"]
                fold_metrics.append(m)
                if best is None or m["val"]["dice"] > best[1]["val"]["dice"]:
                    best = (state, m, part)
                continue
            position = {i: n for n, i in enumerate(ids)}
            idx = {k: [position[i] for i in v] for k, v in images_by_part(ids, patients, part).items()}
            data = {k: (xs[v], ms[v]) for k, v in idx.items()}
            span = 0.9 / len(splits)
            tag = f"fold{f}/" if len(splits) > 1 else ""
            base = {"arch": p["arch"], "ids": ids, "folds": len(splits), "fold": f, "folds_done": folds_done}
            state, m = _fit(
                p["arch"], data, p, device, ctx.sub(0.1 + f * span, 0.1 + (f + 1) * span), encoder_state, tag,
                resume=resume if resume and resume.get("fold") == f else None,
                save=rs.saver(project, run_id, base),
            )
            m.update(
                {
                    "fold": f,
                    "n_train": len(idx["train"]),
                    "n_val": len(idx["val"]),
                    "n_test": len(idx["test"]),
                }
            )
            fold_metrics.append(m)
            folds_done.append({"state": state, "metrics": m})
            ctx.log(
                f"{tag}test IoU {m['test']['iou']:.3f} Dice {m['test']['dice']:.3f} "
                f"(empty-mask IoU {m['test'].get('empty_baseline_iou', float('nan')):.3f})"
            )
            if best is None or m["val"]["dice"] > best[1]["val"]["dice"]:
                best = (state, m, part)
        ddp.shutdown()  # the other ranks are done
        state, m, part = best
        metrics = {
            "test_iou": m["test"]["iou"],
            "test_dice": m["test"]["dice"],
            "test_empty_baseline_iou": m["test"].get("empty_baseline_iou"),
            "val_dice": m["val"]["dice"],
            "folds": fold_metrics,
            "images": len(ids),
            "mean_fold_test_iou": float(np.nanmean([f["test"]["iou"] for f in fold_metrics])),
            "mean_fold_test_dice": float(np.nanmean([f["test"]["dice"] for f in fold_metrics])),
            **run_minutes(t0, cpu0),
            "device": str(device),
        }
        checkpoint = {
            "arch": p["arch"],
            "state_dict": state,
            "input_size": int(p["size"]),
            "threshold": p["threshold"],
            "background_threshold": p["background_threshold"],
            "class": p["class"],
            "metrics": metrics,
        }
        store_finished_run(project, run_id, checkpoint, metrics, part)
    except BaseException as exc:
        mark_stopped(project, run_id, exc)
        raise
    finally:
        ddp.shutdown()
    ctx.progress(1.0, f"test IoU {metrics['test_iou']:.3f}")
    return {"run_id": run_id, **{k: v for k, v in metrics.items() if k != "folds"}}


def _worker_plan(project, p, ids, xs, ms, patients, splits, encoder_state, n_done, resume,
                 device) -> dict[str, Any]:
    """What a rank > 0 needs: the snapshot (prepared squares + masks) and the plan."""
    from mskstudio.ml.scale.snapshot import write_snapshot

    snap = write_snapshot(project.cache_dir / "snapshots", ids, xs, None,
                          {"trainer": "segmenter", "size": int(p["size"]),
                           "background_threshold": p["background_threshold"], "class": p["class"]},
                          {"masks": ms})
    return {"kind": "train-seg", "snapshot": str(snap), "p": p, "patients": patients, "splits": splits,
            "encoder_state": encoder_state, "folds_done": n_done,
            "resume": {k: v for k, v in (resume or {}).items() if k != "folds_done"} or None,
            "device": device.type}


def segment_worker(plan: dict[str, Any], ctx: JobContext) -> None:
    """Rank > 0 of a distributed segmenter run: the folds rank 0 trains, on the snapshot."""
    from mskstudio.ml.scale.snapshot import locate, open_snapshot

    snap = open_snapshot(locate(plan["snapshot"]))
    p, ids, device = plan["p"], snap.ids, ddp.init_from_env(plan["device"])
    xs, ms = snap.images, snap.arrays["masks"]
    position = {i: n for n, i in enumerate(ids)}
    resume = plan["resume"]
    for f, part in enumerate(plan["splits"]):
        if f < plan["folds_done"]:
            continue
        idx = {k: [position[i] for i in v] for k, v in images_by_part(ids, plan["patients"], part).items()}
        _fit(p["arch"], {k: (xs[v], ms[v]) for k, v in idx.items()}, p, device, ctx, plan["encoder_state"],
             "", resume=resume if resume and resume.get("fold") == f else None)


# ---- inference ------------------------------------------------------------------------------------
def load_segmenter(project: Project, run_id: int):
    """(model in eval mode on CPU, checkpoint dict) of a segmenter run."""
    from mskstudio.ml.models import load_checkpoint
    from mskstudio.ml.segment.unet import build_segmenter

    ckpt = load_checkpoint(project, run_id)
    model = build_segmenter(ckpt["arch"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), ckpt


def predict_mask(project: Project, model, ckpt: dict, image_id: int, device=None) -> np.ndarray:
    """Bool mask on the image's full DICOM grid."""
    return predict_probability(project, model, ckpt, image_id, device) > ckpt.get("threshold", 0.5)


def predict_probability(project: Project, model, ckpt: dict, image_id: int, device=None) -> np.ndarray:
    """Lesion probability (float, 0-1) on the image's full DICOM grid."""
    import torch

    sq, _, geom = prepare(
        load_analysis(project, image_id),
        None,
        ckpt["input_size"],
        full=project.images.record(image_id).shape,
        threshold=ckpt.get("background_threshold", 0.02),
    )
    prob = predict_squares(model, sq[None], device or torch.device("cpu"))[0]
    return unprepare_probability(prob, geom)


def predict_mask_cascade(project: Project, coarse, box_segmenter, image_id: int, device=None) -> np.ndarray:
    """Whole-image mask, each found region re-segmented by the box model (when given).

    ``coarse`` and ``box_segmenter`` are ``(model, checkpoint)`` pairs; ``box_segmenter`` None
    returns the whole-image prediction alone."""
    from mskstudio.ml.segment.roi_seg import load_pixels, refine_mask

    mask = predict_mask(project, *coarse, image_id, device)
    if box_segmenter is None or not mask.any():
        return mask
    return refine_mask(*box_segmenter, load_pixels(project, image_id), mask, device)


def _box_segmenter_for_prelabel(project: Project, refine_run_id):
    """The box model that refines pre-labels: the given run, else the latest one; 0 / False: none."""
    from mskstudio.ml.segment.roi_seg import latest_box_segmenter, load_box_segmenter

    if refine_run_id is False or refine_run_id == 0:
        return None, None
    run_id = int(refine_run_id) if refine_run_id is not None else latest_box_segmenter(project)
    return (run_id, load_box_segmenter(project, run_id)) if run_id is not None else (None, None)


def run_prelabel(project: Project, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Model masks for every image without a human/adjudicated mask (of the class).

    With a finished box-segmenter (``refine_run_id``, default the latest; 0 for none) each
    region the whole-image model finds is re-segmented inside its box (two-stage cascade)."""
    from mskstudio.ml.models import pick_device

    run_id = PrelabelParams.from_json(params).check(project).model_run_id
    if run_id is None:
        done = [r for r in project.models.list("segmenter") if r["status"] == "done" and r["checkpoint_sha"]]
        if not done:
            raise ValueError("no finished segmenter run; train one first (train-seg)")
        run_id = done[0]["id"]
    run_id = int(run_id)
    device = pick_device(params.get("device"))
    model, ckpt = load_segmenter(project, run_id)
    model.to(device)
    refine_id, box_segmenter = _box_segmenter_for_prelabel(project, params.get("refine_run_id"))
    if box_segmenter is not None:
        box_segmenter[0].to(device)
    ann = project.annotations
    class_id = ann.class_id(params.get("class") or ckpt.get("class") or "tumour")
    covered = set(ann.images_with_masks(("human", "adjudicated"), class_id=class_id))
    todo = [i for i in project.images.ids() if i not in covered]
    if params.get("max_images"):
        todo = todo[: int(params["max_images"])]
    from mskstudio.io.resume_marks import ResumeMarks, chunk_size

    # A killed job, resumed (``resume_of``), skips the images whose masks it stored.
    marks = ResumeMarks.for_job(project, ctx.job_id, params, signature={
        "run": run_id, "refine": refine_id, "class": class_id, "todo": todo})
    every = chunk_size(len(todo), lo=8, hi=256)
    stored = sum(v == "stored" for v in marks.done.values())
    empty = sum(v == "empty" for v in marks.done.values())
    if marks.resumed:
        ctx.log(f"resuming: {len(marks.done)} of {len(todo)} images were pre-labelled before the job stopped")
    try:
        for n, i in enumerate(ctx.steps(todo, "pre-labelling {i}/{n}")):
            if n and n % every == 0:
                marks.flush()
            if i in marks:
                continue
            probability_png = None
            if box_segmenter is None:
                # One model: its probability map is kept with the mask (a FRACTIONAL DICOM SEG exports it).
                from mskstudio.io.exports.probability import encode_probability

                prob = predict_probability(project, model, ckpt, i, device)
                mask = prob > ckpt.get("threshold", 0.5)
                probability_png = encode_probability(prob) if mask.any() else None
            else:  # the box model re-draws the regions: no single map gives this mask
                mask = predict_mask_cascade(project, (model, ckpt), box_segmenter, i, device)
            if not mask.any():
                empty += 1
                marks.add({i: "empty"}, write=False)
                continue
            ann.save_mask(i, class_id, mask, annotator="model", source="model", run_id=run_id, audit=False,
                          probability_png=probability_png)
            stored += 1
            marks.add({i: "stored"}, write=False)
    finally:  # a cancel or an error keeps what was stored; a kill loses at most ``every`` images
        marks.flush()
    marks.finish()
    project.audit(
        "mask.prelabel",
        "model_run",
        run_id,
        {"images": len(todo), "stored": stored, "empty": empty, "refine_run_id": refine_id},
    )
    return {"run_id": run_id, "refine_run_id": refine_id, "images": len(todo), "stored": stored, "empty": empty}
