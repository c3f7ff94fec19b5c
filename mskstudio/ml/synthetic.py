"""Synthetic analysis arrays for ML tests and benchmarks, without DICOM or the importer.

``add_synthetic_images(project, n, seed)`` inserts patient/study/image rows and
writes analysis arrays (bone bright) with a per-"region" layout that clustering can
find: ``long`` (one long bone), ``pair`` (two parallel bones), ``hand`` (a row of
small bones), ``round`` (a ring, pelvis-like).  The region is stored as an
``import`` label in the label set ``region`` (the ground truth) and returned.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from mskstudio.store import Project

REGIONS = ("long", "pair", "hand", "round")


def synthetic_image(region: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """float32 [H, W] in [0, 1]: soft tissue, bones with cortex, noise."""
    h = size
    w = int(size * rng.uniform(0.7, 1.0))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.full((h, w), 0.05, np.float32)
    tissue = ((xx - w / 2) / (0.45 * w)) ** 2 < 1
    img[tissue] += 0.2
    jx, jy = rng.uniform(-0.06, 0.06, 2)

    def bar(cx, width, y0=0.05, y1=0.95, angle=0.0):
        x = xx / w - cx - jx - angle * (yy / h - 0.5)
        inside = (np.abs(x) < width) & (yy / h > y0 + jy) & (yy / h < y1 + jy)
        cortex = inside & (np.abs(x) > width * 0.55)
        return inside * 0.35 + cortex * 0.3

    def ring(cx, cy, r, t):
        d = np.sqrt((xx / w - cx - jx) ** 2 + (yy / h - cy - jy) ** 2)
        return ((d < r) & (d > r - t)) * 0.6

    a = rng.uniform(-0.1, 0.1)
    if region == "long":
        img += bar(0.5, rng.uniform(0.07, 0.1), angle=a)
    elif region == "pair":
        img += bar(0.36, rng.uniform(0.04, 0.06), angle=a) + bar(0.64, rng.uniform(0.03, 0.05), angle=a)
    elif region == "hand":
        for cx in np.linspace(0.2, 0.8, 5):
            img += bar(cx, 0.025, 0.3 + rng.uniform(-0.05, 0.05), 0.9, angle=a)
    elif region == "round":
        img += ring(0.5, 0.5, rng.uniform(0.25, 0.32), 0.06) + ring(0.5, 0.5, 0.08, 0.04)
    else:
        raise ValueError(region)
    img += rng.normal(0, 0.02, img.shape).astype(np.float32)
    return np.clip(img * rng.uniform(0.85, 1.15), 0, 1)


def add_synthetic_images(project: Project, n: int, *, seed: int = 0, size: int = 64,
                         regions: tuple[str, ...] = REGIONS, truth: bool = True,
                         thumbnails: bool = True) -> dict[int, str]:
    """Insert ``n`` synthetic images (cycling through regions); returns image id -> region."""
    import io

    from PIL import Image

    rng = np.random.default_rng(seed)
    out: dict[int, str] = {}
    ls = project.labels.label_set("region") if truth else None
    classes = {r: project.labels.class_id(ls, r) for r in regions} if truth else {}
    by_class: dict[str, list[int]] = {r: [] for r in regions}
    for i in range(n):
        region = regions[i % len(regions)]
        pid = project.images.patient_id(f"syn-{seed}-{i // 2}")
        sid = project.images.study_id(pid, f"1.2.826.0.1.{seed}.{i // 2}")
        arr = synthetic_image(region, size, rng)
        png = None
        if thumbnails:
            buf = io.BytesIO()
            Image.fromarray((arr * 255).astype(np.uint8)).save(buf, format="PNG")
            png = buf.getvalue()
        image_id = project.images.add_image(
            {"study_id": sid, "sop_uid": f"1.2.826.0.2.{seed}.{i}", "rows": arr.shape[0],
             "cols": arr.shape[1], "body_part": region, "modality": "DX"}, png)
        project.images.save_analysis(image_id, np.round(arr * 65535).astype(np.uint16))
        out[image_id] = region
        by_class[region].append(image_id)
    if truth:
        for region, ids in by_class.items():
            if ids:
                project.labels.set_labels(ids, ls, classes[region], source="import")
    return out
