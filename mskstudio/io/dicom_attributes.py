"""Attributes of a DICOM image read as values: windows, spacing, numbers, ages, and the
per-frame view of enhanced multi-frame files (PS3.3 C.7.6.16).

The functions take anything with ``get(keyword)``: a pydicom ``Dataset``, the dict of
the importer's header scan, or a ``FrameAttributes`` view.

Enhanced objects (Enhanced XA/XRF, vendor multi-frame DX, DBT projections) keep pixel
spacing, the Modality LUT and the windows inside functional groups instead of the top
level: ``SharedFunctionalGroupsSequence`` (one item, true of every frame) and
``PerFrameFunctionalGroupsSequence`` (one item per frame).  Each group is a macro
sequence whose single item holds the usual attributes:

* Pixel Measures (``PixelMeasuresSequence``): PixelSpacing;
* Pixel Value Transformation (``PixelValueTransformationSequence``): RescaleSlope,
  RescaleIntercept (a frame may have its own);
* Frame VOI LUT (``FrameVOILUTSequence``): WindowCenter, WindowWidth, explanations.

``frame_attributes(ds, frame)`` answers ``get(keyword)`` for one frame: the frame's own
macro first, then the shared one, then the top level, so the readers in ``dicom.py``
work unchanged on classic and enhanced files.  A header read without the per-frame
sequence (the importer's scan) passes ``frame=None`` and sees the shared groups only.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import pydicom

from mskstudio.io.pixels import Window

MACROS = ("PixelMeasuresSequence", "PixelValueTransformationSequence", "FrameVOILUTSequence")
_MISSING = object()


class FrameAttributes:
    """Read-only ``get``/``in`` view of one frame's attributes over a dataset (or a dict)."""

    def __init__(self, ds: Any, overrides: dict[str, Any]):
        self.ds, self.overrides = ds, overrides

    def get(self, keyword: str, default: Any = None) -> Any:
        value = self.overrides.get(keyword, _MISSING)
        return self.ds.get(keyword, default) if value is _MISSING else value

    def __contains__(self, keyword: str) -> bool:
        return keyword in self.overrides or keyword in self.ds


def _macro_values(groups: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if groups is None:
        return values
    for macro in MACROS:
        seq = groups.get(macro)
        if seq:
            for element in seq[0]:
                if element.keyword and element.value not in (None, ""):
                    values[element.keyword] = element.value
    return values


def frame_attributes(ds: Any, frame: int | None = 0) -> Any:
    """``ds`` itself for a classic file, else a ``FrameAttributes`` view of ``frame``."""
    shared = ds.get("SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") if frame is not None else None
    if not shared and not per_frame:
        return ds
    overrides = _macro_values(shared[0] if shared else None)
    if per_frame and frame is not None and 0 <= frame < len(per_frame):
        overrides.update(_macro_values(per_frame[frame]))
    return FrameAttributes(ds, overrides) if overrides else ds


def frame_header(ds: Any, frame: int) -> dict:
    """Spacing, first window and rescale of one frame (its functional groups win)."""
    attrs = frame_attributes(ds, frame)
    spacing, source = spacing_of(attrs)
    windows = windows_of(attrs)
    return {"spacing_mm": spacing, "spacing_source": source, "window": windows[0] if windows else None,
            "rescale_slope": number_of(attrs, "RescaleSlope", 1.0),
            "rescale_intercept": number_of(attrs, "RescaleIntercept", 0.0)}


def age_years(ds: Any) -> float | None:
    age = str(ds.get("PatientAge", "") or "").strip().upper()
    m = re.fullmatch(r"(\d{1,3})\s*([DWMY]?)", age)
    if m:
        n, unit = float(m.group(1)), m.group(2) or "Y"
        return round(n / {"D": 365.25, "W": 52.1775, "M": 12.0, "Y": 1.0}[unit], 3)
    born = parse_date(ds.get("PatientBirthDate"))
    when = next((d for d in (parse_date(ds.get(k))
                             for k in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate")) if d),
                None)
    if born and when and when >= born:
        return round((when - born).days / 365.25, 3)
    return None


def parse_date(value) -> date | None:
    s = str(value or "").strip()
    if len(s) >= 8 and s[:8].isdigit():
        try:
            return date(int(s[:4]), int(s[4:6]), int(s[6:8]))
        except ValueError:
            return None
    return None


def as_list(value) -> list:
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return list(value)
    return [value]


def windows_of(ds: Any) -> list[Window]:
    centers, widths = as_list(ds.get("WindowCenter")), as_list(ds.get("WindowWidth"))
    names = as_list(ds.get("WindowCenterWidthExplanation"))
    out = []
    for i, (c, w) in enumerate(zip(centers, widths, strict=False)):
        try:
            c, w = float(c), float(w)
        except (TypeError, ValueError):
            continue
        if w >= 1:  # PS3.3 C.11.2.1.2: width shall be >= 1
            out.append(Window(c, w, str(names[i]) if i < len(names) else ""))
    return out


def spacing_of(ds: Any) -> tuple[tuple[float, float] | None, str | None]:
    """PixelSpacing (patient plane) wins; else ImagerPixelSpacing (detector plane),
    divided by EstimatedRadiographicMagnificationFactor when present (PS3.3 C.8.11.4)."""
    def pair(v):
        vals = as_list(v)
        try:
            r, c = float(vals[0]), float(vals[1])
        except (IndexError, TypeError, ValueError):
            return None
        return (r, c) if r > 0 and c > 0 else None

    if (sp := pair(ds.get("PixelSpacing"))) is not None:
        return sp, "pixel"
    if (sp := pair(ds.get("ImagerPixelSpacing"))) is not None:
        try:
            mag = float(ds.get("EstimatedRadiographicMagnificationFactor") or 0)
        except (TypeError, ValueError):
            mag = 0.0
        if mag > 0 and mag != 1.0:
            return (sp[0] / mag, sp[1] / mag), "imager_corrected"
        return sp, "imager"
    return None, None


def text_of(ds: Any, kw: str) -> str:
    v = ds.get(kw)
    return "" if v is None else str(v)


def number_of(ds: Any, kw: str, default: float) -> float:
    try:
        v = ds.get(kw)
        return default if v is None or v == "" else float(v)
    except (TypeError, ValueError):
        return default
