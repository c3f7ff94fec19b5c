"""Import a DICOM archive into a project (job kind ``import``).

Flow: walk the folders (plain files, files without suffix, DICOMDIR references) →
decode in worker processes (``import_worker``: header, de-identification, blob,
thumbnail, 16-bit analysis cache) → the main process fsyncs the blobs of a batch
of files and writes the batch in one transaction (``store/blobs.py`` says why that
order is crash-safe).

* Resumable: a file whose SOPInstanceUID is already in the project is skipped, so a
  re-run after a kill imports exactly what is missing (a kill loses at most the
  uncommitted batch: ``COMMIT_EVERY`` files or ``COMMIT_SECONDS`` of work).
* One bad file never stops the import: its path and reason go into
  ``import_failures`` and the summary.  Every file is decoded in a worker process
  (``import_pool``): a decoder that raises anything, crashes its process or hangs past
  ``file_time_limit_s`` costs that one file, and the batches stored before stay.
* Workers are *spawned*, not forked: the GUI and torch run threads, and forking a
  threaded process can deadlock.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mskstudio.io.import_pool import isolated_results
from mskstudio.io.import_worker import init_worker, process_file
from mskstudio.jobs import Cancelled, JobContext
from mskstudio.store import Project

MAX_FAILURES_IN_RESULT = 50
# One transaction (and one fsync barrier) per this many files or seconds: fewer
# commits and syncs, while a kill still loses only a few seconds of work.
COMMIT_EVERY = 16
COMMIT_SECONDS = 2.0


@dataclass
class ImportOptions:
    paths: list[str]
    copy: bool = True            # copy into blobs/ (False: reference files in place)
    deidentify: bool = True
    # De-identified dates: "shift" (PS3.15 Modified Dates) or "full"; None: the project's
    # option (meta 'deid_dates'), "shift" for a new project.
    dates: str | None = None
    keep_map: bool = False       # keep original PatientID beside the pseudonym (opt-in)
    workers: int = 2
    # A file still decoding after this many seconds (plus file_time_per_mb_s a megabyte)
    # is skipped and its worker replaced: 15 MB then gets 60 s, on a loaded machine too.
    file_time_limit_s: float = 30.0
    file_time_per_mb_s: float = 2.0
    isolate: bool = True         # False: decode in this process (debugging; a crash ends the import)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ImportOptions:
        known = {k: params[k] for k in cls.__dataclass_fields__ if k in params}
        opts = cls(**known)
        if not opts.paths:
            raise ValueError("import: give at least one folder or file")
        if not opts.copy and opts.deidentify:
            # A file referenced in place keeps its PHI on disk; the project would
            # then point at identifiable data while claiming to be de-identified.
            raise ValueError("import: referencing files in place needs deidentify=False")
        if opts.dates not in (None, "shift", "full"):
            raise ValueError(f"import: dates must be 'shift' or 'full', not {opts.dates!r}")
        if opts.workers < 1:
            raise ValueError(f"import: workers must be ≥ 1, got {opts.workers}")
        if not opts.file_time_limit_s or opts.file_time_limit_s <= 0:
            raise ValueError(f"import: file_time_limit_s must be > 0, got {opts.file_time_limit_s}")
        return opts


@dataclass
class ImportSummary:
    files_seen: int = 0
    imported: int = 0
    duplicates: int = 0
    non_dicom: int = 0
    failed: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "files_seen": self.files_seen, "imported": self.imported, "duplicates": self.duplicates,
            "non_dicom": self.non_dicom, "failed": self.failed, "seconds": round(self.seconds, 2),
            "failures": self.failures[:MAX_FAILURES_IN_RESULT],
        }


def summary_line(result: dict[str, Any]) -> str:
    """The one sentence the CLI prints and the GUI shows for an import result, so both count alike:
    imported = new images, already present = duplicates (skipped, not failures), skipped = not
    DICOM + failed (each with its reason in ``import_failures``)."""
    return (f"imported {result['imported']} files, {result['duplicates']} already in the project, "
            f"{result['non_dicom']} not DICOM, {result['failed']} failed "
            f"({result['non_dicom'] + result['failed']} skipped)")


# ----------------------------------------------------------------------------- walking
def iter_candidate_files(paths: list[str]) -> Iterator[tuple[Path, str | None]]:
    """Yield (path, None) for every regular file under ``paths``, or (path, reason) for
    entries that cannot even be listed. Directory symlinks are not followed (no loops);
    files named in a DICOMDIR are included once."""
    seen: set[str] = set()

    def emit(p: Path) -> Iterator[tuple[Path, str | None]]:
        key = os.path.realpath(p)
        if key not in seen:
            seen.add(key)
            yield p, None

    for raw in paths:
        root = Path(raw)
        if not root.exists() and not root.is_symlink():
            yield root, "no such file or folder"
            continue
        if root.is_file():
            if root.name.upper() == "DICOMDIR":  # a CD's index given directly: its files
                yield from _dicomdir_files(root, emit)
            else:
                yield from emit(root)
            continue
        errors: list[OSError] = []
        for dirpath, dirnames, filenames in os.walk(root, onerror=errors.append, followlinks=False):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if name.upper() == "DICOMDIR":
                    yield from _dicomdir_files(path, emit)
                    continue
                yield from emit(path)
        for err in errors:
            yield Path(err.filename or raw), f"cannot list folder ({err.strerror})"


def _dicomdir_files(path: Path, emit) -> Iterator[tuple[Path, str | None]]:
    """Files a DICOMDIR references (they usually also sit in the walked tree: deduped)."""
    import pydicom

    try:
        ds = pydicom.dcmread(path)
        for record in ds.DirectoryRecordSequence:
            parts = record.get("ReferencedFileID")
            if parts:
                parts = [parts] if isinstance(parts, str) else list(parts)
                yield from emit(path.parent.joinpath(*parts))
    except Exception as exc:  # a broken DICOMDIR is reported; its files are still walked
        yield path, f"unreadable DICOMDIR ({exc})"


# ----------------------------------------------------------------------------- main side
def run_import(project: Project, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Job ``import``: params {paths, copy, deidentify, keep_map, workers}."""
    opts = ImportOptions.from_params(params)
    secret = project.secret  # no key on this machine: refuse before anything is listed or written
    if opts.deidentify:
        opts.dates = _date_option(project, opts.dates)
    started = time.monotonic()
    summary = ImportSummary()
    ctx.progress(0.0, "listing files")
    files: list[str] = []
    for path, problem in iter_candidate_files(opts.paths):
        ctx.check_cancelled()
        if problem:
            _record_failure(project, ctx, summary, str(path), problem)
        else:
            files.append(str(path))
    summary.files_seen = len(files) + summary.failed
    incoming = project.cache_path("analysis", "incoming", "x").parent
    init_args = (secret, str(project.blobs.root), str(incoming),
                 project.images.known_original_hashes(), opts)
    batch = _Batch(project, opts, summary)
    done = summary.failed
    results = _results(files, init_args, opts, ctx)
    try:
        try:
            for result in results:
                batch.add(result, ctx)
                done += 1
                ctx.progress(done / max(summary.files_seen, 1),
                             f"{summary.imported + len(batch.pending)} imported, "
                             f"{summary.failed + summary.non_dicom} skipped")
            batch.commit()
        except Cancelled:
            batch.commit()  # keep what is finished; the re-run imports the rest
            raise
        except Exception:
            try:  # keep the decoded files; the first error is the one reported
                batch.commit()
            except Exception as commit_error:  # noqa: BLE001 - logged, then the first error is raised
                ctx.log(f"could not keep the files decoded before the error: {commit_error}")
            raise
    finally:
        # The worker processes stop here, not when the traceback holding this frame is freed:
        # after a full disk, one still writing a blob would race the orphan clean-up.
        results.close()
        summary.seconds = time.monotonic() - started
        project.audit("import", "job", ctx.job_id,
                      {"paths": opts.paths, "deidentify": opts.deidentify, "dates": opts.dates, "copy": opts.copy,
                       "keep_map": opts.keep_map, **{k: v for k, v in summary.as_dict().items()
                                                     if k != "failures"}})
    return summary.as_dict()


