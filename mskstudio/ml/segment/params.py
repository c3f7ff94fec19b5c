"""Parameters of jobs ``train-seg`` (whole-image U-Net) and ``train-seg-box`` (box -> mask
inside a crop): defaults (the only ones: the jobs fill missing values from them), checks
against the project, JSON.  ``class`` in the JSON is ``class_name`` here."""

from __future__ import annotations

import dataclasses

from mskstudio.ml.params import (
    JobParams,
    collect,
    fractions_problem,
    image_problem,
    model_run_problem,
    training_problems,
)
from mskstudio.store import Project

SEGMENTER_ARCHS = ("unet-resnet34", "unetpp-resnet34", "unet-resnet18", "unetpp-resnet18", "unet-small")


def _arch_problem(arch: str) -> str | None:
    if arch in SEGMENTER_ARCHS:
        return None
    return f"Unknown segmenter “{arch}” (one of {', '.join(SEGMENTER_ARCHS)})."


@dataclasses.dataclass(frozen=True)
class TrainSegParams(JobParams):
    KIND = "train-seg"
    JSON_NAMES = {"class_name": "class"}

    arch: str = "unet-resnet34"
    size: int = 256
    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-3
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    folds: int = 1                 # 0 or 1: one train/val/test split; >= 2: patient cross-validation
    seed: int = 0
    augment: bool = True
    background_threshold: float = 0.02
    encoder_run_id: int | None = None
    class_name: str | None = None  # one mask class only (default: every class as "lesion")
    device: str | None = None
    max_images: int | None = None
    threshold: float = 0.5
    pos_weight: float = 5.0
    resume: int | None = None      # model run id of an interrupted segmenter run to continue

    def problems(self, project: Project) -> list[str]:
        if self.resume:  # the run keeps its own parameters (ml/segment/resume.py checks it)
            return collect(model_run_problem(project, self.resume, what="segmenter run"))
        problems = collect(_arch_problem(self.arch))
        problems += training_problems(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                                      size=self.size)
        if int(self.folds) < 0:
            problems.append(f"Folds must be 0 or 1 (one train/val/test split) or at least 2 "
                            f"(cross-validation), not {self.folds}.")
        problems += collect(fractions_problem(self.val_fraction, self.test_fraction))
        if self.encoder_run_id is not None:
            problems += collect(model_run_problem(project, self.encoder_run_id, what="encoder run",
                                                  finished=True))
        if self.max_images is not None and int(self.max_images) < 3:
            problems.append("Segmentation needs at least 3 images (max images).")
        return problems


@dataclasses.dataclass(frozen=True)
class TrainBoxSegParams(JobParams):
    KIND = "train-seg-box"
    JSON_NAMES = {"class_name": "class"}

    # Measured on the phantom demo (tests/bench/bench_segment.py): a 64 px crop with 5 boxes
    # per lesion per epoch beat a 96 px crop with 3 at the same CPU cost (more boxes seen);
    # held-out IoU rose from 0.82 at 14 epochs to 0.85 at 24 (~6 CPU minutes).
    arch: str = "unet-small"
    crop: int = 64
    epochs: int = 24
    samples_per_image: int = 5
    batch_size: int = 16
    lr: float = 4e-3
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0
    jitter: tuple[float, float] = (-0.1, 0.3)  # each box edge moves by U(lo, hi) x box side; > 0 outward
    augment: bool = True
    class_name: str | None = None
    device: str | None = None
    max_images: int | None = None
    threshold: float = 0.5
    threads: int | None = None
    resume: int | None = None      # model run id of an interrupted box-segmenter run to continue

    def problems(self, project: Project) -> list[str]:
        if self.resume:  # the run keeps its own parameters (ml/segment/resume.py checks it)
            return collect(model_run_problem(project, self.resume, what="box-segmenter run"))
        problems = collect(_arch_problem(self.arch))
        problems += training_problems(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                                      size=self.crop, min_size=16)
        if int(self.samples_per_image) < 1:
            problems.append("Train on at least one box per lesion and epoch (samples per image).")
        problems += collect(fractions_problem(self.val_fraction, self.test_fraction))
        if len(self.jitter) != 2 or float(self.jitter[0]) > float(self.jitter[1]):
            problems.append(f"The box jitter must be (low, high) with low <= high, not {self.jitter}.")
        if self.threads is not None and int(self.threads) < 1:
            problems.append("Use at least one thread.")
        return problems


@dataclasses.dataclass(frozen=True)
class PrelabelParams(JobParams):
    KIND = "prelabel"
    RENAMED = {"run_id": "model_run_id"}
    JSON_NAMES = {"class_name": "class"}

    model_run_id: int | None = None   # default: the latest finished segmenter
    refine_run_id: int | None = None  # box segmenter for the second stage (default the latest; 0 none)
    class_name: str | None = None
    device: str | None = None
    max_images: int | None = None

    def problems(self, project: Project) -> list[str]:
        problems = []
        if self.model_run_id is not None:
            problems += collect(model_run_problem(project, self.model_run_id, ("segmenter",),
                                                  what="segmenter run", finished=True))
        if self.refine_run_id:
            problems += collect(model_run_problem(project, self.refine_run_id, ("box-segmenter",),
                                                  what="box segmenter run", finished=True))
        return problems


@dataclasses.dataclass(frozen=True)
class FillBoxesParams(JobParams):
    """``fill-boxes``: a box segmenter fills the boxes of one image with a model mask."""

    KIND = "fill-boxes"
    RENAMED = {"run_id": "model_run_id"}

    image_id: int | None = None       # required
    box_ids: list[int] | None = None  # default: every box of the image
    class_id: int | None = None       # only boxes of that class
    model_run_id: int | None = None   # box segmenter (default: the latest finished)

    def problems(self, project: Project) -> list[str]:
        if self.image_id is None:
            return ["Choose the image whose boxes to fill."]
        problems = collect(image_problem(project, self.image_id))
        if self.model_run_id is not None:
            problems += collect(model_run_problem(project, self.model_run_id, ("box-segmenter",),
                                                  what="box-segmenter run", finished=True))
        elif not any(r["status"] == "done" and r["checkpoint_sha"] for r in project.models.list("box-segmenter")):
            problems.append("No finished box-segmenter run; train one first (Model › Train box segmenter…).")
        return problems
