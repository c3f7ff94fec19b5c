"""Running a job row: look up its function, record its life in the ``jobs`` table.

``JOB_KINDS`` maps the stable kind string stored in the database to the function
that does the work.  Functions are named as "module:function" and imported only
when a job of that kind runs, so the CLI starts without importing torch.
"""

from __future__ import annotations

import importlib
import signal
import sys
import traceback
from collections.abc import Callable
from contextlib import contextmanager, suppress
from typing import Any

from mskstudio.jobs import Cancelled, CancelToken, JobContext, JobSink
from mskstudio.store import Project, StoreError
from mskstudio.store.media import storage_failure

JOB_KINDS: dict[str, str] = {
    # data
    "import": "mskstudio.io.importer:run_import",
    "import-clinical": "mskstudio.io.clinical:run_import_clinical",
    "demo-archive": "mskstudio.io.demo:run_demo_archive",
    "export-annotations": "mskstudio.io.exports.annotations:run_export_annotations",
    "import-annotations": "mskstudio.io.exports.annotations:run_import_annotations",
    "import-seg": "mskstudio.io.exports.seg_read:run_import_seg",
    "export-labels": "mskstudio.io.exports.labels_table:run_export_labels",
    "import-labels": "mskstudio.io.exports.labels_table:run_import_labels",
    "share": "mskstudio.io.share:run_share",
    # clustering and classification
    "cluster": "mskstudio.ml.cluster.deepcluster:run_cluster",
    "recluster": "mskstudio.ml.cluster.deepcluster:run_recluster",  # light: stored features, ~1 s
    "train": "mskstudio.ml.classify.train:run_train",
    "predict": "mskstudio.ml.classify.predict:run_predict",
    "explain": "mskstudio.ml.explain.gradcam:run_explain",
    # clinical data (light: scikit-learn on cached image scores, seconds)
    "fuse": "mskstudio.ml.fuse.fuse:run_fuse",
    "ablation": "mskstudio.ml.fuse.ablation:run_ablation",
    "shap": "mskstudio.ml.fuse.explain:run_shap",
    "pointing-game": "mskstudio.ml.explain.pointing:run_pointing_game",
    # segmentation
    "train-seg": "mskstudio.ml.segment.train:run_train_seg",
    "prelabel": "mskstudio.ml.segment.train:run_prelabel",
    "train-seg-box": "mskstudio.ml.segment.train_box:run_train_box_seg",
    "fill-boxes": "mskstudio.ml.segment.roi_seg:run_fill_boxes",  # light: one image, ~0.1 s a box
    # lesion detection
    "train-det": "mskstudio.ml.detect.train:run_train_det",
    "detect": "mskstudio.ml.detect.predict:run_detect",
    "export-det": "mskstudio.ml.detect.export:run_export_det",
    # retrieval and deployment
    "embed": "mskstudio.ml.retrieve.embeddings:run_embed",
    "eval-retrieval": "mskstudio.ml.retrieve.evaluate:run_eval_retrieval",
    "noise-queue": "mskstudio.ml.noise.queue:run_noise_queue",
    "export-onnx": "mskstudio.ml.deploy.onnx_export:run_export_onnx",
    # reader studies
    "reader-study-analyze": "mskstudio.ml.readers.job:run_reader_analysis",  # light: seconds
    # evaluation: statistics only (no network), a few seconds
    "report": "mskstudio.ml.report.report:run_report",
    "operating-point": "mskstudio.ml.evaluate.calibration:run_operating_point",
    "demo-loop": "mskstudio.ml.loop.demo_loop:run_demo_loop",  # the whole loop on the phantom demo
}