def _date_option(project: Project, dates: str | None) -> str:
    """One date option per project: mixing shifted and full dates would break the intervals
    between a patient's studies.  The option is kept in meta 'deid_dates'."""
    used = project.meta("deid_dates")
    if used is None:
        # Projects that imported de-identified images before the option existed kept full dates.
        legacy = project.db.scalar("SELECT COUNT(*) FROM images WHERE blob_sha IS NOT NULL")
        used = "full" if legacy else (dates or "shift")
        project.set_meta("deid_dates", used)
    if dates is not None and used != dates:
        raise ValueError(f"import: this project's images were de-identified with dates={used!r}; "
                         f"import with the same option (dates={dates!r} would mix shifted and full dates)")
    return used


def _results(files: list[str], init_args: tuple, opts: ImportOptions, ctx: JobContext) -> Iterator[dict]:
    """Results in file order, each file decoded in a worker process (``import_pool``)."""
    if not opts.isolate:
        init_worker(*init_args)
        for path in files:
            ctx.check_cancelled()
            yield process_file(path)
        return
    yield from in_file_order(files, isolated_results(
        files, init_args, opts.workers, ctx.check_cancelled,
        time_limit_s=float(opts.file_time_limit_s), per_mb_s=float(opts.file_time_per_mb_s)))


