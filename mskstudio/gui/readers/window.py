"""The reading window: one reader, one study, one case at a time, nothing else.

It holds a ``ReadingSession`` and a ``BlindImages`` view of the study's images — never
the project — so no menu, dock or corner text can lead to the truth, another reader,
the model (outside the assisted arm) or the rest of the project.  Keys: 1-9 choose the
answer, Enter/Space/N confirms and shows the next case (the read is committed first),
H toggles the heat map of the assisted arm, W/L drag and zoom as in the main viewer.
In a study created with boxes, B toggles the lesion-box tool: the boxes drawn on the
case (``SessionBoxes``, the only boxes the viewer ever gets) are committed with the answer.
The next cases' images are decoded ahead on a worker thread so "next" shows the full
image at once.
"""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import Future, ThreadPoolExecutor

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QButtonGroup, QCheckBox, QHBoxLayout, QLabel, QPushButton, QSlider, QVBoxLayout, QWidget

from mskstudio.domain import Image
from mskstudio.gui.readers.session_boxes import SessionBoxes
from mskstudio.gui.viewer.boxes import box_events
from mskstudio.gui.viewer.image_loader import decode_for_display
from mskstudio.gui.viewer.viewer import Viewer
from mskstudio.ml.readers.session import Case, ReadingSession, WashoutPending

PREFETCH = 2  # cases decoded ahead
PREFETCH_DELAY_MS = 150


class _NoMeasurements:
    def for_image(self, image_id: int) -> list:
        return []


class _NoAnnotations:
    """A reader sees no one's boxes or masks (other readers', imported or a model's)."""

    drawable = False

    def boxes_of(self, image_id: int) -> list:
        return []


class BlindImages:
    """What the viewer may ask of a project, for the study's images only, with no identity."""

    readonly = True

    def __init__(self, project, image_ids, *, boxes: bool = False):
        self._images = project.images
        self._allowed = set(int(i) for i in image_ids)
        self.images = self
        self.measurements = _NoMeasurements()
        self.annotations = SessionBoxes() if boxes else _NoAnnotations()

    def _check(self, image_id: int) -> None:
        if int(image_id) not in self._allowed:
            raise KeyError(f"image {image_id} is not a case of this session")

    def record(self, image_id: int) -> Image:
        """The image's geometry and pixel facts only: no identity, study or centre."""
        self._check(image_id)
        r = self._images.record(image_id)
        return Image(id=0, study_id=0, sop_uid="", rows=r.rows, cols=r.cols, frame=r.frame,
                     spacing_row_mm=r.spacing_row_mm, spacing_col_mm=r.spacing_col_mm,
                     spacing_source=r.spacing_source, photometric=r.photometric, bits_stored=r.bits_stored,
                     pseudonym="", body_part="", view="", laterality="", study_date="")

    def thumbnail(self, image_id: int) -> bytes | None:
        self._check(image_id)
        return self._images.thumbnail(image_id)

    def dicom_path(self, image_id: int):
        self._check(image_id)
        return self._images.dicom_path(image_id)


def prepare_case(path, frame: int, lod: int, user_invert: bool):
    """(display products, (lod, user_invert, 8-bit first frame) or None), made on the prefetch worker.

    The first frame is the pyramid level the viewer will show, already windowed (default
    preset) to 8 bits: pyqtgraph then paints it without rescaling ~2 Mpx of 16-bit data
    on the GUI thread, which was half of a key press's time."""
    shown = decode_for_display(path, frame)
    if shown is None or lod not in shown.pyramid or not shown.presets:
        return shown, None
    window = shown.presets[0][1]
    lo = (window.center - window.width / 2.0 - shown.offset) / shown.scale
    hi = (window.center + window.width / 2.0 - shown.offset) / shown.scale
    frame8 = first_frame(shown.pyramid[lod], lo, hi, invert=bool(shown.rad.invert) != user_invert)
    return shown, (lod, user_invert, frame8)


def first_frame(level, lo: float, hi: float, *, invert: bool):
    """``level`` windowed to [lo, hi] as uint8 (inverted for display where asked)."""
    import numpy as np

    x = level.astype(np.float32)
    x -= np.float32(lo)
    x *= np.float32(255.0 / max(hi - lo, 1e-6))
    np.clip(x, 0, 255, out=x)
    u8 = x.astype(np.uint8)
    return 255 - u8 if invert else u8


