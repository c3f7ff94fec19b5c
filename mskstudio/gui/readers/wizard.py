"""New reader study wizard: what the readers answer, which images, who reads in which arms.

It only asks; ``mskstudio.ml.readers.setup.create_study`` validates and writes, with the
same messages as ``mskstudio reader-study create``.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QSpinBox,
    QWizard,
    QWizardPage,
)

from mskstudio.ml.readers.setup import create_study


class StudyWizard(QWizard):
    created = Signal(int)

    def __init__(self, project, parent=None):
        super().__init__(parent)
        self.project = project
        self.study_id: int | None = None
        self.setWindowTitle("New reader study")
        self.addPage(self._answers_page())
        self.addPage(self._images_page())
        self.addPage(self._readers_page())

    # ---- page 1: name, label set, classes -------------------------------------------
    def _answers_page(self) -> QWizardPage:
        page = QWizardPage(title="What readers answer")
        self.name = QLineEdit()
        self.label_set = QComboBox()
        self.truth_set = QComboBox()
        sets = [r["name"] for r in self.project.labels.label_sets("image")]
        self.label_set.addItems([s for s in sets if not s.startswith("truth:")] or sets)
        self.truth_set.addItems(sets)
        self.classes = QListWidget()
        self.ordinal = QCheckBox("Classes are ordered (weighted κ)")
        self.boxes = QCheckBox("Readers may draw lesion boxes (B in the reading window)")
        self.label_set.currentTextChanged.connect(self._fill_classes)
        form = QFormLayout(page)
        form.addRow("Study name", self.name)
        form.addRow("Label set", self.label_set)
        form.addRow("Truth (scored against)", self.truth_set)
        form.addRow("Classes (keys 1-9)", self.classes)
        form.addRow(self.ordinal)
        form.addRow(self.boxes)
        self._fill_classes(self.label_set.currentText())
        return page

    def _fill_classes(self, set_name: str) -> None:
        self.classes.clear()
        set_id = self.project.labels.find_label_set(set_name)
        for row in self.project.labels.classes(set_id) if set_id else []:
            item = QListWidgetItem(row.name)
            item.setCheckState(Qt.CheckState.Checked if not row.is_reject else Qt.CheckState.Unchecked)
            self.classes.addItem(item)
        if self.truth_set.findText(f"truth:{set_name}") >= 0:
            self.truth_set.setCurrentText(f"truth:{set_name}")
        else:
            self.truth_set.setCurrentText(set_name)

    # ---- page 2: images -------------------------------------------------------------
    def _images_page(self) -> QWizardPage:
        page = QWizardPage(title="Which images")
        self.images = QLineEdit("all")
        self.images.setToolTip("all | holdout:RUN | filter:body_part=KNEE,view=AP | sample:N-per-class; "
                               "join stages with +")
        runs = self.project.models.list("classifier")
        self.holdout = QComboBox()
        self.holdout.addItem("")
        self.holdout.addItems([f"holdout:{r['id']}  ({r['name']})" for r in runs])
        self.holdout.currentTextChanged.connect(
            lambda t: t and self.images.setText(t.split()[0]))
        self.seed = QSpinBox(maximum=2**31 - 1)
        form = QFormLayout(page)
        form.addRow("Images", self.images)
        form.addRow("Hold-out of a run", self.holdout)
        form.addRow(QLabel("Add +sample:20-per-class to draw 20 images of each class."))
        form.addRow("Seed (orders, sample)", self.seed)
        return page

    # ---- page 3: readers and arms -------------------------------------------------------
    def _readers_page(self) -> QWizardPage:
        page = QWizardPage(title="Readers and arms")
        self.readers = QListWidget()
        for r in self.project.readers.all():
            item = QListWidgetItem(f"{r['name']}")
            item.setCheckState(Qt.CheckState.Unchecked)
            self.readers.addItem(item)
        self.new_readers = QLineEdit(placeholderText="more readers, comma-separated")
        self.arm_image = QCheckBox("Image only", checked=True)
        self.arm_clinical = QCheckBox("Image + clinical data")
        self.arm_assisted = QComboBox()
        self.arm_assisted.addItem("(no assisted arm)")
        for r in self.project.models.list("classifier"):
            self.arm_assisted.addItem(f"assisted:{r['id']}  ({r['name']})")
        self.washout = QDoubleSpinBox(maximum=365, decimals=0, suffix=" days")
        form = QFormLayout(page)
        form.addRow("Readers", self.readers)
        form.addRow("", self.new_readers)
        form.addRow("Arms (in reading order)", self.arm_image)
        form.addRow("", self.arm_clinical)
        form.addRow("Model-assisted arm", self.arm_assisted)
        form.addRow("Washout between arms", self.washout)
        return page

    def params(self) -> dict:
        checked = lambda w: [w.item(i).text() for i in range(w.count())  # noqa: E731
                             if w.item(i).checkState() == Qt.CheckState.Checked]
        readers = checked(self.readers) + [r.strip() for r in self.new_readers.text().split(",") if r.strip()]
        arms = (["image"] if self.arm_image.isChecked() else []) + (
            ["clinical"] if self.arm_clinical.isChecked() else [])
        if self.arm_assisted.currentIndex() > 0:
            arms.append(self.arm_assisted.currentText().split()[0])
        return {"name": self.name.text(), "label_set": self.label_set.currentText(),
                "truth_set": self.truth_set.currentText(), "classes": checked(self.classes),
                "ordinal": self.ordinal.isChecked(), "boxes": self.boxes.isChecked(),
                "images": self.images.text(), "seed": self.seed.value(),
                "readers": readers, "arms": arms, "washout_days": self.washout.value()}

    def accept(self) -> None:
        try:
            self.study_id = create_study(self.project, self.params())
        except ValueError as exc:
            QMessageBox.warning(self, "New reader study", str(exc))
            return
        self.created.emit(self.study_id)
        super().accept()
