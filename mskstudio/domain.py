"""The product's vocabulary (values stored in the database whose meaning never changes)
and the typed records the store hands out.

Kept free of SQL, Qt and torch so every layer (store, io, ml, gui, cli) can share it.
Records are frozen dataclasses whose JSON and text-encoded columns (params, metrics,
a mask's bbox, the analysis shape) are parsed once, in ``from_row``.  The store returns
them from ``images.record``/``records``/``patient``/``study``/``find_patient``,
``labels.labels_of``/``classes``, ``annotations.classes``, ``annotations.mask_row``/``masks_of``/``all_masks``,
``annotations.box``/``boxes_of``/``all_boxes``, ``detections.predictions``,
``models.record``/``records``, ``clusters.run_record``/``run_records`` and
``jobs.record``/``records``.  The older sqlite3.Row readers (``models.get``/``list``,
``clusters.run``/``runs``, ``jobs.get``/``list``) remain for the callers not moved yet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# Label provenance, highest precedence first: a human label is never overridden by
# an imported, cluster-derived or model label (they are separate rows; see store).
LABEL_SOURCES = ("human", "import", "cluster", "model")
MASK_SOURCES = ("human", "model", "import", "adjudicated")
SEXES = ("F", "M", "O")
DIGNITIES = ("benign", "intermediate", "malignant", "none")
DIAGNOSIS_SOURCES = ("histology", "tumour_board", "follow_up")
JOB_FINISHED = ("done", "error", "cancelled", "interrupted")  # a job in one of these never runs again
MODEL_RUN_STATUSES = ("running", "done", "cancelled", "error", "interrupted")

# Label sets whose name starts with this hold ground truth used only for scoring
# (e.g. the phantoms' true regions); training code must never read them as targets.
TRUTH_PREFIX = "truth:"


def is_truth_set(name: str) -> bool:
    return name.startswith(TRUTH_PREFIX)


# ---- typed records the store returns (JSON columns parsed once, here) ------------------------
def _json(text: str | None, empty: Any) -> Any:
    return json.loads(text) if text else empty


def _columns(row: Any) -> dict[str, Any]:
    """A sqlite3.Row (or mapping) as a dict; columns a later schema adds are ignored by the records."""
    return {k: row[k] for k in row.keys()} if hasattr(row, "keys") else dict(row)  # noqa: SIM118 - a Row iterates values


def _flag(value: Any) -> bool | None:
    """A 0/1 column (NULL = unknown) as a bool."""
    return None if value is None else bool(value)


def _pair(text: str | None) -> tuple[int, int] | None:
    """An "h,w" text column as a tuple of ints, or None."""
    if not text:
        return None
    h, w = (int(v) for v in str(text).split(","))
    return h, w


@dataclass(frozen=True)
class Patient:
    id: int
    pseudonym: str                 # keyed hash of the original PatientID
    original_id: str | None = None  # kept only when the user opted in
    sex: str | None = None
    created_at: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> Patient:
        d = _columns(row)
        return cls(id=int(d["id"]), pseudonym=d["pseudonym"], original_id=d.get("original_id"),
                   sex=d.get("sex"), created_at=d.get("created_at"))


@dataclass(frozen=True)
class Study:
    id: int
    patient_id: int
    study_uid: str
    study_date: str | None = None
    description: str | None = None
    age_years: float | None = None  # the patient's age at this study
    centre_id: int | None = None
    centre: str | None = None       # the centre's code, where the store joins it

    @classmethod
    def from_row(cls, row: Any) -> Study:
        d = _columns(row)
        return cls(id=int(d["id"]), patient_id=int(d["patient_id"]), study_uid=d["study_uid"],
                   study_date=d.get("study_date"), description=d.get("description"),
                   age_years=d.get("age_years"), centre_id=d.get("centre_id"), centre=d.get("centre"))


@dataclass(frozen=True)
class Image:
    """One image (a frame of a DICOM object) with its study's and patient's identity joined."""
    id: int
    study_id: int
    sop_uid: str
    rows: int
    cols: int
    frame: int = 0
    n_frames: int = 1
    series_uid: str | None = None
    sop_class_uid: str | None = None
    original_sop_hash: str | None = None
    blob_sha: str | None = None
    source_path: str | None = None
    bits_allocated: int | None = None
    bits_stored: int | None = None
    pixel_signed: bool | None = None
    photometric: str | None = None
    transfer_syntax: str | None = None
    spacing_row_mm: float | None = None
    spacing_col_mm: float | None = None
    spacing_source: str | None = None  # pixel | imager | imager_corrected | None
    window_center: float | None = None
    window_width: float | None = None
    rescale_slope: float | None = None
    rescale_intercept: float | None = None
    modality: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    body_part: str | None = None
    view: str | None = None
    laterality: str | None = None
    acquisition_date: str | None = None
    burned_in_annotation: bool | None = None
    excluded: bool = False
    quality: str | None = None
    is_screenshot: bool = False
    external: bool = False
    analysis_shape: tuple[int, int] | None = None  # (h, w) of the analysis cache once built
    imported_at: str | None = None
    # joined from the study, its centre and its patient
    patient_id: int | None = None
    study_uid: str | None = None
    study_date: str | None = None
    age_years: float | None = None
    centre_id: int | None = None
    centre: str | None = None
    pseudonym: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> Image:
        d = _columns(row)
        return cls(
            id=int(d["id"]), study_id=int(d["study_id"]), sop_uid=d["sop_uid"], rows=int(d["rows"]),
            cols=int(d["cols"]), frame=int(d.get("frame") or 0), n_frames=int(d.get("n_frames") or 1),
            series_uid=d.get("series_uid"), sop_class_uid=d.get("sop_class_uid"),
            original_sop_hash=d.get("original_sop_hash"), blob_sha=d.get("blob_sha"),
            source_path=d.get("source_path"), bits_allocated=d.get("bits_allocated"),
            bits_stored=d.get("bits_stored"), pixel_signed=_flag(d.get("pixel_signed")),
            photometric=d.get("photometric"), transfer_syntax=d.get("transfer_syntax"),
            spacing_row_mm=d.get("spacing_row_mm"), spacing_col_mm=d.get("spacing_col_mm"),
            spacing_source=d.get("spacing_source"), window_center=d.get("window_center"),
            window_width=d.get("window_width"), rescale_slope=d.get("rescale_slope"),
            rescale_intercept=d.get("rescale_intercept"), modality=d.get("modality"),
            manufacturer=d.get("manufacturer"), model=d.get("model"), body_part=d.get("body_part"),
            view=d.get("view"), laterality=d.get("laterality"), acquisition_date=d.get("acquisition_date"),
            burned_in_annotation=_flag(d.get("burned_in_annotation")), excluded=bool(d.get("excluded")),
            quality=d.get("quality"), is_screenshot=bool(d.get("is_screenshot")),
            external=bool(d.get("external")), analysis_shape=_pair(d.get("analysis_shape")),
            imported_at=d.get("imported_at"), patient_id=d.get("patient_id"), study_uid=d.get("study_uid"),
            study_date=d.get("study_date"), age_years=d.get("age_years"), centre_id=d.get("centre_id"),
            centre=d.get("centre"), pseudonym=d.get("pseudonym"))

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the full image."""
        return self.rows, self.cols

    @property
    def spacing(self) -> tuple[float, float] | None:
        """(row, col) pixel spacing in mm, or None where either is unknown."""
        if not self.spacing_row_mm or not self.spacing_col_mm:
            return None
        return float(self.spacing_row_mm), float(self.spacing_col_mm)