class BlindViewer(Viewer):
    """The viewer without identity in its corners and without saved measurements; it can
    show a prefetched, pre-windowed 8-bit first frame until the reader changes W/L or zoom."""

    _fast_frame = False

    def _update_corners(self) -> None:
        for label in (self.corner_tl, self.corner_tr, self.corner_br, self.warning):
            label.setText("")
        if self.row is None:
            self.corner_bl.setText("")
            return
        wl = "" if self.window is None else f"W {self.window.width:.0f}  L {self.window.center:.0f}"
        state = "" if self.rad is not None else "  (loading…)"
        self.corner_bl.setText(f"{wl}{state}<br>zoom {self.zoom_factor():.2f}×")
        self._place_corners()

    def load_measurements(self) -> None:
        self.clear_measurements()

    def _boxes_editable(self) -> bool:
        return self.project is not None and getattr(self.project.annotations, "drawable", False)

    def show_prepared(self, image_id: int, shown, first=None) -> None:
        """Show an image decoded ahead: no thumbnail step, no decode on this thread."""
        row = self.project.images.record(image_id)
        keep_view = self.row is not None and row.shape == self.row.shape
        self._fast_frame = False
        self.image_id, self.row, self.rad = image_id, row, None
        self.clear_measurements()
        self.clear_overlays()
        self.window = None
        self.loader.generation += 1  # a decode still in flight is for an older case
        self._apply_display_transform(fit=not keep_view)
        self._decoded(self.loader.generation, image_id, shown)
        if first is not None and first[0] == self._lod and first[1] == self.user_invert:
            self.img.setLookupTable(None)  # the frame is inverted already where needed
            self.img.setImage(first[2], levels=(0, 255), autoLevels=False)
            self._fast_frame = True

    def _drop_fast_frame(self) -> None:
        """Back to the 16-bit level with the viewer's levels and LUT (W/L, invert, zoom)."""
        if self._fast_frame:
            self._fast_frame = False
            if self._pyramid and self.window is not None:
                self.img.setImage(self._pyramid[self._lod], levels=self._levels(), autoLevels=False)
            self._apply_lut()

    def set_window(self, window) -> None:
        self._drop_fast_frame()
        super().set_window(window)

    def toggle_invert(self) -> None:
        self._drop_fast_frame()
        super().toggle_invert()

    def _update_lod(self, *args) -> None:
        before = self._lod
        super()._update_lod(*args)
        if self._fast_frame and self._lod != before:  # the level changed: the 8-bit frame is gone
            self._fast_frame = False
            self._apply_lut()


