"""Where a network's weights start: scratch, a finished DeepCluster run, or a weights file.

``StartPointPicker`` is the row both the Train classifier and the DeepCluster dialogs
show; ``value()`` is the job's ``init`` parameter and ``start_point_problem`` (in the
core, ``ml.params``, so the jobs and the CLI check the same) says what makes one impossible.
"""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QLineEdit, QPushButton, QWidget

from mskstudio.ml.params import start_point_problem  # noqa: F401 - the dialogs import it from here

NO_FILE = "(no file chosen)"
NO_RUN = "run:?"


class StartPointPicker(QWidget):
    def __init__(self, project, parent=None):
        super().__init__(parent)
        self.kind = QComboBox()
        self.kind.addItem("From scratch", "scratch")
        self.kind.addItem("DeepCluster run", "run")
        self.kind.addItem("Weights file", "file")
        self.run = QComboBox()
        for r in project.models.list("deepcluster") if project is not None else []:
            if r["status"] == "done":
                self.run.addItem(f"#{r['id']} {r['name']} ({r['arch']})", int(r["id"]))
        self.file = QLineEdit()
        self.file.setPlaceholderText("weights file (.pt / .pth)")
        self.browse = QPushButton("…")
        self.browse.clicked.connect(self._browse)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        for w in (self.kind, self.run, self.file, self.browse):
            row.addWidget(w)
        self.kind.currentIndexChanged.connect(lambda _i: self._kind_changed())
        self._kind_changed()

    def value(self) -> str:
        """``scratch``, ``run:ID`` or a file path (placeholders when nothing was chosen)."""
        kind = self.kind.currentData()
        if kind == "run":
            run = self.run.currentData()
            return f"run:{run}" if run is not None else NO_RUN
        if kind == "file":
            return self.file.text().strip() or NO_FILE
        return "scratch"

    def _kind_changed(self) -> None:
        kind = self.kind.currentData()
        self.run.setVisible(kind == "run")
        self.file.setVisible(kind == "file")

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Weights file", "",
                                              "PyTorch weights (*.pt *.pth);;All (*)")
        if path:
            self.file.setText(path)
            self.kind.setCurrentIndex(self.kind.findData("file"))