def in_file_order(files: list[str], results: Iterable[dict]) -> Iterator[dict]:
    """``results`` (completion order) re-emitted in the order of ``files``.

    Workers finish in an order that varies from run to run; storing in file order gives
    the same archive the same patient and image row ids every time, and so the same
    seeded patient-level splits.  Early results wait (a decoded file on disk, a thumbnail
    in memory) only until every file listed before them is back.
    """
    waiting: dict[str, list[dict]] = {}
    position = 0
    for result in results:
        waiting.setdefault(result["path"], []).append(result)
        while position < len(files) and waiting.get(files[position]):
            yield waiting[files[position]].pop(0)
            position += 1
    for path in files[position:]:  # only if a result went missing: never drop one silently
        yield from waiting.pop(path, [])


class _Batch:
    """Decoded files waiting for their common fsync barrier and transaction."""

    def __init__(self, project: Project, opts: ImportOptions, summary: ImportSummary):
        self.project, self.opts, self.summary = project, opts, summary
        self.pending: list[dict] = []
        self.started = 0.0

    def add(self, result: dict, ctx: JobContext) -> None:
        status = result["status"]
        if status == "storage_error":  # re-raised here so the job stops with the disk's error
            from mskstudio.store.media import StorageWriteError

            raise StorageWriteError(result["reason"])
        if status == "duplicate":
            self.summary.duplicates += 1
        elif status in ("failed", "non_dicom"):
            _record_failure(self.project, ctx, self.summary, result["path"], result["reason"],
                            non_dicom=status == "non_dicom")
        else:
            if not self.pending:
                self.started = time.monotonic()
            self.pending.append(result)
        if len(self.pending) >= COMMIT_EVERY or (
                self.pending and time.monotonic() - self.started >= COMMIT_SECONDS):
            self.commit()

    def commit(self) -> None:
        if not self.pending:
            return
        _commit_batch(self.project, self.opts, self.pending, self.summary)
        self.pending = []


