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
from mskstudio.ml.classify.params import TRAIN_SOURCES, TrainParams
from mskstudio.ml.params import label_set_row

D = TrainParams()  # the defaults of job ``train``, defined once in the core


def trainable_counts(project, label_set_id: int, *, exclude_burned_in: bool = False) -> dict[str, int]:
    """Labelled images per class of a label set, from the labels training uses."""
    labels = project.labels.effective(label_set_id, sources=TRAIN_SOURCES)
    if exclude_burned_in:
        burned = project.images.burned_in_ids()
        labels = {i: c for i, c in labels.items() if i not in burned}
    names = {r.id: r.name for r in project.labels.classes(label_set_id)}
    counts: dict[str, int] = {}
    for c in labels.values():
        counts[names.get(c, str(c))] = counts.get(names.get(c, str(c)), 0) + 1
    return counts


def default_label_set(project, names: list[str]) -> str | None:
    """"finding" when it has two labelled classes, else the set with most labelled images
    in at least two classes, else the first: never an empty set when one has labels."""
    counts = {n: trainable_counts(project, project.labels.find_label_set(n)) for n in names}
    usable = {n: sum(c.values()) for n, c in counts.items() if len(c) >= 2}
    if "finding" in usable:
        return "finding"
    if usable:
        return max(usable, key=lambda n: (usable[n], n == "finding"))
    return names[0] if names else None


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
        for r in project.labels.label_sets("image") if project is not None else []:
            if not is_truth_set(r["name"]):
                self.label_set.addItem(r["name"], r["name"])
        self.label_set.currentIndexChanged.connect(lambda _i: self._fill_classes())
        form.addRow("Label set", self.label_set)
        self.class_counts = QLabel()  # what the chosen set holds: labelled images per class
        self.class_counts.setWordWrap(True)
        form.addRow("", self.class_counts)
        self.arch = QComboBox()
        self.arch.addItems(architectures())  # the registry itself: no second copy of the names
        form.addRow("Architecture", self.arch)

        self.start = StartPointPicker(project)
        form.addRow("Initialisation", self.start)
        self.freeze = QCheckBox("Freeze the encoder (train the head only)")
        form.addRow("", self.freeze)
        self.exclude_burned_in = QCheckBox("Leave out images with burned-in annotation")
        self.exclude_burned_in.setToolTip(
            "Images whose DICOM header says BurnedInAnnotation YES carry text or markers in the "
            "pixels, which a network can learn as a shortcut. Lead L/R markers are on most "
            "radiographs, so this is off unless names, dates or measurements are burned in.")
        self.exclude_burned_in.setChecked(D.exclude_burned_in)
        self.exclude_burned_in.toggled.connect(lambda _on: self._fill_classes())
        form.addRow("", self.exclude_burned_in)
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
        self.folds.setRange(0, 20)  # 0 and 1 are shown and explained, not silently clamped
        self.folds.setValue(D.k)
        self.folds_note = QLabel()
        self.folds_note.setWordWrap(True)
        self.folds.valueChanged.connect(self._folds_changed)
        form.addRow("Cross-validation folds", self.folds)
        form.addRow("", self.folds_note)

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
        from mskstudio.gui.fuse.clinical_section import ClinicalSection

        self.clinical = ClinicalSection(project)  # optional fusion after training
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.clinical)
        layout.addWidget(self.problems)
        layout.addWidget(buttons)
        names = [self.label_set.itemData(i) for i in range(self.label_set.count())]
        preferred = default_label_set(project, names) if project is not None else None
        i = self.label_set.findData(preferred)
        if i >= 0:
            self.label_set.setCurrentIndex(i)
        self._fill_classes()
        self._holdout_changed()
        self._folds_changed(self.folds.value())

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
                self.cascade.addItem(f"{c.name} vs the rest, then among the rest", c.name)
        box = getattr(self, "exclude_burned_in", None)  # None while the form is being built
        leave_out = box is not None and box.isChecked()
        counts = trainable_counts(project, int(row["id"]), exclude_burned_in=leave_out) if row is not None else {}
        self.class_counts.setText(
            " · ".join(f"{name} {n}" for name, n in sorted(counts.items(), key=lambda kv: -kv[1]))
            + f"  ({sum(counts.values())} labelled images)" if counts else "No labelled images in this set yet.")

    def _folds_changed(self, k: int) -> None:
        self.folds_note.setText(
            f"{k} models, each validated on about 1/{k} of the patients; their ensemble is scored "
            "on the hold-out." if k >= 2 else
            f"{k} folds would train without validation: choose 2 or more.")

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
            "exclude_burned_in": self.exclude_burned_in.isChecked(),
            "size": self.size.value(), "k": self.folds.value(), "holdout": holdout,
            "test_fraction": round(self.test_fraction.value(), 4),
            "test_centre": self.centre.currentText() or None if holdout == "centre" else None,
            "epochs": self.epochs.value(), "batch_size": self.batch_size.value(),
            "optimizer": self.optimizer.currentData(), "lr": self.lr.value(),
            "schedule": self.schedule.currentData(), "loss_weighting": self.loss_weighting.currentData(),
            "mask_guidance": round(self.mask_guidance.value(), 3),
            "reject": self.reject.currentData(), "cascade": self.cascade.currentData(),
            "clinical": self._joint_fields(), "name": self.name.text().strip() or None,
        }

    def _joint_fields(self) -> list[str] | None:
        from mskstudio.gui.fuse.clinical_section import joint_fields

        return joint_fields(self.clinical) if hasattr(self, "clinical") else None

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
        if mode in ("late", "stacking"):  # joint fusion is part of the train job itself
            from mskstudio.gui.fuse.clinical_section import fuse_after_train

            fuse_after_train(self.window_, self.last_job_id, mode, fields)
        self.accept()
        return self.last_job_id
