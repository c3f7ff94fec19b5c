"""Train classifier dialog: asks every parameter of job ``train``, validates, submits.

``TrainDialog(main_window)`` fills its choices from the project (label sets, their
classes, centres, DeepCluster runs) and starts from ``TrainParams``' defaults.
``params()`` is the job's parameter dict; ``validate_params(project, params)`` returns
``TrainParams.problems`` (plain language, empty = fine), the check the CLI and the job
run too; ``submit()`` asks the window's runner for a ``train`` job and returns its id
(None when a problem was shown instead).
"""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from mskstudio.domain import is_truth_set
from mskstudio.gui.dialogs.start_point import StartPointPicker
from mskstudio.ml.classify.classifier import architectures
from mskstudio.ml.classify.params import TrainParams
from mskstudio.ml.params import label_set_row

D = TrainParams()  # the defaults of job ``train``, defined once in the core


def validate_params(project, p: dict[str, Any]) -> list[str]:
    """What makes these parameters impossible for this project (empty list = fine): the
    core's ``TrainParams.problems``, so the dialog, the CLI and the job say the same."""
    try:
        params = TrainParams.from_json(p)
    except (TypeError, ValueError) as exc:
        return [str(exc)]
    return params.problems(project)


class TrainDialog(QDialog):
    def __init__(self, window, parent=None):
        super().__init__(parent if parent is not None else (window if isinstance(window, QWidget) else None))
        self.window_ = window
        self.setWindowTitle("Train classifier")
        self.last_job_id: int | None = None
        project = window.project
        form = QFormLayout()

        self.label_set = QComboBox()
        for r in project.labels.label_sets() if project is not None else []:
            if not is_truth_set(r["name"]):
                self.label_set.addItem(r["name"], r["name"])
        self.label_set.currentIndexChanged.connect(lambda _i: self._fill_classes())
        form.addRow("Label set", self.label_set)
        self.arch = QComboBox()
        self.arch.addItems(architectures())  # the registry itself: no second copy of the names
        form.addRow("Architecture", self.arch)

        self.start = StartPointPicker(project)
        form.addRow("Initialisation", self.start)
        self.freeze = QCheckBox("Freeze the encoder (train the head only)")
        form.addRow("", self.freeze)
        self.input = QComboBox()
        self.input.addItem("Whole image", "image")
        self.input.addItem("Region of interest (mask / box + margin)", "roi")
        form.addRow("Input", self.input)
        self.size = QSpinBox()
        self.size.setRange(16, 1024)
        self.size.setSingleStep(32)
        self.size.setValue(D.size)
        form.addRow("Input size (px)", self.size)
        self.folds = QSpinBox()
        self.folds.setRange(1, 20)
        self.folds.setValue(D.k)
        form.addRow("Cross-validation folds", self.folds)

        self.holdout = QComboBox()
        self.holdout.addItem("Random patients", "random")
        self.holdout.addItem("One centre (external test)", "centre")
        self.holdout.addItem("None", "none")
        self.test_fraction = QDoubleSpinBox()
        self.test_fraction.setRange(0.0, 0.9)
        self.test_fraction.setSingleStep(0.05)
        self.test_fraction.setValue(D.test_fraction)
        self.centre = QComboBox()
        centres = sorted({r["centre"] for r in project.images.table() if r["centre"]}) if project else []
        self.centre.addItems(centres)
        hold_row = QHBoxLayout()
        hold_row.addWidget(self.holdout)
        hold_row.addWidget(QLabel("fraction"))
        hold_row.addWidget(self.test_fraction)
        hold_row.addWidget(QLabel("centre"))
        hold_row.addWidget(self.centre)
        self.holdout.currentIndexChanged.connect(lambda _i: self._holdout_changed())
        form.addRow("Hold-out test", hold_row)

        self.loss_weighting = QComboBox()
        for text, key in (("None", "none"), ("Inverse frequency", "inverse"), ("Median frequency", "median")):
            self.loss_weighting.addItem(text, key)
        form.addRow("Loss weighting", self.loss_weighting)
        self.mask_guidance = QDoubleSpinBox()
        self.mask_guidance.setRange(0.0, 10.0)
        self.mask_guidance.setSingleStep(0.5)
        self.mask_guidance.setSpecialValueText("Off")
        self.mask_guidance.setToolTip("Weight of a loss that moves the Grad-CAM peak of a masked image's class "
                                      "onto its lesion mask (images without a mask: cross-entropy only)")
        form.addRow("Mask guidance (look at the lesion)", self.mask_guidance)
        self.optimizer = QComboBox()
        self.optimizer.addItem("Adam(W)", "adam")
        self.optimizer.addItem("SGD + momentum", "sgd")
        self.lr = QDoubleSpinBox()
        self.lr.setDecimals(5)
        self.lr.setRange(0.0, 1.0)
        self.lr.setSingleStep(1e-4)
        self.lr.setValue(D.lr)
        opt_row = QHBoxLayout()
        opt_row.addWidget(self.optimizer)
        opt_row.addWidget(QLabel("learning rate"))
        opt_row.addWidget(self.lr)
        form.addRow("Optimiser", opt_row)
        self.schedule = QComboBox()
        for text, key in (("Cosine", "cosine"), ("Step", "step"), ("Constant", "none")):
            self.schedule.addItem(text, key)
        form.addRow("Schedule", self.schedule)
        self.epochs = QSpinBox()
        self.epochs.setRange(0, 1000)
        self.epochs.setValue(D.epochs)
        form.addRow("Epochs", self.epochs)
        self.batch_size = QSpinBox()
        self.batch_size.setRange(0, 1024)
        self.batch_size.setValue(D.batch_size)
        form.addRow("Batch size", self.batch_size)
        self.cascade = QComboBox()
        form.addRow("Cascade (healthy class first)", self.cascade)
        self.reject = QComboBox()
        for text, key in (("Auto (reject class, else threshold)", "auto"), ("Reject class", "class"),
                          ("Max-probability threshold", "threshold"), ("None", "none")):
            self.reject.addItem(text, key)
        form.addRow("Out-of-distribution reject", self.reject)
        self.name = QLineEdit()
        self.name.setPlaceholderText("optional run name")
        form.addRow("Name", self.name)

        self.problems = QLabel()
        self.problems.setWordWrap(True)
        self.problems.setStyleSheet("color: #ff6b6b;")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.train_btn = buttons.addButton("Train", QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.accepted.connect(self.submit)
        buttons.rejected.connect(self.reject_dialog)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.problems)
        layout.addWidget(buttons)
        i = self.label_set.findData("finding")
        if i >= 0:
            self.label_set.setCurrentIndex(i)
        self._fill_classes()
        self._holdout_changed()

    def reject_dialog(self) -> None:
        QDialog.reject(self)

    # ---- dependent choices ---------------------------------------------------------------------
    def _fill_classes(self) -> None:
        self.cascade.clear()
        self.cascade.addItem("No cascade (one classifier)", None)
        project = self.window_.project
        row = label_set_row(project, self.label_set.currentData()) if project is not None else None
        if row is not None:
            for c in project.labels.classes(int(row["id"])):
                self.cascade.addItem(f"{c['name']} vs the rest, then among the rest", c["name"])

    def _holdout_changed(self) -> None:
        kind = self.holdout.currentData()
        self.test_fraction.setEnabled(kind == "random")
        self.centre.setEnabled(kind == "centre")

    # ---- ask -> do ----------------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        init = self.start.value()
        holdout = self.holdout.currentData()
        return {
            "label_set": self.label_set.currentData(), "arch": self.arch.currentText(), "init": init,
            "freeze_encoder": self.freeze.isChecked(), "input": self.input.currentData(),
            "size": self.size.value(), "k": self.folds.value(), "holdout": holdout,
            "test_fraction": round(self.test_fraction.value(), 4),
            "test_centre": self.centre.currentText() or None if holdout == "centre" else None,
            "epochs": self.epochs.value(), "batch_size": self.batch_size.value(),
            "optimizer": self.optimizer.currentData(), "lr": self.lr.value(),
            "schedule": self.schedule.currentData(), "loss_weighting": self.loss_weighting.currentData(),
            "mask_guidance": round(self.mask_guidance.value(), 3),
            "reject": self.reject.currentData(), "cascade": self.cascade.currentData(),
            "name": self.name.text().strip() or None,
        }

    def validate(self) -> list[str]:
        project = self.window_.project
        if project is None:
            return ["Open a project first."]
        problems = validate_params(project, self.params())
        if project.readonly:
            problems.append(f"The project is read-only: {project.readonly_reason}")
        return problems

    def submit(self) -> int | None:
        problems = self.validate()
        if problems:
            self.problems.setText("Cannot train yet:\n• " + "\n• ".join(problems))
            return None
        self.problems.setText("")
        self.last_job_id = self.window_.runner.submit("train", self.params())
        self.accept()
        return self.last_job_id
