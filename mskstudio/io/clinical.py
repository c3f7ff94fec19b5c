"""Clinical CSV import (job kind ``import-clinical``).

One row per patient.  Columns (header names are case-insensitive):

* ``patient_id``: the original PatientID (pseudonymised here with the project key)
  or a pseudonym the project already uses;
* ``age``, ``sex`` (F/M/O), ``site``, ``position``, ``diagnosis``,
  ``dignity`` (benign/intermediate/malignant/none),
  ``diagnosis_source`` (histology/tumour_board/follow_up), ``report``;
* labs as ``lab_NAME`` (value; empty = missing) with optional ``lab_NAME_unit``,
  ``lab_NAME_low``, ``lab_NAME_high`` (the normal range).

Unknown columns are reported; a bad row is listed with its line number and reason
and the other rows are imported.  The reference diagnosis also becomes labels
(source ``import``) in the label sets ``diagnosis`` and ``dignity`` on every image of
the patient, so training on the reference standard needs no extra step.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mskstudio.domain import DIAGNOSIS_SOURCES, DIGNITIES, SEXES
from mskstudio.io.deid import pseudonym
from mskstudio.io.params import ImportClinicalParams
from mskstudio.jobs import JobContext
from mskstudio.store import Project

BASE_COLUMNS = ("patient_id", "age", "sex", "site", "position", "diagnosis", "dignity",
                "diagnosis_source", "report")
LAB_RE = re.compile(r"^lab_([A-Za-z0-9]+)(?:_(unit|low|high))?$")


@dataclass
class ClinicalSummary:
    rows: int = 0
    imported: int = 0
    bad_rows: list[tuple[int, str]] = field(default_factory=list)
    unknown_columns: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "imported": self.imported, "bad_rows": self.bad_rows[:200],
                "n_bad_rows": len(self.bad_rows), "unknown_columns": self.unknown_columns}


class RowError(ValueError):
    pass


MAX_FIELD_CHARS = 16 << 20


def _read_text(path: Path) -> str:
    """The file as text: UTF-8 (with or without BOM) or UTF-16 with a BOM; else one clear line."""
    data = path.read_bytes()
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path}: damaged UTF-16 text at byte {exc.start}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{path}: not UTF-8 text (byte {exc.start}: {data[exc.start:exc.start + 4]!r}); save it as "
            "UTF-8 (in Excel: 'CSV UTF-8')") from None


def run_import_clinical(project: Project, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    path = Path(ImportClinicalParams.from_json(params).check(project).path)
    _ = project.secret  # rows are matched by pseudonym: without the key, refuse up front
    summary = ClinicalSummary()
    text = _read_text(path)
    limit = csv.field_size_limit()
    csv.field_size_limit(MAX_FIELD_CHARS)  # a long free-text report is fine; 128 KB was the default
    try:
        try:
            dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
        except csv.Error:
            dialect = csv.excel
        reader = csv.DictReader(io.StringIO(text, newline=""), dialect=dialect)
        try:
            fieldnames = reader.fieldnames
            if not fieldnames:
                raise ValueError(f"{path}: empty CSV (no header row)")
            columns = [(c or "").strip().lower() for c in fieldnames]
            if "patient_id" not in columns:
                raise ValueError(f"{path}: no patient_id column (columns are: {', '.join(columns)[:300]})")
            reader.fieldnames = columns
            summary.unknown_columns = [c for c in columns if c not in BASE_COLUMNS and not LAB_RE.match(c)]
            rows = list(reader)
        except csv.Error as exc:
            raise ValueError(f"{path} line {reader.line_num}: not readable as CSV ({exc})") from None
    finally:
        csv.field_size_limit(limit)
    summary.rows = len(rows)
    first_line: dict[str, int] = {}
    for n, row in enumerate(rows):
        ctx.check_cancelled()
        line = n + 2  # header is line 1 (a quoted field with line breaks shifts this)
        try:
            key = (row.get("patient_id") or "").strip()
            if key and key in first_line:
                raise RowError(f"patient {key[:60]!r} is already on line {first_line[key]}; "
                               "this row was skipped")
            first_line.setdefault(key, line)
            _import_row(project, row)
            summary.imported += 1
        except RowError as exc:
            summary.bad_rows.append((line, str(exc)))
            ctx.log(f"{path.name} line {line}: {exc}")
        ctx.progress((n + 1) / max(len(rows), 1), f"{summary.imported} patients updated")
    project.audit("import.clinical", "job", ctx.job_id,
                  {"file": str(path), **{k: v for k, v in summary.as_dict().items() if k != "bad_rows"}})
    return summary.as_dict()


def _import_row(project: Project, row: dict[str, str | None]) -> None:
    key = (row.get("patient_id") or "").strip()
    if not key:
        raise RowError("empty patient_id")
    if "\x00" in key or len(key) > 256:
        raise RowError(f"patient_id {key[:40]!r}… is not an identifier")
    patient = project.images.find_patient(pseudonym(project.secret, key)) or project.images.find_patient(key)
    if patient is None:
        raise RowError(f"patient {key!r} is not in this project")
    fields = _clinical_fields(row)
    labs = _labs(row)
    with project.db.transaction():
        project.images.set_clinical(patient.id, fields, audit_action="clinical.import")
        for name, (value, unit, low, high) in labs.items():
            project.images.set_lab(patient.id, name, value, unit, low, high)
        if fields.get("diagnosis"):
            _reference_labels(project, patient.id, fields)


def _clinical_fields(row: dict[str, str | None]) -> dict[str, Any]:
    get = lambda k: (row.get(k) or "").strip()  # noqa: E731
    fields: dict[str, Any] = {}
    if get("age"):
        fields["age_years"] = _number(get("age"), "age")
        if not 0 <= fields["age_years"] <= 120:
            raise RowError(f"age {get('age')} is outside 0–120")
    if get("sex"):
        sex = get("sex").upper()[:1]
        if sex not in SEXES:
            raise RowError(f"sex {get('sex')!r} is not F, M or O")
        fields["sex"] = sex
    for name in ("site", "position", "diagnosis", "report"):
        if get(name):
            fields[name] = get(name)
    if get("dignity"):
        if get("dignity").lower() not in DIGNITIES:
            raise RowError(f"dignity {get('dignity')!r} is not one of {', '.join(DIGNITIES)}")
        fields["dignity"] = get("dignity").lower()
    if get("diagnosis_source"):
        if get("diagnosis_source").lower() not in DIAGNOSIS_SOURCES:
            raise RowError(f"diagnosis_source {get('diagnosis_source')!r} is not one of "
                           f"{', '.join(DIAGNOSIS_SOURCES)}")
        fields["diagnosis_source"] = get("diagnosis_source").lower()
    return fields


def _labs(row: dict[str, str | None]) -> dict[str, tuple]:
    labs: dict[str, list] = {}
    for column, raw in row.items():
        match = LAB_RE.match(column or "")
        if not match:
            continue
        name, part = match.group(1).upper(), match.group(2) or "value"
        entry = labs.setdefault(name, [None, None, None, None])
        text = (raw or "").strip()
        if part == "unit":
            entry[1] = text or None
        elif text:
            entry[{"value": 0, "low": 2, "high": 3}[part]] = _number(text, column)
    return {k: tuple(v) for k, v in labs.items()}


def _number(text: str, column: str) -> float:
    try:
        value = float(text.replace(",", ".")) if text.count(",") == 1 and "." not in text else float(text)
    except ValueError:
        raise RowError(f"{column} {text[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise RowError(f"{column} {text[:40]!r} is not a finite number")
    return value


def _reference_labels(project: Project, patient_id: int, fields: dict[str, Any]) -> None:
    image_ids = project.images.image_ids_of_patient(patient_id)
    if not image_ids:
        return
    for set_name, value in (("diagnosis", fields.get("diagnosis")), ("dignity", fields.get("dignity"))):
        if value:
            set_id = project.labels.label_set(set_name)
            class_id = project.labels.class_id(set_id, value)
            project.labels.set_labels(image_ids, set_id, class_id, source="import", audit=False)
