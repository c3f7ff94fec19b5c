"""Job ``train-seg-box``: train the box-prompted ROI segmenter (see ``segment_roi``) and score it.

The held-out score is the honest one: patients of the test part never reach training or
model selection, every test image gets one seeded jittered box (the same boxes for the
model and for the baselines), and IoU / Dice are measured on the full DICOM grid.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mskstudio.ml.scale import ddp
from mskstudio.ml.segment import roi_seg as sr
from mskstudio.ml.segment.data import (
    dice_bce_loss,
    images_by_part,
    iou_dice_batch,
    mark_stopped,
    patient_split,
    run_minutes,
    store_finished_run,
    training_masks,
)
from mskstudio.ml.segment.params import TrainBoxSegParams

if TYPE_CHECKING:
    from mskstudio.jobs import JobContext
    from mskstudio.store import Project


def mean_ci(values: Sequence[float], z: float = 1.96) -> dict[str, float]:
    """Mean with a normal-approximation 95 % confidence interval (n >= 2)."""
    a = np.asarray(values, float)
    if a.size == 0:
        return {"mean": float("nan"), "lo": float("nan"), "hi": float("nan"), "n": 0}
    half = z * a.std(ddof=1) / np.sqrt(a.size) if a.size > 1 else float("nan")
    return {"mean": float(a.mean()), "lo": float(a.mean() - half), "hi": float(a.mean() + half), "n": int(a.size)}


def score_boxes(
    project: Project,
    model,
    ckpt: dict,
    masks: dict[int, np.ndarray],
    boxes: dict[int, sr.Rect],
    device=None,
    ctx: JobContext | None = None,
) -> dict[str, dict[str, list[float]]]:
    """Per-image IoU and Dice on the full grid of the model and the baselines, on the same boxes."""
    from mskstudio.imaging.masks import iou_dice

    out: dict[str, dict[str, list[float]]] = {k: {"iou": [], "dice": []} for k in ("model", "box", "otsu")}
    for n, (i, box) in enumerate(boxes.items()):
        if ctx is not None:
            ctx.check_cancelled()
        pixels = sr.load_pixels(project, i)
        preds = {
            "model": sr.segment_box(model, ckpt, pixels, box, device),
            "box": sr.box_fill(pixels.full, box),
            "otsu": sr.otsu_in_box(pixels, box),
        }
        for k, pred in preds.items():
            iou, dice = iou_dice(pred, masks[i])
            out[k]["iou"].append(iou)
            out[k]["dice"].append(dice)
        if ctx is not None:
            ctx.progress((n + 1) / len(boxes), "scoring held-out boxes")
    return out


def summarise(scores: dict[str, dict[str, list[float]]]) -> dict[str, Any]:
    return {f"{method}_{metric}": mean_ci(values) for method, per in scores.items() for metric, values in per.items()}


def _val_crops(lesions: list[sr.Lesion], crop: int, jitter, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = random.Random(seed)
    pairs = [sr.sample_crop(les, sr.jitter_box(les.box, rng, *jitter), crop) for les in lesions]
    return np.stack([x for x, _ in pairs]), np.stack([m for _, m in pairs])


def _predict_crops(model, xs: np.ndarray, device, batch: int = 32) -> np.ndarray:
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for a in range(0, len(xs), batch):
            out.append(model(torch.from_numpy(xs[a : a + batch]).to(device)).sigmoid()[:, 0].cpu().numpy())
    return np.concatenate(out)


def fit_box_model(
    train: list[sr.Lesion], val: list[sr.Lesion], p: dict[str, Any], device, ctx: JobContext,
    resume: dict | None = None, save=None,
) -> tuple[dict, dict[str, Any]]:
    """Train; keep the epoch with the best mean IoU on the validation crops.

    ``resume``/``save``: continue from / write an epoch checkpoint (``segment.resume``).
    """
    import torch

    from mskstudio.ml.segment import resume as rs
    from mskstudio.ml.segment.unet import build_segmenter

    torch.manual_seed(p["seed"])
    crop = int(p["crop"])
    model = build_segmenter(p["arch"], in_channels=2).to(device)
    data = sr.BoxCrops(train, crop, int(p["samples_per_image"]), p["jitter"], bool(p["augment"]), p["seed"])
    generator = torch.Generator().manual_seed(p["seed"])
    loader, sampler = ddp.shuffled_loader(data, p["batch_size"], seed=p["seed"], generator=generator,
                                          device=device)
    net, lead = ddp.wrap(model, device), ddp.rank() == 0  # ``net``: the model itself on one process
    epochs = int(p["epochs"])
    opt = torch.optim.AdamW(model.parameters(), lr=p["lr"], weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=p["lr"], total_steps=max(1, epochs * len(loader)), pct_start=0.2
    )
    val_x, val_m = _val_crops(val or train, crop, p["jitter"], p["seed"] + 7)
    start, best_state, best_iou, best_epoch = rs.restore(resume, model, opt, sched)
    for epoch in range(start, epochs):
        ddp.maybe_die(epoch)
        rs.reseed(epoch, int(p["seed"]), generator, data.rng)
        if sampler is not None:  # each rank its share, and other jitter/augmentations
            sampler.set_epoch(epoch)
            data.rng.seed((int(p["seed"]) * 1_000_003 + epoch) * 31 + ddp.rank())
        model.train()
        losses = []
        for x, m in loader:
            ctx.check_cancelled()
            loss = dice_bce_loss(net(x.to(device)), m.to(device), batch_dice=False)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        if not lead:  # validation, the best state and the checkpoint are rank 0's
            continue
        ious, _ = iou_dice_batch(_predict_crops(model, val_x, device) > p["threshold"], val_m)
        val_iou = float(np.mean(ious))
        if val_iou > best_iou:
            best_iou, best_epoch = val_iou, epoch
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        if save is not None:  # before the figures: a killed epoch is trained (and reported) again
            save(rs.epoch_state(model, opt, sched, epoch, best_state, best_iou, best_epoch))
        ctx.metric("loss", float(np.mean(losses)), epoch)
        ctx.metric("val_iou", val_iou, epoch)
        ctx.progress(
            (epoch + 1) / epochs, f"epoch {epoch + 1}/{epochs} loss {np.mean(losses):.3f} val IoU {val_iou:.3f}"
        )
    if not lead:
        return None, {}
    return best_state, {"best_epoch": best_epoch, "val_crop_iou": best_iou}


def _lesions(project: Project, ids, masks, crop: int, ctx: JobContext) -> list[sr.Lesion]:
    out = []
    for i in ctx.steps(ids, "cutting lesion windows {i}/{n}"):
        lesion = sr.cut_lesion(sr.load_pixels(project, i), masks[i], crop)
        if lesion is not None:
            out.append(lesion)
    return out


def run_train_box_seg(project: Project, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    import torch

    from mskstudio.ml.models import pick_device
    from mskstudio.ml.segment import resume as rs
    from mskstudio.ml.segment.unet import build_segmenter

    TrainBoxSegParams.from_json(params).check(project)  # before any run row is written
    p, run_id, resume = rs.open_run(project, params, sr.DEFAULTS, sr.MODEL_KIND, ctx)
    p["jitter"] = list(p["jitter"])
    if p["threads"]:
        torch.set_num_threads(int(p["threads"]))
    t0, cpu0 = time.time(), time.process_time()
    device = pick_device(p["device"])
    if ddp.launched():  # under torchrun: this is rank 0 (the others run scale.worker.worker_main)
        device = ddp.init_from_env(device.type)
    masks = training_masks(project, p["class"])
    ids = sorted(i for i, m in masks.items() if m.any())
    if p["max_images"]:
        ids = ids[: int(p["max_images"])]
    if len(ids) < 3:
        raise ValueError(f"box segmentation needs at least 3 images with masks, the project has {len(ids)}")
    patients = project.images.patient_of(ids)
    part = patient_split(patients, p["val_fraction"], p["test_fraction"], p["seed"])
    by_part = images_by_part(ids, patients, part)
    train = _lesions(project, by_part["train"], masks, int(p["crop"]), ctx.sub(0.0, 0.05))
    val = _lesions(project, by_part["val"], masks, int(p["crop"]), ctx.sub(0.05, 0.1))
    if run_id is None:
        run_id = project.models.create(
            sr.MODEL_KIND, p["arch"], params=p, job_id=ctx.job_id,
            name=f"box segmenter {p['arch']} {len(ids)} images")
    try:
        rs.check_same_images(resume, ids, run_id)
        if ddp.active():  # the lesion windows are small: they travel with the plan, not in a snapshot
            ddp.broadcast({"kind": "train-seg-box", "p": p, "train": train, "resume": resume,
                           "device": device.type})
        state, fit = fit_box_model(train, val, p, device, ctx.sub(0.1, 0.9), resume=resume,
                                   save=rs.saver(project, run_id, {"arch": p["arch"], "ids": ids}))
        ddp.shutdown()  # the other ranks are done; scoring is rank 0's
        minutes = run_minutes(t0, cpu0)
        ckpt = {
            "arch": p["arch"],
            "in_channels": 2,
            "crop": int(p["crop"]),
            "margin": sr.roi.MARGIN,
            "threshold": p["threshold"],
            "class": p["class"],
            "state_dict": state,
        }
        model = build_segmenter(p["arch"], in_channels=2)
        model.load_state_dict(state)
        model.eval().to(device)
        test_boxes = sr.eval_boxes(by_part["test"], masks, p["jitter"], p["seed"] + 1)
        scores = score_boxes(project, model, ckpt, masks, test_boxes, device, ctx.sub(0.9, 1.0))
        summary = summarise(scores)
        metrics = {
            "test_iou": summary["model_iou"]["mean"],
            "test_dice": summary["model_dice"]["mean"],
            "test_box_fill_iou": summary["box_iou"]["mean"],
            "test_otsu_iou": summary["otsu_iou"]["mean"],
            "test": summary,
            "n_train": len(train),
            "n_val": len(val),
            "n_test": len(test_boxes),
            **fit,
            **minutes,
            "device": str(device),
        }
        ckpt["metrics"] = metrics
        store_finished_run(project, run_id, ckpt, metrics, part)
    except BaseException as exc:
        ddp.shutdown()
        mark_stopped(project, run_id, exc)
        raise
    ctx.progress(1.0, f"held-out box IoU {metrics['test_iou']:.3f} (filled box {metrics['test_box_fill_iou']:.3f})")
    return {"run_id": run_id, **{k: v for k, v in metrics.items() if k != "test"}}


def box_worker(plan: dict[str, Any], ctx: JobContext) -> None:
    """Rank > 0 of a distributed box-segmenter run: its share of the broadcast lesion windows."""
    fit_box_model(plan["train"], [], plan["p"], ddp.init_from_env(plan["device"]), ctx, resume=plan["resume"])
