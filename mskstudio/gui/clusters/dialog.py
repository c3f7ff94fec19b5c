"""DeepCluster dialog: the parameters of job ``cluster`` a reviewer may want to change.

``DeepClusterDialog(project)`` starts from ``ml/deepcluster.py`` DEFAULTS with the
number of clusters scaled to the project (about 40 images each) and, on a machine
without a GPU, a smaller input side (128 px: an epoch on 2,000 images takes about a
minute on 2 CPU cores at 96 px).  ``params()`` is the job's parameter dict;
``problems()`` lists what makes them impossible (empty = fine).
"""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QSpinBox,
    QVBoxLayout,
)

from mskstudio.gui.dialogs.start_point import StartPointPicker, start_point_problem

CPU_INPUT_SIZE = 128


class CheckedDialog(QDialog):
    """A form above a line of problems and OK / Cancel; OK closes only when ``problems()`` is empty."""

    def lay_out(self, intro: str, form: QFormLayout) -> None:
        self.problem = QLabel()
        self.problem.setStyleSheet("color: #e06c4b")
        self.problem.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel(intro))
        lay.addLayout(form)
        lay.addWidget(self.problem)
        lay.addWidget(buttons)

    def problems(self) -> list[str]:
        return []

    def _accept(self) -> None:
        problems = self.problems()
        self.problem.setText("\n".join(problems))
        if not problems:
            self.accept()


class DeepClusterDialog(CheckedDialog):
    def __init__(self, project, parent=None, *, has_gpu: bool | None = None):
        super().__init__(parent)
        from mskstudio.ml.cluster.deepcluster import DEFAULTS
        from mskstudio.ml.cluster.features import default_k

        self.setWindowTitle("DeepCluster")
        self.project = project
        self.n_images = len(project.images.ids())
        if has_gpu is None:
            from mskstudio.ml.models import pick_device

            has_gpu = pick_device("auto").type == "cuda"

        self.epochs = QSpinBox(minimum=1, maximum=500, value=int(DEFAULTS["epochs"]))
        self.k = QSpinBox(minimum=2, maximum=max(2, self.n_images), value=default_k(self.n_images))
        self.k.setToolTip("Clusters to review; more than the classes you expect (about 40 images each)")
        self.input_size = QSpinBox(minimum=32, maximum=1024, singleStep=32,
                                   value=int(DEFAULTS["input_size"]) if has_gpu else CPU_INPUT_SIZE)
        self.input_size.setSuffix(" px")
        self.arch = QComboBox()
        self.arch.addItems(["resnet18", "resnet50"])
        self.batch_size = QSpinBox(minimum=2, maximum=1024, value=int(DEFAULTS["batch_size"]))
        self.lr = QDoubleSpinBox(decimals=4, minimum=0.0001, maximum=1.0, singleStep=0.01,
                                 value=float(DEFAULTS["lr"]))
        self.start = StartPointPicker(project)
        form = QFormLayout()
        form.addRow("Epochs", self.epochs)
        form.addRow("Clusters (k)", self.k)
        form.addRow("Input side", self.input_size)
        form.addRow("Backbone", self.arch)
        form.addRow("Start from", self.start)
        form.addRow("Batch size", self.batch_size)
        form.addRow("Learning rate", self.lr)
        self.lay_out(f"{self.n_images} images; checkpoints every epoch, cancel and resume any time.", form)

    def params(self) -> dict[str, Any]:
        return {"mode": "deepcluster", "epochs": self.epochs.value(), "k": self.k.value(),
                "input_size": self.input_size.value(), "arch": self.arch.currentText(),
                "batch_size": self.batch_size.value(), "lr": self.lr.value(),
                "init": self.start.value()}

    def problems(self) -> list[str]:
        p = self.params()
        out = []
        if self.n_images < 2:
            out.append("Clustering needs at least two images; import some first.")
        if p["k"] > self.n_images:
            out.append(f"k = {p['k']} is more than the {self.n_images} images.")
        if (problem := start_point_problem(self.project, p["init"])) is not None:
            out.append(problem)
        return out


class ReclusterDialog(CheckedDialog):
    """Another number of clusters from a run's stored features: k-means with the new k, or
    the run's own clusters merged into k groups (each new cluster a union of current ones)."""

    def __init__(self, n_images: int, n_clusters: int, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Re-cluster")
        self.n_images, self.n_clusters = n_images, n_clusters
        self.method = QComboBox()
        self.method.addItem("k-means on this run's features", "kmeans")
        self.method.addItem("Merge this run's clusters into fewer groups", "merge")
        self.k = QSpinBox()
        self.k.setRange(2, max(2, n_images))
        self.k.setValue(max(2, n_clusters))
        form = QFormLayout()
        form.addRow("Method", self.method)
        form.addRow("Clusters", self.k)
        self.lay_out(f"{n_images} images in {n_clusters} clusters; no network runs (about a second).", form)

    def params(self) -> dict[str, Any]:
        return {"k": self.k.value(), "method": self.method.currentData()}

    def problems(self) -> list[str]:
        p = self.params()
        if p["method"] == "merge" and p["k"] >= self.n_clusters:
            return [f"Merging needs fewer than the run's {self.n_clusters} clusters."]
        return []
