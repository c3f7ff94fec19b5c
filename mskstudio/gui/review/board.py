"""Case review board: go through a classifier's cases, accept or correct with one key.

Constructed as ``ReviewBoard(main_window)``; uses ``window.project``, ``window.runner``
(Grad-CAM maps are computed by the light-lane job ``explain``, never on the GUI
thread; a cached map shows at once), ``window.undo_stack`` and
``window.open_image``.  The queue logic lives in ``review_queue`` (Qt-free).

Keys (while the board has focus): Enter or A accepts the prediction, 1–9 label the
case with that class of the run (a human label through ``SetLabelCommand``, audited
by the store, undoable), Right / ] / PgDown next case, Left / [ / PgUp previous.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSlider,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from mskstudio.gui.commands import SetLabelCommand
from mskstudio.gui.fuse.shap_panel import ShapPanel
from mskstudio.gui.review import review_queue as rq
from mskstudio.gui.review.case_panels import CMAPS, ProbabilityBars, heat_rgba
from mskstudio.gui.viewer.viewer import Viewer
from mskstudio.gui.widgets.board_keys import ENTER_KEYS, BoardKeys
from mskstudio.gui.widgets.scrolling_dock import VerticalScroll
from mskstudio.gui.widgets.workspace import follow_window
from mskstudio.ml.explain.gradcam import DEFAULT_SCALES, SINGLE_SCALE

if TYPE_CHECKING:
    from mskstudio.gui.window_contract import ViewWindow

OVERLAY = "gradcam"


class ReviewBoard(BoardKeys, QWidget):
    ACCEPT_KEYS = ENTER_KEYS | {Qt.Key.Key_A}
    KEYS_HELP = [("1–9", "Label the case with that class (human label)"),
                 ("A, Enter", "Accept the prediction as the label"),
                 ("Right, ], Page Down / Left, [, Page Up", "Next / previous case")]

    def __init__(self, window, parent=None):
        super().__init__(parent)
        self.window_: ViewWindow = window
        self.data: rq.RunCases | None = None
        self.queue: list[rq.Case] = []
        self.index = -1
        self.heat: np.ndarray | None = None
        self.pending: dict[int, tuple[int, int, tuple]] = {}   # job id -> (run id, image id, scales)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)

        # ---- top bar --------------------------------------------------------------------
        self.run_combo = QComboBox()
        # Long run names must not set the tab's minimum width: with the Cases and Case docks
        # open the Review tab gets ~600 px, and a wide top bar squeezed the image to a sliver.
        self.run_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.run_combo.setMinimumContentsLength(16)
        self.run_combo.currentIndexChanged.connect(lambda _i: self.load_run())
        self.order = QComboBox()
        for text, key in rq.MODES:
            self.order.addItem(text, key)
        self.order.currentIndexChanged.connect(lambda _i: self.rebuild_queue())
        self.class_filter = QComboBox()
        self.class_filter.currentIndexChanged.connect(lambda _i: self._class_filter_changed())
        self.reload_btn = QPushButton("Reload")
        self.reload_btn.clicked.connect(self.reload)
        self.predict_btn = QPushButton("Predict all")
        self.predict_btn.setToolTip("Run the model on every image (job 'predict') "
                                    "to review beyond the hold-out")
        self.predict_btn.clicked.connect(self.predict_all)
        top = QHBoxLayout()          # two rows: the run and its actions, then the queue's options
        top.addWidget(QLabel("Model run"))
        top.addWidget(self.run_combo, 1)
        top.addWidget(self.reload_btn)
        top.addWidget(self.predict_btn)
        queue_bar = QHBoxLayout()
        for w in (QLabel("Order"), self.order, self.class_filter):
            queue_bar.addWidget(w)
        self.follow = QCheckBox("Case panel follows")
        self.follow.setChecked(True)
        self.follow.setToolTip("Show each reviewed case in the main window too (Case panel, browser)")
        queue_bar.addWidget(self.follow)
        queue_bar.addStretch(1)
        self.progress = QLabel()
        queue_bar.addWidget(self.progress)

        # ---- queue | viewer | case panel ----------------------------------------------------
        self.list = QListWidget()
        self.list.currentRowChanged.connect(self._row_changed)
        self.viewer = Viewer()
        self.viewer.image_loaded.connect(lambda _i: self._show_heat())

        side = QWidget()
        sl = QVBoxLayout(side)
        self.title = QLabel("No case")
        self.title.setStyleSheet("font-size: 15px; font-weight: bold;")
        self.pred_label = QLabel()
        self.pred_label.setWordWrap(True)
        sl.addWidget(self.title)
        sl.addWidget(self.pred_label)
        self.probs = ProbabilityBars()
        sl.addWidget(self.probs)
        label_box = QGroupBox("Labels with provenance")
        lb = QVBoxLayout(label_box)
        self.labels_text = QLabel()
        self.labels_text.setWordWrap(True)
        self.labels_text.setTextFormat(Qt.TextFormat.RichText)
        lb.addWidget(self.labels_text)
        sl.addWidget(label_box)
        heat_box = QGroupBox("Grad-CAM")
        hf = QFormLayout(heat_box)
        self.show_heat = QCheckBox("Show heat map")
        self.show_heat.setChecked(True)
        self.show_heat.toggled.connect(lambda _c: self._show_heat())
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(55)
        self.opacity.valueChanged.connect(self._opacity_changed)
        self.cmap = QComboBox()
        self.cmap.addItems(list(CMAPS))
        self.cmap.currentTextChanged.connect(lambda _t: self._show_heat())
        scales = " + ".join(f"{s:g}×" for s in DEFAULT_SCALES)
        self.multi_scale = QCheckBox(f"Multi-scale ({scales} input)")
        cost = sum(s * s for s in DEFAULT_SCALES)  # pixels, relative to one map at the trained size
        self.multi_scale.setToolTip("Average the Grad-CAMs computed at these input sizes: finer and better "
                                    f"placed on small lesions, about {cost:.0f} times the cost of one map")
        self.multi_scale.setChecked(True)
        self.multi_scale.toggled.connect(lambda _c: self.case is not None and self._request_heat(self.case))
        self.cam_status = QLabel()
        self.cam_status.setWordWrap(True)
        hf.addRow(self.show_heat)
        hf.addRow(self.multi_scale)
        hf.addRow("Opacity", self.opacity)
        hf.addRow("Colormap", self.cmap)
        hf.addRow(self.cam_status)
        sl.addWidget(heat_box)
        self.shap_panel = ShapPanel(self, sl)  # the clinical part of a fusion run, per case
        buttons = QGridLayout()
        self.prev_btn = QPushButton("◀ Previous")
        self.prev_btn.clicked.connect(lambda: self.step(-1))
        self.next_btn = QPushButton("Next ▶")
        self.next_btn.clicked.connect(lambda: self.step(1))
        self.accept_btn = QPushButton("Accept prediction (Enter / A)")
        self.accept_btn.clicked.connect(self.accept_prediction)
        self.open_btn = QPushButton("Open in Viewer")
        self.open_btn.clicked.connect(self.open_in_viewer)
        buttons.addWidget(self.prev_btn, 0, 0)
        buttons.addWidget(self.next_btn, 0, 1)
        buttons.addWidget(self.accept_btn, 1, 0, 1, 2)
        buttons.addWidget(self.open_btn, 2, 0, 1, 2)
        sl.addLayout(buttons)
        self.message = QLabel()
        self.message.setWordWrap(True)
        sl.addWidget(self.message)
        sl.addStretch(1)

        split = QSplitter()
        split.addWidget(self.list)
        split.addWidget(self.viewer)
        # The case column scrolls when the window is short (1366×768 with the Jobs dock cut the
        # Grad-CAM controls to a few pixels): as narrow as it allows, never narrower.
        side_scroll = VerticalScroll()
        side_scroll.setWidget(side)
        split.addWidget(side_scroll)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        split.setStretchFactor(2, 0)
        self.list.setMinimumWidth(180)   # "#1234  no lesion 0.52  [lesion]" fits
        split.setSizes([220, 760, 340])
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(queue_bar)
        layout.addWidget(split, 1)
        self.install_key_filter()

        follow_window(window, self.reload, on_returned=self._job_returned, on_errored=self._job_errored)

    # ---- keys (BoardKeys) ---------------------------------------------------------------
    def accept_current(self) -> None:
        self.accept_prediction()

    def digit_allowed(self, n: int) -> bool:
        return self.data is not None and n <= len(self.data.classes)

    # ---- runs and the queue ----------------------------------------------------------------
    @property
    def project(self):
        return self.window_.project

    @property
    def run_id(self) -> int | None:
        return self.run_combo.currentData()

    def reload(self) -> None:
        """Re-read the project's classifier runs (keeping the chosen one when it still exists)."""
        keep = self.run_id
        project = self.project
        self.viewer.set_project(project)
        self.run_combo.blockSignals(True)
        self.run_combo.clear()
        if project is not None:
            for run in rq.classifier_runs(project):
                self.run_combo.addItem(rq.run_label(run), run["id"])
        if keep is not None and self.run_combo.findData(keep) >= 0:
            self.run_combo.setCurrentIndex(self.run_combo.findData(keep))
        self.run_combo.blockSignals(False)
        self.load_run()

    def set_run(self, run_id: int) -> None:
        i = self.run_combo.findData(run_id)
        if i < 0:
            self.reload()
            i = self.run_combo.findData(run_id)
        if i >= 0:
            self.run_combo.setCurrentIndex(i)

    def load_run(self) -> None:
        self.data = None
        run_id, project = self.run_id, self.project
        if project is not None and run_id is not None:
            self.data = rq.load_cases(project, run_id)
        self.class_filter.blockSignals(True)
        self.class_filter.clear()
        for c in self.data.classes if self.data else []:
            self.class_filter.addItem(c.name, c.id)
        self.class_filter.blockSignals(False)
        self.rebuild_queue()

    def _class_filter_changed(self) -> None:
        if self.order.currentData() == "class":
            self.rebuild_queue()

    def rebuild_queue(self) -> None:
        mode = self.order.currentData()
        self.class_filter.setVisible(mode == "class")
        self.queue = rq.order_cases(self.data.cases, mode, class_id=self.class_filter.currentData()) \
            if self.data else []
        self.list.blockSignals(True)
        self.list.clear()
        for case in self.queue:
            self.list.addItem(QListWidgetItem(self._item_text(case)))
        self.list.blockSignals(False)
        self.index = -1
        if self.queue:
            self.go_to(0)
        else:
            self._show_empty()
        self._update_progress()

    def _item_text(self, case: rq.Case) -> str:
        name = self.data.class_name
        mark = "✗" if case.is_error else ("✓" if case.source == "human" else " ")
        return f"{mark} #{case.image_id}  {name(case.pred)} {case.confidence:.2f}  [{name(case.label)}]"

    def _update_progress(self) -> None:
        if not self.data:
            self.progress.setText("No finished classifier run" if self.project is not None else "")
            return
        human = sum(1 for c in self.queue if c.source == "human")
        errors = sum(1 for c in self.data.cases if c.is_error)
        pos = f"{self.index + 1}/{len(self.queue)}" if self.queue else "0/0"
        self.progress.setText(f"case {pos} · {human} reviewed by a human · {errors} disagreements "
                              f"of {len(self.data.cases)} predicted")

    # ---- one case ---------------------------------------------------------------------------
    @property
    def case(self) -> rq.Case | None:
        return self.queue[self.index] if 0 <= self.index < len(self.queue) else None

    def step(self, delta: int) -> None:
        if self.queue:
            self.go_to(max(0, min(len(self.queue) - 1, self.index + delta)))

    def go_to(self, index: int) -> None:
        if not (0 <= index < len(self.queue)):
            return
        self.index = index
        self.list.blockSignals(True)
        self.list.setCurrentRow(index)
        self.list.blockSignals(False)
        self._show_case()

    def _row_changed(self, row: int) -> None:
        if row != self.index and row >= 0:
            self.go_to(row)

    def _show_empty(self) -> None:
        self.heat = None
        self.viewer.clear()
        self.title.setText("No case" if self.data is None else "The queue is empty")
        hint = "Train a classifier (Model › Train classifier…), then come back." if self.data is None else ""
        self.pred_label.setText(hint)
        self.labels_text.setText("")
        self.cam_status.setText("")
        self._set_bars(None)

    def _show_case(self) -> None:
        case, data = self.case, self.data
        if case is None or data is None:
            self._show_empty()
            return
        origin = "hold-out case" if case.origin == "holdout" else "prediction"
        self.title.setText(f"Image #{case.image_id}  ({self.index + 1}/{len(self.queue)})")
        verdict = ""
        if case.label is not None:
            verdict = (" — <b style='color:#ff6b6b'>disagrees with the label</b>" if case.is_error
                       else " — <span style='color:#7bd88f'>agrees with the label</span>")
        rej = " <b>(rejected: out of distribution)</b>" if case.rejected else ""
        self.pred_label.setText(f"{origin}: <b>{data.class_name(case.pred)}</b> "
                                f"p = {case.confidence:.3f}{rej}{verdict}")
        self._set_bars(case)
        self._show_labels(case)
        self.viewer.open_image(case.image_id)
        # Only while the board is on screen: a run finishing in the background must not move
        # the main viewer to another patient under the user's eyes.
        if self.follow.isChecked() and self.isVisible() and hasattr(self.window_, "open_image"):
            self.window_.open_image(case.image_id)   # case panel and browser follow the review
        self.heat = None
        self._request_heat(case)
        self._update_progress()

    def _set_bars(self, case: rq.Case | None) -> None:
        self.probs.show_case(self.data.classes if self.data else [], case)

    def _show_labels(self, case: rq.Case) -> None:
        ls = self.data.label_set_id
        rows = [r for r in self.project.labels.labels_of(case.image_id) if r.label_set_id == ls]
        lines = []
        for k, r in enumerate(rows):
            effective = r.source == case.source and r.class_id == case.label
            eff = " <b>(effective)</b>" if effective else ""
            who = r.author or "?"
            when = (r.created_at or "")[:16].replace("T", " ")
            conf = f", p={r.confidence:.2f}" if r.confidence is not None else ""
            lines.append(f"{'▶ ' if k == 0 else ''}<b>{r.class_name}</b> — {r.source}{conf} "
                         f"by {who}, {when}{eff}")
        self.labels_text.setText("<br>".join(lines) or "<i>no label in this label set</i>")

    # ---- Grad-CAM ---------------------------------------------------------------------------
    @property
    def cam_scales(self) -> tuple[float, ...]:
        return DEFAULT_SCALES if self.multi_scale.isChecked() else SINGLE_SCALE

    def _request_heat(self, case: rq.Case) -> None:
        run_id, scales = self.data.run_id, self.cam_scales
        heat = rq.cached_cam(self.project, run_id, case.image_id, scales)
        if heat is not None:
            self.heat = heat
            self.cam_status.setText("Grad-CAM of the predicted class (cached)")
            self._show_heat()
            return
        self.heat = None
        self._show_heat()
        if (run_id, case.image_id, scales) in self.pending.values():
            self.cam_status.setText("computing Grad-CAM…")
            return
        try:
            job_id = self.window_.runner.submit("explain", {"model_run_id": run_id, "image_ids": [case.image_id],
                                               "scales": list(scales)})
        except Exception as exc:  # noqa: BLE001 - shown, never swallowed
            self.cam_status.setText(f"cannot compute Grad-CAM: {exc}")
            return
        self.pending[job_id] = (run_id, case.image_id, scales)
        self.cam_status.setText("computing Grad-CAM…")

    def _job_returned(self, job_id: int, _result) -> None:
        target = self.pending.pop(job_id, None)
        if target is None:
            h = self.window_.runner.handle(job_id)
            if h is not None and h.kind in ("train", "predict"):
                self.reload()
            return
        case = self.case
        current = (self.data.run_id, case.image_id, self.cam_scales) if case and self.data else None
        if current == target:
            self.heat = rq.cached_cam(self.project, *target)
            self.cam_status.setText("Grad-CAM of the predicted class")
            self._show_heat()

    def _job_errored(self, job_id: int, message: str, _details: str) -> None:
        if self.pending.pop(job_id, None) is not None:
            self.cam_status.setText(f"Grad-CAM failed: {message}")

    def _show_heat(self) -> None:
        if self.heat is None or not self.show_heat.isChecked() or self.viewer.row is None:
            self.viewer.set_overlay(OVERLAY, None)
            return
        self.viewer.set_overlay(OVERLAY, heat_rgba(self.heat, self.cmap.currentText()),
                                self.opacity.value() / 100)

    def _opacity_changed(self, value: int) -> None:
        if OVERLAY in self.viewer.overlays:
            self.viewer.set_overlay_opacity(OVERLAY, value / 100)

    # ---- labelling ------------------------------------------------------------------------
    def accept_prediction(self) -> None:
        case = self.case
        if case is not None:
            self.set_label(case.pred)

    def label_with_number(self, n: int) -> None:
        if self.data is not None and 1 <= n <= len(self.data.classes):
            self.set_label(self.data.classes[n - 1].id)

    def set_label(self, class_id: int) -> None:
        """Human label for the current case (undoable), then the next case."""
        case, data = self.case, self.data
        if case is None or data is None or data.label_set_id is None:
            return
        if self.project.readonly:
            self.message.setText("The project is read-only.")
            return
        cmd = SetLabelCommand(self.project, [case.image_id], data.label_set_id, class_id,
                              on_change=self._labels_changed)
        cmd.setText(f"Review: #{case.image_id} → {data.class_name(class_id)}")
        self.window_.undo_stack.push(cmd)
        verb = "accepted" if class_id == case.pred else "corrected to"
        self.message.setText(f"#{case.image_id} {verb} {data.class_name(class_id)} (Ctrl+Z undoes)")
        if self.index < len(self.queue) - 1:
            self.go_to(self.index + 1)

    def _labels_changed(self) -> None:
        if self.data is None:
            return
        rq.refresh_labels(self.project, self.data)
        for k, case in enumerate(self.queue):
            item = self.list.item(k)
            if item is not None:
                item.setText(self._item_text(case))
        if self.case is not None:
            self._show_labels(self.case)
        self._update_progress()
        self.window_.store_edited()

    # ---- elsewhere ---------------------------------------------------------------------------
    def open_in_viewer(self) -> None:
        case = self.case
        if case is None:
            return
        w = self.window_
        w.open_image(case.image_id)
        if self.heat is not None and self.show_heat.isChecked():
            w.viewer.set_overlay(OVERLAY, heat_rgba(self.heat, self.cmap.currentText()),
                                 self.opacity.value() / 100)
        w.show_in_viewer()

    def predict_all(self) -> None:
        if self.project is not None and self.run_id is not None:
            self.window_.runner.submit("predict", {"model_run_id": self.run_id})
            self.message.setText("Predicting every image (see the Jobs panel); the queue reloads when done.")

    def showEvent(self, ev) -> None:
        super().showEvent(ev)
        self.setFocus()