class ReadingWindow(QWidget):
    case_shown = Signal(int)    # index of the case now shown (full image ready)
    finished = Signal()
    closed = Signal()

    def __init__(self, session: ReadingSession, images: BlindImages, parent=None):
        super().__init__(parent)
        self.session, self.images = session, images
        self.setWindowTitle(f"Reading — {session.study_name} — {session.reader}")
        self.viewer = BlindViewer()
        self.viewer.set_project(images)
        self.viewer.image_loaded.connect(self._full_image_shown)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reader-prefetch")
        self._ahead: dict[int, Future] = {}
        self.case: Case | None = None
        self.choice: int | None = None
        self._shown_at = 0.0
        self._confidence_touched = False
        self._closed = False

        self.progress = QLabel()
        self.arm_label = QLabel()
        self.extra = QLabel(wordWrap=True, textFormat=Qt.TextFormat.RichText)
        self.extra.setMinimumWidth(220)
        self.heatmap_box = QCheckBox("Heat map (H)")
        self.heatmap_box.toggled.connect(self._show_heatmap)
        self.box_tool = QPushButton("Draw lesion box (B)", checkable=True)
        self.box_tool.setToolTip("Drag on the image to draw a box around each lesion; with the tool off, "
                                 "click a box to move or resize it, Delete removes it")
        self.box_tool.toggled.connect(self._box_tool_toggled)
        self.box_count = QLabel()
        self._box_start: tuple[float, float] | None = None
        self._catcher = self._draft = None
        self.buttons = QButtonGroup(self)
        self.buttons.setExclusive(True)
        column = QVBoxLayout()
        column.addWidget(self.progress)
        column.addWidget(self.arm_label)
        column.addWidget(self.extra)
        column.addWidget(self.heatmap_box)
        if session.boxes_asked:
            column.addWidget(self.box_tool)
            column.addWidget(self.box_count)
            self._make_box_input()
            box_events.changed.connect(self._box_edited)
        for k, name in enumerate(session.keys, start=1):
            button = QPushButton(f"{k}  {name}", checkable=True)
            self.buttons.addButton(button, k)
            column.addWidget(button)
        self.buttons.idClicked.connect(self.choose)
        self.confidence = QSlider(Qt.Orientation.Horizontal, minimum=0, maximum=100, value=50)
        self.confidence.valueChanged.connect(self._confidence_moved)
        self.confidence_label = QLabel("Confidence: —")
        if session.confidence_asked:
            column.addWidget(self.confidence_label)
            column.addWidget(self.confidence)
        self.next_button = QPushButton("Next ⏎", enabled=False)
        self.next_button.clicked.connect(self.next_case)
        column.addWidget(self.next_button)
        self.message = QLabel(wordWrap=True)
        column.addWidget(self.message)
        column.addStretch(1)
        layout = QHBoxLayout(self)
        layout.addWidget(self.viewer, 1)
        layout.addLayout(column)
        for k in range(1, len(session.keys) + 1):
            QShortcut(QKeySequence(str(k)), self, activated=lambda k=k: self.choose(k))
        for key in ("Return", "Enter", "Space", "N"):
            QShortcut(QKeySequence(key), self, activated=self.next_case)
        QShortcut(QKeySequence("H"), self, activated=self.heatmap_box.toggle)
        if session.boxes_asked:
            QShortcut(QKeySequence("B"), self, activated=self.box_tool.toggle)
        self.resize(1400, 900)
        QTimer.singleShot(0, self.show_current)

    # ---- cases ------------------------------------------------------------------------
    def show_current(self) -> None:
        self.case = self.session.current()
        self.choice = None
        self.buttons.setExclusive(False)
        for b in self.buttons.buttons():
            b.setChecked(False)
        self.buttons.setExclusive(True)
        self.next_button.setEnabled(False)
        self._confidence_touched = False
        self.confidence.blockSignals(True)
        self.confidence.setValue(50)
        self.confidence.blockSignals(False)
        self.confidence_label.setText("Confidence: —")
        boxes = self.images.annotations
        if boxes.drawable:
            boxes.start(self.case.image_id if self.case is not None else None)
            self._box_start = None
        if self.case is None:
            self._show_end()
            return
        c = self.case
        self.progress.setText(f"<b>Case {c.index + 1} of {c.total}</b>")
        self.arm_label.setText(f"Arm {c.arm_position + 1}: {_ARM_TEXT[c.arm]}")
        self.extra.setText(_extra_html(c))
        self.heatmap_box.setVisible(c.heatmap is not None)
        future = self._ahead.pop(c.image_id, None)
        ready = future.result() if future is not None and future.done() and not future.exception() else None
        self._shown_at = time.monotonic()
        if ready is not None and ready[0] is not None:
            self.viewer.show_prepared(c.image_id, *ready)
        else:
            self.viewer.open_image(c.image_id)
        self._show_heatmap(self.heatmap_box.isChecked())
        if boxes.drawable:
            if self._catcher is not None:
                self._catcher.set_shape(self.images.record(c.image_id).shape)
            self._boxes_changed()
        # Decode ahead once this frame is painted: started at once, the worker's decode
        # would compete with the paint for the interpreter (a reader takes seconds anyway).
        QTimer.singleShot(PREFETCH_DELAY_MS, self._prefetch)

    def _prefetch(self) -> None:
        if self.case is None or self._closed:
            return
        wanted = self.session.upcoming_image_ids(PREFETCH + 1)[1:]
        for image_id in list(self._ahead):
            if image_id not in wanted:
                self._ahead.pop(image_id).cancel()
        for image_id in wanted:
            if image_id not in self._ahead:
                frame = self.images.record(image_id).frame
                path = self.images.dicom_path(image_id)
                self._ahead[image_id] = self._pool.submit(prepare_case, path, frame,
                                                          self.viewer._lod or 1, self.viewer.user_invert)

    def _full_image_shown(self, image_id: int) -> None:
        if self.case is not None and image_id == self.case.image_id:
            self._show_heatmap(self.heatmap_box.isChecked())
            self.case_shown.emit(self.case.index)

    def choose(self, key: int) -> None:
        if self.case is None or not 1 <= key <= len(self.session.keys):
            return
        self.choice = key
        self.buttons.button(key).setChecked(True)
        self.next_button.setEnabled(True)

    def _confidence_moved(self, value: int) -> None:
        self._confidence_touched = True
        self.confidence_label.setText(f"Confidence: {value}%")

    def next_case(self) -> None:
        """Commit the answer (at once) and show the next case."""
        if self.case is None or self.choice is None:
            return
        confidence = self.confidence.value() / 100.0 if self._confidence_touched else None
        boxes = self.images.annotations.rects() if self.images.annotations.drawable else None
        try:
            self.session.answer(self.choice, seconds=time.monotonic() - self._shown_at, confidence=confidence,
                                boxes=boxes)
        except WashoutPending as exc:
            self.case = None
            self._show_end(str(exc))
            return
        self.show_current()

    # ---- lesion boxes (studies created with boxes) ----------------------------------------
    def _make_box_input(self) -> None:
        """The annotate tool's input catcher and draft outline, on the viewer's canvas."""
        from mskstudio.gui.annotate.live import DraftItem
        from mskstudio.gui.annotate.tools import InputCatcher

        self._catcher = InputCatcher((1, 1), self.draw_box, self.viewer.canvas)
        self._draft = DraftItem(self.viewer.canvas)

    def _box_tool_toggled(self, on: bool) -> None:
        if self._catcher is not None:
            self._catcher.set_active(on)
        self._box_start = None
        if self._draft is not None:
            self._draft.clear()

    def draw_box(self, kind: str, pos: tuple[float, float], modifiers=None) -> None:
        """Mouse input in image pixels (the catcher's; tests drive it): drag out a box."""
        boxes = self.images.annotations
        if self.case is None or not boxes.drawable or self.viewer.row is None:
            return
        x, y = pos
        if kind == "press":
            self._box_start = (x, y)
        elif kind == "move" and self._box_start is not None:
            self._draft.show_rect((*self._box_start, x, y))
        elif kind == "release" and self._box_start is not None:
            (x0, y0), self._box_start = self._box_start, None
            self._draft.clear()
            h, w = self.viewer.row.shape
            rect = (max(0.0, min(x0, x)), max(0.0, min(y0, y)), min(w, max(x0, x)), min(h, max(y0, y)))
            if rect[2] - rect[0] >= 2 and rect[3] - rect[1] >= 2:
                boxes.add_box(self.case.image_id, None, rect)
                self._boxes_changed()

    def _box_edited(self, project, image_id: int) -> None:
        """The viewer moved, resized or deleted one of this case's boxes."""
        if project is self.images and self.case is not None and image_id == self.case.image_id:
            n = len(self.images.annotations.rects())
            self.box_count.setText("No lesion box" if n == 0 else f"{n} lesion box{'es' if n > 1 else ''}")

    def _boxes_changed(self) -> None:
        self.viewer.load_boxes()
        n = len(self.images.annotations.rects())
        self.box_count.setText("No lesion box" if n == 0 else f"{n} lesion box{'es' if n > 1 else ''}")

    def _show_heatmap(self, on: bool) -> None:
        c = self.case
        if c is not None and c.heatmap is not None and on and self.viewer.row is not None:
            self.viewer.set_overlay("heatmap", _resized(c.heatmap, self.viewer.row.rows,
                                                        self.viewer.row.cols), 0.4)
        else:
            self.viewer.set_overlay("heatmap", None)

    def _show_end(self, text: str = "") -> None:
        self.viewer.clear()
        for b in self.buttons.buttons():
            b.setEnabled(False)
        self.next_button.setEnabled(False)
        self.extra.setText("")
        self.heatmap_box.setVisible(False)
        self.progress.setText("<b>Session complete</b>" if not text else "<b>Pause</b>")
        self.message.setText(text or "Every case of this session is read. Thank you — you may close the window.")
        self.finished.emit()

    def closeEvent(self, event) -> None:
        self._closed = True
        if self.session.boxes_asked:
            with contextlib.suppress(RuntimeError, TypeError):  # already disconnected
                box_events.changed.disconnect(self._box_edited)
        for future in self._ahead.values():
            future.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.viewer.loader.wait(5000)
        super().closeEvent(event)
        self.closed.emit()


