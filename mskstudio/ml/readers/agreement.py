"""Agreement of readers' masks and boxes: IoU and Dice per image, class and reader pair.

Masks: IoU and Dice of the two readers' human masks of one class on one image
(``imaging.masks.iou_dice``; the tests check it against scikit-learn's jaccard and F1).
Boxes: each box of reader A is matched to B's box of the same class with the highest
IoU (pycocotools ``mask.iou`` on [x, y, w, h] boxes) and the other way round; the
pair's value is the mean of both directions, so a box one reader drew and the other
did not counts as 0.  ``summarise`` gives the mean per reader pair with a percentile
bootstrap CI over images.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from mskstudio.store import Project

HUMAN = ("human", "adjudicated")


def mask_agreement(project: Project, image_ids: Iterable[int] | None = None) -> pd.DataFrame:
    from mskstudio.imaging.masks import iou_dice

    rows = project.db.query(
        "SELECT m.id, m.image_id, m.class_id, r.name AS reader FROM masks m JOIN readers r ON r.id = m.reader_id "
        "WHERE m.source IN ('human', 'adjudicated') ORDER BY m.image_id, m.class_id, r.name")
    wanted = None if image_ids is None else set(image_ids)
    groups: dict[tuple[int, int], list] = {}
    for r in rows:
        if wanted is None or r["image_id"] in wanted:
            groups.setdefault((r["image_id"], r["class_id"]), []).append(r)
    out = []
    for (image_id, class_id), masks in groups.items():
        for a, b in itertools.combinations(masks, 2):
            if a["reader"] == b["reader"]:
                continue
            iou, dice = iou_dice(project.annotations.load_mask(a["id"]), project.annotations.load_mask(b["id"]))
            out.append({"image_id": image_id, "class_id": class_id, "reader_a": a["reader"],
                        "reader_b": b["reader"], "iou": iou, "dice": dice})
    return pd.DataFrame(out, columns=["image_id", "class_id", "reader_a", "reader_b", "iou", "dice"])


def box_agreement(project: Project, image_ids: Iterable[int] | None = None) -> pd.DataFrame:
    import pycocotools.mask as mask_utils

    rows = project.db.query(
        "SELECT b.image_id, b.class_id, r.name AS reader, b.x0, b.y0, b.x1, b.y1 FROM boxes b "
        "JOIN readers r ON r.id = b.reader_id WHERE b.source IN ('human', 'adjudicated')")
    wanted = None if image_ids is None else set(image_ids)
    boxes: dict[tuple[int, int], dict[str, list]] = {}
    for r in rows:
        if wanted is None or r["image_id"] in wanted:
            xywh = [r["x0"], r["y0"], r["x1"] - r["x0"], r["y1"] - r["y0"]]
            boxes.setdefault((r["image_id"], r["class_id"]), {}).setdefault(r["reader"], []).append(xywh)
    out = []
    for (image_id, class_id), by_reader in boxes.items():
        for a, b in itertools.combinations(sorted(by_reader), 2):
            ba, bb = np.array(by_reader[a], float), np.array(by_reader[b], float)
            iou = np.asarray(mask_utils.iou(ba, bb, [0] * len(bb)))
            value = float((iou.max(axis=1).mean() + iou.max(axis=0).mean()) / 2)
            out.append({"image_id": image_id, "class_id": class_id, "reader_a": a, "reader_b": b,
                        "boxes_a": len(ba), "boxes_b": len(bb), "iou": value})
    return pd.DataFrame(out, columns=["image_id", "class_id", "reader_a", "reader_b", "boxes_a", "boxes_b", "iou"])


def summarise(per_image: pd.DataFrame, columns=("iou", "dice"), *, n_boot: int = 1000, seed: int = 0
              ) -> pd.DataFrame:
    """Mean per reader pair with a percentile bootstrap 95% CI over images."""
    rows = []
    if per_image.empty:
        return pd.DataFrame(rows)
    for (a, b), grp in per_image.groupby(["reader_a", "reader_b"]):
        row = {"reader_a": a, "reader_b": b, "n": len(grp)}
        rng = np.random.default_rng(seed)
        for col in [c for c in columns if c in grp]:
            x = grp[col].to_numpy(float)
            means = x[rng.integers(0, len(x), (n_boot, len(x)))].mean(axis=1)
            row |= {col: float(x.mean()), f"{col}_lo": float(np.percentile(means, 2.5)),
                    f"{col}_hi": float(np.percentile(means, 97.5))}
        rows.append(row)
    return pd.DataFrame(rows)
