"""Parameters of jobs ``train-det``, ``detect`` and ``export-det``: defaults, checks, JSON.

The one place that defines the detector's defaults (``train.DEFAULTS`` is
``TrainDetParams().to_json()``).  ``class`` in the JSON is ``class_name`` here; stored
``detect``/``export-det`` jobs of older projects name the detector run ``run_id``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from mskstudio.ml.detect.ensemble import FUSIONS
from mskstudio.ml.detect.model import FPN_LAYERS
from mskstudio.ml.params import JobParams, collect, model_run_problem
from mskstudio.store import Project

MODEL_KIND = "detector"
HOLDOUTS = ("random", "none")
BACKBONE_KINDS = ("deepcluster", "classifier")  # runs whose encoder can start a detector


def _multiple_of_32(value: Any, what: str) -> str | None:
    v = int(value)
    if v < 64 or v % 32:
        return f"The detector {what} must be a multiple of 32 and at least 64, not {value}."
    return None


def _unit_problem(value: Any, what: str) -> str | None:
    if value is None or 0.0 <= float(value) <= 1.0:
        return None
    return f"The {what} must be between 0 and 1, not {value}."


def _init_problem(project: Project, init: Any) -> str | None:
    """scratch | run:ID (a DeepCluster or classifier run) | a weights file."""
    if init in (None, "", "scratch"):
        return None
    if isinstance(init, int) or (isinstance(init, str) and init.startswith("run:")):
        run_id = str(init).removeprefix("run:")
        return model_run_problem(project, run_id, BACKBONE_KINDS, what="backbone run", finished=True)
    return None if Path(str(init)).is_file() else f"Weights file not found: {init}"


@dataclasses.dataclass(frozen=True)
class TrainDetParams(JobParams):
    KIND = "train-det"
    JSON_NAMES = {"class_name": "class"}

    arch: str = "resnet18"
    size: int = 512                  # letterboxed input side, a multiple of 32
    fpn_channels: int = 64           # 64 keeps 512 px inference near 300 CPU ms (ONNX Runtime); 128 ~500-680
    head_convs: int = 4              # convolutions per FCOS head branch (torchvision's default is 4)
    crop: int | None = None          # train on lesion-centred windows of this side (CPU saver); None: whole images
    init: Any = "scratch"            # scratch | run:ID (DeepCluster or classifier run) | weights file
    epochs: int = 20
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    k: int = 5
    train_folds: int | None = None   # train only the first N of the k folds (CPU saver); None: all
    holdout: str = "random"          # random | none
    test_fraction: float = 0.2
    seed: int = 0
    class_name: str | None = None    # only boxes and masks of this class (default: all)
    image_ids: list[int] | None = None
    augment: bool = True
    tta: bool = True
    fusion: str = "wbf"              # wbf | nms: how folds and TTA are fused
    fusion_iou: float = 0.55
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    detections: int = 20
    fp_budget: float = 0.25          # false positives per image allowed at the operating threshold
    store_threshold: float | None = None
    device: str | None = None
    threads: int | None = None
    workers: int = 0
    name: str | None = None
    resume: int | None = None        # detector run to continue

    def problems(self, project: Project) -> list[str]:
        if self.resume:  # the run keeps its own parameters
            return collect(model_run_problem(project, self.resume, (MODEL_KIND,), what="detector run"))
        problems = collect(
            None if self.arch in FPN_LAYERS
            else f"Unknown detector backbone “{self.arch}” (one of {', '.join(FPN_LAYERS)}).",
            _multiple_of_32(self.size, "input size"), _multiple_of_32(self.fpn_channels, "FPN width"),
            "Train for at least one epoch." if int(self.epochs) < 1 else None,
            "The batch size must be at least 1." if int(self.batch_size) < 1 else None,
            "The learning rate must be positive." if float(self.lr) <= 0 else None,
            "Use at least one fold (k)." if int(self.k) < 1 else None,
            f"Train between 1 and k ({self.k}) folds, not {self.train_folds}."
            if self.train_folds is not None and not 1 <= int(self.train_folds) <= int(self.k) else None,
            f"The crop must be a multiple of 32 between 64 and the input size ({self.size}), not {self.crop}."
            if self.crop is not None and (int(self.crop) % 32 or not 64 <= int(self.crop) <= int(self.size))
            else None,
            f"Use 1 to 4 head convolutions, not {self.head_convs}." if not 1 <= int(self.head_convs) <= 4 else None,
            None if self.holdout in HOLDOUTS else f"Unknown hold-out “{self.holdout}” (random or none).",
            "The hold-out fraction must be between 0 and 1."
            if self.holdout == "random" and not 0 < float(self.test_fraction) < 1 else None,
            None if self.fusion in FUSIONS else f"Unknown box fusion “{self.fusion}” (one of {', '.join(FUSIONS)}).",
            _unit_problem(self.fusion_iou, "fusion IoU"), _unit_problem(self.score_thresh, "score threshold"),
            _unit_problem(self.nms_thresh, "NMS threshold"), _unit_problem(self.store_threshold, "storing threshold"),
            "Keep at least one detection per image." if int(self.detections) < 1 else None,
            f"The false-positive budget cannot be negative ({self.fp_budget})." if float(self.fp_budget) < 0 else None,
            "Use at least one thread." if self.threads is not None and int(self.threads) < 1 else None,
            _init_problem(project, self.init))
        return problems + collect(_images_problem(project, self.image_ids))


def _images_problem(project: Project, ids: list[int] | None) -> str | None:
    unknown = sorted(set(map(int, ids or ())) - set(project.images.ids()))
    return f"There is no image {unknown[0]} in the project (or it is excluded)." if unknown else None


@dataclasses.dataclass(frozen=True)
class DetectParams(JobParams):
    KIND = "detect"
    RENAMED = {"run_id": "model_run_id"}

    model_run_id: int | None = None  # default: the latest finished detector run
    image_ids: list[int] | None = None
    min_score: float | None = None   # default: the run's storing threshold
    device: str | None = None
    tta: bool | None = None          # None: as the run was trained
    fusion: str | None = None
    batch_size: int = 8
    threads: int | None = None

    def problems(self, project: Project) -> list[str]:
        problems = collect(
            _unit_problem(self.min_score, "minimum score"),
            None if self.fusion in (None, *FUSIONS)
            else f"Unknown box fusion “{self.fusion}” (one of {', '.join(FUSIONS)}).",
            "The batch size must be at least 1." if int(self.batch_size) < 1 else None,
            "Use at least one thread." if self.threads is not None and int(self.threads) < 1 else None)
        if self.model_run_id is not None:
            problems += collect(model_run_problem(project, self.model_run_id, (MODEL_KIND,),
                                                  what="detector run", finished=True))
        elif not any(r["status"] == "done" for r in project.models.list(MODEL_KIND)):
            problems.append("No finished detector run; train one first (mskstudio train-det).")
        return problems + collect(_images_problem(project, self.image_ids))


@dataclasses.dataclass(frozen=True)
class ExportDetParams(JobParams):
    KIND = "export-det"
    RENAMED = {"run_id": "model_run_id"}

    model_run_id: int | None = None  # the detector run (required)
    out: str | None = None           # output folder (required)

    def problems(self, project: Project) -> list[str]:
        return collect(
            "Choose the detector run to export." if self.model_run_id is None
            else model_run_problem(project, self.model_run_id, (MODEL_KIND,), what="detector run",
                                   finished=True),
            "export-det needs an output folder (out)." if not self.out else None)