def _commit_batch(project: Project, opts: ImportOptions, results: list[dict], summary: ImportSummary) -> None:
    """Blobs durable first, then the rows that name them, in one transaction."""
    project.blobs.sync({r["blob_sha"] for r in results if r["blob_sha"]})
    with project.db.transaction():
        for result in results:
            _store_result(project, opts, result, summary)


def _store_result(project: Project, opts: ImportOptions, result: dict, summary: ImportSummary) -> None:
    """Rows for one decoded file; runs inside the batch's transaction."""
    header = result["header"]
    images = project.images
    with project.db.transaction():
        if images.has_original_hash(result["original_hash"]):
            summary.duplicates += 1  # the same instance twice in this very import
            for frame in result["frames"]:
                Path(frame["analysis"]).unlink(missing_ok=True)
            return
        sex = header.patient_sex.upper()[:1] if header.patient_sex.upper()[:1] in ("F", "M", "O") else None
        patient = images.patient_id(
            header.patient_id, original_id=result["original_patient_id"] if opts.keep_map else None, sex=sex)
        centre = images.centre_id(header.institution) if header.institution else None
        study = images.study_id(patient, header.study_uid, study_date=header.study_date or None,
                                description=header.study_description or None,
                                age_years=header.patient_age_years, centre_id=centre)
        for frame in result["frames"]:
            image_id = images.add_image(_image_fields(header, result, frame, study), frame["thumb"])
            final = images.analysis_path(image_id)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(frame["analysis"], final)
            images.record_analysis_shape(image_id, frame["analysis_shape"])
    summary.imported += 1


def _image_fields(header, result: dict, frame: dict, study_id: int) -> dict[str, Any]:
    """One frame's image row: the file's header, with the frame's own spacing, window and
    rescale (``dicom_attributes.frame_header``: functional groups of enhanced files) where it has them."""
    own = frame.get("attributes") or {}
    spacing = own.get("spacing_mm") or header.spacing_mm or (None, None)
    spacing_source = own.get("spacing_source") if own.get("spacing_mm") else header.spacing_source
    window = own.get("window") or (header.windows[0] if header.windows else None)
    return {
        "study_id": study_id, "sop_uid": header.sop_uid, "frame": frame["frame"], "series_uid": header.series_uid,
        "sop_class_uid": header.sop_class_uid, "original_sop_hash": result["original_hash"],
        "blob_sha": result["blob_sha"], "source_path": result["source_path"],
        "rows": header.rows, "cols": header.cols, "n_frames": header.n_frames,
        "bits_allocated": header.bits_allocated, "bits_stored": header.bits_stored,
        "pixel_signed": int(header.pixel_signed), "photometric": header.photometric,
        "transfer_syntax": header.transfer_syntax, "spacing_row_mm": spacing[0],
        "spacing_col_mm": spacing[1], "spacing_source": spacing_source,
        "window_center": window.center if window else None, "window_width": window.width if window else None,
        "rescale_slope": own.get("rescale_slope", header.rescale_slope),
        "rescale_intercept": own.get("rescale_intercept", header.rescale_intercept),
        "modality": header.modality or None, "manufacturer": header.manufacturer or None,
        "model": header.model or None, "body_part": header.body_part or None, "view": header.view or None,
        "laterality": header.laterality or None, "acquisition_date": header.acquisition_date or None,
        "burned_in_annotation": (None if header.burned_in_annotation is None
                                 else int(header.burned_in_annotation)),
        "is_screenshot": int(header.samples_per_pixel == 3 or header.sop_class_uid.startswith(
            "1.2.840.10008.5.1.4.1.1.7")),
    }


def _record_failure(project: Project, ctx: JobContext, summary: ImportSummary, path: str, reason: str,
                    *, non_dicom: bool = False) -> None:
    if non_dicom:
        summary.non_dicom += 1
    else:
        summary.failed += 1
    summary.failures.append((path, reason))
    project.jobs.record_failure(ctx.job_id, path, reason)
    ctx.log(f"skipped {path}: {reason}")
