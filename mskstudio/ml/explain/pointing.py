"""Pointing game: does a classifier's Grad-CAM peak fall on the lesion it classified?

For every held-out image of a classifier run that has a lesion mask (adjudicated >
human > import) and that the fold ensemble classifies correctly, the peak of the
Grad-CAM of the predicted class is a *hit* when it lies inside the mask grown by
``tolerance_mm`` (Zhang et al. 2016 allow 15 px at 224 px; millimetres keep the rule
independent of the input size).  The chance baseline is computed per image, not
assumed: the probability that a point drawn uniformly from the body (pixels brighter
than a tenth of the image's range) lands in the same grown mask.

Only the hold-out is scored (the ensemble never trained on it), and only runs whose
input is the whole image: on ROI crops the lesion fills most of the input, so a hit
says little.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mskstudio.domain import Image
from mskstudio.io.analysis import load_analysis
from mskstudio.ml.classify.params import PointingGameParams
from mskstudio.ml.evaluate.metrics import proportion

if TYPE_CHECKING:
    from mskstudio.jobs import JobContext
    from mskstudio.store import Project

TOLERANCE_MM = 5.0


def grown_mask(mask: np.ndarray, radius_px: float) -> np.ndarray:
    """Pixels within ``radius_px`` (Euclidean) of ``mask``; one distance transform, any radius."""
    from scipy import ndimage

    if radius_px <= 0 or not mask.any():
        return mask
    return ndimage.distance_transform_edt(~mask) <= radius_px


def body_mask(array: np.ndarray) -> np.ndarray:
    """Pixels brighter than a tenth of the image's range: the patient, not the air."""
    lo, hi = float(array.min()), float(array.max())
    return array > lo + 0.1 * (hi - lo)


def score_peak(heat: np.ndarray, lesion: np.ndarray, body: np.ndarray) -> tuple[bool, float]:
    """(peak of ``heat`` inside ``lesion``, chance that a uniform body point is inside it)."""
    peak = np.unravel_index(int(np.argmax(heat)), heat.shape)
    inside_body = body | lesion
    chance = float((lesion & inside_body).sum()) / max(1, int(inside_body.sum()))
    return bool(lesion[peak]), chance


def _analysis_spacing_mm(image: Image, analysis_shape: tuple[int, int]) -> float | None:
    if image.spacing is None:
        return None
    sr, sc = image.spacing
    return float(np.mean([sr * image.rows / analysis_shape[0], sc * image.cols / analysis_shape[1]]))


def pointing_game(project: Project, run_id: int, *, tolerance_mm: float = TOLERANCE_MM,
                  image_ids: list[int] | None = None, only_correct: bool = True, layer: str | None = None,
                  scales: Sequence[float] | None = None, ctx: JobContext | None = None) -> dict[str, Any]:
    """Score a classifier run's Grad-CAM on its hold-out lesion images (see the module doc).

    ``only_correct=False`` also scores misclassified images (the CAM of the predicted class).
    ``scales`` are the CAM's input scales (``explain.DEFAULT_SCALES`` when None), the map
    the review view shows.
    """
    import torch

    from mskstudio.ml.explain.gradcam import explain, loaded_run, model_input, parse_scales
    from mskstudio.ml.segment.data import resize_mask, training_masks

    scales = parse_scales(scales)
    row = project.models.get(run_id)
    if row is None or row["kind"] != "classifier":
        raise ValueError(f"model run {run_id} is not a classifier run")
    ens = loaded_run(project, run_id).get("main")
    if ens is None:
        raise ValueError(f"model run {run_id} is a cascade; the pointing game scores single-stage runs")
    if ens.input_mode != "image":
        raise ValueError(f"model run {run_id} sees ROI crops; the pointing game needs whole-image input")
    held_out = set(json.loads(row["split"] or "{}").get("test", []))
    ids = sorted(held_out if image_ids is None else held_out & {int(i) for i in image_ids})
    truth = project.labels.effective(int(row["label_set_id"]))
    masks = training_masks(project)
    cases = [i for i in ids if i in masks and i in truth]
    class_index = {c: j for j, c in enumerate(ens.class_ids)}

    hits, chances, correct, per_image = 0, [], 0, []
    steps = ctx.steps(cases, "pointing game {i}/{n}") if ctx is not None else cases
    for image_id in steps:
        x, _ = model_input(project, ens, image_id)
        ens.bind_clinical(project, image_id)
        with torch.no_grad():
            predicted = ens.class_ids[int(ens.logits(x).argmax(1)[0])]
        right = predicted == truth[image_id] and truth[image_id] in class_index
        correct += right
        if only_correct and not right:
            continue
        heat = explain(project, run_id, image_id, predicted, layer=layer, scales=scales)
        spacing = _analysis_spacing_mm(project.images.record(image_id), heat.shape)
        radius = tolerance_mm / spacing if spacing else 0.0
        lesion = grown_mask(resize_mask(masks[image_id], heat.shape), radius)
        hit, chance = score_peak(heat, lesion, body_mask(load_analysis(project, image_id)))
        hits += hit
        chances.append(chance)
        per_image.append({"image_id": image_id, "correct": right, "hit": hit, "chance": round(chance, 4)})
    return {
        "model_run_id": run_id,
        "tolerance_mm": tolerance_mm,
        "layer": layer or "default",
        "scales": list(scales),
        "held_out_lesion_images": len(cases),
        "correctly_classified": correct,
        "only_correct": only_correct,
        "pointing": proportion(hits, len(per_image)),
        "chance_mean": float(np.mean(chances)) if chances else None,
        "images": per_image,
    }


def run_pointing_game(project: Project, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Job ``pointing_game``: the result is also kept in the run's metrics under ``pointing_game``."""
    run_id = int(PointingGameParams.from_json(params).check(project).model_run_id)
    tolerance = params.get("tolerance_mm")
    result = pointing_game(project, run_id, tolerance_mm=TOLERANCE_MM if tolerance is None else float(tolerance),
                           only_correct=bool(params.get("only_correct", True)), layer=params.get("layer"),
                           scales=params.get("scales"), ctx=ctx)
    summary = {k: v for k, v in result.items() if k != "images"}
    metrics = json.loads(project.models.get(run_id)["metrics"] or "{}")
    metrics["pointing_game"] = summary
    project.models.set_fields(run_id, metrics=json.dumps(metrics))
    return summary