def _bbox(text: str | None) -> tuple[int, int, int, int] | None:
    """A mask's 'x0,y0,x1,y1' bbox column (x1, y1 exclusive) as a tuple, or None.

    A malformed value (only a hand-edited database has one) reads as no bbox: such a
    mask is no region of interest, as ``annotations.roi_rects`` has always treated it."""
    if not text:
        return None
    try:
        x0, y0, x1, y1 = (int(float(v)) for v in str(text).split(","))
    except ValueError:
        return None
    return x0, y0, x1, y1


@dataclass(frozen=True)
class Mask:
    """A lesion mask's row without its pixels (``annotations.load_mask`` reads those)."""
    id: int
    image_id: int
    class_id: int
    annotator: str
    source: str                      # one of MASK_SOURCES
    run_id: int | None = None        # the segmenter run of a model mask
    bbox: tuple[int, int, int, int] | None = None  # of the non-zero area, x1, y1 exclusive
    area_px: int | None = None
    longest_mm: float | None = None  # max Feret diameter, where the pixel spacing is known
    area_mm2: float | None = None
    updated_at: str | None = None
    class_name: str | None = None    # joined from classes
    color: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> Mask:
        d = _columns(row)
        bbox = d.get("bbox")
        return cls(id=int(d["id"]), image_id=int(d["image_id"]), class_id=int(d["class_id"]),
                   annotator=d["annotator"], source=d["source"], run_id=d.get("run_id"),
                   bbox=tuple(bbox) if isinstance(bbox, (tuple, list)) else _bbox(bbox),
                   area_px=d.get("area_px"), longest_mm=d.get("longest_mm"), area_mm2=d.get("area_mm2"),
                   updated_at=d.get("updated_at"), class_name=d.get("class_name"), color=d.get("color"))

    @property
    def bbox_text(self) -> str:
        """The bbox as the database and the exports write it ('' for an empty mask)."""
        return "" if self.bbox is None else ",".join(str(v) for v in self.bbox)