# The parameter object of a kind ("module:Class", a ``jobs.JobParams``): defaults,
# checks against the project and JSON.  ``check_params`` runs it before a job row is
# written; the job function runs it again before it writes any run row.
JOB_PARAMS: dict[str, str] = {
    "train": "mskstudio.ml.classify.params:TrainParams",
    "train-seg": "mskstudio.ml.segment.params:TrainSegParams",
    "train-seg-box": "mskstudio.ml.segment.params:TrainBoxSegParams",
    "cluster": "mskstudio.ml.cluster.params:ClusterParams",
    "recluster": "mskstudio.ml.cluster.params:ReclusterParams",
    "predict": "mskstudio.ml.classify.params:PredictParams",
    "explain": "mskstudio.ml.classify.params:ExplainParams",
    "pointing-game": "mskstudio.ml.classify.params:PointingGameParams",
    "prelabel": "mskstudio.ml.segment.params:PrelabelParams",
    "embed": "mskstudio.ml.retrieve.params:EmbedParams",
    "eval-retrieval": "mskstudio.ml.retrieve.params:EvalRetrievalParams",
    "noise-queue": "mskstudio.ml.noise.params:NoiseQueueParams",
    "export-onnx": "mskstudio.ml.deploy.params:ExportOnnxParams",
    "fill-boxes": "mskstudio.ml.segment.params:FillBoxesParams",
    "fuse": "mskstudio.ml.fuse.params:FuseParams",
    "ablation": "mskstudio.ml.fuse.params:AblationParams",
    "shap": "mskstudio.ml.fuse.params:ShapParams",
    "train-det": "mskstudio.ml.detect.params:TrainDetParams",
    "detect": "mskstudio.ml.detect.params:DetectParams",
    "export-det": "mskstudio.ml.detect.params:ExportDetParams",
    "report": "mskstudio.ml.report.params:ReportParams",
    "operating-point": "mskstudio.ml.evaluate.params:OperatingPointParams",
    "reader-study-analyze": "mskstudio.ml.readers.params:ReaderAnalysisParams",
    "import-clinical": "mskstudio.io.params:ImportClinicalParams",
    "demo-archive": "mskstudio.io.params:DemoArchiveParams",
    "export-annotations": "mskstudio.io.params:ExportAnnotationsParams",
    "import-annotations": "mskstudio.io.params:ImportAnnotationsParams",
    "import-seg": "mskstudio.io.params:ImportSegParams",
    "export-labels": "mskstudio.io.params:ExportLabelsParams",
    "import-labels": "mskstudio.io.params:ImportLabelsParams",
    "share": "mskstudio.io.params:ShareParams",
}
# Kinds without one: ``import`` checks its ``importer.ImportOptions`` and reports each missing
# path beside the files that import (a folder of thousands of files is not refused for one),
# and ``demo-loop`` runs on the demo project it builds itself, with its own fixed settings.
UNCHECKED_KINDS = frozenset({"import", "demo-loop"})

# Kinds that train or run networks over many images: the GUI runs them in a subprocess
# (``mskstudio run-job``) so torch threads never starve its event loop. Kept beside
# JOB_KINDS so a new kind is classified where it is registered.
HEAVY_KINDS = frozenset({"cluster", "train", "predict", "pointing-game", "train-seg", "train-seg-box",
                         "prelabel", "embed", "eval-retrieval", "noise-queue", "export-onnx",
                         "demo-loop", "ablation", "shap",
                         "train-det", "detect", "export-det",
                         "share"})  # rewrites every stored DICOM file: holds the GIL for minutes


# How each kind continues after a kill (``mskstudio jobs P --resume JOB``, the app's Resume).
# These continue where they stopped: trainers at their next epoch (the same model run), the
# import at its next file, the per-image jobs after the images whose results they stored
# (``io.resume_marks``), "cluster now" after the images whose features it kept.
CONTINUES: frozenset[str] = frozenset({
    "import", "cluster", "train", "train-seg", "train-seg-box", "train-det", "predict", "explain",
    "embed", "prelabel", "detect", "export-onnx", "export-annotations"})
# The others start again from the beginning, for the reason given (the default: they take
# seconds, or write their result in one transaction or one file at the end).
RESTART_REASONS: dict[str, str] = {
    "export-det": "the detector's ONNX files and their parity check are written together at the end",
    "demo-loop": "each step of the loop is its own job inside it; the loop starts again",
    "eval-retrieval": "it scores the retrieval at the end (the embeddings it computed are cached and kept)",
    "noise-queue": "the queue is written at the end",
    "pointing-game": "it scores at the end (the Grad-CAM maps it computed are cached and kept)",
    "fuse": "fusion fits on the image run's stored scores in seconds",
    "ablation": "its fusion models fit on the image run's stored scores in seconds",
    "shap": "it explains a fusion model from stored scores; its result is written at the end",
}


def resume_plan(kind: str) -> tuple[bool, str]:
    """(continues where it stopped, one line saying how) for a resumed job of ``kind``."""
    if kind in CONTINUES:
        return True, f"{kind} continues where it stopped"
    reason = RESTART_REASONS.get(kind, "it takes seconds and stores its result at the end")
    return False, f"{kind} cannot continue where it stopped ({reason}): it starts again from the beginning"


class UserError(Exception):
    """A mistake the user can fix (bad path, bad parameter): shown as one line, no traceback."""


def job_function(kind: str) -> Callable[..., Any]:
    try:
        target = JOB_KINDS[kind]
    except KeyError:
        raise UserError(f"unknown job kind {kind!r}; known: {', '.join(sorted(JOB_KINDS))}") from None
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def params_class(kind: str) -> type | None:
    target = JOB_PARAMS.get(kind)
    if target is None:
        return None
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def check_params(project: Project, kind: str, params: dict[str, Any]) -> None:
    """Raise ValueError (one line, the job's own message) when ``params`` are impossible for
    job ``kind`` in this project; the CLI prints it without a traceback."""
    cls = params_class(kind)
    if cls is not None:
        cls.from_json(params).check(project)


