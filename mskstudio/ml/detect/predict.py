"""Detector inference: fold models from a checkpoint, fused boxes per image, and the job ``detect``.

``detect`` runs a finished detector run over the project (or ``image_ids``) and stores the
fused boxes at or above ``min_score`` as predicted boxes (source 'model', score, run id; see
``store.repo_detections``): earlier predictions of that run on those images are replaced,
human boxes are never touched.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mskstudio.ml.detect.ensemble import Pass, ensemble_detect
from mskstudio.ml.detect.model import anchor_table, build_detector, decode, raw_outputs

if TYPE_CHECKING:
    from mskstudio.jobs import JobContext
    from mskstudio.ml.detect.data import DetImages
    from mskstudio.store import Project

from mskstudio.ml.detect.params import MODEL_KIND, DetectParams

CHECKPOINT_FORMAT = "mskstudio-detector-1"


def model_from_state(p: dict[str, Any], state: dict):
    model = build_detector(p["arch"], size=int(p["size"]), fpn_channels=int(p["fpn_channels"]),
                           score_thresh=float(p["score_thresh"]), nms_thresh=float(p["nms_thresh"]),
                           detections=int(p["detections"]), head_convs=int(p.get("head_convs") or 4))
    model.load_state_dict(state)
    return model.eval()


def make_decoder(model, p: dict[str, Any]):
    anchors, per_level = anchor_table(model, int(p["size"]))
    return functools.partial(decode, anchors=anchors, per_level=per_level, size=int(p["size"]),
                             score_thresh=float(p["score_thresh"]), nms_thresh=float(p["nms_thresh"]),
                             detections=int(p["detections"]))


def torch_raws(models: Sequence[Any], device) -> list:
    from mskstudio.ml.detect.model import RawDetector

    out = []
    for m in models:
        raw = RawDetector.wrap(m).to(device)
        out.append(functools.partial(raw_outputs, raw, device=device))
    return out


def predict_images(raws, decoder, images: DetImages, ids: Sequence[int], p: dict[str, Any],
                   ctx: JobContext | None = None, batch: int = 8) -> dict[int, Pass]:
    """image id -> fused (boxes, scores) in square pixels."""
    ids = [int(i) for i in ids]
    out: dict[int, Pass] = {}
    for a in range(0, len(ids), batch):
        if ctx is not None:
            ctx.check_cancelled()
            ctx.progress(a / max(1, len(ids)), f"detecting {a}/{len(ids)}")
        chunk = ids[a:a + batch]
        fused = ensemble_detect(raws, images.batch(chunk), decoder, int(p["size"]), tta=bool(p["tta"]),
                                fusion=p["fusion"], iou_thr=float(p["fusion_iou"]))
        out.update(zip(chunk, fused, strict=True))
    return out


def load_detector(project: Project, run_id: int) -> dict[str, Any]:
    from mskstudio.ml.models import load_checkpoint

    row = project.models.get(int(run_id))
    if row is None or row["kind"] != MODEL_KIND:
        raise ValueError(f"model run {run_id} is not a detector run")
    ckpt = load_checkpoint(project, int(run_id))
    if ckpt.get("state") != "done":
        raise ValueError(f"detector run {run_id} has not finished training (resume it first)")
    return ckpt


def latest_detector(project: Project) -> int | None:
    done = [r for r in project.models.list(MODEL_KIND) if r["status"] == "done" and r["checkpoint_sha"]]
    return int(done[0]["id"]) if done else None


def run_detect(project: Project, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Job ``detect``: predicted boxes of a detector run over the project or ``image_ids``."""
    import torch

    from mskstudio.ml.detect.data import DetImages
    from mskstudio.ml.models import pick_device

    q = DetectParams.from_json(params).check(project).to_json()
    if q["threads"]:
        torch.set_num_threads(int(q["threads"]))
    run_id = q["model_run_id"] if q["model_run_id"] is not None else latest_detector(project)
    if run_id is None:
        raise ValueError("no finished detector run; train one first (mskstudio train-det)")
    ckpt = load_detector(project, int(run_id))
    p = dict(ckpt["params"])
    for key in ("tta", "fusion"):
        if q[key] is not None:
            p[key] = q[key]
    min_score = float(q["min_score"] if q["min_score"] is not None else ckpt.get("store_threshold", 0.1))
    if not 0.0 <= min_score <= 1.0:
        raise ValueError(f"min_score must be between 0 and 1, not {min_score}")
    known = set(project.images.ids())
    ids = sorted(known if q["image_ids"] is None else {int(i) for i in q["image_ids"]})
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise ValueError(f"no image {unknown[0]} in the project (or it is excluded)")
    class_id = ckpt.get("class_id") or project.annotations.class_id(ckpt.get("class_name") or "tumour")
    device = pick_device(q["device"])
    models = [model_from_state(p, s) for s in ckpt["folds"]]
    decoder = make_decoder(models[0], p)
    raws = torch_raws(models, device)
    from mskstudio.io.resume_marks import ResumeMarks, chunk_size

    # A killed job, resumed (``resume_of``), skips the chunks whose boxes it stored.
    marks = ResumeMarks.for_job(project, ctx.job_id, params, signature={
        "run": int(run_id), "ids": ids, "min_score": min_score, "tta": p["tta"], "fusion": p["fusion"]})
    if marks.resumed:
        ctx.log(f"resuming: {len(marks.done)} chunks of images were detected before the job stopped")
    stored = 0
    # Letterbox a chunk, detect, store: memory stays flat on a large project (at most 64 images).
    chunk = chunk_size(len(ids), lo=8, hi=64)
    for a in range(0, len(ids), chunk):
        if a in marks:
            stored += int(marks.get(a))
            continue
        part = ids[a:a + chunk]
        sub = ctx.sub(a / max(1, len(ids)), min(1.0, (a + chunk) / max(1, len(ids))))
        images = DetImages(project, part, {}, int(p["size"]))
        preds = predict_images(raws, decoder, images, part, p, sub, int(q["batch_size"]))
        rows = []
        for i, (boxes, scores) in preds.items():
            full = images.geometry[i].to_full(boxes)
            for rect, s in zip(full, scores, strict=True):
                if s >= min_score and rect[2] - rect[0] > 0 and rect[3] - rect[1] > 0:
                    rows.append((i, class_id, tuple(float(v) for v in rect), float(s)))
        n = project.detections.replace_predictions(int(run_id), part, rows)
        marks.add({a: n})
        stored += n
    marks.finish()
    ctx.progress(1.0, f"{stored} boxes on {len(ids)} images")
    return {"run_id": int(run_id), "images": len(ids), "boxes": stored, "min_score": min_score,
            "images_with_boxes": len({r.image_id for r in project.detections.predictions(run_id=int(run_id))
                                      if r.image_id in set(ids)})}


def square_preds_to_full(preds: dict[int, Pass], images: DetImages) -> dict[int, Pass]:
    return {i: (images.geometry[i].to_full(b), s) for i, (b, s) in preds.items()}


def empty_pass() -> Pass:
    return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
