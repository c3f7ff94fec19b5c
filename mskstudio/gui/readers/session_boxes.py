"""The lesion boxes a reader draws on the case being read, before the answer stores them.

``BlindImages`` hands this to the reading window's viewer as its ``annotations``: the
viewer's box layer draws, moves, resizes and deletes these boxes as it does the
project's, but nothing else — no other reader's, imported or model box — can reach it.
"""

from __future__ import annotations

from mskstudio.domain import Box


class SessionBoxes:
    """The lesion boxes this reader draws on the current case, and only those.

    Held here (never in the project's ``boxes``) until the answer commits them with the
    read, so no other reader's, imported or model box can reach the viewer.  It answers
    the viewer's ``annotations`` calls (draw, move, resize, delete) for the open case."""

    drawable = True
    COLOR = "#ffd23f"

    def __init__(self):
        self.image_id: int | None = None
        self._boxes: dict[int, tuple[float, float, float, float]] = {}
        self._next_id = 1

    def start(self, image_id: int | None) -> None:
        """A new case: no box yet."""
        self.image_id, self._boxes = image_id, {}

    def rects(self) -> list[tuple[float, float, float, float]]:
        return list(self._boxes.values())

    def boxes_of(self, image_id: int) -> list[Box]:
        if image_id != self.image_id:
            return []
        return [Box(id=k, image_id=image_id, class_id=None, annotator="", source="you", x0=r[0], y0=r[1],
                    x1=r[2], y1=r[3], class_name=f"lesion {n}", color=self.COLOR)
                for n, (k, r) in enumerate(self._boxes.items(), start=1)]

    def add_box(self, image_id, class_id, rect, annotator=None, source=None) -> int:
        if image_id != self.image_id:
            raise KeyError(f"image {image_id} is not the case being read")
        # Negative ids: never a stored box's id, whatever the viewer's box events remember.
        box_id, self._next_id = -self._next_id, self._next_id + 1
        self._boxes[box_id] = tuple(float(v) for v in rect)
        return box_id

    def set_box(self, box_id: int, rect) -> None:
        if box_id not in self._boxes:
            raise KeyError(f"box {box_id}: not a box of this case")
        self._boxes[box_id] = tuple(float(v) for v in rect)

    def delete_box(self, box_id: int) -> None:
        self._boxes.pop(box_id, None)
