"""Crash suite: real job subprocesses killed with SIGKILL at seeded random points.

Each case starts the job as the GUI does (``mskstudio run-job PROJECT JOB --jsonl`` in a
subprocess), kills it after a seeded number of epochs plus a seeded number of further
progress ticks (so some kills land mid-epoch, some during a checkpoint write), and then
checks what a user would meet: the project opens, ``PRAGMA integrity_check`` and
``foreign_key_check`` pass, no blob is left that no row names, the job and its run show
as interrupted, and ``mskstudio jobs PROJECT --resume JOB`` (the CLI resume) finishes
the *same* run with every epoch run exactly once and a checkpoint that loads.

More seeds: ``MSKSTUDIO_CRASH_SEEDS=0,1,2,3 pytest tests/crash --run-slow``.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mskstudio.store import Project

REPO = Path(__file__).resolve().parents[2]
SEEDS = [int(s) for s in os.environ.get("MSKSTUDIO_CRASH_SEEDS", "0").split(",")]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def _cli(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mskstudio", *args], cwd=REPO, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def kill_at(root: Path, job: int, metric: str, epochs_before: int, ticks_after: int) -> list[dict]:
    """Run job ``job`` in a subprocess; SIGKILL it after ``epochs_before`` values of the
    per-epoch ``metric`` (a regex) and then ``ticks_after`` more progress messages."""
    proc = _cli("run-job", str(root), str(job), "--jsonl")
    seen, ticks, lines = 0, 0, []
    try:
        for line in proc.stdout:
            msg = json.loads(line)
            lines.append(msg)
            if msg["type"] == "metric" and re.fullmatch(metric, msg["name"]):
                seen += 1
            elif msg["type"] == "progress" and seen >= epochs_before:
                ticks += 1
            if seen >= epochs_before and ticks >= ticks_after:
                break
            assert msg["type"] != "returned", "the job finished before its kill point"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return lines


def check_consistent(root: Path) -> None:
    """What must hold after any kill: opens, integrity, foreign keys, no stray blobs."""
    with Project.open(root) as project:
        assert project.db.scalar("PRAGMA integrity_check") == "ok"
        assert project.db.query("PRAGMA foreign_key_check") == []
        named = {r[0] for r in project.db.query(
            "SELECT blob_sha FROM images WHERE blob_sha IS NOT NULL "
            "UNION SELECT checkpoint_sha FROM model_runs WHERE checkpoint_sha IS NOT NULL")}
        assert all(project.blobs.exists(s) for s in named), "a row names a missing blob"
        assert project.blobs.orphans(named, partial=True) == []
        assert project.db.scalar("SELECT COUNT(*) FROM jobs WHERE status = 'running'") == 0
        assert project.db.scalar("SELECT COUNT(*) FROM model_runs WHERE status = 'running'") == 0


def resume_cli(root: Path, job: int) -> dict:
    proc = _cli("jobs", str(root), "--resume", str(job))
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out)


def _epoch_steps(project: Project, run_id: int, metric: str) -> dict[str, list[int]]:
    """Per metric name matching ``metric``: the epochs recorded over every job of the run."""
    jobs = [r["id"] for r in project.jobs.list()]
    steps: dict[str, list[int]] = {}
    for j in jobs:
        for name, values in project.jobs.metrics(j).items():
            if re.fullmatch(metric, name):
                steps.setdefault(name, []).extend(s for s, _ in values)
    return {k: sorted(v) for k, v in steps.items()}


# name: (job kind, params, per-epoch metric regex, epochs per metric, number of metric series)
CASES = {
    "train": ("train", {"label_set": "region", "arch": "tinycnn", "size": 48, "k": 2, "epochs": 3,
                        "batch_size": 16, "n_boot": 20, "patience": 10, "seed": 0, "workers": 0},
              r"fold\d+/val_acc", 3, 2),
    "train-seg": ("train-seg", {"arch": "unet-small", "size": 32, "epochs": 3, "batch_size": 8, "seed": 0},
                  r"val_dice", 3, 1),
    "train-seg-box": ("train-seg-box", {"arch": "unet-small", "crop": 32, "epochs": 3, "samples_per_image": 2,
                                        "seed": 0}, r"val_iou", 3, 1),
    "cluster": ("cluster", {"k": 4, "input_size": 48, "batch_size": 16, "lr": 0.01, "init": "scratch",
                            "seed": 0, "epochs": 3}, r"loss", 3, 1),
    "train-det": ("train-det", {"size": 64, "fpn_channels": 64, "k": 2, "test_fraction": 0.25,
                                "batch_size": 4, "threads": 1, "epochs": 2}, r"fold\d+/loss", 2, 2),
}


def _build(kind: str, root: Path) -> None:
    with Project.create(root) as project:
        if kind in ("train", "cluster"):
            from mskstudio.ml.synthetic import add_synthetic_images

            add_synthetic_images(project, 48, seed=1, size=48, thumbnails=False)
        elif kind == "train-det":
            sys.path.insert(0, str(REPO / "tests" / "unit"))
            from detect_planted import add_planted_squares

            add_planted_squares(project, 12, size=64, seed=1)
        else:
            sys.path.insert(0, str(REPO / "tests" / "unit"))
            from test_segment import _ellipse_project, _synthetic_project

            (_ellipse_project if kind == "train-seg-box" else _synthetic_project)(project)


# The box segmenter and DeepCluster take a minute or more each on a loaded 2-core machine:
# they run with --run-slow (and in every MSKSTUDIO_CRASH_SEEDS sweep reported in the notes).
SLOW = {"train-seg-box", "cluster", "train-det"}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c in SLOW else c for c in sorted(CASES)])
def test_killed_training_resumes_the_same_run(tmp_path, case, seed):
    kind, params, metric, epochs, series = CASES[case]
    rng = random.Random(f"{case}-{seed}")
    root = tmp_path / "p.mskproj"
    _build(case, root)
    with Project.open(root) as project:
        job = project.jobs.submit(kind, params)
    total = epochs * series
    kill_at(root, job, metric, rng.randrange(0, total - 1), rng.randrange(0, 4))

    check_consistent(root)
    with Project.open(root) as project:
        assert project.jobs.get(job)["status"] == "interrupted"
        run = project.models.for_job(job)
        assert run is None or run["status"] == "interrupted"
    resume_cli(root, job)
    check_consistent(root)
    with Project.open(root) as project:
        runs = project.models.list()
        kinds = {"train": "classifier", "train-seg": "segmenter", "train-seg-box": "box-segmenter",
                 "cluster": "deepcluster", "train-det": "detector"}
        mine = [r for r in runs if r["kind"] == kinds[case]]
        assert len(mine) == 1, "the resume continued the same run instead of starting another"
        assert mine[0]["status"] == "done" or kind == "cluster"
        steps = _epoch_steps(project, mine[0]["id"], metric)
        assert len(steps) == series
        for name, values in steps.items():
            assert values == list(range(epochs)), f"{name}: epochs {values}"
        from mskstudio.ml.models import load_checkpoint

        ckpt = load_checkpoint(project, mine[0]["id"])
        assert ckpt.get("state") != "training"
