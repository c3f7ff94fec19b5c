"""What ranks above 0 of a torchrun launch do: receive rank 0's training plan and train.

Kept apart from ``ddp`` (which the trainers import) so the trainers and this entry point
do not import each other.  Each trainer that runs distributed names its worker function
here, under the ``kind`` its plan carries; the trainer is imported only when its kind runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from mskstudio.jobs import JobContext
from mskstudio.ml.scale import ddp


def _classifier(plan: dict[str, Any], ctx: JobContext) -> None:
    from mskstudio.ml.classify.train import train_worker

    train_worker(plan, ctx)


def _deepcluster(plan: dict[str, Any], ctx: JobContext) -> None:
    from mskstudio.ml.cluster.epochs import cluster_worker

    cluster_worker(plan, ctx)


def _segmenter(plan: dict[str, Any], ctx: JobContext) -> None:
    from mskstudio.ml.segment.train import segment_worker

    segment_worker(plan, ctx)


def _box_segmenter(plan: dict[str, Any], ctx: JobContext) -> None:
    from mskstudio.ml.segment.train_box import box_worker

    box_worker(plan, ctx)


def _detector(plan: dict[str, Any], ctx: JobContext) -> None:
    from mskstudio.ml.detect.train import detect_worker

    detect_worker(plan, ctx)


# plan["kind"] -> the function a rank > 0 runs (the job kind rank 0 runs, or a trainer's own name)
WORKERS: dict[str, Callable[[dict[str, Any], JobContext], None]] = {
    "train": _classifier,
    "cluster": _deepcluster,
    "train-seg": _segmenter,
    "train-seg-box": _box_segmenter,
    "train-det": _detector,
}


def worker_main() -> int:
    """Rank > 0 of a distributed job: train the plan rank 0 broadcasts; never open the project."""
    ddp.init_from_env(os.environ.get("MSKSTUDIO_DDP_DEVICE") or ddp.auto_kind())
    try:
        plan = ddp.broadcast()
        if plan is None:  # rank 0 failed before training
            return 1
        if plan["kind"] == "none":  # rank 0 had nothing to train
            return 0
        work = WORKERS.get(plan["kind"])
        if work is None:
            raise ValueError(f"job kind {plan['kind']!r} has no distributed trainer yet")
        work(plan, JobContext(None, None))
    finally:
        ddp.shutdown()
    return 0
