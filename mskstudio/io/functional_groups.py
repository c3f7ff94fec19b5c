"""Per-frame attributes of enhanced multi-frame files (PS3.3 C.7.6.16).

Enhanced objects (Enhanced XA/XRF, Enhanced DX-like vendor objects, DBT projections)
keep pixel spacing, the Modality LUT and the windows inside functional groups instead
of the top level: ``SharedFunctionalGroupsSequence`` (one item, true of every frame)
and ``PerFrameFunctionalGroupsSequence`` (one item per frame).  Each group is a macro
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

from typing import Any

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
