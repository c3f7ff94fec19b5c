"""Planted-lesion projects for detector tests: synthetic radiographs (``ml.synthetic``), two views
(AP and lateral) per patient study, a bright square planted in both views of half the patients,
each square boxed by a human."""

from __future__ import annotations

import numpy as np

from mskstudio.io.analysis import load_analysis
from mskstudio.ml.synthetic import synthetic_image


def add_planted_squares(project, n_patients: int, *, size: int = 96, seed: int = 0) -> dict[int, list]:
    """image id -> list of (x0, y0, x1, y1) planted squares (empty for lesion-free images)."""
    rng = np.random.default_rng(seed)
    class_id = project.annotations.class_id("tumour")
    out: dict[int, list] = {}
    regions = ("long", "pair", "round")
    for p in range(n_patients):
        pid = project.images.patient_id(f"plant-{seed}-{p}")
        sid = project.images.study_id(pid, f"1.2.826.0.9.{seed}.{p}")
        lesion = p % 2 == 0
        for v, view in enumerate(("AP", "LAT")):
            arr = synthetic_image(regions[(p + v) % len(regions)], size, rng)
            boxes = []
            if lesion:
                side = int(rng.integers(10, 17))
                h, w = arr.shape
                x0, y0 = int(rng.integers(4, w - side - 4)), int(rng.integers(4, h - side - 4))
                arr[y0:y0 + side, x0:x0 + side] = np.clip(arr[y0:y0 + side, x0:x0 + side] + 0.35, 0, 1)
                boxes.append((x0, y0, x0 + side, y0 + side))
            image_id = project.images.add_image(
                {"study_id": sid, "sop_uid": f"1.2.826.0.8.{seed}.{p}.{v}", "rows": arr.shape[0],
                 "cols": arr.shape[1], "body_part": "KNEE", "modality": "DX", "view": view}, None)
            project.images.save_analysis(image_id, np.round(arr * 65535).astype(np.uint16))
            for b in boxes:
                project.annotations.add_box(image_id, class_id, b, audit=False)
            out[image_id] = boxes
    return out


def brightest_blob_baseline(project, image_ids, side: float) -> dict[int, tuple]:
    """A box of the median lesion side centred on the brightest point of the smoothed image,
    scored by that brightness: the baseline a detector must beat."""
    from scipy import ndimage

    out = {}
    for i in image_ids:
        a = ndimage.uniform_filter(load_analysis(project, i), size=max(3, int(side / 2)))
        y, x = np.unravel_index(int(np.argmax(a)), a.shape)
        box = np.array([[x - side / 2, y - side / 2, x + side / 2, y + side / 2]], np.float32)
        out[int(i)] = (box, np.array([float(a[y, x])], np.float32))
    return out
