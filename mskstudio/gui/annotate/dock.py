"""The "Annotate" dock of the main window: the drawing panel (``annotate``) driving the
main viewer, the adjudication view beside it, and "Fill boxes with model" as a job."""

from __future__ import annotations

from PySide6.QtCore import QEvent
from PySide6.QtWidgets import QTabWidget, QVBoxLayout, QWidget

from mskstudio.gui.annotate.panel import AnnotateController, AnnotatePanel


class AnnotateDock(QWidget):
    """The "Annotate" dock of the main window: a Draw tab (the panel, driving the main
    viewer) and an Adjudicate tab (two readers' masks of the open image)."""

    TABS = ("draw", "adjudicate")

    def __init__(self, window):
        from mskstudio.gui.annotate.adjudicate import AdjudicationPanel

        super().__init__()
        self.window = window
        self.controller = AnnotateController(self, undo_group=window.undo_group,
                                             base_stack=window.undo_stack)
        self.controller.attach(window.viewer)
        self.controller.save_failed.connect(lambda _i, msg, details: window.show_error(
            "Mask not saved", msg, details))
        self.panel = AnnotatePanel(self.controller, self, undo_shortcuts=False)
        self.panel.fill_requested.connect(self.fill_boxes)
        self.panel.detector_boxes_requested.connect(self.boxes_from_detector)
        self._fill_jobs: dict[int, tuple[int, int]] = {}  # job id -> (image id, class id)
        self._detect_jobs: dict[int, tuple[int, int, int]] = {}  # job id -> (image, class, run)
        window.runner.job_returned.connect(self._fill_returned)
        window.runner.job_returned.connect(self._detect_returned)
        self.adjudication = AdjudicationPanel(self, radiograph_of=self._shown_radiograph)
        self.adjudication.redraw_requested.connect(self.redraw_final)
        self.adjudication.decided.connect(lambda *_: self._final_changed())
        self.tabs = QTabWidget()
        self.tabs.addTab(self.panel, "Draw")
        self.tabs.addTab(self.adjudication, "Adjudicate")
        self.tabs.currentChanged.connect(lambda _i: self._follow_image())
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tabs)
        window.project_changed.connect(self._project_changed)
        window.image_changed.connect(lambda _id: self._follow_image())
        # Pending strokes must be in the store before the window closes its project: the
        # filter sees the close event before MainWindow.closeEvent runs.
        window.installEventFilter(self)
        self._project_changed()

    def eventFilter(self, obj, event) -> bool:
        if obj is self.window and event.type() == QEvent.Type.Close:
            self.controller.flush()
        return False

    def shutdown(self) -> None:
        """The window closes: write what is pending, then stop the writer thread and its connection."""
        self.controller.saver.shutdown()

    def _shown_radiograph(self, image_id: int):
        """The main viewer's decoded image, window and inversion, if it shows ``image_id``."""
        v = self.window.viewer
        if v.image_id != image_id or v.rad is None:
            return None
        return v.rad, v.window, v.display_invert

    def show_tab(self, name: str) -> None:
        """Show the dock with its ``draw`` or ``adjudicate`` tab in front (the Annotate menu)."""
        self.tabs.setCurrentIndex(self.TABS.index(name))
        dock = self.parentWidget()
        if dock is not None:
            dock.show()
            dock.raise_()

    def _project_changed(self) -> None:
        project = self.window.project
        self.controller.set_project(project)
        if project is not None and not project.readonly:
            self.panel.refresh_classes()
        self.adjudication.set_project(project)
        self.setEnabled(project is not None and not project.readonly)
        viewer = self.window.viewer
        if project is not None and viewer.rad is not None and viewer.image_id is not None:
            self.controller.set_image(viewer.image_id, project=project)  # already on screen
        self._follow_image()

    def _follow_image(self) -> None:
        """Refresh the adjudication view for the window's image, only while it is in front."""
        if self.tabs.currentWidget() is self.adjudication and self.window.project is not None:
            self.controller.flush()  # compare what the store holds, the last stroke included
            self.adjudication.show_image(self.window.image_id)

    def fill_boxes(self) -> int | None:
        """Submit ``fill-boxes`` for the open image's boxes of the current class."""
        from mskstudio.ml.segment.roi_seg import latest_box_segmenter

        ctl, w = self.controller, self.window
        if ctl.image_id is None or w.project is None:
            return None
        if latest_box_segmenter(w.project) is None:
            w.show_error("No box segmenter", "Train one first: Model › Train box segmenter… "
                         "(it learns from the project's lesion masks).")
            return None
        if not any(b.class_id == ctl.class_id for b in w.project.annotations.boxes_of(ctl.image_id)):
            w.show_error("No box", "Draw a box around the lesion first (Box tool, X), in the chosen class.")
            return None
        ctl.flush()
        job_id = w.runner.submit("fill-boxes", {"image_id": ctl.image_id, "class_id": ctl.class_id})
        self._fill_jobs[job_id] = (ctl.image_id, ctl.class_id)
        return job_id

    def _detector_threshold(self) -> float:
        """The Lesions dock's confidence slider when that dock is there, else every stored box
        (``detect`` stores only boxes at or above the run's own store threshold)."""
        dock = getattr(self.window, "docks", {}).get("Lesions")
        view = dock.view() if dock is not None and hasattr(dock, "view") else None
        return float(getattr(view, "threshold", 0.0) or 0.0)

    def boxes_from_detector(self) -> list[int] | int | None:
        """Pre-fill the open image's boxes (current class) from the latest detector run: its
        stored predictions on this image are accepted as human boxes (audited as accepted
        predictions); with none stored yet, ``detect`` runs on this image first (a job) and its
        boxes are accepted when it returns.  Then "Fill boxes with model" makes the masks.
        Returns the new box ids, or the submitted job id."""
        from mskstudio.ml.detect.predict import latest_detector

        ctl, w = self.controller, self.window
        if ctl.image_id is None or w.project is None or ctl.class_id is None:
            return None
        project = w.project
        runs = project.detections.runs_with_predictions()
        stored = [r for r in reversed(runs)  # reviewed ones too: this image was detected already
                  if project.detections.predictions(ctl.image_id, run_id=r, include_reviewed=True)]
        run_id = stored[0] if stored else latest_detector(project)
        if run_id is None:
            w.show_error("No detector", "Train a lesion detector first (mskstudio train-det).")
            return None
        ctl.flush()
        if stored:
            return self._accept_detections(ctl.image_id, ctl.class_id, run_id)
        job_id = w.runner.submit("detect", {"run_id": run_id, "image_ids": [ctl.image_id]})
        self._detect_jobs[job_id] = (ctl.image_id, ctl.class_id, run_id)
        return job_id

    def _accept_detections(self, image_id: int, class_id: int, run_id: int) -> list[int]:
        w = self.window
        new = w.project.detections.accept_image(image_id, run_id, min_score=self._detector_threshold(),
                                                class_id=class_id)
        if not new:
            w.show_error("No lesion found", f"Detector run {run_id} has no unreviewed box on this image at "
                         "the chosen confidence: draw the box yourself (Box tool, X).")
        elif getattr(w, "image_id", None) == image_id and hasattr(w, "open_image"):
            w.open_image(image_id)  # the viewer draws the new human boxes (its one redraw path)
        lesions = getattr(w, "docks", {}).get("Lesions")
        if lesions is not None and hasattr(lesions.view(), "reload_runs"):
            lesions.view().reload_runs()
        return new

    def _detect_returned(self, job_id: int, _result) -> None:
        image_id, class_id, run_id = self._detect_jobs.pop(job_id, (None, None, None))
        if image_id is not None and self.window.project is not None:
            self._accept_detections(image_id, class_id, run_id)

    def _fill_returned(self, job_id: int, result) -> None:
        """Merge the stored model mask into the edited mask, if the user is still on it;
        otherwise it waits as a model proposal ("Accept model mask")."""
        image_id, class_id = self._fill_jobs.pop(job_id, (None, None))
        ctl = self.controller
        if image_id is None or (ctl.image_id, ctl.class_id, ctl.source) != (image_id, class_id, "human"):
            return
        mask_id = (result or {}).get("masks", {}).get(str(class_id))
        if mask_id is not None:
            ctl.merge_mask(self.window.project.annotations.load_mask(int(mask_id)))

    def _final_changed(self) -> None:
        if self.controller.source == "adjudicated" and self.controller.image_id is not None:
            self.controller._load_mask()  # the overlay shows the new final mask

    def redraw_final(self, image_id: int, class_id: int) -> None:
        """Edit the adjudicated mask of (image, class) with the drawing tools."""
        if self.controller.image_id != image_id:
            self.window.open_image(image_id)
            self.controller.set_image(image_id, project=self.window.project)
        self.panel.classes.blockSignals(True)  # edit_source below loads the mask, once
        self.panel.classes.setCurrentIndex(max(0, self.panel.classes.findData(class_id)))
        self.panel.classes.blockSignals(False)
        self.controller.class_id = int(class_id)
        self.controller.edit_source("adjudicated")
        if self.controller.tool is None:
            self.controller.set_tool("brush")
        self.show_tab("draw")
