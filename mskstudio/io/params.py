"""Parameters of the data jobs (``import-clinical``, ``demo-archive`` and the exchange
kinds): defaults, checks, JSON, as ``ml/<feature>/params.py`` has them for the ml kinds.

The checks are the ones each job made on its whole input (a CSV that is not there, an
export folder that is missing), now made before a job row is written, in the same words.
What is wrong inside a file is still reported line by line as the job reads it.
``import`` keeps its own ``importer.ImportOptions``: a missing path there is reported per
path beside the files that import, not refused.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from mskstudio.jobs import JobParams

DEMO_IMAGES = 600


def _required(value: Any, what: str) -> str | None:
    return f"Choose {what}." if value in (None, "") else None


@dataclasses.dataclass(frozen=True)
class ImportClinicalParams(JobParams):
    KIND = "import-clinical"

    path: str | None = None          # the clinical CSV (one row per patient)

    def problems(self, project: Any) -> list[str]:
        if self.path in (None, ""):
            return ["Choose the clinical CSV file."]
        return [] if Path(self.path).is_file() else [f"{self.path}: no such CSV file."]


@dataclasses.dataclass(frozen=True)
class DemoArchiveParams(JobParams):
    KIND = "demo-archive"

    images: int = DEMO_IMAGES
    size: str = "medium"             # small | medium | full (phantoms.SIZES)
    seed: int = 0
    archive_dir: str | None = None   # keep the generated DICOM archive here (default: a temp folder)
    workers: int = 2

    def problems(self, project: Any) -> list[str]:
        from mskstudio.io.phantoms import SIZES  # phantoms imports pydicom: only when a demo is made

        problems = []
        if int(self.images) < 1:
            problems.append(f"--images must be ≥ 1, got {self.images}.")
        if self.size not in SIZES:
            problems.append(f"size must be one of {sorted(SIZES)}, got {self.size!r}.")
        if int(self.workers) < 1:
            problems.append(f"workers must be ≥ 1, got {self.workers}.")
        return problems


@dataclasses.dataclass(frozen=True)
class ExportAnnotationsParams(JobParams):
    KIND = "export-annotations"

    outdir: str | None = None        # required
    seg: bool = True                 # DICOM SEG per image with masks
    seg_all: bool = False            # also model masks
    sr: bool = True                  # DICOM SR TID 1500
    labels: bool = True              # labels.csv

    def problems(self, project: Any) -> list[str]:
        return [p for p in (_required(self.outdir, "the folder to export into"),) if p]


@dataclasses.dataclass(frozen=True)
class ImportAnnotationsParams(JobParams):
    KIND = "import-annotations"

    path: str | None = None          # an export-annotations folder (required)
    replace_human: bool = False

    def problems(self, project: Any) -> list[str]:
        if self.path in (None, ""):
            return ["Choose the export folder to import."]
        return [] if Path(self.path).is_dir() else [f"{self.path}: no such folder."]


@dataclasses.dataclass(frozen=True)
class ImportSegParams(JobParams):
    KIND = "import-seg"

    path: str | None = None          # a SEG file or a folder of them
    paths: list[str] | None = None   # or several chosen files
    annotator: str | None = None

    def all_paths(self) -> list[Path]:
        return [Path(p) for p in (self.paths or ([self.path] if self.path else []))]

    def problems(self, project: Any) -> list[str]:
        paths = self.all_paths()
        if not paths:
            return ["Choose DICOM SEG files or a folder of them."]
        return [f"{p}: no such file or folder." for p in paths if not p.exists()]


@dataclasses.dataclass(frozen=True)
class ExportLabelsParams(JobParams):
    KIND = "export-labels"

    path: str | None = None          # .csv or .parquet (required)
    label_sets: list[str] | None = None  # default: every label set

    def problems(self, project: Any) -> list[str]:
        return [p for p in (_required(self.path, "the file to export the labels to"),) if p]


@dataclasses.dataclass(frozen=True)
class ImportLabelsParams(JobParams):
    KIND = "import-labels"

    path: str | None = None          # .csv or .parquet (required)
    replace_human: bool = False
    label_sets: list[str] | None = None
    author: str | None = None

    def problems(self, project: Any) -> list[str]:
        if self.path in (None, ""):
            return ["Choose the label file to import."]
        return [] if Path(self.path).is_file() else [f"{self.path}: no such file."]


@dataclasses.dataclass(frozen=True)
class ShareParams(JobParams):
    KIND = "share"

    out: str | None = None           # the folder the re-keyed copy is written to (must not exist)

    def problems(self, project: Any) -> list[str]:
        if self.out in (None, "") or not str(self.out).strip():
            return ["Choose the folder to write the shared copy to (out)."]
        if Path(str(self.out)).exists():
            return [f"{self.out}: already exists; choose a new folder for the shared copy."]
        return []