@dataclass(frozen=True)
class Box:
    """A lesion box: drawn, imported, made from a mask, or a detector's prediction (with a score)."""
    id: int
    image_id: int
    class_id: int | None             # None only for a reader's draft box in a reading session
    annotator: str
    source: str
    x0: float
    y0: float
    x1: float
    y1: float
    score: float | None = None       # a detector's confidence; None = not a prediction
    run_id: int | None = None        # the detector run of a prediction
    review: str | None = None        # accepted | dismissed, once a prediction is reviewed
    reader_id: int | None = None
    updated_at: str | None = None
    class_name: str | None = None    # joined from classes where the store reads them
    color: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> Box:
        d = _columns(row)
        return cls(id=int(d["id"]), image_id=int(d["image_id"]),
                   class_id=None if d.get("class_id") is None else int(d["class_id"]),
                   annotator=d.get("annotator") or "", source=d["source"], x0=float(d["x0"]),
                   y0=float(d["y0"]), x1=float(d["x1"]), y1=float(d["y1"]), score=d.get("score"),
                   run_id=d.get("run_id"), review=d.get("review"), reader_id=d.get("reader_id"),
                   updated_at=d.get("updated_at"), class_name=d.get("class_name"), color=d.get("color"))

    @property
    def rect(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) in full-image pixels."""
        return self.x0, self.y0, self.x1, self.y1

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0


@dataclass(frozen=True)
class LabelClass:
    """One class of a label set: an image label's class, or a mask or box class."""
    id: int
    label_set_id: int
    name: str
    color: str | None = None  # "#rrggbb", None where the user never chose one
    position: int = 0         # the order the GUI lists the set's classes in
    is_reject: bool = False   # the out-of-distribution class fed by discarded clusters

    @classmethod
    def from_row(cls, row: Any) -> LabelClass:
        d = _columns(row)
        return cls(id=int(d["id"]), label_set_id=int(d["label_set_id"]), name=d["name"],
                   color=d.get("color"), position=int(d.get("position") or 0),
                   is_reject=bool(d.get("is_reject")))


@dataclass(frozen=True)
class Label:
    """One label of an image in a label set, with its provenance (see ``LABEL_SOURCES``)."""
    id: int
    image_id: int
    label_set_id: int
    class_id: int
    source: str                     # one of LABEL_SOURCES
    author: str | None = None
    run_id: int | None = None       # the cluster run or model run that wrote it
    confidence: float | None = None
    created_at: str | None = None
    reader_id: int | None = None    # a human label's reader
    class_name: str | None = None   # joined from classes / label_sets where the store reads them
    label_set: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> Label:
        d = _columns(row)
        return cls(id=int(d["id"]), image_id=int(d["image_id"]), label_set_id=int(d["label_set_id"]),
                   class_id=int(d["class_id"]), source=d["source"], author=d.get("author"),
                   run_id=d.get("run_id"), confidence=d.get("confidence"), created_at=d.get("created_at"),
                   reader_id=d.get("reader_id"), class_name=d.get("class_name"), label_set=d.get("label_set"))


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
    status: str                    # submitted | running | one of JOB_FINISHED
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
