"""Parameters of job ``cluster`` (DeepCluster pretraining + clustering, or "cluster now"):
defaults (the only ones: the job, the CLI and the DeepCluster dialog read them here),
checks against the project, JSON."""

from __future__ import annotations

import dataclasses
from typing import Any

from mskstudio.domain import is_truth_set
from mskstudio.ml.params import (
    JobParams,
    cluster_run_problem,
    collect,
    model_run_problem,
    start_point_problem,
    training_problems,
)
from mskstudio.store import Project

MODES = ("deepcluster", "fast")
RECLUSTER_METHODS = ("kmeans", "merge")
CLUSTER_ARCHS = ("resnet18", "resnet50")


@dataclasses.dataclass(frozen=True)
class ClusterParams(JobParams):
    KIND = "cluster"

    mode: str = "deepcluster"      # deepcluster | fast
    arch: str = "resnet18"
    k: int | None = None           # default: about N / 40
    epochs: int = 10
    pretrain_epochs: int = 0       # fast mode only
    batch_size: int = 64
    input_size: int = 224
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 1e-5
    pca_dim: int = 256
    crop_scale: float = 0.7        # smallest random-resized-crop area; smaller crops lose the anatomy
    samples_per_epoch: float = 2.0  # training images per epoch, as a multiple of N
    head_warmup_steps: int = 200   # fit each fresh head on the frozen features before the epoch
    bn_recalibrate: bool = True    # BatchNorm statistics recomputed on clean images each epoch
    kmeans_iter: int = 20
    init: str = "auto"             # auto | scratch | run:<id> | <path to a weights file>
    resume: Any = None             # model run id, or true for the latest resumable DeepCluster run
    seed: int = 0
    device: str = "auto"
    workers: int | None = None
    image_ids: list[int] | None = None
    label_set: Any = None          # label set the reviewer will label this run's clusters in
    name: str | None = None

    def problems(self, project: Project) -> list[str]:
        problems = collect(
            None if self.mode in MODES else f"Unknown clustering mode “{self.mode}” (deepcluster or fast).",
            None if self.arch in CLUSTER_ARCHS else
            f"Unknown backbone “{self.arch}” (one of {', '.join(CLUSTER_ARCHS)}).")
        n = len(self.image_ids) if self.image_ids else project.images.count()
        if n < 2:
            problems.append(f"Clustering needs at least two images (there are {n}).")
        if self.k is not None and int(self.k) < 2:
            problems.append(f"Clustering needs at least 2 clusters (k = {self.k}).")
        elif self.k is not None and int(self.k) > n:
            problems.append(f"k = {self.k} clusters is more than the {n} images.")
        training = self.mode == "deepcluster" or int(self.pretrain_epochs or 0) > 0
        problems += training_problems(epochs=self.epochs if self.mode == "deepcluster" else 1,
                                      batch_size=self.batch_size if training else 2, min_batch=2,
                                      lr=self.lr if training else 1.0, size=self.input_size)
        if int(self.pretrain_epochs or 0) < 0:
            problems.append("Pretraining epochs cannot be negative.")
        if int(self.pca_dim) < 1:
            problems.append("PCA needs at least one dimension.")
        problems += collect(start_point_problem(project, self.init, allow_auto=True))
        if isinstance(self.resume, int) and not isinstance(self.resume, bool):
            problems += collect(model_run_problem(project, self.resume, ("deepcluster",),
                                                  what="DeepCluster run"))
        if self.label_set not in (None, "") and is_truth_set(str(self.label_set)):
            problems.append(f"“{self.label_set}” holds ground truth for scoring only; "
                            "clusters cannot be labelled in it.")
        return problems


@dataclasses.dataclass(frozen=True)
class ReclusterParams(JobParams):
    KIND = "recluster"
    RENAMED = {"run": "cluster_run_id"}

    cluster_run_id: int | None = None  # the run whose stored features are re-clustered
    k: int | None = None               # default: about N / 40
    method: str = "kmeans"             # kmeans | merge (join the run's clusters into k groups)
    seed: int = 0

    def problems(self, project: Project) -> list[str]:
        problems = collect(cluster_run_problem(project, self.cluster_run_id))
        if self.method not in RECLUSTER_METHODS:
            problems.append(f"Unknown re-cluster method “{self.method}” ({', '.join(RECLUSTER_METHODS)}).")
        if self.k is not None and int(self.k) < 2:
            problems.append(f"Clustering needs at least 2 clusters (k = {self.k}).")
        return problems
