"""Resuming a segmentation run (train-seg, train-seg-box) after a cancel or a kill.

Both trainers write an epoch checkpoint (weights, optimiser, scheduler, best-so-far)
to the run's checkpoint blob after every epoch, so ``resume`` (a model run id, set by
``mskstudio train-seg --resume RUN`` or by the app's "Resume" through ``jobs.resubmit``)
continues the same run at its next epoch.  Each epoch reseeds the batch order and the
augmentation from (seed, epoch), so a resumed run draws the batches an uninterrupted
one would have drawn from that epoch on.

A run whose images changed since it started (masks added or removed) cannot continue
where it stopped: it says so and the user trains a new run.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

from mskstudio.jobs import JobContext
from mskstudio.store import Project

CHECKPOINT_STATE = "training"   # the "state" key of an epoch checkpoint; a finished run has none


def open_run(project: Project, params: dict[str, Any], defaults: dict[str, Any], kind: str,
             ctx: JobContext) -> tuple[dict[str, Any], int | None, dict[str, Any] | None]:
    """(params, run id or None for a new run, epoch checkpoint or None) of a (resumed) job.

    A resumed run keeps its own parameters; only where it runs (device, threads) may change.
    """
    run = (params or {}).get("resume")
    if not run:
        return {**defaults, **(params or {})}, None, None
    from mskstudio.ml.models import load_checkpoint

    run_id = int(run)
    row = project.models.get(run_id)
    if row is None or row["kind"] != kind:
        raise ValueError(f"model run {run_id} is not a {kind} run")
    if row["status"] == "done":
        raise ValueError(f"model run {run_id} is already finished; train a new run instead")
    p = {**defaults, **json.loads(row["params"] or "{}")}
    p.update({k: v for k, v in params.items() if k in ("device", "threads") and v is not None})
    state = None
    if row["checkpoint_sha"] and project.blobs.exists(row["checkpoint_sha"]):
        state = load_checkpoint(project, run_id)
        if state.get("state") != CHECKPOINT_STATE:
            state = None
    if state is None:
        ctx.log(f"model run {run_id} has no epoch checkpoint yet: it starts again from epoch 1")
    else:
        ctx.log(f"resuming model run {run_id}: " + describe(state))
    project.models.set_status(run_id, "running", job_id=ctx.job_id)
    return p, run_id, state


def describe(state: dict[str, Any]) -> str:
    fold = f"fold {state['fold'] + 1}, " if state.get("folds", 1) > 1 else ""
    return f"{fold}after epoch {state.get('epoch', 0)}"


def check_same_images(state: dict[str, Any] | None, ids: list[int], run_id: int) -> None:
    if state is not None and list(state.get("ids", ids)) != list(ids):
        raise ValueError(
            f"cannot resume model run {run_id}: its images changed since it started "
            f"({len(state['ids'])} then, {len(ids)} now); train a new run instead")


def saver(project: Project, run_id: int, base: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    """A function that stores ``base`` + one epoch's state as the run's checkpoint blob."""

    def save(epoch_state: dict[str, Any]) -> None:
        import torch

        buf = io.BytesIO()
        torch.save({**base, "state": CHECKPOINT_STATE, **epoch_state}, buf)
        project.models.set_checkpoint(run_id, project.blobs.put_bytes(buf.getvalue()))

    return save


def epoch_state(model, opt, sched, epoch: int, best_state, best_score: float, best_epoch: int) -> dict[str, Any]:
    """What ``restore`` needs to continue after ``epoch`` (0-based, finished)."""
    return {"epoch": epoch + 1, "model": model.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(), "best_state": best_state, "best_score": best_score,
            "best_epoch": best_epoch}


def restore(state: dict[str, Any] | None, model, opt, sched) -> tuple[int, Any, float, int]:
    """(first epoch to run, best state, best score, best epoch) after loading ``state``."""
    if not state or "model" not in state:
        return 0, None, -1.0, 0
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    return int(state["epoch"]), state["best_state"], float(state["best_score"]), int(state["best_epoch"])


def reseed(epoch: int, seed: int, generator, *rngs) -> None:
    """Batch order and augmentation of ``epoch`` from (seed, epoch) alone."""
    generator.manual_seed(seed * 1_000_003 + epoch)
    for rng in rngs:
        if rng is not None:
            rng.seed(seed * 1_000_003 + epoch)
