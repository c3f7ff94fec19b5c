"""The "Start here" workspace: the loop in five steps, each with its status and a button.

cluster → label → annotate → train → review.  Every status is read from the project (the
same figures the boards and the CLI show) and refreshed when the project or its data change;
each button takes the user to the place where the step is done.  On the phantom demo a
"Run the whole loop" button runs job ``demo-loop`` (what ``mskstudio demo`` runs without a
display), so every workspace has something to show.
"""

from __future__ import annotations

from PySide6.QtWidgets import QGridLayout, QLabel, QPushButton, QVBoxLayout, QWidget

STEPS = ("cluster", "label", "annotate", "train", "review")
TITLES = {"cluster": "1. Cluster the images", "label": "2. Label whole clusters",
          "annotate": "3. Draw lesion masks and boxes", "train": "4. Train a classifier",
          "review": "5. Review its predictions"}
BUTTONS = {"cluster": "Cluster now", "label": "Open Clusters", "annotate": "Annotate",
           "train": "Train classifier…", "review": "Open Review"}


class StartHere(QWidget):
    KEYS_HELP: list = []

    def __init__(self, window, parent=None):
        super().__init__(parent)
        self.window_ = window
        self.status: dict[str, QLabel] = {}
        self.buttons: dict[str, QPushButton] = {}
        self._opened = None
        intro = QLabel("<b>Start here</b> — the human-in-the-loop cycle, one step after the other. "
                       "Each step says where the project stands; its button takes you there.")
        intro.setWordWrap(True)
        grid = QGridLayout()
        for row, step in enumerate(STEPS):
            title = QLabel(f"<b>{TITLES[step]}</b>")
            status = QLabel()
            status.setWordWrap(True)
            button = QPushButton(BUTTONS[step])
            button.clicked.connect(lambda _c=False, s=step: self.go(s))
            grid.addWidget(title, row, 0)
            grid.addWidget(status, row, 1)
            grid.addWidget(button, row, 2)
            self.status[step], self.buttons[step] = status, button
        grid.setColumnStretch(1, 1)
        self.loop_btn = QPushButton("Run the whole loop on the demo (a few minutes)")
        self.loop_btn.setToolTip("Job demo-loop: cluster, label the clusters as a simulated radiologist, "
                                 "train, predict and explain, similar cases, box segmenter, ONNX")
        self.loop_btn.clicked.connect(self.run_loop)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(grid)
        layout.addWidget(self.loop_btn)
        layout.addStretch(1)
        window.project_changed.connect(self.refresh)
        changed = getattr(window, "data_changed", None)
        if changed is not None:
            changed.connect(self._data_changed)
        self._stale = False
        self.refresh()

    def _data_changed(self, _subjects) -> None:
        # The store's feed reports other processes' edits every few hundred ms while a job
        # runs: a hidden panel redraws when shown, not on every report.
        if self.isVisible():
            self.refresh()
        else:
            self._stale = True

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._stale:
            self._stale = False
            self.refresh()

    @property
    def project(self):
        return getattr(self.window_, "project", None)

    def statuses(self) -> dict[str, str]:
        """One line per step, from the store."""
        p = self.project
        if p is None:
            return {s: "Open or create a project first (File menu)." for s in STEPS}
        runs = p.clusters.runs()
        out = {"cluster": (f"{len(runs)} cluster run(s); the latest has {runs[0]['n_clusters']} clusters of "
                           f"{runs[0]['n_images']} images." if runs else
                           f"Not yet: {p.images.count()} images wait to be grouped.")}
        if runs:
            prog = p.clusters.progress(runs[0]["id"])
            out["label"] = (f"{prog['clusters_reviewed']}/{prog['clusters_total']} clusters reviewed, "
                            f"{prog['images_covered']}/{prog['images_total']} images labelled.")
        else:
            out["label"] = "Cluster first: then label whole clusters with keys 1–9, D, M, S."
        counts = p.annotations.counts()
        out["annotate"] = f"{counts['masks']} lesion mask(s), {counts['boxes']} box(es) in the project."
        classifiers = [r for r in p.models.list("classifier") if r["status"] == "done"]
        out["train"] = (f"{len(classifiers)} trained classifier(s); the latest is run {classifiers[0]['id']}."
                        if classifiers else "No classifier yet: train one on the labels.")
        n_pred = p.models.prediction_count() if classifiers else 0
        out["review"] = (f"{n_pred} prediction(s) to review (uncertain first)." if n_pred
                         else "Predictions appear here after training.")
        return out

    def refresh(self) -> None:
        for step, text in self.statuses().items():
            self.status[step].setText(text)
        p = self.project
        if p is not None and p is not self._opened and p.meta("demo") == "phantoms":
            # A demo project opens here: the newcomer sees the loop before the data.
            self._opened = p
            self.window_.workspace.setCurrentWidget(self)
        self.loop_btn.setVisible(p is not None and p.meta("demo") == "phantoms")
        for button in self.buttons.values():
            button.setEnabled(p is not None)

    def _tab(self, title: str) -> None:
        tabs = self.window_.workspace
        for i in range(tabs.count()):
            if tabs.tabText(i) == title:
                tabs.setCurrentIndex(i)
                return

    def go(self, step: str) -> None:
        w = self.window_
        if step == "cluster":
            self._tab("Clusters")
            board = w.workspace.currentWidget()
            if hasattr(board, "submit_clustering"):
                board.submit_clustering(fast=True)
        elif step == "label":
            self._tab("Clusters")
        elif step == "annotate":
            self._tab("Viewer")
            dock = getattr(w, "docks", {}).get("Annotate")
            if dock is not None:
                dock.show()
                dock.raise_()
                dock.view().controller.set_tool("box")
        elif step == "train":
            action = getattr(w, "actions_by_name", {}).get("train")
            if action is not None:
                action.trigger()
        elif step == "review":
            self._tab("Review")

    def run_loop(self) -> int | None:
        runner = getattr(self.window_, "runner", None)
        return runner.submit("demo-loop", {}) if runner is not None and self.project is not None else None
