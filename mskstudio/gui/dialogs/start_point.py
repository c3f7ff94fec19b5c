"""Where a network's weights start: scratch, a finished DeepCluster run, or a weights file.

``StartPointPicker`` is the row both the Train classifier and the DeepCluster dialogs
show; ``value()`` is the job's ``init`` parameter and ``start_point_problem`` says what
makes one impossible, so the two dialogs accept and refuse the same things.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QLineEdit, QPushButton, QWidget

NO_FILE = "(no file chosen)"
NO_RUN = "run:?"


def start_point_problem(project, init) -> str | None:
    """Why ``init`` cannot start a training (None = fine)."""
    if isinstance(init, str) and init.startswith("run:"):
        try:
            parent = project.models.get(int(init[4:]))
        except ValueError:
            parent = None
        if parent is None or parent["kind"] != "deepcluster" or parent["status"] != "done":
            return f"{init} is not a finished DeepCluster run."
    elif init not in (None, "", "scratch") and not Path(str(init)).is_file():
        return f"Weights file not found: {init}"
    return None


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
