"""Label-noise board: images whose cluster label the kNN vote / classifier dispute.

Constructed as ``NoiseBoard(main_window)``; uses ``window.project``, ``window.runner``
(the queue is the job ``noise-queue``, never computed on the GUI thread; its result
carries the ranked items), ``window.undo_stack`` and ``window.open_image``.  The
Qt-free part (choices, display rows, key → class) lives in ``noise_rows``.

Keys (while the board has focus): 1–9 label the current image with that class of the
set, Enter keeps the cluster label (confirmed as a human label), Right / Left next /
previous.  Each fix is a ``NoiseReviewCommand`` (``noise_commands``: ``SetLabelCommand``
+ a ``noise.review`` audit entry) on the window's undo stack, then the board advances.
Double-click (or "Open in Viewer") shows the image in the main viewer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QIcon, QPainter, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from mskstudio.gui.noise import rows as nr
from mskstudio.gui.noise.commands import NoiseReviewCommand
from mskstudio.gui.widgets.board_keys import BoardKeys
from mskstudio.gui.widgets.workspace import follow_window

if TYPE_CHECKING:
    from mskstudio.gui.window_contract import ViewWindow

THUMB = 64


def _square(pix: QPixmap) -> QPixmap:
    """The thumbnail centred on a THUMB×THUMB transparent square (list rows line up)."""
    scaled = pix.scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio,
                        Qt.TransformationMode.SmoothTransformation)
    out = QPixmap(THUMB, THUMB)
    out.fill(Qt.GlobalColor.transparent)
    painter = QPainter(out)
    painter.drawPixmap((THUMB - scaled.width()) // 2, (THUMB - scaled.height()) // 2, scaled)
    painter.end()
    return out


class NoiseBoard(BoardKeys, QWidget):
    KEYS_HELP = [("1–9", "Relabel the image with that class"), ("Enter", "Keep the given label (as human)"),
                 ("Right, ], Page Down / Left, [, Page Up", "Next / previous image")]
    def __init__(self, window, parent=None):
        super().__init__(parent)
        self.window_: ViewWindow = window
        self.rows: list[nr.NoiseRow] = []
        self.classes: list[nr.ClassInfo] = []
        self.index = -1
        self.job_id: int | None = None
        self.queue_params: dict | None = None
        self.thumbs: dict[int, QPixmap] = {}
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)

        self.set_combo = QComboBox()
        self.set_combo.currentIndexChanged.connect(lambda _i: self._set_changed())
        self.cluster_combo = QComboBox()
        self.clf_combo = QComboBox()
        self.k_spin = QSpinBox(minimum=1, maximum=50, value=10)
        self.compute_btn = QPushButton("Compute queue")
        self.compute_btn.clicked.connect(self.compute)
        self.status = QLabel()
        # Two rows, sources then the queue: with the Cases and Case docks open the tab is
        # about 600 px wide, and one row cut the button's text and the run names.
        sources, queue = QHBoxLayout(), QHBoxLayout()
        for w in (QLabel("Label set"), self.set_combo, QLabel("Cluster run"), self.cluster_combo,
                  QLabel("Classifier"), self.clf_combo):
            sources.addWidget(w, 1 if isinstance(w, QComboBox) else 0)
        for w in (QLabel("k"), self.k_spin, self.compute_btn):
            queue.addWidget(w)
        self.status.setWordWrap(True)
        queue.addWidget(self.status, 1)
        top = QVBoxLayout()
        top.addLayout(sources)
        top.addLayout(queue)

        self.list = QListWidget()
        self.list.setIconSize(QSize(THUMB, THUMB))
        self.list.setUniformItemSizes(True)
        self.list.currentRowChanged.connect(self._row_changed)
        self.list.itemDoubleClicked.connect(lambda _it: self.open_in_viewer())

        side = QWidget()
        sl = QVBoxLayout(side)
        self.title = QLabel("No queue")
        self.title.setStyleSheet("font-size: 15px; font-weight: bold;")
        self.picture = QLabel(alignment=Qt.AlignmentFlag.AlignCenter)
        self.picture.setMinimumSize(256, 256)
        self.details = QLabel(wordWrap=True, textFormat=Qt.TextFormat.RichText)
        self.legend = QLabel(wordWrap=True)
        for w in (self.title, self.picture, self.details, self.legend):
            sl.addWidget(w)
        buttons = QGridLayout()
        for attr, text, slot, pos in (("prev_btn", "◀ Previous", lambda: self.step(-1), (0, 0, 1, 1)),
                                      ("next_btn", "Next ▶", lambda: self.step(1), (0, 1, 1, 1)),
                                      ("keep_btn", "Keep cluster label (Enter)", self.keep_given, (1, 0, 1, 2)),
                                      ("open_btn", "Open in Viewer", self.open_in_viewer, (2, 0, 1, 2))):
            btn = QPushButton(text)
            btn.clicked.connect(slot)
            setattr(self, attr, btn)
            buttons.addWidget(btn, *pos)
        sl.addLayout(buttons)
        self.message = QLabel(wordWrap=True)
        sl.addWidget(self.message)
        sl.addStretch(1)

        split = QSplitter()
        split.addWidget(self.list)
        split.addWidget(side)
        split.setStretchFactor(0, 1)
        split.setSizes([700, 380])
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(split, 1)
        self.install_key_filter()

        follow_window(window, self.reload, on_returned=self._job_returned, on_errored=self._job_errored)

    # ---- keys (BoardKeys): Enter keeps the cluster label ------------------------------------
    def accept_current(self) -> None:
        self.keep_given()

    def digit_allowed(self, n: int) -> bool:
        return nr.key_class(self.classes, n) is not None

    # ---- choices ------------------------------------------------------------------------
    @property
    def project(self):
        return self.window_.project

    @property
    def label_set(self) -> str | None:
        return self.set_combo.currentText() or None

    def reload(self) -> None:
        """Re-read the label sets and runs (a new project, or new runs)."""
        keep, project = self.label_set, self.project
        self.thumbs.clear()
        self.set_combo.blockSignals(True)
        self.set_combo.clear()
        if project is not None:
            self.set_combo.addItems(nr.label_sets(project))
        if keep and self.set_combo.findText(keep) >= 0:
            self.set_combo.setCurrentIndex(self.set_combo.findText(keep))
        self.set_combo.blockSignals(False)
        self._set_changed()

    def _set_changed(self) -> None:
        project, name = self.project, self.label_set
        for combo, options in ((self.cluster_combo, nr.cluster_runs), (self.clf_combo, nr.classifier_runs)):
            keep = combo.currentData()
            combo.clear()
            for value, text in options(project, name) if project is not None and name else []:
                combo.addItem(text, value)
            if keep is not None and combo.findData(keep) >= 0:
                combo.setCurrentIndex(combo.findData(keep))
        if self.clf_combo.count() > 1 and self.clf_combo.currentData() is None:
            self.clf_combo.setCurrentIndex(1)     # newest classifier with predictions
        self.classes = nr.classes(project, name) if project is not None and name else []
        self.legend.setText(f"Keys: {nr.key_legend(self.classes)}   ·   Enter keep   ·   ←/→ move"
                            if self.classes else "")
        self.compute_btn.setEnabled(bool(name))
        self.set_rows([], None)
        self.status.setText("" if name else ("No image label set" if project is not None else ""))

    # ---- the queue (a job) ------------------------------------------------------------------
    def compute(self) -> int | None:
        if self.project is None or not self.label_set:
            return None
        self.queue_params = nr.queue_params(
            self.label_set, cluster_run_id=self.cluster_combo.currentData(),
            classifier_run_id=self.clf_combo.currentData(), k=self.k_spin.value())
        self.job_id = self.window_.runner.submit("noise-queue", self.queue_params)
        self.compute_btn.setEnabled(False)
        self.status.setText(f"Computing the queue (job {self.job_id})…")
        return self.job_id

    def _job_returned(self, job_id: int, result) -> None:
        if job_id != self.job_id:
            return
        self.job_id = None
        self.compute_btn.setEnabled(True)
        rows = nr.rows_from_result(result)
        if self.project is not None:
            nr.add_classifier_confidence(self.project, rows, self.queue_params.get("classifier_run_id"))
        self.set_rows(rows, (result or {}).get("n"))

    def _job_errored(self, job_id: int, message: str, _details: str) -> None:
        if job_id == self.job_id:
            self.job_id = None
            self.compute_btn.setEnabled(True)
            self.status.setText(f"The queue failed: {message.splitlines()[0] if message else ''}")

    def set_rows(self, rows: list[nr.NoiseRow], total: int | None) -> None:
        self.rows = rows
        self.list.blockSignals(True)
        self.list.clear()
        for row in rows:
            item = QListWidgetItem(row.list_text())
            pix = self._thumb(row.image_id)
            if pix is not None:
                item.setIcon(QIcon(_square(pix)))
            self.list.addItem(item)
        self.list.blockSignals(False)
        self.index = -1
        if total is not None:
            more = f" (showing {len(rows)})" if total > len(rows) else ""
            self.status.setText(f"{total} disputed images{more}" if total else "The queue is empty")
        if rows:
            self.go_to(0)
        else:
            self._show_empty(total is not None)

    def _thumb(self, image_id: int) -> QPixmap | None:
        if image_id not in self.thumbs and self.project is not None:
            png = self.project.images.thumbnail(image_id)
            pix = QPixmap()
            if png and pix.loadFromData(bytes(png)):
                self.thumbs[image_id] = pix
        return self.thumbs.get(image_id)

    # ---- one image --------------------------------------------------------------------------
    @property
    def row(self) -> nr.NoiseRow | None:
        return self.rows[self.index] if 0 <= self.index < len(self.rows) else None

    def step(self, delta: int) -> None:
        if self.rows:
            self.go_to(max(0, min(len(self.rows) - 1, self.index + delta)))

    def go_to(self, index: int) -> None:
        if 0 <= index < len(self.rows):
            self.index = index
            self.list.blockSignals(True)
            self.list.setCurrentRow(index)
            self.list.blockSignals(False)
            self._show_row()

    def _row_changed(self, row: int) -> None:
        if row != self.index and row >= 0:
            self.go_to(row)

    def _show_empty(self, computed: bool) -> None:
        self.title.setText("The queue is empty" if computed else "No queue")
        self.picture.clear()
        self.details.setText("No image where the kNN vote or the classifier disputes the cluster label."
                             if computed else "Choose a label set and press Compute queue.")

    def _show_row(self) -> None:
        row = self.row
        if row is None:
            return
        self.title.setText(f"Image #{row.image_id}  ({self.index + 1}/{len(self.rows)})")
        pix = self._thumb(row.image_id)
        if pix is None:
            self.picture.setText("(no thumbnail)")
        else:
            self.picture.setPixmap(pix.scaled(256, 256, Qt.AspectRatioMode.KeepAspectRatio,
                                              Qt.TransformationMode.SmoothTransformation))
        human = f"<b style='color:#7bd88f'>{row.human}</b>" if row.human else "—"
        self.details.setText(
            f"Score <b>{row.score:.3f}</b><br>Cluster label: <b>{row.given}</b><br>"
            f"kNN vote: {row.knn_text()}<br>Classifier: {row.classifier_text()}<br>Human label: {human}")

    # ---- fixing -----------------------------------------------------------------------------
    def keep_given(self) -> None:
        row = self.row
        if row is not None:
            self.set_label(next((c for c in self.classes if c.name == row.given), None))

    def label_with_number(self, n: int) -> None:
        self.set_label(nr.key_class(self.classes, n))

    def set_label(self, cls: nr.ClassInfo | None) -> None:
        """Human label for the current image (undoable), then the next image."""
        row, project = self.row, self.project
        if row is None or cls is None or project is None or self.label_set is None:
            return
        if project.readonly:
            self.message.setText("The project is read-only.")
            return
        set_id = project.labels.find_label_set(self.label_set)
        cmd = NoiseReviewCommand(project, row.image_id, self.label_set, set_id, cls, row.given,
                                 on_change=self._labels_changed)
        self.window_.undo_stack.push(cmd)
        self.message.setText(f"{cmd.text().split(': ', 1)[-1]} (Ctrl+Z undoes)")
        self.step(1)

    def _labels_changed(self) -> None:
        project = self.project
        if project is None or self.label_set is None:
            return
        set_id = project.labels.find_label_set(self.label_set)
        nr.refresh_human(project, self.rows, set_id)
        for k, row in enumerate(self.rows):
            item = self.list.item(k)
            if item is not None:
                item.setText(row.list_text())
        self._show_row()
        self.window_.store_edited()

    def open_in_viewer(self) -> None:
        row = self.row
        if row is None:
            return
        self.window_.open_image(row.image_id)
        self.window_.show_in_viewer()

    def showEvent(self, ev) -> None:
        super().showEvent(ev)
        self.setFocus()
