"""Undoable verdicts of the label-noise board (see ``noise_board``)."""

from __future__ import annotations

from mskstudio.gui.commands import SetLabelCommand
from mskstudio.gui.noise.rows import ClassInfo


class NoiseReviewCommand(SetLabelCommand):
    """A reviewer's verdict on a queued image: a human label plus a ``noise.review`` audit."""

    def __init__(self, project, image_id: int, label_set: str, label_set_id: int, cls: ClassInfo,
                 given: str, on_change=None):
        super().__init__(project, [image_id], label_set_id, cls.id, on_change=on_change)
        verb = "kept" if cls.name == given else f"{given} →"
        self.setText(f"Noise review: #{image_id} {verb} {cls.name}")
        self.details = {"label_set": label_set, "class": cls.name, "given": given}

    def redo(self) -> None:
        super().redo()
        self.project.audit("noise.review", "image", self.ids[0], self.details)
