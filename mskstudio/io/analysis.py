"""The analysis array of an image: read from the cache, rebuilt from its DICOM file when
the cache is missing or unreadable.

The store only reads and writes the cache (``ImageRepo.read_analysis`` /
``save_analysis``); decoding the DICOM file to rebuild it belongs here, in ``io``.
The cache is derived data, not fsynced: a power cut may truncate it, and the rebuild
gives what the import wrote (the same ``frame_products``).
"""

from __future__ import annotations

import numpy as np

from mskstudio.io.import_worker import ANALYSIS_LONG_SIDE
from mskstudio.store import Project


def load_analysis(project: Project, image_id: int) -> np.ndarray:
    """The 16-bit analysis array as float32 in [0, 1], bone bright; rebuilt if missing
    or unreadable."""
    array = project.images.read_analysis(image_id)
    if array is None:
        rebuild_analysis(project, image_id)
        array = project.images.read_analysis(image_id, strict=True)
    return array.astype(np.float32) / 65535.0


def rebuild_analysis(project: Project, image_id: int) -> None:
    """Decode the image's frame again and write its analysis array to the cache."""
    from mskstudio.io.dicom import frame_products, read_dataset  # pydicom: ~0.5 s, only for a rebuild

    ds = read_dataset(project.images.dicom_path(image_id))
    analysis, _thumb = frame_products(ds, project.images.frame_of(image_id), ANALYSIS_LONG_SIDE)
    project.images.save_analysis(image_id, analysis)
