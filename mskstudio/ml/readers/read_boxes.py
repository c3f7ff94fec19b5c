"""The lesion boxes readers drew while reading a study, against a reference and each other.

Reference: the project's human (and adjudicated) boxes of the study images — an image
without one has no lesion — or one reader's boxes in the same arm (``reader:NAME`` or
the name).  Per reader and arm, over the images both the reader and the reference
answered:

* hit rate at IoU > 0.2 and > 0.5: reference boxes matched one-to-one by a reader box
  above the threshold, over all reference boxes, with a Wilson 95% CI (statsmodels);
* false positives per image: reader boxes left unmatched, over the images, with an exact
  Poisson 95% CI (``scipy.stats.chi2``; the count is treated as Poisson).

The one-to-one matching maximises the number of pairs above the threshold (scipy's
``linear_sum_assignment`` on the thresholded IoU matrix, IoU breaking ties); the IoU of
two boxes is pycocotools' ``mask.iou``.  Only the counting around them is ours.

Pairwise reader IoU, per image and arm where either reader drew a box: each box of one
reader matched to the other's best box and back, the mean of both directions (as
``agreement.box_agreement`` does for the project's boxes), so a box only one drew counts
as 0; ``agreement.summarise`` gives the mean per pair with a bootstrap CI.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from mskstudio.store import Project

THRESHOLDS = (0.2, 0.5)
Box = tuple[float, float, float, float]


def iou_matrix(a: Sequence[Box], b: Sequence[Box]) -> np.ndarray:
    """IoU of every box of ``a`` (rows) with every box of ``b`` (x0, y0, x1, y1)."""
    import pycocotools.mask as mask_utils

    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    xywh = lambda boxes: np.array([[x0, y0, x1 - x0, y1 - y0] for x0, y0, x1, y1 in boxes], float)  # noqa: E731
    return np.asarray(mask_utils.iou(xywh(a), xywh(b), [0] * len(b)), float).reshape(len(a), len(b))


def matched(iou: np.ndarray, threshold: float) -> int:
    """Most one-to-one pairs with IoU > ``threshold``."""
    from scipy.optimize import linear_sum_assignment

    if iou.size == 0:
        return 0
    hit = iou > threshold
    # Each pair above the threshold weighs more than every IoU sum below it, so the
    # assignment first maximises the count; IoU only breaks ties.
    weight = hit * (iou.size + 1.0) + hit * iou
    rows, cols = linear_sum_assignment(weight, maximize=True)
    return int(hit[rows, cols].sum())


def poisson_ci(k: int, exposure: float) -> tuple[float, float, float]:
    """Rate k/exposure with the exact (Garwood) Poisson 95% CI."""
    from scipy.stats import chi2

    if exposure <= 0:
        return float("nan"), float("nan"), float("nan")
    lo = 0.0 if k == 0 else chi2.ppf(0.025, 2 * k) / 2
    hi = chi2.ppf(0.975, 2 * k + 2) / 2
    return k / exposure, float(lo / exposure), float(hi / exposure)


def reader_box_scores(drawn: dict[tuple[str, str], dict[int, list[Box]]],
                      reference: dict[str, dict[int, list[Box]]]) -> pd.DataFrame:
    """One row per (reader, arm): hit rates and false positives per image.

    ``drawn[(reader, arm)]`` maps each image the reader answered to its boxes (maybe none);
    ``reference[arm]`` maps each reference image to its boxes (maybe none)."""
    from mskstudio.ml.readers.intervals import wilson

    rows = []
    for (reader, arm), images in sorted(drawn.items()):
        ref = reference.get(arm, {})
        common = [i for i in images if i in ref]
        row: dict[str, Any] = {"reader": reader, "arm": arm, "images": len(common),
                               "reference_boxes": sum(len(ref[i]) for i in common),
                               "reader_boxes": sum(len(images[i]) for i in common)}
        for t in THRESHOLDS:
            hits = sum(matched(iou_matrix(ref[i], images[i]), t) for i in common)
            tag = f"{int(t * 10):02d}"
            rate, lo, hi = wilson(hits, row["reference_boxes"])
            fp, fp_lo, fp_hi = poisson_ci(row["reader_boxes"] - hits, len(common))
            row |= {f"hits_iou{tag}": hits, f"hit_rate_iou{tag}": rate, f"hit_rate_iou{tag}_lo": lo,
                    f"hit_rate_iou{tag}_hi": hi, f"fp_per_image_iou{tag}": fp,
                    f"fp_per_image_iou{tag}_lo": fp_lo, f"fp_per_image_iou{tag}_hi": fp_hi}
        rows.append(row)
    return pd.DataFrame(rows)


def pairwise_box_iou(drawn: dict[tuple[str, str], dict[int, list[Box]]]) -> pd.DataFrame:
    """Per image and arm, each pair of readers' box agreement (see the module docstring)."""
    out = []
    arms = sorted({arm for _, arm in drawn})
    for arm in arms:
        readers = sorted(r for r, a in drawn if a == arm)
        for a, b in itertools.combinations(readers, 2):
            da, db = drawn[(a, arm)], drawn[(b, arm)]
            for image_id in sorted(set(da) & set(db)):
                ba, bb = da[image_id], db[image_id]
                if not ba and not bb:
                    continue  # neither saw a lesion: nothing to overlap
                iou = iou_matrix(ba, bb)
                value = 0.0 if iou.size == 0 else float((iou.max(axis=1).mean() + iou.max(axis=0).mean()) / 2)
                out.append({"arm": arm, "image_id": image_id, "reader_a": a, "reader_b": b,
                            "boxes_a": len(ba), "boxes_b": len(bb), "iou": value})
    return pd.DataFrame(out, columns=["arm", "image_id", "reader_a", "reader_b", "boxes_a", "boxes_b", "iou"])


