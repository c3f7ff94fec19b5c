"""The "Model" menu: train, predict, explain, evaluate (opens the Dashboard), pointing game, study report; segment,
pre-label, export to ONNX and export annotations.

``add_model_menu(main_window)`` adds the menu to ``main_window.menuBar()`` and its
actions to ``main_window.actions_by_name`` (``train``, ``predict``, ``explain``,
``evaluate``, ``review``); returns the menu.
"""

from __future__ import annotations

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QFileDialog, QInputDialog, QMenu

from mskstudio.gui.review import review_queue as rq


def _workspace(window, title: str):
    tabs = getattr(window, "workspace", None)
    if tabs is None:
        return None
    for i in range(tabs.count()):
        if tabs.tabText(i) == title:
            tabs.setCurrentIndex(i)
            return tabs.widget(i)
    return None


def choose_run(window, title: str, *, fusion: bool = False) -> int | None:
    """Ask for a finished classifier run, or with ``fusion`` also a fusion run (image + clinical
    data); None when there is none or the user cancels."""
    if not window._need_project():
        return None
    runs = rq.classifier_runs(window.project)
    if fusion:
        from mskstudio.gui.fuse.clinical_section import fusion_runs

        runs += fusion_runs(window.project)
    if not runs:
        window.show_error("No classifier run", "Train a classifier first (Model › Train classifier…).")
        return None
    labels = [rq.run_label(r) for r in runs]
    choice, ok = QInputDialog.getItem(window, title, "Classifier run", labels, 0, False)
    return runs[labels.index(choice)]["id"] if ok else None


def open_train_dialog(window):
    if not window._need_project():
        return None
    from mskstudio.gui.dialogs.train_dialog import TrainDialog

    d = TrainDialog(window)
    window.dialogs.append(d)
    d.show()
    return d


def open_fuse_dialog(window):
    from mskstudio.gui.fuse.fuse_dialog import open_fuse_dialog as _open

    return _open(window)


def predict(window, run_id: int | None = None) -> int | None:
    run_id = run_id if run_id is not None else choose_run(window, "Predict", fusion=True)
    if run_id is None:
        return None
    return window.runner.submit("predict", {"model_run_id": run_id})


def explain_current(window, run_id: int | None = None) -> int | None:
    """Grad-CAM of the image shown in the Viewer (cached for the Review board)."""
    if window.image_id is None:
        window.show_error("No image", "Open an image first; its Grad-CAM heat map is computed "
                          "in the background.")
        return None
    run_id = run_id if run_id is not None else choose_run(window, "Explain")
    if run_id is None:
        return None
    return window.runner.submit("explain", {"model_run_id": run_id, "image_ids": [window.image_id]})


def pointing_game(window, run_id: int | None = None) -> int | None:
    """Score where the run's Grad-CAM peaks on its held-out lesion images (shown in the Dashboard)."""
    run_id = run_id if run_id is not None else choose_run(window, "Pointing game")
    if run_id is None:
        return None
    return window.runner.submit("pointing-game", {"model_run_id": run_id})


def study_report(window, out: str | None = None, runs: str | None = None) -> int | None:
    """Ask a folder (and which runs), write the study report there as a job (Model › Study report…)."""
    from pathlib import Path

    from mskstudio.ml.report.params import ReportParams, eligible_runs

    if not window._need_project():
        return None
    available = eligible_runs(window.project)
    if not available:
        window.show_error("No results", "No model run has hold-out results yet: train a model first.")
        return None
    if runs is None:
        runs, ok = QInputDialog.getText(window, "Study report", "Model runs (comma-separated ids)",
                                        text=",".join(map(str, available)))
        if not ok:
            return None
    if out is None:
        folder = QFileDialog.getExistingDirectory(window, "Write the study report into")
        if not folder:
            return None
        out = str(Path(folder) / f"{window.project.name} report")
    params = {"out": out, "model_run_ids": runs or None}
    problems = ReportParams.from_json(params).problems(window.project)  # the CLI's and the job's checks
    if problems:
        window.show_error("Study report", "\n".join(problems))
        return None
    job_id = window.runner.submit("report", params)

    def done(jid: int, result) -> None:
        if jid == job_id and isinstance(result, dict):
            window.runner.job_returned.disconnect(done)
            bar = window.statusBar() if hasattr(window, "statusBar") else None
            if bar is not None:
                bar.showMessage(f"Study report written: {result.get('html')}", 15000)

    window.runner.job_returned.connect(done)
    return job_id


def evaluate(window) -> None:
    board = _workspace(window, "Dashboard")
    if board is None:
        window.show_error("No dashboard", "The Dashboard workspace is not loaded.")
    elif hasattr(board, "reload"):
        board.reload()


def review(window) -> None:
    board = _workspace(window, "Review")
    if board is None:
        window.show_error("No review board", "The Review workspace is not loaded.")


