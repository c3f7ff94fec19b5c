"""One reader's reading session: the next unread case of the open arm, and its answer.

The session is the only thing a reading window holds.  It hands out a ``Case`` — the
image to show, its place in the order, the answer keys and the arm's extra information
(clinical data, or the model's prediction and heatmap in the assisted arm) — and never
the project, the truth, the model output of other arms or another reader's reads.
Each answer is committed at once, so a closed or killed session resumes at the next
unread case.  Arms open in order; arm k opens ``washout_days`` after the reader's last
read in arm k-1.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from mskstudio.store import Project

# Clinical fields a reader may see in the clinical arm (a study may show fewer, e.g. not
# the site when the site is what readers answer): never the diagnosis, its dignity or
# source (the reference standard), nor the free-text report that may name it.
SHOWN_CLINICAL = ("age_years", "sex", "site", "position")


class WashoutPending(Exception):
    """The next arm is not open yet for this reader (its message says when it opens)."""


@dataclass(frozen=True)
class Case:
    read_id: int
    image_id: int
    index: int                 # 0-based place in this reader's order of the arm
    total: int
    arm: str                   # image | clinical | assisted
    arm_position: int
    keys: tuple[str, ...]      # class names on keys 1..9
    clinical: dict[str, Any] = field(default_factory=dict)
    labs: tuple[tuple[str, Any, str], ...] = ()
    prediction: dict[str, float] | None = None   # class name -> probability (assisted arm)
    predicted: str | None = None
    heatmap: np.ndarray | None = None             # Grad-CAM map in [0, 1] (assisted arm)


class ReadingSession:
    def __init__(self, project: Project, study: str | int, reader: str, *, now=None):
        self._p = project
        row = project.readers.study(study)
        if row is None:
            raise ValueError(f"reader study {study!r}: no such study")
        reader_row = project.readers.find(reader)
        if reader_row is None or not any(r["id"] == reader_row["id"]
                                         for r in project.readers.study_readers(row["id"])):
            raise ValueError(f"reader {reader!r} is not a reader of study {row['name']!r}")
        self.study_id, self.study_name = int(row["id"]), row["name"]
        self.reader_id, self.reader = int(reader_row["id"]), reader
        self.washout_days = float(row["washout_days"])
        study_params = json.loads(row["params"] or "{}")
        self.confidence_asked = bool(study_params.get("confidence", True))
        self.boxes_asked = bool(study_params.get("boxes", False))
        self.clinical_fields = [f for f in study_params.get("clinical_fields", SHOWN_CLINICAL)
                                if f in SHOWN_CLINICAL]
        class_ids = json.loads(row["classes"])
        names = {r.id: r.name for r in project.labels.classes(row["label_set_id"])}
        self.class_ids = [int(c) for c in class_ids]
        self.keys = tuple(names[c] for c in self.class_ids)
        self._now = now or (lambda: datetime.now(UTC))
        self._arms = project.readers.arms(self.study_id)
        self._queue: list[Any] = []
        self._arm = None
        self._total = 0
        self.refresh()

    # ---- where the reader is --------------------------------------------------------
    def refresh(self) -> None:
        """Find the open arm and its unread cases from the store (what resuming does)."""
        self._arm, self._queue = None, []
        previous_done_at = None
        for arm in self._arms:
            order = self._p.readers.order(arm["id"], self.reader_id)
            pending = [r for r in order if r["class_id"] is None]
            if pending:
                if previous_done_at is not None and self.washout_days > 0:
                    opens = previous_done_at + timedelta(days=self.washout_days)
                    if self._now() < opens:
                        raise WashoutPending(
                            f"arm {arm['position'] + 1} ({arm['kind']}) opens for {self.reader} on "
                            f"{opens:%Y-%m-%d %H:%M} UTC ({self.washout_days:g} days after arm "
                            f"{arm['position']})")
                self._arm, self._queue, self._total = arm, pending, len(order)
                return
            if order:
                previous_done_at = max(_parse_time(r["read_at"]) for r in order)

    @property
    def done(self) -> bool:
        return self._arm is None

    @property
    def remaining(self) -> int:
        return len(self._queue)

    def current(self) -> Case | None:
        return self.case_at(0)

    def case_at(self, ahead: int) -> Case | None:
        """The case ``ahead`` places after the current one (for prefetching), or None."""
        if self._arm is None or ahead >= len(self._queue):
            return None
        read = self._queue[ahead]
        return self._case(read)

    def upcoming_image_ids(self, n: int) -> list[int]:
        return [int(r["image_id"]) for r in self._queue[:n]]

    # ---- answering -------------------------------------------------------------------
    def answer(self, key: int, *, seconds: float, confidence: float | None = None,
               boxes: list | None = None) -> None:
        """Answer the current case with key ``key`` (1-based) and go on (committed at once,
        with the lesion ``boxes`` (x0, y0, x1, y1) drawn on it where the study asks for boxes)."""
        if self._arm is None:
            raise ValueError("the session is complete: nothing left to read")
        if not 1 <= key <= len(self.keys):
            raise ValueError(f"key {key}: this study answers with keys 1-{len(self.keys)}")
        if confidence is not None and not 0 <= confidence <= 1:
            raise ValueError(f"confidence {confidence}: expected 0-1")
        if boxes and not self.boxes_asked:
            raise ValueError(f"study {self.study_name!r} was created without boxes")
        read = self._queue[0]
        self._p.readers.record_read(int(read["id"]), self.class_ids[key - 1], seconds=max(0.0, seconds),
                                    confidence=confidence, boxes=boxes)
        self._queue.pop(0)
        if not self._queue:
            self.refresh()

    # ---- what one case shows ------------------------------------------------------------
    def _case(self, read) -> Case:
        arm, image_id = self._arm, int(read["image_id"])
        index = int(read["position"])
        extra: dict[str, Any] = {}
        if arm["kind"] == "clinical":
            extra.update(self._clinical(image_id))
        elif arm["kind"] == "assisted":
            extra.update(self._assistance(int(arm["model_run_id"]), image_id))
        return Case(int(read["id"]), image_id, index, self._total, arm["kind"], int(arm["position"]),
                    self.keys, **extra)

    def _clinical(self, image_id: int) -> dict[str, Any]:
        patient = self._p.images.patient_of([image_id])[image_id]
        record = self._p.images.clinical(patient)
        labs = tuple((r["name"], r["value"], r["unit"] or "") for r in self._p.images.labs(patient))
        return {"clinical": {k: record.get(k) for k in self.clinical_fields if record.get(k) is not None},
                "labs": labs}

    def _assistance(self, run_id: int, image_id: int) -> dict[str, Any]:
        row = self._p.db.one("SELECT class_id, probs FROM predictions WHERE model_run_id = ? AND image_id = ?",
                             (run_id, image_id))
        if row is None:
            return {}
        names = dict(zip(self.class_ids, self.keys, strict=True))
        probs = {names[int(k)]: float(v) for k, v in json.loads(row["probs"] or "{}").items()
                 if int(k) in names}
        return {"prediction": probs, "predicted": names.get(row["class_id"]),
                "heatmap": _cached_cam(self._p, run_id, image_id)}


def _cached_cam(project: Project, run_id: int, image_id: int) -> np.ndarray | None:
    """The map ``explain`` cached (default scales, else single scale), or None."""
    from mskstudio.ml.explain.gradcam import cam_path

    for scales in (None, (1.0,)):
        path = cam_path(project, run_id, image_id, scales=scales)
        if path.exists():
            try:
                return np.load(path)
            except (OSError, ValueError):
                return None
    return None


def _parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
