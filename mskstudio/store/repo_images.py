"""Patients, studies, images, thumbnails, clinical records and labs."""

from __future__ import annotations

import datetime
import math
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mskstudio.domain import Image, Patient, Study

if TYPE_CHECKING:
    from mskstudio.store.project import Project

IMAGE_FLAGS = ("excluded", "is_screenshot", "external")
CLINICAL_FIELDS = ("age_years", "sex", "site", "position", "diagnosis", "dignity",
                   "diagnosis_source", "report")
IMAGE_COLUMNS = (
    "study_id", "sop_uid", "frame", "series_uid", "sop_class_uid", "original_sop_hash", "blob_sha",
    "source_path", "rows", "cols", "n_frames", "bits_allocated", "bits_stored", "pixel_signed",
    "photometric", "transfer_syntax", "spacing_row_mm", "spacing_col_mm", "spacing_source",
    "window_center", "window_width", "rescale_slope", "rescale_intercept", "modality",
    "manufacturer", "model", "body_part", "view", "laterality", "acquisition_date",
    "burned_in_annotation", "is_screenshot",
)


class ImageRepo:
    def __init__(self, project: Project):
        self.p = project

    # ---- identity -------------------------------------------------------------------
    def centre_id(self, code: str, name: str | None = None) -> int:
        with self.p.db.transaction() as c:
            c.execute("INSERT OR IGNORE INTO centres(code, name) VALUES (?, ?)", (code, name or code))
            return int(c.execute("SELECT id FROM centres WHERE code = ?", (code,)).fetchone()[0])

    def patient_id(self, pseudonym: str, *, original_id: str | None = None, sex: str | None = None) -> int:
        with self.p.db.transaction() as c:
            c.execute(
                "INSERT INTO patients(pseudonym, original_id, sex) VALUES (?, ?, ?) "
                "ON CONFLICT(pseudonym) DO UPDATE SET "
                "original_id = COALESCE(excluded.original_id, original_id), "
                "sex = COALESCE(sex, excluded.sex)",
                (pseudonym, original_id, sex),
            )
            return int(c.execute("SELECT id FROM patients WHERE pseudonym = ?", (pseudonym,)).fetchone()[0])

    def find_patient(self, key: str) -> Patient | None:
        """By pseudonym, or by original id where the user kept the map."""
        row = self.p.db.one(
            "SELECT * FROM patients WHERE pseudonym = ? OR original_id = ?", (key, key)
        )
        return None if row is None else Patient.from_row(row)

    def patient(self, patient_id: int) -> Patient | None:
        row = self.p.db.one("SELECT * FROM patients WHERE id = ?", (patient_id,))
        return None if row is None else Patient.from_row(row)

    def study(self, study_id: int) -> Study | None:
        """The study with its centre's code."""
        row = self.p.db.one(
            "SELECT s.*, c.code AS centre FROM studies s LEFT JOIN centres c ON c.id = s.centre_id "
            "WHERE s.id = ?", (study_id,))
        return None if row is None else Study.from_row(row)

    def study_id(self, patient_id: int, study_uid: str, **fields: Any) -> int:
        with self.p.db.transaction() as c:
            c.execute(
                "INSERT OR IGNORE INTO studies(patient_id, study_uid, study_date, description, "
                "age_years, centre_id) VALUES (?, ?, ?, ?, ?, ?)",
                (patient_id, study_uid, fields.get("study_date"), fields.get("description"),
                 fields.get("age_years"), fields.get("centre_id")),
            )
            return int(c.execute("SELECT id FROM studies WHERE study_uid = ?", (study_uid,)).fetchone()[0])

    def known_original_hashes(self) -> set[str]:
        return {r[0] for r in self.p.db.query(
            "SELECT original_sop_hash FROM images WHERE original_sop_hash IS NOT NULL")}

    def has_original_hash(self, original_hash: str) -> bool:
        return self.p.db.one("SELECT 1 FROM images WHERE original_sop_hash = ?", (original_hash,)) is not None

    def ids_by_original_hash(self) -> dict[str | None, int]:
        """Keyed hash of the original SOP UID -> image id: how manifests find their images."""
        return {r["original_sop_hash"]: r["id"] for r in self.p.db.query(
            "SELECT id, original_sop_hash FROM images")}

    def add_image(self, fields: dict[str, Any], thumbnail_png: bytes | None) -> int:
        """Insert one image row (and its thumbnail) atomically; the blob must exist already."""
        unknown = set(fields) - set(IMAGE_COLUMNS)
        if unknown:
            raise ValueError(f"unknown image fields: {sorted(unknown)}")
        cols = ", ".join(fields)
        marks = ", ".join("?" for _ in fields)
        with self.p.db.transaction() as c:
            cur = c.execute(f"INSERT INTO images({cols}) VALUES ({marks})", tuple(fields.values()))
            image_id = int(cur.lastrowid)
            if thumbnail_png is not None:
                c.execute("INSERT INTO thumbnails(image_id, png) VALUES (?, ?)", (image_id, thumbnail_png))
        return image_id

    # ---- reading ----------------------------------------------------------------------
    _IMAGE_SQL = (
        "SELECT i.*, s.patient_id, s.study_uid, s.study_date, s.age_years, s.centre_id, "
        "p.pseudonym, c.code AS centre FROM images i JOIN studies s ON s.id = i.study_id "
        "JOIN patients p ON p.id = s.patient_id LEFT JOIN centres c ON c.id = s.centre_id"
    )

    def record(self, image_id: int) -> Image | None:
        """The image as a typed record, with its study's and patient's identity, or None."""
        row = self.p.db.one(f"{self._IMAGE_SQL} WHERE i.id = ?", (image_id,))
        return None if row is None else Image.from_row(row)

    def records(self, image_ids: Iterable[int] | None = None) -> list[Image]:
        """Typed records of the images (all of them, or ``image_ids``, in that order)."""
        if image_ids is None:
            return [Image.from_row(r) for r in self.p.db.query(f"{self._IMAGE_SQL} ORDER BY i.id")]
        wanted = [int(i) for i in image_ids]
        found: dict[int, Image] = {}
        for k in range(0, len(wanted), 500):
            part = wanted[k:k + 500]
            for r in self.p.db.query(f"{self._IMAGE_SQL} WHERE i.id IN ({','.join('?' * len(part))})",
                                     tuple(part)):
                found[int(r["id"])] = Image.from_row(r)
        return [found[i] for i in wanted if i in found]

    def burned_in_ids(self) -> set[int]:
        """Images whose header says BurnedInAnnotation YES (text or markers in the pixels)."""
        return {int(r[0]) for r in self.p.db.query("SELECT id FROM images WHERE burned_in_annotation = 1")}

    def ids(self, *, include_excluded: bool = False) -> list[int]:
        where = "" if include_excluded else "WHERE excluded = 0"
        return [r[0] for r in self.p.db.query(f"SELECT id FROM images {where} ORDER BY id")]

    def count(self) -> int:
        return int(self.p.db.scalar("SELECT COUNT(*) FROM images"))

    def patient_of(self, image_ids: Iterable[int] | None = None) -> dict[int, int]:
        """image id -> patient id: the unit every split and every neighbour exclusion uses."""
        rows = self.p.db.query(
            "SELECT i.id, s.patient_id FROM images i JOIN studies s ON s.id = i.study_id")
        mapping = {r[0]: r[1] for r in rows}
        if image_ids is None:
            return mapping
        return {i: mapping[i] for i in image_ids}

    def image_ids_of_patient(self, patient_id: int) -> list[int]:
        return [r[0] for r in self.p.db.query(
            "SELECT i.id FROM images i JOIN studies s ON s.id = i.study_id WHERE s.patient_id = ?",
            (patient_id,))]

    def identities(self) -> list[sqlite3.Row]:
        """id, sop_uid, frame, rows, cols and patient pseudonym of every image (for exports)."""
        return self.p.db.query(
            "SELECT i.id, i.sop_uid, i.frame, i.rows, i.cols, p.pseudonym FROM images i "
            "JOIN studies s ON s.id = i.study_id JOIN patients p ON p.id = s.patient_id"
        )

    def uid_index(self) -> list[sqlite3.Row]:
        """id, sop_uid, frame and n_frames of every image: how imported files find their images."""
        return self.p.db.query("SELECT id, sop_uid, frame, n_frames FROM images")

    def table(self) -> list[sqlite3.Row]:
        """Light rows for the browser: one per image, no blobs."""
        return self.p.db.query(
            "SELECT i.id, i.view, i.laterality, i.body_part, i.modality, i.excluded, i.is_screenshot, "
            "i.external, i.rows, i.cols, i.acquisition_date, s.id AS study_id, s.study_date, "
            "s.patient_id, p.pseudonym, c.code AS centre, cl.diagnosis, cl.dignity "
            "FROM images i JOIN studies s ON s.id = i.study_id JOIN patients p ON p.id = s.patient_id "
            "LEFT JOIN centres c ON c.id = s.centre_id LEFT JOIN clinical cl ON cl.patient_id = p.id "
            "ORDER BY p.pseudonym, s.study_date, s.id, i.id"
        )

    def thumbnail(self, image_id: int) -> bytes | None:
        return self.p.db.scalar("SELECT png FROM thumbnails WHERE image_id = ?", (image_id,))

    def dicom_path(self, image_id: int) -> Path:
        row = self.p.db.one("SELECT blob_sha, source_path FROM images WHERE id = ?", (image_id,))
        if row is None:
            raise KeyError(image_id)
        if row["blob_sha"]:
            return self.p.blobs.path(row["blob_sha"])
        if row["source_path"]:
            return Path(row["source_path"])
        raise FileNotFoundError(f"image {image_id} has no DICOM file (neither a blob nor a source path)")

    # ---- analysis cache (derived, rebuildable) ---------------------------------------
    def analysis_path(self, image_id: int) -> Path:
        return self.p.cache_dir / "analysis" / f"{image_id}.npy"

    def save_analysis(self, image_id: int, array: np.ndarray) -> None:
        path = self.analysis_path(image_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, array.astype(np.uint16, copy=False))
        tmp.replace(path)
        self.record_analysis_shape(image_id, array.shape)

    def record_analysis_shape(self, image_id: int, shape: tuple[int, ...]) -> None:
        """Note the (rows, cols) of the image's analysis array, written before this call."""
        with self.p.db.transaction() as c:
            c.execute("UPDATE images SET analysis_shape = ? WHERE id = ?",
                      (f"{shape[0]},{shape[1]}", image_id))

    def read_analysis(self, image_id: int, *, strict: bool = False) -> np.ndarray | None:
        """The cached 16-bit analysis array, or None when it is missing or unreadable
        (``strict``: raise instead).  ``io.analysis.load_analysis`` rebuilds it then:
        the store reads and writes, it never decodes DICOM."""
        path = self.analysis_path(image_id)
        if strict:
            return np.load(path)
        try:
            return np.load(path)
        except (ValueError, EOFError, OSError):  # missing, or truncated by a power cut
            return None

    def frame_of(self, image_id: int) -> int:
        """The frame of its DICOM file the image is (0 for single-frame files)."""
        return int(self.p.db.scalar("SELECT frame FROM images WHERE id = ?", (image_id,)) or 0)

    # ---- flags ------------------------------------------------------------------------
    def set_flag(self, image_id: int, flag: str, value: bool | int) -> None:
        if flag not in IMAGE_FLAGS:
            raise ValueError(f"unknown flag {flag!r}; known: {', '.join(IMAGE_FLAGS)}")
        with self.p.db.transaction():
            self.p.db.execute(f"UPDATE images SET {flag} = ? WHERE id = ?", (int(value), image_id))
            self.p.audit("image.flag", "image", image_id, {flag: int(value)})

    # ---- clinical record --------------------------------------------------------------
    def clinical(self, patient_id: int) -> dict[str, Any]:
        row = self.p.db.one("SELECT * FROM clinical WHERE patient_id = ?", (patient_id,))
        return dict(row) if row else {}

    def set_clinical(self, patient_id: int, fields: dict[str, Any], *,
                     audit_action: str = "clinical.edit") -> None:
        unknown = set(fields) - set(CLINICAL_FIELDS)
        if unknown:
            raise ValueError(f"unknown clinical fields: {sorted(unknown)}")
        if not fields:
            return
        cols = ", ".join(fields)
        marks = ", ".join("?" for _ in fields)
        updates = ", ".join(f"{k} = excluded.{k}" for k in fields)
        with self.p.db.transaction() as c:
            c.execute(
                f"INSERT INTO clinical(patient_id, {cols}) VALUES (?, {marks}) "
                f"ON CONFLICT(patient_id) DO UPDATE SET {updates}, "
                "updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
                (patient_id, *fields.values()),
            )
            self.p.audit(audit_action, "patient", patient_id, fields)

    def clinical_records(self) -> dict[int, dict[str, Any]]:
        """patient id -> clinical record, every patient that has one (the fusion feature table)."""
        return {int(r["patient_id"]): dict(r) for r in self.p.db.query("SELECT * FROM clinical")}

    def all_labs(self) -> list[sqlite3.Row]:
        """Every lab row of the project (name, value, unit, range per patient)."""
        return self.p.db.query("SELECT * FROM labs ORDER BY patient_id, name")

    def lab_names(self) -> list[str]:
        return [r[0] for r in self.p.db.query("SELECT DISTINCT name FROM labs ORDER BY name")]

    def patient_centre_counts(self) -> list[sqlite3.Row]:
        """(patient_id, centre code or None, images) rows: where a patient's images come from."""
        return self.p.db.query(
            "SELECT s.patient_id, c.code AS centre, COUNT(*) AS n FROM images i "
            "JOIN studies s ON s.id = i.study_id LEFT JOIN centres c ON c.id = s.centre_id "
            "GROUP BY s.patient_id, c.code")

    def labs(self, patient_id: int) -> list[sqlite3.Row]:
        return self.p.db.query("SELECT * FROM labs WHERE patient_id = ? ORDER BY name", (patient_id,))

    def set_lab(self, patient_id: int, name: str, value: float | None, unit: str | None = None,
                ref_low: float | None = None, ref_high: float | None = None) -> None:
        with self.p.db.transaction() as c:
            c.execute(
                "INSERT INTO labs(patient_id, name, value, unit, ref_low, ref_high) "
                "VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(patient_id, name) DO UPDATE SET value = excluded.value, unit = excluded.unit, "
                "ref_low = excluded.ref_low, ref_high = excluded.ref_high",
                (patient_id, name, value, unit, ref_low, ref_high),
            )
            self.p.audit("lab.edit", "patient", patient_id,
                         {"name": name, "value": value, "unit": unit, "range": [ref_low, ref_high]})

    def add_lab(self, patient_id: int, name: str, value: float | None, unit: str | None = None,
                ref_low: float | None = None, ref_high: float | None = None, taken_on: str | None = None,
                *, audit_action: str = "lab.add") -> None:
        """A new lab for the patient; refuses a name the patient has already (any letter case)."""
        name = check_lab(name, value, ref_low, ref_high, taken_on)
        with self.p.db.transaction() as c:
            clash = c.execute("SELECT name FROM labs WHERE patient_id = ? AND lower(name) = lower(?)",
                              (patient_id, name)).fetchone()
            if clash is not None:
                raise ValueError(f"{clash[0]} is recorded already for this patient: edit its value in the table")
            c.execute(
                "INSERT INTO labs(patient_id, name, value, unit, ref_low, ref_high, taken_on) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (patient_id, name, value, unit or None, ref_low, ref_high, taken_on or None),
            )
            self.p.audit(audit_action, "patient", patient_id,
                         {"name": name, "value": value, "unit": unit, "range": [ref_low, ref_high],
                          "taken_on": taken_on})

    def delete_lab(self, patient_id: int, name: str, *, audit_action: str = "lab.delete") -> dict[str, Any] | None:
        """Remove a lab; returns what it held (for undo), None when there was no such lab."""
        row = self.p.db.one("SELECT * FROM labs WHERE patient_id = ? AND name = ?", (patient_id, name))
        if row is None:
            return None
        removed = dict(row)
        with self.p.db.transaction() as c:
            c.execute("DELETE FROM labs WHERE id = ?", (row["id"],))
            self.p.audit(audit_action, "patient", patient_id, {k: v for k, v in removed.items() if k != "id"})
        return removed


def check_lab(name: str, value: float | None, ref_low: float | None, ref_high: float | None,
              taken_on: str | None) -> str:
    """The cleaned lab name, or ValueError with a message meant for the user."""
    name = (name or "").strip()
    if not name:
        raise ValueError("The lab needs a name (e.g. ALP)")
    for label, number in (("value", value), ("normal low", ref_low), ("normal high", ref_high)):
        if number is not None and not math.isfinite(number):
            raise ValueError(f"The {label} must be a finite number")
    if ref_low is not None and ref_high is not None and ref_low > ref_high:
        raise ValueError(f"The normal low ({ref_low:g}) is above the normal high ({ref_high:g})")
    if taken_on:
        try:
            datetime.date.fromisoformat(taken_on)
        except ValueError:
            raise ValueError(f"The date {taken_on!r} is not a date as YYYY-MM-DD") from None
    return name
