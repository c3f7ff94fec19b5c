"""Case panel: clinical record (units, normal ranges), labs, labels with provenance, DICOM tags,
measurements, flags.

Editors *ask*; every change goes to the window's undo stack as a command from
``gui/commands.py`` or ``case_commands.py`` that *does* it through the store (audited
there), so edits commit at once and Ctrl+Z takes them back.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QBrush, QColor, QDoubleValidator, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from mskstudio.domain import DIAGNOSIS_SOURCES, DIGNITIES, SEXES, Label
from mskstudio.gui.case.commands import DeleteMeasurementsCommand, measurement_events
from mskstudio.gui.case.lab_editor import LabEditor
from mskstudio.gui.commands import SetClinicalCommand, SetFlagCommand
from mskstudio.store.repo_measurements import APPROXIMATE_SOURCES

# field: (label, unit, normal range text, kind or choices)
CLINICAL = {
    "age_years": ("Age", "years", "0–120", "float"),
    "sex": ("Sex", "", "", ["", *SEXES]),
    "site": ("Site", "", "", "text"),
    "position": ("Position", "", "", "text"),
    "diagnosis": ("Diagnosis", "", "", "text"),
    "dignity": ("Dignity", "", "", ["", *DIGNITIES]),
    "diagnosis_source": ("Diagnosis source", "", "", ["", *DIAGNOSIS_SOURCES]),
}
FLAGS = (("excluded", "Excluded"), ("is_screenshot", "Screenshot"), ("external", "External"))


def burned_in_text(flag: int | None) -> str:
    """What the header says about text or markers burned into the pixels."""
    if flag is None:
        return "not stated in the DICOM header"
    if flag:
        return ("<span style='color:#e67e22'><b>yes</b></span>: text or markers in the pixels "
                "(not removed by de-identification)")
    return "no"


class _FocusOut(QObject):
    def __init__(self, callback):
        super().__init__()
        self.callback = callback

    def eventFilter(self, obj, ev):
        if ev.type() == QEvent.Type.FocusOut:
            self.callback()
        return False


def _table(headers: list[str]) -> QTableWidget:
    t = QTableWidget(0, len(headers))
    t.setHorizontalHeaderLabels(headers)
    t.verticalHeader().setVisible(False)
    t.verticalHeader().setDefaultSectionSize(22)
    t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    t.horizontalHeader().setStretchLastSection(True)
    t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    t.setAlternatingRowColors(True)
    return t


def _item(text, editable: bool = False) -> QTableWidgetItem:
    it = QTableWidgetItem("" if text is None else str(text))
    if not editable:
        it.setFlags(it.flags() & ~Qt.ItemFlag.ItemIsEditable)
    return it


class CasePanel(QWidget):
    def __init__(self, undo_stack, on_change=None, parent=None):
        super().__init__(parent)
        self.undo_stack, self.on_change = undo_stack, on_change
        self.project, self.image_id, self.row = None, None, None
        self._loading = False
        self.header = QLabel("No image")
        self.header.setObjectName("panelTitle")
        self.tabs = QTabWidget()

        clinical = QWidget()
        form = QFormLayout(clinical)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        self.editors: dict[str, QWidget] = {}
        for field, (label, unit, normal, kind) in CLINICAL.items():
            if isinstance(kind, list):
                w = QComboBox()
                w.addItems(kind)
                w.currentTextChanged.connect(lambda v, f=field: self._commit(f, v or None))
            else:
                w = QLineEdit()
                if kind == "float":
                    w.setValidator(QDoubleValidator(0.0, 130.0, 1))
                w.editingFinished.connect(lambda f=field, w=w: self._commit_text(f, w.text()))
            self.editors[field] = w
            row = QHBoxLayout()
            row.addWidget(w, 1)
            if unit or normal:
                hint = QLabel(f"{unit}  <span style='color:#7f8c9a'>normal {normal}</span>"
                              if normal else unit)
                row.addWidget(hint)
            form.addRow(label, row)
        self.report = QPlainTextEdit()
        self.report.setPlaceholderText("Report")
        self.report.setMaximumHeight(90)
        self._report_filter = _FocusOut(lambda: self._commit_text("report", self.report.toPlainText()))
        self.report.installEventFilter(self._report_filter)
        form.addRow("Report", self.report)
        flags = QHBoxLayout()
        self.flag_boxes: dict[str, QCheckBox] = {}
        for flag, label in FLAGS:
            box = QCheckBox(label)
            box.toggled.connect(lambda v, f=flag: self._set_flag(f, v))
            self.flag_boxes[flag] = box
            flags.addWidget(box)
        form.addRow("Flags", flags)
        # From the DICOM header (BurnedInAnnotation): de-identification does not touch pixels,
        # and training can leave these images out (Train dialog, `train --exclude-burned-in`).
        self.burned_in = QLabel()
        self.burned_in.setWordWrap(True)
        form.addRow("Burned-in", self.burned_in)
        self.tabs.addTab(clinical, "Clinical")
        self.lab_editor = LabEditor(undo_stack, on_change=self._changed)
        self.labs = self.lab_editor.table
        self.tabs.addTab(self.lab_editor, "Labs")

        self.labels = _table(["Label set", "Class", "Source", "Author", "When", "Run", "Conf."])
        self.labels.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.tabs.addTab(self.labels, "Labels")
        self.tags = _table(["Tag", "Keyword", "VR", "Value"])
        self.tags.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.tabs.addTab(self.tags, "DICOM")
        self.measures = _table(["#", "Kind", "Value", "Pixels", "Spacing", "Author", "When"])
        self.measures.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.delete_measure = QPushButton("Delete measurement")
        self.delete_measure.clicked.connect(self.delete_selected_measurements)
        self.measures.itemSelectionChanged.connect(
            lambda: self.delete_measure.setEnabled(bool(self.measures.selectionModel().selectedRows())))
        measures = QWidget()
        box = QVBoxLayout(measures)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(self.measures, 1)
        box.addWidget(self.delete_measure, 0, Qt.AlignmentFlag.AlignLeft)
        self.tabs.addTab(measures, "Measurements")
        measurement_events.changed.connect(self._measurements_changed)
        self.tabs.currentChanged.connect(lambda _i: self._load_tags())
        self._tags_for: int | None = None

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.header)
        layout.addWidget(self.tabs, 1)

    # ---- loading -----------------------------------------------------------------------
    def set_project(self, project) -> None:
        self.project, self.image_id, self.row = project, None, None
        self.refresh()

    def show_image(self, image_id: int | None) -> None:
        self.image_id = image_id
        self.refresh()

    def refresh(self) -> None:
        self._loading = True
        try:
            p = self.project
            self.row = p.images.record(self.image_id) if (p is not None and self.image_id is not None) else None
            self.setEnabled(self.row is not None)
            r = self.row
            if r is None:
                self.header.setText("No image")
                self.lab_editor.show_labs(None, None)
                self.measures.setRowCount(0)
                return
            self.header.setText(f"<b>{r.pseudonym}</b> · image {r.id} · {r.centre or 'no centre'}")
            rec = p.images.clinical(r.patient_id)
            for field, w in self.editors.items():
                value = rec.get(field)
                text = "" if value is None else (f"{value:g}" if isinstance(value, float) else str(value))
                if isinstance(w, QComboBox):
                    if w.findText(text) < 0:
                        w.addItem(text)
                    w.setCurrentText(text)
                else:
                    w.setText(text)
            self.report.setPlainText(rec.get("report") or "")
            self.lab_editor.show_labs(p, r.patient_id)
            self._fill_measurements()
            self._fill_labels(p.labels.labels_of(r.id))
            for flag, box in self.flag_boxes.items():
                box.setChecked(bool(getattr(r, flag)))
            self.burned_in.setText(burned_in_text(r.burned_in_annotation))
            self._tags_for = None
            self._load_tags()
        finally:
            self._loading = False

    def _fill_measurements(self) -> None:
        """The open image's rulers and angles: mm where there is spacing, always pixels, and the spacing source."""
        rows = self.project.measurements.for_image(self.image_id) if self.row is not None else []
        self.measures.setRowCount(0)
        for m in rows:
            i = self.measures.rowCount()
            self.measures.insertRow(i)
            if m["kind"] == "angle":
                value, pixels = f"{m['angle_deg']:.1f}°", ""
            else:
                approx = "≈" if m["spacing_source"] in APPROXIMATE_SOURCES else ""
                value = "—" if m["length_mm"] is None else f"{approx}{m['length_mm']:.1f} mm"
                pixels = f"{m['length_px']:.1f} px"
            when = (m["updated_at"] or "")[:16].replace("T", " ")
            for c, text in enumerate([m["id"], m["kind"], value, pixels, m["spacing_source"], m["author"], when]):
                it = _item(text)
                if c == 0:
                    it.setData(Qt.ItemDataRole.UserRole, m["id"])
                self.measures.setItem(i, c, it)
        self.delete_measure.setEnabled(False)
        self.tabs.setTabText(self.tabs.indexOf(self.measures.parentWidget()),
                             f"Measurements ({len(rows)})" if rows else "Measurements")

    def _measurements_changed(self, project, image_id) -> None:
        if project is self.project and image_id == self.image_id and self.row is not None:
            self._fill_measurements()

    def delete_selected_measurements(self) -> None:
        ids = [int(self.measures.item(ix.row(), 0).data(Qt.ItemDataRole.UserRole))
               for ix in self.measures.selectionModel().selectedRows()]
        if ids and self.project is not None and not self.project.readonly:
            self.undo_stack.push(DeleteMeasurementsCommand(self.project, self.image_id, ids))

    def _fill_labels(self, labels: list[Label]) -> None:
        self.labels.setRowCount(0)
        seen: set[str] = set()
        for lab in labels:
            i = self.labels.rowCount()
            self.labels.insertRow(i)
            conf = "" if lab.confidence is None else f"{lab.confidence:.2f}"
            cells = [lab.label_set, lab.class_name, lab.source, lab.author,
                     (lab.created_at or "")[:16].replace("T", " "), lab.run_id, conf]
            effective = lab.label_set not in seen
            seen.add(lab.label_set)
            for c, text in enumerate(cells):
                it = _item(text)
                if effective:
                    font = QFont()
                    font.setBold(True)
                    it.setFont(font)
                else:
                    it.setForeground(QBrush(QColor("#7f8c9a")))
                self.labels.setItem(i, c, it)

    def _load_tags(self) -> None:
        if self.row is None or self.tabs.currentWidget() is not self.tags or self._tags_for == self.image_id:
            return
        import pydicom

        self._tags_for = self.image_id
        self.tags.setRowCount(0)
        try:
            ds = pydicom.dcmread(self.project.images.dicom_path(self.image_id), stop_before_pixels=True)
        except Exception as exc:  # noqa: BLE001 - shown in the table
            self.tags.insertRow(0)
            self.tags.setItem(0, 3, _item(f"cannot read the header: {exc}"))
            return
        elems = list(ds.file_meta) + list(ds) if getattr(ds, "file_meta", None) else list(ds)
        self.tags.setRowCount(len(elems))
        for i, el in enumerate(elems):
            value = "<sequence>" if el.VR == "SQ" else str(el.value)[:200]
            tag = f"({el.tag.group:04X},{el.tag.element:04X})"
            for c, text in enumerate([tag, el.keyword, el.VR, value]):
                self.tags.setItem(i, c, _item(text))

    # ---- edits (ask → command → do) ------------------------------------------------------
    def _commit_text(self, field: str, text: str) -> None:
        text = text.strip()
        if CLINICAL.get(field, (None, None, None, None))[3] == "float" and text:
            try:
                value = float(text.replace(",", "."))
            except ValueError:
                return
        else:
            value = text or None
        self._commit(field, value)

    def _commit(self, field: str, value) -> None:
        if self._loading or self.row is None:
            return
        pid = self.row.patient_id
        old = self.project.images.clinical(pid).get(field)
        if old == value:
            return
        self.undo_stack.push(SetClinicalCommand(self.project, pid, field, value, old,
                                                on_change=self._changed))

    def _set_flag(self, flag: str, value: bool) -> None:
        if self._loading or self.row is None or bool(getattr(self.row, flag)) == value:
            return
        self.undo_stack.push(SetFlagCommand(self.project, [self.row.id], flag, value,
                                            on_change=self._changed))

    def _changed(self) -> None:
        self.refresh()
        if self.on_change:
            self.on_change()
