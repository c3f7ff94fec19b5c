"""Adjudication: two readers' masks of the open image, their agreement, and the senior's decision.

``AdjudicationPanel`` lists the masks of one class on one image (every reader's
``human`` mask, imported truth, model proposals), shows two of them — A and B — over
the radiograph in two colour-blind-safe colours (their overlap mixes both, the final
mask is outlined in white), with IoU and Dice, and stores the decision through
``AnnotationRepo.adjudicate`` (source ``adjudicated``, audited as ``mask.adjudicate``):
Pick A, Pick B, Union, Intersection.  Redraw asks the Annotate tools to edit the
adjudicated mask, starting from the current final mask or else from a copy of A.

It lives in a tab of the Annotate dock; ``add_adjudication_menu`` adds the
Annotate menu that opens it.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QAction, QImage, QPainter
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGridLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from mskstudio.imaging import masks as M
from mskstudio.io.analysis import load_analysis
from mskstudio.io.pixels import fit_long_side, resize_area

COLOR_A = (230, 159, 0)  # Okabe-Ito orange
COLOR_B = (86, 180, 233)  # Okabe-Ito sky blue
COLOR_FINAL = (255, 255, 255)
CANDIDATE_SOURCES = ("human", "import", "model")
PREVIEW_LONG_SIDE = 768


# ---- picture (numpy only) ---------------------------------------------------------------
def shrink(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A bool mask resampled to ``shape`` (a pixel is set if any source pixel under it is)."""
    h, w = mask.shape
    ys = np.linspace(0, h, shape[0] + 1).astype(int)
    xs = np.linspace(0, w, shape[1] + 1).astype(int)
    # Any-pooling keeps thin strokes visible where nearest-neighbour would drop them.
    rows = np.logical_or.reduceat(mask, ys[:-1], axis=0)
    return np.logical_or.reduceat(rows, xs[:-1], axis=1)


def outline(mask: np.ndarray) -> np.ndarray:
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return mask & ~inner


def region_of_interest(masks, shape: tuple[int, int], margin: float = 0.6, min_side: int = 96):
    """(x0, y0, x1, y1) around the union of ``masks`` plus ``margin`` of its size each side."""
    box = None
    for m in masks:
        if m is not None:
            box = M.union_rect(box, M.bbox(m))
    if box is None:
        return 0, 0, shape[1], shape[0]
    x0, y0, x1, y1 = box
    half_w = max((x1 - x0) * (0.5 + margin), min_side / 2)
    half_h = max((y1 - y0) * (0.5 + margin), min_side / 2)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return M.clip_rect((int(cx - half_w), int(cy - half_h), int(cx + half_w) + 1, int(cy + half_h) + 1), shape)


def compose(gray: np.ndarray, a: np.ndarray | None, b: np.ndarray | None, final: np.ndarray | None) -> np.ndarray:
    """RGB uint8 picture: ``gray`` with A and B filled translucently and outlined, final outlined."""
    rgb = np.repeat(gray[..., None].astype(np.float32), 3, axis=2)
    for mask, color in ((a, COLOR_A), (b, COLOR_B)):
        if mask is not None:
            rgb[mask] = 0.6 * rgb[mask] + 0.4 * np.array(color, np.float32)
    for mask, color in ((a, COLOR_A), (b, COLOR_B), (final, COLOR_FINAL)):
        if mask is not None:
            rgb[outline(mask)] = color
    return np.clip(rgb, 0, 255).astype(np.uint8)


