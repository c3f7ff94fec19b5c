"""Train classifier dialog: asks every parameter of job ``train``, validates, submits.

``TrainDialog(main_window)`` fills its choices from the project (label sets, their
classes, centres, DeepCluster runs).  ``params()`` is the job's parameter dict (see
``ml/train.py`` DEFAULTS and ``cli/cmd_train.py``); ``validate_params(project, params)``
returns plain-language problems (empty = fine); ``submit()`` asks the window's runner
for a ``train`` job and returns its id (None when a problem was shown instead).
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
from mskstudio.gui.dialogs.start_point import StartPointPicker, start_point_problem

TRAIN_SOURCES = ("human", "import", "cluster")
FALLBACK_ARCHS = ["resnet18", "resnet50", "efficientnet_b0", "swin_t", "tinycnn"]


def _label_set_row(project, key):
    for r in project.labels.label_sets():
        if str(r["id"]) == str(key) or r["name"] == key:
            return r
    return None


def validate_params(project, p: dict[str, Any]) -> list[str]:
    """What makes these parameters impossible for this project (empty list = fine)."""
    problems: list[str] = []
    row = _label_set_row(project, p.get("label_set")) if p.get("label_set") not in (None, "") else None
    labelled_classes: dict[int, int] = {}
    class_rows = []
    n_patients = 0
    if row is None:
        problems.append("Choose a label set to train on.")
    elif is_truth_set(row["name"]):
        problems.append(f"“{row['name']}” holds ground truth for scoring only; "
                        "it cannot be a training target.")
    else:
        labels = project.labels.effective(int(row["id"]), sources=TRAIN_SOURCES)
        for c in labels.values():
            labelled_classes[c] = labelled_classes.get(c, 0) + 1
        class_rows = [r for r in project.labels.classes(int(row["id"])) if r["id"] in labelled_classes]
        n_patients = len(set(project.images.patient_of(list(labels)).values())) if labels else 0
        if len(class_rows) < 2:
            problems.append(f"“{row['name']}” needs labelled images of at least two classes "
                            f"(it has {len(class_rows)}).")
    k = int(p.get("k", 5))
    if k < 2:
        problems.append("Cross-validation needs at least 2 folds.")
    elif row is not None and n_patients and k > n_patients:
        problems.append(f"{k} folds need at least {k} patients with labels; there are {n_patients}.")
    if int(p.get("epochs", 1)) < 1:
        problems.append("Train for at least one epoch.")
    if int(p.get("batch_size", 1)) < 1:
        problems.append("The batch size must be at least 1.")
    if int(p.get("size", 224)) < 32:
        problems.append("The input size must be at least 32 pixels.")
    if float(p.get("lr", 1e-3)) <= 0:
        problems.append("The learning rate must be positive.")
    holdout = p.get("holdout", "random")
    if holdout == "random":
        tf = float(p.get("test_fraction", 0.2))
        if not 0 < tf < 1:
            problems.append("The hold-out fraction must be between 0 and 1.")
    elif holdout == "centre":
        centre = p.get("test_centre")
        centres = sorted({r["centre"] for r in project.images.table() if r["centre"]})
        if not centre:
            problems.append("A centre hold-out needs the centre to hold out.")
        elif centre not in centres:
            problems.append(f"No image comes from centre “{centre}”.")
        elif len(centres) < 2:
            problems.append("Holding out the only centre leaves nothing to train on.")
    init = p.get("init", "scratch")
    if (problem := start_point_problem(project, init)) is not None:
        problems.append(problem)
    if p.get("freeze_encoder") and init in (None, "", "scratch"):
        problems.append("A frozen encoder needs pretrained weights (a DeepCluster run or a weights "
                        "file); a frozen random encoder cannot learn.")
    if float(p.get("mask_guidance") or 0) > 0 and not project.annotations.images_with_masks():
        problems.append("Mask guidance needs lesion masks; none are drawn or imported yet.")
    names = [r["name"] for r in class_rows]
    cascade = p.get("cascade")
    if cascade and class_rows and cascade not in names:
        problems.append(f"Cascade: “{cascade}” is not a labelled class of the label set.")
    elif cascade and class_rows and len(class_rows) < 3:
        problems.append("A cascade needs the healthy class and at least two other classes.")
    if p.get("reject") == "class" and class_rows and not any(r["is_reject"] for r in class_rows):
        problems.append("Reject = class needs a labelled reject class in the label set; "
                        "choose auto or threshold.")
    return problems


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
        try:
            from mskstudio.ml.classify.classifier import architectures

            archs = architectures()
        except Exception:  # noqa: BLE001 - registry unavailable: the known names
            archs = FALLBACK_ARCHS
        self.arch.addItems(archs)
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
        self.size.setValue(224)
        form.addRow("Input size (px)", self.size)
        self.folds = QSpinBox()
        self.folds.setRange(1, 20)
        self.folds.setValue(5)
        form.addRow("Cross-validation folds", self.folds)

        self.holdout = QComboBox()
        self.holdout.addItem("Random patients", "random")
        self.holdout.addItem("One centre (external test)", "centre")
        self.holdout.addItem("None", "none")
        self.test_fraction = QDoubleSpinBox()
        self.test_fraction.setRange(0.0, 0.9)
        self.test_fraction.setSingleStep(0.05)
        self.test_fraction.setValue(0.2)
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
        self.lr.setValue(1e-3)
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
        self.epochs.setValue(20)
        form.addRow("Epochs", self.epochs)
        self.batch_size = QSpinBox()
        self.batch_size.setRange(0, 1024)
        self.batch_size.setValue(32)
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
        from mskstudio.gui.fuse.clinical_section import ClinicalSection

        self.clinical = ClinicalSection(project)  # optional fusion after training
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.clinical)
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
        row = _label_set_row(project, self.label_set.currentData()) if project is not None else None
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
        problems = validate_params(project, self.params()) + self.clinical.problems()
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
        mode, fields = self.clinical.value()
        if mode is not None:
            from mskstudio.gui.fuse.clinical_section import fuse_after_train

            fuse_after_train(self.window_, self.last_job_id, mode, fields)
        self.accept()
        return self.last_job_id