class _StoreSink:
    """Mirrors progress and metrics into the jobs table, then forwards to an outer sink."""

    def __init__(self, project: Project, job_id: int, outer: JobSink | None):
        self.project, self.job_id, self.outer = project, job_id, outer

    def on_progress(self, fraction: float, message: str, eta_s: float | None) -> None:
        self.project.jobs.progress(self.job_id, fraction, message)
        if self.outer:
            self.outer.on_progress(fraction, message, eta_s)

    def on_metric(self, name: str, value: float, step: int) -> None:
        self.project.jobs.metric(self.job_id, name, value, step)
        if self.outer:
            self.outer.on_metric(name, value, step)

    def on_log(self, message: str) -> None:
        if self.outer:
            self.outer.on_log(message)


def run_job(project: Project, job_id: int, *, sink: JobSink | None = None,
            token: CancelToken | None = None) -> Any:
    """Run the job row ``job_id`` to completion, recording status, error and result.

    Re-raises what the job raised (after recording it) so the caller decides how to
    show it; ``Cancelled`` is recorded as status 'cancelled'.
    """
    job = project.jobs.record(job_id)
    if job is None:
        raise UserError(f"{project.root}: no job {job_id}")
    fn = job_function(job.kind)
    params = job.params
    ctx = JobContext(_StoreSink(project, job_id, sink), token, job_id=job_id)
    project.jobs.started(job_id)
    try:
        result = fn(project, params, ctx)
    except Cancelled:
        project.jobs.finish(job_id, "cancelled", message=ctx.last_message or None)
        raise
    except BaseException as exc:
        detail = "".join(traceback.format_exception(exc))
        problem = storage_failure(exc, output=_output_of(job.kind, params))
        if problem is None:
            project.jobs.finish(job_id, "error", error=f"{exc}\n\n{detail}", message=ctx.last_message or None)
            raise
        # A full or read-only disk: one line for the user, and the project left as it was
        # before the job's unfinished work (the error row itself may not fit on the disk).
        line = f"{job.kind} (job {job_id}) failed: {problem}"
        with suppress(Exception):
            project.jobs.finish(job_id, "error", error=f"{line}\n\n{detail}", message=ctx.last_message or None)
        with suppress(Exception):
            project.jobs.settle_after_failure()
        raise StoreError(line) from exc
    project.jobs.finish(job_id, "done", result=result, message=ctx.last_message or None)
    return result


def _output_of(kind: str, params: dict[str, Any]) -> str | None:
    """The file or folder an export-like job writes (named when a write error names none)."""
    if not kind.startswith(("export", "share", "report")):
        return None
    value = next((params.get(k) for k in ("path", "out", "outdir", "output") if params.get(k)), None)
    return str(value) if value else None


def submit_and_run(project: Project, kind: str, params: dict[str, Any], *,
                   sink: JobSink | None = None, token: CancelToken | None = None) -> Any:
    check_params(project, kind, params)  # a bad value: one line, and no job row written
    job_id = project.jobs.submit(kind, params)
    return run_job(project, job_id, sink=sink, token=token)


class TqdmSink:
    """Progress bar for the terminal (stderr), metrics printed as lines."""

    def __init__(self, label: str, *, echo_log: bool = True):
        from tqdm import tqdm

        self.echo_log = echo_log
        self.bar = tqdm(total=1000, desc=label, unit="‰", file=sys.stderr,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}",
                        disable=None)

    def on_progress(self, fraction: float, message: str, eta_s: float | None) -> None:
        self.bar.n = int(fraction * 1000)
        eta = f" ETA {eta_s:.0f}s" if eta_s is not None else ""
        self.bar.set_postfix_str(f"{message[:60]}{eta}", refresh=True)

    def on_metric(self, name: str, value: float, step: int) -> None:
        self.bar.write(f"  {name}[{step}] = {value:.4g}", file=sys.stderr)

    def on_log(self, message: str) -> None:
        if self.echo_log:
            self.bar.write(f"  {message}", file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


@contextmanager
def ctrl_c_cancels(token: CancelToken):
    """The first Ctrl-C asks the job to stop at its next check; a second one kills."""
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        if token.cancelled:
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        token.cancel()
        print("\ncancelling… (Ctrl-C again to abort at once)", file=sys.stderr)

    try:
        signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_sync(project: Project, kind: str, params: dict[str, Any], *, label: str | None = None,
             quiet: bool = False, echo_log: bool = True) -> Any:
    """Submit and run a job in this process with a progress bar and Ctrl-C as cancel.

    ``echo_log=False``: the job's log lines are not printed (the caller prints the result's
    own list, e.g. an import's skipped files, which were otherwise printed twice)."""
    check_params(project, kind, params)  # a bad value: one line, and no job row written
    return run_existing(project, project.jobs.submit(kind, params), label=label or kind, quiet=quiet,
                        echo_log=echo_log)


def run_existing(project: Project, job_id: int, *, label: str, quiet: bool = False,
                 echo_log: bool = True) -> Any:
    """Run a submitted job row in this process with a progress bar and Ctrl-C as cancel."""
    token = CancelToken()
    sink = None if quiet else TqdmSink(label, echo_log=echo_log)
    try:
        with ctrl_c_cancels(token):
            return run_job(project, job_id, sink=sink, token=token)
    finally:
        if sink:
            sink.close()
