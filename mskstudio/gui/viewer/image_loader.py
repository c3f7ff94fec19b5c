"""Decoding radiographs off the GUI thread; only the newest request is ever delivered.

The worker does everything heavy that a full-resolution render needs (decode, the
uint16 display array, window presets and the whole display pyramid), so the GUI
thread only hands one screen-sized pyramid level to pyqtgraph.

Grey frames (uncompressed, or compressed and decoded to integers) never become float:
the display array is the stored integers (shifted where needed), the presets come from
an integer histogram of their window sample, and the viewer keeps a ``ShownRadiograph``
that computes modality values of one pixel or one crop on demand.  For a 4000×3000
uncompressed radiograph the worker's part drops from ~175 ms to ~35 ms.  Colour,
palette, Modality LUT sequences and >16-bit ranges take the float path
(``read_radiograph`` + ``prepare_display``), as before.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field

import numpy as np
from PySide6.QtCore import QObject, QThreadPool, Signal
from PySide6.QtGui import QImage

from mskstudio.io.pixels import Radiograph, Window, window_sample

# The pyramid stops once the long side is this small (or at 64x, whichever comes first):
# a fitted 4000x3000 image on a small viewport still gets a level of about one pixel per
# screen pixel.
PYRAMID_MIN_SIDE = 256
PYRAMID_MAX_FACTOR = 64


def png_to_gray(png: bytes) -> np.ndarray | None:
    """An 8-bit grey array from thumbnail PNG bytes (None if it does not decode)."""
    img = QImage.fromData(png)
    if img.isNull():
        return None
    img = img.convertToFormat(QImage.Format.Format_Grayscale8)
    w, h, bpl = img.width(), img.height(), img.bytesPerLine()
    arr = np.frombuffer(img.constBits(), dtype=np.uint8, count=h * bpl).reshape(h, bpl)[:, :w]
    return arr.copy()


def halve_u16(a: np.ndarray, top: int = 65535) -> np.ndarray:
    """2×2 block mean (edge-padded to even size, rounded), uint16 in and out.

    Pairs of rows are added first (contiguous runs), then pairs of columns.  ``top`` is an
    upper bound of the values where known: up to 14 bits the four-pixel sums fit uint16
    and no wider accumulator is needed (~8 ms for 4000×3000 instead of ~12 ms; the
    original four strided adds took ~20 ms and a reshape-sum over the non-contiguous
    axes ~300 ms).
    """
    h, w = a.shape
    if h % 2 or w % 2:
        a = np.pad(a, ((0, h % 2), (0, w % 2)), mode="edge")
    if top <= (65535 - 2) // 4:
        rows = a[0::2] + a[1::2]
    else:
        rows = a[0::2].astype(np.uint32)
        rows += a[1::2]
    acc = rows[:, 0::2] + rows[:, 1::2]
    acc += 2
    acc >>= 2
    return acc.astype(np.uint16, copy=False)


def display_pyramid(full: np.ndarray, top: int = 65535) -> dict[int, np.ndarray]:
    """{1: full, 2: half, 4: quarter, ...} down to PYRAMID_MIN_SIDE or PYRAMID_MAX_FACTOR
    (``top``: an upper bound of ``full``'s values where known, see ``halve_u16``)."""
    levels = {1: full}
    f = 1
    while max(levels[f].shape) > PYRAMID_MIN_SIDE and f < PYRAMID_MAX_FACTOR:
        levels[f * 2] = halve_u16(levels[f], top)
        f *= 2
    return levels


@dataclass
class ShownRadiograph:
    """What the viewer keeps of a decoded frame: its uint16 display array and the exact
    map ``modality = offset + scale * display``, never a full float modality image.

    The float decode (colour, palette, LUT sequences, >16-bit ranges) keeps its float
    image in ``exact`` so readouts and crops stay exact there too.  Regions are made on
    demand: the pixel readout reads one value, the adjudication view a crop.
    """

    display: np.ndarray               # full-resolution uint16 (may be a read-only view on the file's bytes)
    offset: float
    scale: float
    invert: bool
    windows: list[Window] = field(default_factory=list)
    voi_lut: tuple | None = None
    auto: Window | None = None        # the auto 1-99 % window, the default where no DICOM window is stored
    exact: np.ndarray | None = None   # float32 modality image of the float decode only

    @property
    def shape(self) -> tuple[int, int]:
        return self.display.shape

    def modality_at(self, row: int, col: int) -> float:
        if self.exact is not None:
            return float(self.exact[row, col])
        return self.offset + self.scale * float(self.display[row, col])

    def modality_region(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """float32 modality values of ``[y0:y1, x0:x1]``."""
        if self.exact is not None:
            return self.exact[y0:y1, x0:x1]
        out = self.display[y0:y1, x0:x1].astype(np.float32)
        if self.scale != 1.0:
            out *= np.float32(self.scale)
        if self.offset != 0.0:
            out += np.float32(self.offset)
        return out

    def region(self, y0: int, y1: int, x0: int, x1: int) -> Radiograph:
        """A Radiograph of ``[y0:y1, x0:x1]`` (for ``render_u8`` of a crop)."""
        return Radiograph(self.modality_region(y0, y1, x0, x1), self.invert, list(self.windows),
                          voi_lut=self.voi_lut)

    def default_window(self) -> Window:
        return self.windows[0] if self.windows else self.auto


@dataclass
class DisplayImage:
    """A decoded radiograph with everything the viewer needs to show it at once.

    ``offset + scale * pyramid[1]`` gives the modality values back (see ``to_display_u16``).
    """

    rad: ShownRadiograph
    presets: list                     # [(name, Window)], as ``viewer_tools.presets_from`` returns
    offset: float
    scale: float
    pyramid: dict[int, np.ndarray]


def prepare_display(rad: Radiograph) -> DisplayImage:
    """The display products of a float-decoded radiograph (run on the worker thread)."""
    from mskstudio.gui.viewer.tools import to_display_u16, window_presets

    full, offset, scale = to_display_u16(rad.modality)
    presets = window_presets(rad)
    shown = ShownRadiograph(full, offset, scale, rad.invert, list(rad.windows), rad.voi_lut,
                            auto=presets[3][1], exact=rad.modality)
    return DisplayImage(shown, presets, offset, scale, display_pyramid(full))


def stored_display(values: np.ndarray, slope: float, intercept: float
                   ) -> tuple[np.ndarray, float, float] | None:
    """(uint16 display, offset, scale) of stored integers with modality = offset + scale * display
    exactly and scale > 0 (the display rises with the modality value, as ``to_display_u16``'s).

    uint16 stored values with a positive slope are shown as they are (no copy at all);
    other 16-bit data is shifted in one wrapping uint16 pass, narrower data widened, wider
    data shifted when its range fits 16 bits.  None where it does not, or for a zero slope:
    those take the float path."""
    if slope == 0.0 or values.ndim != 2 or values.dtype.kind not in "ui":
        return None
    rising = slope > 0
    if values.dtype == np.uint16 and rising:
        return values, float(intercept), float(slope)
    lo, hi = int(values.min()), int(values.max())
    if hi - lo > 65535:
        return None
    base = lo if rising else hi  # the stored value shown as 0
    if values.dtype.itemsize == 2:
        # (v - base) mod 2**16 on the uint16 view is v - base itself, as 0 <= v - base < 2**16
        # (or base - v for a falling slope); works for int16 too, without an int32 temporary.
        u = values.view(np.uint16)
        b = np.uint16(base % 65536)
        display = np.subtract(u, b) if rising else np.subtract(b, u)
    else:
        wide = values.astype(np.int64 if values.dtype.itemsize >= 4 else np.int32)
        display = (wide - base if rising else base - wide).astype(np.uint16)
    return display, float(intercept + slope * base), float(abs(slope))


def display_from_stored(frame) -> DisplayImage | None:
    """The display products straight from a ``StoredFrame`` (run on the worker thread).

    No float image at all: the display array is the stored integers (shifted where needed),
    the presets come from percentiles of its integer window sample (an integer histogram,
    mapped to modality units exactly, since the map is increasing and affine) and the
    pyramid is block means of the integers.  For a 4000×3000 frame that replaces ~250 ms of
    float32 work (rescale, quantisation, float percentiles) by ~30 ms, the pyramid included.
    None where the frame needs the float path (see ``stored_display``)."""
    from mskstudio.gui.viewer.tools import preset_percentiles, presets_from
    from mskstudio.io.stored_products import integer_percentiles

    made = stored_display(frame.values, frame.slope, frame.intercept)
    if made is None:
        return None
    full, offset, scale = made
    at = [offset + scale * p for p in integer_percentiles(window_sample(full), preset_percentiles(frame.invert))]
    bottom, top = int(full.min()), int(full.max())
    presets = presets_from(list(frame.windows), frame.invert, at, offset + scale * bottom, offset + scale * top)
    shown = ShownRadiograph(full, offset, scale, frame.invert, list(frame.windows), frame.voi_lut,
                            auto=presets[3][1])
    return DisplayImage(shown, presets, offset, scale, display_pyramid(full, top))


def decode_for_display(path, frame: int = 0, wanted=lambda: True) -> DisplayImage | None:
    """Read one frame and make its display products: from the stored integers where
    ``read_stored_frame`` gives them (grey frames, compressed ones decoded to integers),
    else through the float ``read_radiograph`` of the same dataset.  None once ``wanted()``
    turns false before the float path's display work (it would be thrown away)."""
    from mskstudio.io.dicom import read_dataset, read_radiograph, read_stored_frame

    ds = read_dataset(path)
    stored = read_stored_frame(ds, frame)
    shown = display_from_stored(stored) if stored is not None else None
    if shown is not None:
        return shown
    rad = read_radiograph(ds, frame=frame)
    return prepare_display(rad) if wanted() else None


class _Signals(QObject):
    done = Signal(int, int, object)      # generation, image id, DisplayImage
    failed = Signal(int, int, str, str)  # generation, image id, message, details


class _DecodeTask:
    """One decode request.  A plain callable, not a QRunnable subclass: the pool wraps it
    in a C++ runnable, so no Python-subclassed QObject is deleted on the worker thread
    while the GUI thread's garbage collector may be looking at it (that crashed)."""

    def __init__(self, loader: ImageLoader, generation: int, image_id: int, path, frame: int):
        self.loader, self.gen, self.image_id = loader, generation, image_id
        self.path, self.frame = path, frame

    def run(self) -> None:
        if self.gen != self.loader.generation:
            return  # the user moved on before this started: skip the work
        try:
            shown = decode_for_display(self.path, self.frame, wanted=lambda: self.gen == self.loader.generation)
        except Exception as exc:  # noqa: BLE001 - reported to the GUI, never swallowed
            self.loader.signals.failed.emit(self.gen, self.image_id, str(exc), traceback.format_exc())
            return
        if shown is not None:  # None: the user moved on while it decoded
            self.loader.signals.done.emit(self.gen, self.image_id, shown)


class ImageLoader:
    """``request(image_id, path, frame)``; ``signals.done``/``failed`` arrive for the latest only."""

    def __init__(self):
        self.pool = QThreadPool()
        self.pool.setMaxThreadCount(1)
        self.signals = _Signals()
        self.generation = 0

    def request(self, image_id: int, path, frame: int = 0) -> int:
        self.generation += 1
        self.pool.start(_DecodeTask(self, self.generation, image_id, path, frame).run)
        return self.generation

    def is_current(self, generation: int) -> bool:
        return generation == self.generation

    def wait(self, ms: int = 30000) -> bool:
        return self.pool.waitForDone(ms)
