"""The lesion detector under torchrun/DDP: 2 CPU processes with gloo, against one process.

Rank 0 letterboxes the images once into a memory-mapped snapshot (boxes in its manifest);
each rank trains its DistributedSampler share of every fold; rank 0 alone predicts the
validation folds, scores the hold-out and writes the project.
"""

from __future__ import annotations

import numpy as np
import pytest
from ddp_launch import assert_only_rank0_opened, copy_project, run_cli
from detect_planted import add_planted_squares

ARGS = ["--size", "64", "--fpn-channels", "64", "--folds", "2", "--test-fraction", "0.25",
        "--batch-size", "8", "--epochs", "3", "--lr", "3e-3", "--device", "cpu", "--json"]
# Same seed, same global batch, same initial weights: each fold's training loss (mean over both
# ranks) after its last epoch stays within 20 % of one process's.  Not bitwise equal: each
# rank's BatchNorm sees 4 images instead of 8, the sampler orders the images otherwise, rank 1
# draws other augmentations.  The earlier epochs are printed, not compared: an epoch here is one
# or two steps on 12 images, so its loss is one batch's (measured: 0.7 % to 50 % apart in the
# first epoch, 0.6 % and 5 % after the last).  After 3 epochs the detector is far from trained,
# so its hit rate is reported, not compared.
LOSS_TOLERANCE = 0.20


@pytest.fixture(scope="module")
def base_project(tmp_path_factory):
    from mskstudio.store import Project

    path = tmp_path_factory.mktemp("ddpdet") / "planted.mskproj"
    with Project.create(path) as project:
        add_planted_squares(project, 16, size=64, seed=0)
    return path


def _history(path):
    from mskstudio.ml.models import load_checkpoint
    from mskstudio.store import Project

    with Project.open(path) as project:
        (run,) = project.models.list("detector")
        assert run["status"] == "done"
        return load_checkpoint(project, run["id"])["history"]


def test_two_processes_match_one_and_only_rank0_writes(base_project, tmp_path):
    import json

    two = copy_project(base_project, tmp_path, "two")
    args = ARGS
    proc = run_cli(["train-det", str(two), *args, "--nproc", "2"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_only_rank0_opened(tmp_path, two)
    (snap,) = (two / "cache" / "snapshots").iterdir()
    assert json.loads((snap / "manifest.json").read_text())["trainer"] == "detector"
    one = copy_project(base_project, tmp_path, "one")
    proc1 = run_cli(["train-det", str(one), *args], tmp_path / "one")
    assert proc1.returncode == 0, proc1.stderr[-3000:]
    r1, r2 = (json.loads(p.stdout[p.stdout.index("{"):]) for p in (proc1, proc))
    h1, h2 = _history(one), _history(two)
    assert len(h1) == len(h2) == 2 and all(len(f) == 3 for f in h1 + h2)
    rel = [abs(a["loss"] - b["loss"]) / a["loss"] for f1, f2 in zip(h1, h2, strict=True)
           for a, b in zip(f1, f2, strict=True)]
    print("training loss relative differences per fold and epoch", np.round(rel, 3).tolist(),
          f"hit rate 1 process {r1['hit_rate_iou20']:.2f}, 2 processes {r2['hit_rate_iou20']:.2f}")
    last = [abs(f1[-1]["loss"] - f2[-1]["loss"]) / f1[-1]["loss"] for f1, f2 in zip(h1, h2, strict=True)]
    assert max(last) <= LOSS_TOLERANCE

