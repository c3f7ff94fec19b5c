"""The radiograph viewer: full bit depth, window/level, measurements and overlay layers.

The image shown is a uint16 display array with modality = offset + scale * display
(modality LUT applied; for uncompressed and compressed grey frames it is the stored
integers themselves, shifted where needed); the window is the ImageItem's levels and
MONOCHROME1 is shown through an inverted lookup table, so bone is always bright.
Everything lives under one ``canvas`` item in full-resolution pixel coordinates
(x = column, y = row) carrying the display rotation/flip, so measurements, overlays
and the pixel readout never depend on how the image is turned.

Opening an image shows its thumbnail (upscaled) at once; the full image is decoded on
a worker thread and swapped in when ready (``image_loaded`` is emitted then).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QTransform
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from mskstudio.domain import Image
from mskstudio.gui.viewer.boxes import BoxLayer
from mskstudio.gui.viewer.image_loader import DisplayImage, ImageLoader, halve_u16, png_to_gray
from mskstudio.gui.viewer.measure import MeasurementLayer
from mskstudio.gui.viewer.overlays import OverlayLayers
from mskstudio.gui.viewer.tools import Measurement, WLViewBox
from mskstudio.io.dicom import Window

INVERT_LUT = np.arange(255, -1, -1, dtype=np.uint8)


class Viewer(MeasurementLayer, BoxLayer, OverlayLayers, QWidget):
    image_loaded = Signal(int)          # full-resolution image ready
    window_changed = Signal(float, float)
    readout_changed = Signal(str)
    load_failed = Signal(int, str, str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.project = None
        self.image_id: int | None = None
        self.row: Image | None = None  # the image shown, as the store returns it
        self.rad = None  # image_loader.ShownRadiograph once the full image is decoded
        self.window: Window | None = None
        self.presets: list[tuple[str, Window]] = []
        self.user_invert = False
        self.rotation, self.flip_h, self.flip_v = 0, False, False
        self.tool = "pan"
        self.measurements: list[Measurement] = []
        self._pending_angle: list[tuple[float, float]] = []
        self._drag_item: Measurement | None = None
        self._wl_start: tuple[float, float] | None = None
        self.overlays: dict[str, pg.ImageItem] = {}
        self.overlays_shown = True
        self._offset, self._scale = 0.0, 1.0
        self._pyramid: dict[int, np.ndarray] = {}
        self._lod = 1
        self.box_items: list = []

        self.view = pg.GraphicsView(background="#000000")
        self.vb = WLViewBox(self)
        self.view.setCentralItem(self.vb)
        self.canvas = pg.ItemGroup()
        self.vb.addItem(self.canvas)
        self.img = pg.ImageItem(axisOrder="row-major")
        self.img.setParentItem(self.canvas)
        self.view.scene().sigMouseMoved.connect(self._mouse_moved)
        self.vb.sigRangeChanged.connect(self._update_lod)
        self.loader = ImageLoader()
        self.loader.signals.done.connect(self._decoded)
        self.loader.signals.failed.connect(self._decode_failed)

        self.corner_tl = self._corner("")
        self.corner_tr = self._corner("")
        self.corner_bl = self._corner("")
        self.corner_br = self._corner("")
        self.warning = self._corner("", "#ffb347")
        self.corner_labels = (self.corner_tl, self.corner_tr, self.corner_bl, self.corner_br, self.warning)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.view)

    # ---- corner annotations ---------------------------------------------------------
    def _corner(self, text: str, color: str = "#d8dee9") -> QLabel:
        label = QLabel(text, self.view)
        label.setObjectName("viewerCorner")
        # A dark backing: over bright bone or a white film border bare text could not be read.
        label.setStyleSheet(f"color: {color}; background: rgba(0, 0, 0, 150); border-radius: 3px; "
                            "padding: 1px 3px; font-size: 12px;")
        label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        return label

    def resizeEvent(self, ev):
        super().resizeEvent(ev)
        self._place_corners()

    def _place_corners(self) -> None:
        w, h, m = self.view.width(), self.view.height(), 8
        for label in self.corner_labels:
            if label.wordWrap():  # measure its one-line width again (the viewer may have grown)
                label.setWordWrap(False)
            label.adjustSize()
            if label.width() > w - 2 * m > 0:  # wider than the viewer: wrap rather than cut
                label.setWordWrap(True)
                label.resize(w - 2 * m, label.heightForWidth(w - 2 * m))
        tl, tr, bl, br = self.corner_tl, self.corner_tr, self.corner_bl, self.corner_br
        # With the docks open the viewer can be narrower than two corners side by side;
        # then the right-hand corner goes under (top) or over (bottom) the left-hand one
        # instead of being drawn across it.
        tl.move(m, m)
        if tl.width() + tr.width() + 3 * m <= w:
            tr.move(w - tr.width() - m, m)
            top_end = tl.y() + tl.height()
        else:
            tr.move(m, tl.y() + tl.height() + 4)
            top_end = tr.y() + tr.height()
        bl.move(m, h - bl.height() - m)
        if bl.width() + br.width() + 3 * m <= w:
            br.move(w - br.width() - m, h - br.height() - m)
        else:
            br.move(m, bl.y() - br.height() - 4)
        self.warning.move(m, top_end + 4)

    def _update_corners(self) -> None:
        r = self.row
        if r is None:
            for label in self.corner_labels:
                label.setText("")
            return
        self.corner_tl.setText(f"<b>{r.pseudonym}</b><br>{r.body_part or ''} {r.view or ''} "
                               f"{r.laterality or ''}<br>{r.study_date or ''}")
        self.corner_tr.setText(f"image {r.id}<br>{r.cols} × {r.rows} px<br>"
                               f"{r.photometric or ''} {r.bits_stored or ''} bit")
        wl = ("" if self.window is None else
              f"W {self.window.width:.0f}  L {self.window.center:.0f}  {self.window.explanation}")
        state = "" if self.rad is not None else "  (preview — loading full image…)"
        inv = "  inverted" if self.display_invert else ""
        zoom = f"zoom {self.zoom_factor():.2f}×"
        self.corner_bl.setText(f"{wl}{inv}{state}<br>{zoom}")
        self.warning.setText(self.spacing_warning() or "")
        self._place_corners()

    # ---- opening ----------------------------------------------------------------------
    def set_project(self, project) -> None:
        self.project = project
        self.clear()

    def clear(self) -> None:
        self.loader.generation += 1
        self.image_id, self.row, self.rad, self.window = None, None, None, None
        self.img.clear()
        self.clear_measurements()
        self.clear_overlays()
        self.selected_box = None
        self._update_corners()

    def open_image(self, image_id: int) -> None:
        """Show the thumbnail now and the full image once decoded (off the GUI thread)."""
        project = self.project
        row = project.images.record(image_id)
        if row is None:
            raise KeyError(image_id)
        keep_view = self.row is not None and row.shape == self.row.shape
        self.image_id, self.row, self.rad = image_id, row, None
        self.load_measurements()
        self.clear_overlays()
        self.load_boxes()  # every source's boxes: a person's, imported, a model's
        png = project.images.thumbnail(image_id)
        thumb = png_to_gray(png) if png else None
        if thumb is not None:
            self.img.setLookupTable(None)
            self.img.setImage(thumb, levels=(0, 255))
            sx, sy = row.cols / thumb.shape[1], row.rows / thumb.shape[0]
            self.img.setTransform(QTransform.fromScale(sx, sy))
        else:
            self.img.clear()
        self.window = None
        self._apply_display_transform(fit=not keep_view)
        self._update_corners()
        try:
            path = project.images.dicom_path(image_id)
        except FileNotFoundError as exc:  # e.g. analysis-only images: the thumbnail stays
            self.load_failed.emit(image_id, str(exc), "")
            return
        self.loader.request(image_id, path, row.frame)

    def _decoded(self, generation: int, image_id: int, shown: DisplayImage) -> None:
        # Display array, presets and pyramid were made on the loader's worker thread:
        # here only one screen-sized level goes to pyqtgraph.
        if not self.loader.is_current(generation) or image_id != self.image_id:
            return
        self.rad = shown.rad
        self.presets = shown.presets
        self.img.setTransform(QTransform())
        self.window = self.presets[0][1]
        self._offset, self._scale = shown.offset, shown.scale
        self._pyramid, self._lod = dict(shown.pyramid), 0
        self._update_lod()
        self._apply_lut()
        self._update_corners()
        self.image_loaded.emit(image_id)

    def _decode_failed(self, generation: int, image_id: int, message: str, details: str) -> None:
        if self.loader.is_current(generation):
            self.corner_bl.setText(f"<span style='color:#ff6b6b'>cannot decode: {message}</span>")
            self._place_corners()
            self.load_failed.emit(image_id, message, details)

    # ---- window / level ----------------------------------------------------------------
    @property
    def display_invert(self) -> bool:
        return bool(self.rad is not None and self.rad.invert) != self.user_invert

    def _levels(self) -> tuple[float, float]:
        """The window as levels of the displayed 16-bit array."""
        lo, hi = self.window_levels()
        return ((lo - self._offset) / self._scale, (hi - self._offset) / self._scale)

    def _update_lod(self, *_args) -> None:
        """Show the pyramid level with about one image pixel per screen pixel.

        pyqtgraph's own autoDownsample re-averages the whole image at every repaint; a
        cached power-of-two pyramid keeps each window/level frame to ~1 Mpx of work.
        """
        if self.rad is None or not self._pyramid:
            return
        zoom = self.zoom_factor()
        f = 1
        while f * 2 <= 1.0 / max(zoom, 1e-6) and f < 64:
            f *= 2
        if f == self._lod:
            return
        while f not in self._pyramid:
            g = max(k for k in self._pyramid if k < f)
            self._pyramid[g * 2] = halve_u16(self._pyramid[g])
        self._lod = f
        self.img.setImage(self._pyramid[f], levels=self._levels(), autoLevels=False)
        self.img.setTransform(QTransform.fromScale(f, f))

    def window_levels(self) -> tuple[float, float]:
        """The current window as (low, high) in modality units."""
        w = self.window
        return (w.center - w.width / 2.0, w.center + w.width / 2.0)

    def _apply_lut(self) -> None:
        self.img.setLookupTable(INVERT_LUT if self.display_invert else None)

    def set_window(self, window: Window) -> None:
        if self.rad is None:
            return
        self.window = Window(float(window.center), max(float(window.width), 1.0), window.explanation)
        self.img.setLevels(self._levels())
        self._update_corners()
        self.window_changed.emit(self.window.center, self.window.width)

    def apply_preset(self, index: int) -> None:
        if self.rad is not None and 0 <= index < len(self.presets):
            self.set_window(self.presets[index][1])

    def toggle_invert(self) -> None:
        self.user_invert = not self.user_invert
        if self.rad is not None:
            self._apply_lut()
        self._update_corners()

    def wl_drag(self, dx: float, dy: float, phase: str) -> None:
        if self.rad is None or self.window is None:
            return
        if phase == "start" or self._wl_start is None:
            self._wl_start = (self.window.center, self.window.width)
        c0, w0 = self._wl_start
        full = self.presets[4][1].width if len(self.presets) > 4 else w0
        s = max(full, 1.0) / 600.0  # a 600 px drag sweeps the whole range
        self.set_window(Window(c0 + dy * s, max(1.0, w0 + dx * s), "manual"))
        if phase == "finish":
            self._wl_start = None

    # ---- display transform, zoom ----------------------------------------------------------
    def _apply_display_transform(self, fit: bool = True) -> None:
        if self.row is None:
            return
        w, h = self.row.cols, self.row.rows
        t = QTransform.fromTranslate(-w / 2.0, -h / 2.0)
        t = t * QTransform.fromScale(-1 if self.flip_h else 1, -1 if self.flip_v else 1)
        t = t * QTransform().rotate(90 * self.rotation)
        self.canvas.setTransform(t)
        for m in self.measurements:
            m.update(m.points)
        if fit:
            self.fit()

    def rotate(self, quarter_turns: int = 1) -> None:
        self.rotation = (self.rotation + quarter_turns) % 4
        self._apply_display_transform()

    def flip(self, horizontal: bool = True) -> None:
        if horizontal:
            self.flip_h = not self.flip_h
        else:
            self.flip_v = not self.flip_v
        self._apply_display_transform()

    def image_rect_in_view(self) -> QRectF:
        return self.canvas.mapRectToParent(QRectF(0, 0, self.row.cols, self.row.rows))

    def fit(self) -> None:
        if self.row is not None:
            self.vb.setRange(rect=self.image_rect_in_view(), padding=0.02)
            self._update_corners()

    def actual_size(self) -> None:
        """1:1 — one image pixel per screen pixel, centred where the view is now."""
        if self.row is None:
            return
        center = self.vb.viewRect().center()
        w, h = self.vb.width() or 1, self.vb.height() or 1
        self.vb.setRange(rect=QRectF(center.x() - w / 2, center.y() - h / 2, w, h), padding=0)
        self._update_corners()

    def zoom_factor(self) -> float:
        vr = self.vb.viewRect()
        return (self.vb.width() / vr.width()) if vr.width() else 1.0

    # ---- readout ---------------------------------------------------------------------------
    def to_image(self, scene_pos: QPointF) -> tuple[float, float]:
        p = self.canvas.mapFromScene(scene_pos)
        return p.x(), p.y()

    def spacing(self) -> tuple[float, float] | None:
        return None if self.row is None else self.row.spacing

    def spacing_warning(self) -> str | None:
        if self.row is None:
            return None
        if self.spacing() is None or self.row.spacing_source is None:
            return "⚠ no pixel spacing: measurements in pixels"
        if self.row.spacing_source == "imager":
            return "⚠ detector spacing, magnification not corrected: mm are estimates"
        return None

    def readout(self, x: float, y: float) -> str:
        if self.row is None:
            return ""
        col, row = int(np.floor(x)), int(np.floor(y))
        if not (0 <= row < self.row.rows and 0 <= col < self.row.cols):
            return ""
        text = f"x {col}  y {row}"
        sp = self.spacing()
        if sp:
            text += f"  ({col * sp[1]:.1f}, {row * sp[0]:.1f}) mm"
        if self.rad is not None and self.rad.shape == self.row.shape:
            value = self.rad.modality_at(row, col)
            slope = self.row.rescale_slope or 1.0
            stored = (value - (self.row.rescale_intercept or 0.0)) / slope
            text += f"  stored {stored:.0f}  value {value:.1f}"
        return text

    def _mouse_moved(self, scene_pos) -> None:
        text = self.readout(*self.to_image(scene_pos))
        self.corner_br.setText(text)
        self._place_corners()
        self.readout_changed.emit(text)
