"""The product's vocabulary (values stored in the database whose meaning never changes)
and the typed records the store hands out.

Kept free of SQL, Qt and torch so every layer (store, io, ml, gui, cli) can share it.
Records are frozen dataclasses with their JSON columns already parsed; the store returns
them from ``models.record``/``models.records``, ``clusters.run_record``/``run_records``
and ``jobs.record``/``jobs.records``; the older sqlite3.Row readers (``get``, ``list``,
``run``, ``runs``) remain for the callers not moved yet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# Label provenance, highest precedence first: a human label is never overridden by
# an imported, cluster-derived or model label (they are separate rows; see store).
LABEL_SOURCES = ("human", "import", "cluster", "model")
MASK_SOURCES = ("human", "model", "import", "adjudicated")
DIGNITIES = ("benign", "intermediate", "malignant", "none")
DIAGNOSIS_SOURCES = ("histology", "tumour_board", "follow_up")
JOB_STATUSES = ("submitted", "running", "done", "error", "cancelled", "interrupted")
JOB_FINISHED = ("done", "error", "cancelled", "interrupted")  # a job in one of these never runs again
MODEL_RUN_STATUSES = ("running", "done", "cancelled", "error", "interrupted")

# Label sets whose name starts with this hold ground truth used only for scoring
# (e.g. the phantoms' true regions); training code must never read them as targets.
TRUTH_PREFIX = "truth:"


@dataclass(frozen=True)
class Box:
    x0: float
    y0: float
    x1: float
    y1: float

    def __post_init__(self) -> None:
        if self.x1 < self.x0 or self.y1 < self.y0:
            raise ValueError(f"box corners out of order: {self}")

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0


def is_truth_set(name: str) -> bool:
    return name.startswith(TRUTH_PREFIX)


# ---- typed records the store returns (JSON columns parsed once, here) ------------------------
def _json(text: str | None, empty: Any) -> Any:
    return json.loads(text) if text else empty


def _columns(row: Any) -> dict[str, Any]:
    """A sqlite3.Row (or mapping) as a dict; columns a later schema adds are ignored by the records."""
    return {k: row[k] for k in row.keys()} if hasattr(row, "keys") else dict(row)  # noqa: SIM118 - a Row iterates values


@dataclass(frozen=True)
class ModelRun:
    id: int
    kind: str                      # deepcluster | classifier | segmenter | box-segmenter | embedder
    name: str
    arch: str                      # registry key, e.g. resnet18
    status: str                    # one of MODEL_RUN_STATUSES
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    split: dict[str, Any] | None = None
    label_set_id: int | None = None
    parent_run_id: int | None = None
    data_hash: str | None = None
    checkpoint_sha: str | None = None
    job_id: int | None = None
    created_at: str | None = None
    finished_at: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> ModelRun:
        d = _columns(row)
        return cls(id=int(d["id"]), kind=d["kind"], name=d["name"], arch=d["arch"], status=d["status"],
                   params=_json(d.get("params"), {}), metrics=_json(d.get("metrics"), {}),
                   split=_json(d.get("split"), None), label_set_id=d.get("label_set_id"),
                   parent_run_id=d.get("parent_run_id"), data_hash=d.get("data_hash"),
                   checkpoint_sha=d.get("checkpoint_sha"), job_id=d.get("job_id"),
                   created_at=d.get("created_at"), finished_at=d.get("finished_at"))

    @property
    def finished(self) -> bool:
        return self.status == "done" and bool(self.checkpoint_sha)


@dataclass(frozen=True)
class ClusterRun:
    id: int
    k: int
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    nmi_history: list[float] = field(default_factory=list)
    model_run_id: int | None = None
    label_set_id: int | None = None
    job_id: int | None = None
    created_at: str | None = None
    n_images: int | None = None    # filled where the store counts them (runs listing)
    n_clusters: int | None = None

    @classmethod
    def from_row(cls, row: Any) -> ClusterRun:
        d = _columns(row)
        return cls(id=int(d["id"]), k=int(d["k"]), params=_json(d.get("params"), {}),
                   metrics=_json(d.get("metrics"), {}), nmi_history=_json(d.get("nmi_history"), []),
                   model_run_id=d.get("model_run_id"), label_set_id=d.get("label_set_id"),
                   job_id=d.get("job_id"), created_at=d.get("created_at"), n_images=d.get("n_images"),
                   n_clusters=d.get("n_clusters"))


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    status: str                    # one of JOB_STATUSES
    params: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    progress: float = 0.0
    message: str | None = None
    error: str | None = None
    pid: int | None = None
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> Job:
        d = _columns(row)
        return cls(id=int(d["id"]), kind=d["kind"], status=d["status"], params=_json(d.get("params"), {}),
                   result=_json(d.get("result"), None), progress=float(d.get("progress") or 0.0),
                   message=d.get("message"), error=d.get("error"), pid=d.get("pid"),
                   created_at=d.get("created_at"), started_at=d.get("started_at"),
                   finished_at=d.get("finished_at"))

    @property
    def finished(self) -> bool:
        return self.status in JOB_FINISHED