_ARM_TEXT = {"image": "image only", "clinical": "image + clinical data",
             "assisted": "image + model prediction"}


def _extra_html(c: Case) -> str:
    parts = []
    if c.clinical:
        parts.append("<b>Clinical</b><br>" + "<br>".join(f"{k.replace('_', ' ')}: {v}"
                                                         for k, v in c.clinical.items()))
    if c.labs:
        parts.append("<b>Labs</b><br>" + "<br>".join(f"{n}: {'—' if v is None else f'{v:g}'} {u}"
                                                     for n, v, u in c.labs))
    if c.prediction is not None:
        rows = "<br>".join(f"{n}: {p:.0%}" for n, p in sorted(c.prediction.items(), key=lambda t: -t[1]))
        parts.append(f"<b>Model</b>: {c.predicted or '—'}<br>{rows}")
    return "<br><br>".join(parts)


def _resized(heatmap, rows: int, cols: int):
    """The map at image size (nearest neighbour; CAMs are smooth, a finer resize is not needed)."""
    import numpy as np

    h = np.asarray(heatmap, dtype=np.float32)
    if h.shape == (rows, cols):
        return h
    ri = (np.arange(rows) * h.shape[0] // rows).clip(0, h.shape[0] - 1)
    ci = (np.arange(cols) * h.shape[1] // cols).clip(0, h.shape[1] - 1)
    return h[ri][:, ci]


def open_reading_window(project, study, reader: str) -> ReadingWindow:
    session = ReadingSession(project, study, reader)
    return ReadingWindow(session, BlindImages(project, project.readers.case_images(session.study_id),
                                              boxes=session.boxes_asked))
