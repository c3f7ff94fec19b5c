"""A fusion run's final learner as its checkpoint: a pickle blob written by ``fuse`` and read by
``serve`` (its own module so that neither imports the other)."""

from __future__ import annotations

import pickle
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mskstudio.store import Project

FORMAT = "mskstudio-fusion-1"


def save_fitted(project: Project, run_id: int, fitted: Any) -> str:
    sha = project.blobs.put_bytes(pickle.dumps({"format": FORMAT, "fitted": fitted}))
    project.models.set_checkpoint(int(run_id), sha)
    return sha


def read_fitted(project: Project, sha: str | None) -> Any | None:
    """The stored learner (``crossfit.Fitted``), None when there is none."""
    if not sha:
        return None
    obj = pickle.loads(project.blobs.read_bytes(sha))  # noqa: S301 - the project's own blob
    return obj["fitted"] if isinstance(obj, dict) and obj.get("format") == FORMAT else None
