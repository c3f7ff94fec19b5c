"""What ranks above 0 of a torchrun launch do: receive rank 0's training plan and train.

Kept apart from ``ddp`` (which the trainers import) so the trainers and this entry point
do not import each other.
"""

from __future__ import annotations

import os

from mskstudio.jobs import JobContext
from mskstudio.ml.classify.train import train_worker
from mskstudio.ml.scale import ddp


def worker_main() -> int:
    """Rank > 0 of a distributed job: train the plan rank 0 broadcasts; never open the project."""
    ddp.init_from_env(os.environ.get("MSKSTUDIO_DDP_DEVICE") or ddp.auto_kind())
    try:
        plan = ddp.broadcast()
        if plan is None:  # rank 0 failed before training
            return 1
        if plan["kind"] != "train":
            raise ValueError(f"job kind {plan['kind']!r} has no distributed trainer yet")
        train_worker(plan, JobContext(None, None))
    finally:
        ddp.shutdown()
    return 0
