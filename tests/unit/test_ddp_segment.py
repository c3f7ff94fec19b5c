"""Both segmenters under torchrun/DDP: 2 CPU processes with gloo, against one process.

Whole-image U-Net (``train-seg``): every rank reads the prepared squares and masks from a
memory-mapped snapshot.  Box segmenter (``train-seg-box``): the lesion windows are small and
travel with the plan.  Either way each rank trains its DistributedSampler share, rank 0 alone
validates, keeps the best epoch and writes the project.
"""

from __future__ import annotations

import json

import pytest
from ddp_launch import assert_only_rank0_opened, copy_project, run_cli
from test_segment import _ellipse_project, _synthetic_project

# Same seed, same global batch, same initial weights (DDP starts every rank from rank 0's):
# not bitwise equal (each rank's BatchNorm sees half a batch, DistributedSampler orders the
# images otherwise, rank 1 draws other augmentations), so held-out Dice / IoU may differ by
# up to 0.15 absolute (4 held-out images of 16 for train-seg, 4 lesions for the box model).
TOLERANCE = 0.15


@pytest.fixture(scope="module")
def projects(tmp_path_factory):
    from mskstudio.store import Project

    root = tmp_path_factory.mktemp("ddpseg")
    out = {}
    for name, make in (("blobs", _synthetic_project), ("ellipses", _ellipse_project)):
        path = root / f"{name}.mskproj"
        with Project.create(path) as project:
            make(project)
        out[name] = path
    return out


def _run(path, tmp, args, n):
    proc = run_cli(["train-seg", str(path), *args, "--nproc", str(n)], tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout[proc.stdout.index("{"):])


@pytest.mark.parametrize("kind, base, args, key", [
    ("segmenter", "blobs", ["--arch", "unet-small", "--size", "64", "--epochs", "4", "--batch-size", "8",
                            "--lr", "3e-3", "--device", "cpu"], "test_dice"),
    ("box-segmenter", "ellipses", ["--box", "--arch", "unet-small", "--size", "32", "--epochs", "3",
                                   "--lr", "1e-2", "--device", "cpu"], "test_iou"),
])
def test_two_processes_match_one_and_only_rank0_writes(projects, tmp_path, kind, base, args, key):
    from mskstudio.store import Project

    two = copy_project(projects[base], tmp_path, "two")
    r2 = _run(two, tmp_path, args, 2)
    assert_only_rank0_opened(tmp_path, two)
    with Project.open(two) as project:
        (run,) = project.models.list(kind)
        assert run["status"] == "done" and run["checkpoint_sha"]
    one = copy_project(projects[base], tmp_path, "one")
    r1 = _run(one, tmp_path / "one", args, 1)
    print(f"{kind} held-out {key}: 1 process {r1[key]:.3f}, 2 processes {r2[key]:.3f}")
    assert abs(r1[key] - r2[key]) <= TOLERANCE