class _Picture(QWidget):
    """Draws an RGB array scaled to fit, keeping its aspect ratio."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.rgb: np.ndarray | None = None
        self.qimage: QImage | None = None
        self.setMinimumSize(200, 200)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def set_rgb(self, rgb: np.ndarray | None) -> None:
        self.rgb = None if rgb is None else np.ascontiguousarray(rgb)
        if self.rgb is None:
            self.qimage = None
        else:
            h, w, _ = self.rgb.shape
            self.qimage = QImage(self.rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888)
        self.update()

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), Qt.GlobalColor.black)
        if self.qimage is not None:
            w, h = self.qimage.width(), self.qimage.height()
            scale = min(self.width() / w, self.height() / h)
            target = QRectF((self.width() - w * scale) / 2, (self.height() - h * scale) / 2, w * scale, h * scale)
            # Smooth when shrinking; crisp pixels (and one-pixel outlines) when enlarging.
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, scale < 1)
            p.drawImage(target, self.qimage)
        p.end()


def _swatch(color) -> str:
    return f"<span style='color: rgb{tuple(color)}'>■</span>"


def _area(row) -> str:
    if row.area_mm2 is not None:
        return f"{row.area_mm2:.0f} mm²"
    return f"{row.area_px} px"


# ---- the panel ---------------------------------------------------------------------------
class AdjudicationPanel(QWidget):
    decided = Signal(int, int)  # image id, adjudicated mask id
    redraw_requested = Signal(int, int)  # image id, class id: edit the adjudicated mask

    def __init__(self, parent=None, *, radiograph_of=None):
        super().__init__(parent)
        # radiograph_of(image_id) -> (image_loader.ShownRadiograph, Window | None, invert) when the
        # full image is already decoded (the main viewer's), else None: the picture then uses the analysis cache.
        self.radiograph_of = radiograph_of
        self.project = None
        self.image_id: int | None = None
        self.crop: tuple[int, int, int, int] | None = None
        self.rows: list = []  # candidate mask rows of the chosen class
        self.agreement: dict[str, float] | None = None
        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.classes = QComboBox()
        self.mask_a, self.mask_b = QComboBox(), QComboBox()
        form.addRow("Class", self.classes)
        form.addRow(f"{_swatch(COLOR_A)} Mask A", self.mask_a)
        form.addRow(f"{_swatch(COLOR_B)} Mask B", self.mask_b)
        for label in (form.itemAt(i, QFormLayout.ItemRole.LabelRole) for i in range(form.rowCount())):
            if label is not None and isinstance(label.widget(), QLabel):
                label.widget().setTextFormat(Qt.TextFormat.RichText)
        layout.addLayout(form)
        self.picture = _Picture()
        layout.addWidget(self.picture, 1)
        self.metrics = QLabel("")
        self.metrics.setTextFormat(Qt.TextFormat.RichText)
        self.metrics.setWordWrap(True)
        layout.addWidget(self.metrics)
        self.final = QLabel("")
        self.final.setWordWrap(True)
        layout.addWidget(self.final)
        grid = QGridLayout()
        self.buttons: dict[str, QPushButton] = {}
        for i, (name, text, tip) in enumerate([
            ("pick_a", "Pick A", "The final mask is mask A"),
            ("pick_b", "Pick B", "The final mask is mask B"),
            ("union", "Union", "The final mask covers A or B"),
            ("intersection", "Intersection", "The final mask covers A and B"),
            ("redraw", "Redraw…", "Edit the final mask with the Annotate tools "
                                  "(starting from the current final mask, else from a copy of A)"),
        ]):
            b = QPushButton(text)
            b.setToolTip(tip)
            b.clicked.connect(lambda _=False, n=name: self.decide(n))
            self.buttons[name] = b
            grid.addWidget(b, i // 2, i % 2)
        layout.addLayout(grid)
        self.classes.currentIndexChanged.connect(lambda _i: self._fill_candidates())
        self.mask_a.currentIndexChanged.connect(lambda _i: self.refresh())
        self.mask_b.currentIndexChanged.connect(lambda _i: self.refresh())
        self._update_buttons()

    # ---- following the window -------------------------------------------------------------
    def set_project(self, project) -> None:
        self.project = project
        self.image_id = None
        self.classes.blockSignals(True)
        self.classes.clear()
        if project is not None:
            for c in project.annotations.classes():
                self.classes.addItem(c.name, c.id)
        self.classes.blockSignals(False)
        self._fill_candidates()

    def show_image(self, image_id: int | None) -> None:
        self.image_id = image_id
        if image_id is not None and self.project is not None:
            # Open on a class that has two masks to compare, if any.
            counts: dict[int, int] = {}
            for r in self.project.annotations.masks_of(image_id):
                if r.source in CANDIDATE_SOURCES:
                    counts[r.class_id] = counts.get(r.class_id, 0) + 1
            current = self.class_id()
            if counts.get(current, 0) < 2 and counts:
                best = max(counts, key=lambda c: (counts[c], -c))
                self.classes.blockSignals(True)
                self.classes.setCurrentIndex(max(0, self.classes.findData(best)))
                self.classes.blockSignals(False)
        self._fill_candidates()

    def class_id(self) -> int | None:
        return self.classes.currentData()

    # ---- candidates and picture ------------------------------------------------------------
    def _fill_candidates(self) -> None:
        self.rows = []
        if self.project is not None and self.image_id is not None and self.class_id() is not None:
            self.rows = [
                r for r in self.project.annotations.masks_of(self.image_id)
                if r.class_id == self.class_id() and r.source in CANDIDATE_SOURCES
            ]
            # Readers' own masks first, so A and B default to two different humans.
            self.rows.sort(key=lambda r: (CANDIDATE_SOURCES.index(r.source), r.annotator))
        for combo, default in ((self.mask_a, 0), (self.mask_b, 1)):
            combo.blockSignals(True)
            combo.clear()
            for r in self.rows:
                combo.addItem(f"{r.annotator} · {r.source} · {_area(r)}", r.id)
            combo.setCurrentIndex(min(default, len(self.rows) - 1))
            combo.blockSignals(False)
        self.refresh()

    def chosen(self) -> tuple[int | None, int | None]:
        return self.mask_a.currentData(), self.mask_b.currentData()

    def final_row(self):
        if self.project is None or self.image_id is None or self.class_id() is None:
            return None
        mask_id = self.project.annotations.find_mask(self.image_id, self.class_id(), source="adjudicated")
        return self.project.annotations.mask_row(mask_id) if mask_id else None

    def refresh(self) -> None:
        """Recompute agreement and picture for the chosen A and B (and the final mask)."""
        a_id, b_id = self.chosen()
        ann = self.project.annotations if self.project is not None else None
        a = ann.load_mask(a_id) if a_id is not None else None
        b = ann.load_mask(b_id) if b_id is not None and b_id != a_id else None
        final = self.final_row()
        self.agreement = None
        if a is not None and b is not None:
            iou, dice = M.iou_dice(a, b)
            self.agreement = {"iou": iou, "dice": dice}
            self.metrics.setText(
                f"IoU <b>{iou:.3f}</b> &nbsp; Dice <b>{dice:.3f}</b> &nbsp; "
                f"{_swatch(COLOR_A)} A only {int((a & ~b).sum())} px · "
                f"{_swatch(COLOR_B)} B only {int((b & ~a).sum())} px · both {int((a & b).sum())} px")
        elif self.image_id is not None:
            self.metrics.setText(f"{len(self.rows)} mask(s) of this class on this image: two are needed to compare.")
        else:
            self.metrics.setText("Open an image.")
        if final is not None:
            self.final.setText(f"Final mask (white outline): {_area(final)}, by {final.annotator}, "
                               f"{(final.updated_at or '')[:16].replace('T', ' ')}")
        else:
            self.final.setText("No final mask yet.")
        self._update_picture(a, b, ann.load_mask(final.id) if final is not None else None)
        self._update_buttons()

    def _update_picture(self, a, b, final) -> None:
        """The lesion region (masks plus a margin), at most PREVIEW_LONG_SIDE pixels long."""
        if self.project is None or self.image_id is None:
            self.crop = None
            self.picture.set_rgb(None)
            return
        full = self.project.images.record(self.image_id).shape
        self.crop = x0, y0, x1, y1 = region_of_interest((a, b, final), full)
        shape = fit_long_side((y1 - y0, x1 - x0), PREVIEW_LONG_SIDE)
        gray = self._background(full, self.crop, shape)
        small = [None if m is None else shrink(m[y0:y1, x0:x1], shape) for m in (a, b, final)]
        self.picture.set_rgb(compose(gray, *small))

    def _background(self, full: tuple[int, int], crop, shape: tuple[int, int]) -> np.ndarray:
        """The radiograph under ``crop`` (bone bright) at ``shape``: the viewer's decoded
        image with its window when it shows this image, else the analysis cache."""
        x0, y0, x1, y1 = crop
        shown = self.radiograph_of(self.image_id) if self.radiograph_of is not None else None
        if shown is not None:
            rad, window, invert = shown
            part = rad.region(y0, y1, x0, x1)  # float modality of the crop only
            gray = part.render_u8(window or rad.default_window(), invert)
            return resize_area(gray.astype(np.float32), shape).astype(np.uint8)
        try:
            img = load_analysis(self.project, self.image_id)
        except Exception:  # noqa: BLE001 - a missing file leaves a dark background, the masks still show
            return np.full(shape, 40, np.uint8)
        sy, sx = img.shape[0] / full[0], img.shape[1] / full[1]
        ys = np.clip(((y0 + (np.arange(shape[0]) + 0.5) * (y1 - y0) / shape[0]) * sy).astype(int), 0, img.shape[0] - 1)
        xs = np.clip(((x0 + (np.arange(shape[1]) + 0.5) * (x1 - x0) / shape[1]) * sx).astype(int), 0, img.shape[1] - 1)
        return (img[ys][:, xs] * 255).astype(np.uint8)

    def _update_buttons(self) -> None:
        a_id, b_id = self.chosen()
        pair = a_id is not None and b_id is not None and a_id != b_id
        writable = self.project is not None and not self.project.readonly
        for name in ("pick_b", "union", "intersection"):
            self.buttons[name].setEnabled(writable and pair)
        self.buttons["pick_a"].setEnabled(writable and a_id is not None)
        self.buttons["redraw"].setEnabled(writable and (a_id is not None or self.final_row() is not None))

    # ---- deciding ---------------------------------------------------------------------------
    def decide(self, how: str) -> int | None:
        """Store the final mask (audited by the store); ``redraw`` hands over to the Annotate tools."""
        a_id, b_id = self.chosen()
        ann = self.project.annotations
        ids = [i for i in (a_id, b_id) if i is not None]
        ids = list(dict.fromkeys(ids))  # A == B counts once
        if how == "redraw":
            if self.final_row() is None:
                ann.adjudicate(ids, method="final", final=ann.load_mask(a_id), class_id=self.class_id())
            self.refresh()
            self.redraw_requested.emit(self.image_id, self.class_id())
            return self.final_row().id
        if how in ("pick_a", "pick_b"):
            mask_id = ann.adjudicate(ids, method="pick", pick=a_id if how == "pick_a" else b_id,
                                     class_id=self.class_id())
        else:
            mask_id = ann.adjudicate(ids, method=how, class_id=self.class_id())
        self.refresh()
        self.decided.emit(self.image_id, mask_id)
        return mask_id


# ---- menu ---------------------------------------------------------------------------------
def add_adjudication_menu(window):
    """The Annotate menu: show the drawing tools, open the adjudication view (menu hook)."""
    dock = window.docks.get("Annotate")
    menu = window.menuBar().addMenu("&Annotate")
    actions = [
        ("annotate_tools", "Annotation &tools", lambda: dock.view().show_tab("draw")),
        ("adjudicate", "&Adjudicate masks…", lambda: dock.view().show_tab("adjudicate")),
    ]
    for name, text, slot in actions:
        action = QAction(text, window)
        action.triggered.connect(lambda _=False, s=slot: s())
        action.setEnabled(dock is not None)
        menu.addAction(action)
        window.actions_by_name[name] = action
    return menu
