"""The product's vocabulary: values stored in the database whose meaning never changes.

Kept free of SQL, Qt and torch so every layer (store, io, ml, gui, cli) can share it.
"""

from __future__ import annotations

from dataclasses import dataclass

# Label provenance, highest precedence first: a human label is never overridden by
# an imported, cluster-derived or model label (they are separate rows; see store).
LABEL_SOURCES = ("human", "import", "cluster", "model")
MASK_SOURCES = ("human", "model", "import", "adjudicated")
DIGNITIES = ("benign", "intermediate", "malignant", "none")
DIAGNOSIS_SOURCES = ("histology", "tumour_board", "follow_up")
JOB_STATUSES = ("submitted", "running", "done", "error", "cancelled", "interrupted")
MODEL_KINDS = ("deepcluster", "classifier", "segmenter", "embedder", "detector")

# Label sets whose name starts with this hold ground truth used only for scoring
# (e.g. the phantoms' true regions); training code must never read them as targets.
TRUTH_PREFIX = "truth:"


@dataclass(frozen=True)
class ImageRef:
    """Enough to place an image in a split or a gallery without loading it."""

    image_id: int
    patient_id: int
    study_id: int


@dataclass(frozen=True)
class Box:
    x0: float
    y0: float
    x1: float
    y1: float

    def __post_init__(self) -> None:
        if self.x1 < self.x0 or self.y1 < self.y0:
            raise ValueError(f"box corners out of order: {self}")

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0


def is_truth_set(name: str) -> bool:
    return name.startswith(TRUTH_PREFIX)