SEG_ARCHS = ("unet-resnet34", "unetpp-resnet34", "unet-resnet18", "unetpp-resnet18")


def _project_with_masks(window) -> bool:
    """A project is open and has lesion masks to learn from (else the user is told)."""
    if not window._need_project():
        return False
    if not window.project.annotations.all_masks():
        window.show_error("No masks", "Draw lesion masks first (Annotate dock) or import them.")
        return False
    return True


def train_segmenter(window) -> int | None:
    """Ask architecture, input size and epochs; train on the project's masks in the background."""
    if not _project_with_masks(window):
        return None
    arch, ok = QInputDialog.getItem(window, "Train segmenter", "Architecture", SEG_ARCHS, 0, False)
    if not ok:
        return None
    size, ok = QInputDialog.getInt(window, "Train segmenter", "Input size (px)", 256, 64, 1024, 32)
    if not ok:
        return None
    epochs, ok = QInputDialog.getInt(window, "Train segmenter", "Epochs", 30, 1, 1000)
    if not ok:
        return None
    return window.runner.submit("train-seg", {"arch": arch, "size": size, "epochs": epochs})


def train_box_segmenter(window) -> int | None:
    """The box-prompted segmenter behind "Fill boxes with model" (Annotate dock)."""
    from mskstudio.ml.segment.roi_seg import DEFAULTS

    if not _project_with_masks(window):
        return None
    epochs, ok = QInputDialog.getInt(window, "Train box segmenter", "Epochs", DEFAULTS["epochs"], 1, 1000)
    return window.runner.submit("train-seg-box", {"epochs": epochs}) if ok else None


def _choose_model_run(window, kinds: tuple[str, ...], title: str) -> int | None:
    if not window._need_project():
        return None
    runs = [r for k in kinds for r in window.project.models.list(k)
            if r["status"] == "done" and r["checkpoint_sha"]]
    if not runs:
        window.show_error("No model", f"No finished {' or '.join(kinds)} run in this project yet.")
        return None
    labels = [f"#{r['id']} {r['kind']} {r['arch']} — {r['name']}" for r in runs]
    choice, ok = QInputDialog.getItem(window, title, "Model run", labels, 0, False)
    return runs[labels.index(choice)]["id"] if ok else None


def prelabel(window) -> int | None:
    """Model masks for every image without a human mask; surgeons then edit and accept them."""
    run_id = _choose_model_run(window, ("segmenter",), "Pre-label unlabelled images")
    return None if run_id is None else window.runner.submit("prelabel", {"model_run_id": run_id})


def export_onnx(window) -> int | None:
    run_id = _choose_model_run(window, ("classifier", "segmenter", "deepcluster"), "Export to ONNX")
    if run_id is None:
        return None
    outdir = QFileDialog.getExistingDirectory(window, "Export ONNX model and model card to")
    return window.runner.submit("export-onnx", {"model_run_id": run_id, "outdir": outdir}) if outdir else None


def export_annotations(window) -> int | None:
    if not window._need_project():
        return None
    outdir = QFileDialog.getExistingDirectory(
        window, "Export masks (PNG, DICOM SEG), boxes (COCO), measurements (DICOM SR) and labels to")
    return window.runner.submit("export-annotations", {"outdir": outdir}) if outdir else None


def add_model_menu(window) -> QMenu:
    menu = window.menuBar().addMenu("&Model")
    actions = getattr(window, "actions_by_name", None)
    if actions is None:
        actions = window.actions_by_name = {}
    for name, text, slot, key in (
            ("train", "&Train classifier…", lambda: open_train_dialog(window), "Ctrl+T"),
            ("predict", "&Predict…", lambda: predict(window), None),
            ("explain", "&Explain current image…", lambda: explain_current(window), None),
            ("fuse", "&Fuse clinical data…", lambda: open_fuse_dialog(window), None),
            (None, None, None, None),
            ("review", "&Review cases", lambda: review(window), None),
            ("evaluate", "E&valuate (Dashboard)", lambda: evaluate(window), None),
            ("pointing_game", "Pointing &game (Grad-CAM vs lesion masks)…", lambda: pointing_game(window), None),
            ("study_report", "Study &report…", lambda: study_report(window), None),
            (None, None, None, None),
            ("train_seg", "Train &segmenter…", lambda: train_segmenter(window), None),
            ("train_seg_box", "Train &box segmenter…", lambda: train_box_segmenter(window), None),
            ("prelabel", "Pre-&label unlabelled images…", lambda: prelabel(window), None),
            (None, None, None, None),
            ("export_onnx", "Export to &ONNX…", lambda: export_onnx(window), None),
            ("export_annotations", "Export &annotations…", lambda: export_annotations(window), None)):
        if name is None:
            menu.addSeparator()
            continue
        a = QAction(text, window)
        if key:
            a.setShortcut(key)
        a.triggered.connect(lambda _checked=False, s=slot: s())
        menu.addAction(a)
        actions[name] = a
    return menu