def study_read_boxes(project: Project, study_id: int) -> dict[tuple[str, str], dict[int, list[Box]]]:
    """(reader, arm) -> image id -> the boxes drawn with that answered read."""
    boxes = project.readers.read_boxes(study_id)
    out: dict[tuple[str, str], dict[int, list[Box]]] = {}
    for r in project.readers.reads(study_id):
        out.setdefault((r["reader"], r["arm"]), {})[int(r["image_id"])] = boxes.get(int(r["id"]), [])
    return out


def project_reference(project: Project, image_ids: Sequence[int]) -> dict[int, list[Box]]:
    """The project's human and adjudicated boxes of the images (every image, maybe empty)."""
    out: dict[int, list[Box]] = {int(i): [] for i in image_ids}
    for r in project.db.query("SELECT image_id, x0, y0, x1, y1 FROM boxes "
                              "WHERE source IN ('human', 'adjudicated') ORDER BY id"):
        if int(r[0]) in out:
            out[int(r[0])].append((float(r[1]), float(r[2]), float(r[3]), float(r[4])))
    return out


def box_tables(project: Project, study_id: int, image_ids: Sequence[int], *, reference: str | None = None,
               n_boot: int = 1000, seed: int = 0) -> dict[str, pd.DataFrame]:
    """The study's box tables: scores against the reference, pairwise IoU and its summary."""
    from mskstudio.ml.readers.agreement import summarise

    drawn = study_read_boxes(project, study_id)
    ref_name = (reference or "project").strip()
    if ref_name == "project":
        common = project_reference(project, image_ids)
        ref = {arm: common for _, arm in drawn}
        scored = drawn
    else:
        ref_reader = ref_name.removeprefix("reader:")
        if not any(r == ref_reader for r, _ in drawn):
            raise ValueError(f"--box-reference {ref_name!r}: no reads of that reader in this study "
                             f"(give 'project' or one of {', '.join(sorted({r for r, _ in drawn}))})")
        ref = {arm: images for (r, arm), images in drawn.items() if r == ref_reader}
        scored = {k: v for k, v in drawn.items() if k[0] != ref_reader}
    scores = reader_box_scores(scored, ref)
    scores.insert(2, "reference", ref_name)
    pairs = pairwise_box_iou(drawn)
    out = {"read_box_scores": scores, "read_box_iou": pairs}
    if not pairs.empty:
        out["read_box_iou_summary"] = pd.concat(
            [summarise(grp, ("iou",), n_boot=n_boot, seed=seed).assign(arm=arm)
             for arm, grp in pairs.groupby("arm")], ignore_index=True)
    return out
