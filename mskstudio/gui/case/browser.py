"""Case browser: patient → study → image tree and a virtualised thumbnail grid, with filters.

Both views show the same filtered list (``self.order``); selecting in either emits
``image_selected(id)``.  The tree creates study/image children only when a patient is
expanded, and the grid is a ``ThumbnailModel`` with uniform item sizes, so a 50 000-image
project opens in well under a second (``tests/bench/bench_viewer.py``).
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QSize, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QGridLayout,
    QLabel,
    QLineEdit,
    QListView,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from mskstudio.gui.widgets.thumb_model import ImageIdRole, ThumbnailModel

ANY = "(any)"
FLAG_FILTERS = {"all images": None, "not excluded": ("excluded", 0), "excluded": ("excluded", 1),
                "screenshots": ("is_screenshot", 1), "external": ("external", 1)}
UNLABELLED = "(unlabelled)"


class CaseBrowser(QWidget):
    image_selected = Signal(int)
    notice = Signal(str)  # something the user should know (the window shows it in the status bar)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.project = None
        self.rows: list = []
        self.order: list[int] = []
        self.effective: dict[int, int] = {}
        self.labelled_any: set[int] = set()
        self._patient_of: dict[int, int] = {}
        self._syncing = False

        self.search = QLineEdit(placeholderText="Search pseudonym…", clearButtonEnabled=True)
        self.label_set = QComboBox()
        self.label = QComboBox()
        self.diagnosis = QComboBox()
        self.centre = QComboBox()
        self.view_filter = QComboBox()
        self.flags = QComboBox()
        self.flags.addItems(list(FLAG_FILTERS))
        self.count = QLabel("")
        self.count.setObjectName("muted")
        grid = QGridLayout()
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setHorizontalSpacing(6)
        for i, (name, w) in enumerate([("Label set", self.label_set), ("Label", self.label),
                                       ("Diagnosis", self.diagnosis), ("Centre", self.centre),
                                       ("View", self.view_filter), ("Flags", self.flags)]):
            grid.addWidget(QLabel(name), i // 2, (i % 2) * 2)
            grid.addWidget(w, i // 2, (i % 2) * 2 + 1)
            w.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            w.setMinimumContentsLength(8)

        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Case", "Images", "Diagnosis"])
        self.tree.setUniformRowHeights(True)
        self.tree.setColumnWidth(0, 190)
        self.tree.setColumnWidth(1, 56)
        self.tree.itemExpanded.connect(self._expand)
        self.tree.currentItemChanged.connect(self._tree_current)

        self.model = ThumbnailModel(self)
        self.grid = QListView()
        self.grid.setViewMode(QListView.ViewMode.IconMode)
        self.grid.setUniformItemSizes(True)
        self.grid.setResizeMode(QListView.ResizeMode.Adjust)
        self.grid.setMovement(QListView.Movement.Static)
        self.grid.setIconSize(QSize(self.model.icon_size, self.model.icon_size))
        self.grid.setSpacing(4)
        self.grid.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.grid.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.grid.setModel(self.model)
        self.grid.selectionModel().currentChanged.connect(self._grid_current)

        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.tree)
        split.addWidget(self.grid)
        split.setSizes([300, 420])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.search)
        layout.addLayout(grid)
        layout.addWidget(self.count)
        layout.addWidget(split, 1)

        self.search.textChanged.connect(self.apply_filters)
        self.label_set.currentIndexChanged.connect(self._label_set_changed)
        for combo in (self.label, self.diagnosis, self.centre, self.view_filter, self.flags):
            combo.currentIndexChanged.connect(self.apply_filters)

    # ---- data -------------------------------------------------------------------------
    def set_project(self, project) -> None:
        self.project = project
        self.model.set_project(project)
        self.reload()
        if self.rows and not self.order:
            # Filters kept from the last project (or session) hid every image of this one:
            # "0 of 600 images" on opening reads as an empty project.
            self.reset_filters()
            self.notice.emit(f"The filters hid all {len(self.rows):,} images of this project; they were reset.")

    def reset_filters(self) -> None:
        for combo in (self.label, self.diagnosis, self.centre, self.view_filter, self.flags):
            combo.blockSignals(True)
            combo.setCurrentIndex(0)
            combo.blockSignals(False)
        self.search.blockSignals(True)
        self.search.clear()
        self.search.blockSignals(False)
        self.apply_filters()

    def reload(self) -> None:
        """Re-read rows and filter choices (after an import, a flag edit, …)."""
        p = self.project
        self.rows = p.images.table() if p is not None else []
        self._patient_of = {r["id"]: r["patient_id"] for r in self.rows}
        self.labelled_any = p.labels.labelled_image_ids() if p is not None else set()
        self._fill(self.diagnosis, sorted({r["diagnosis"] for r in self.rows if r["diagnosis"]}))
        self._fill(self.centre, sorted({r["centre"] for r in self.rows if r["centre"]}))
        self._fill(self.view_filter, sorted({r["view"] for r in self.rows if r["view"]}))
        sets = p.labels.label_sets() if p is not None else []
        self._fill(self.label_set, [s["name"] for s in sets], data=[s["id"] for s in sets])
        self._label_set_changed()

    def _fill(self, combo: QComboBox, items: list[str], data: list | None = None) -> None:
        current = combo.currentText()
        combo.blockSignals(True)
        combo.clear()
        combo.addItem(ANY, None)
        for i, text in enumerate(items):
            combo.addItem(str(text), data[i] if data else text)
        idx = combo.findText(current)
        combo.setCurrentIndex(max(idx, 0))
        combo.blockSignals(False)

    def _label_set_changed(self) -> None:
        set_id = self.label_set.currentData()
        p = self.project
        self.effective = p.labels.effective(set_id) if (p is not None and set_id) else {}
        classes = p.labels.classes(set_id) if (p is not None and set_id) else []
        self._fill(self.label, [UNLABELLED] + [c.name for c in classes],
                   data=[UNLABELLED] + [c.id for c in classes])
        self.apply_filters()

    def is_unlabelled(self, image_id: int) -> bool:
        if self.label_set.currentData():
            return image_id not in self.effective
        return image_id not in self.labelled_any

    def apply_filters(self) -> None:
        text = self.search.text().strip().lower()
        label = self.label.currentData()
        diag, centre, view = (c.currentData() for c in (self.diagnosis, self.centre, self.view_filter))
        flag = FLAG_FILTERS[self.flags.currentText()]
        out = []
        for r in self.rows:
            if text and text not in r["pseudonym"].lower():
                continue
            if (diag and r["diagnosis"] != diag or centre and r["centre"] != centre
                    or view and r["view"] != view):
                continue
            if flag and int(r[flag[0]] or 0) != flag[1]:
                continue
            if label == UNLABELLED and not self.is_unlabelled(r["id"]):
                continue
            if label not in (None, UNLABELLED) and self.effective.get(r["id"]) != label:
                continue
            out.append(r)
        self.visible_rows = out
        self.order = [r["id"] for r in out]
        self.model.set_items(self.order, [f"{r['pseudonym'][:10]} {r['view'] or ''}".strip() for r in out])
        self._build_tree(out)
        self.count.setText(f"{len(out):,} of {len(self.rows):,} images")

    def _build_tree(self, rows) -> None:
        self.tree.clear()
        self._patients: dict[int, QTreeWidgetItem] = {}
        self._by_patient: dict[int, list] = {}
        for r in rows:
            self._by_patient.setdefault(r["patient_id"], []).append(r)
        # Enum members looked up once: PySide6 enum attribute access costs ~10 µs, and
        # this loop runs once per patient (10 000 in a 50 000-image project).
        user_role, show_indicator = Qt.ItemDataRole.UserRole, QTreeWidgetItem.ChildIndicatorPolicy.ShowIndicator
        items = []
        for pid, rs in self._by_patient.items():
            item = QTreeWidgetItem([rs[0]["pseudonym"], str(len(rs)), rs[0]["diagnosis"] or ""])
            item.setData(0, user_role, ("patient", pid))
            item.setChildIndicatorPolicy(show_indicator)
            self._patients[pid] = item
            items.append(item)
        self.tree.addTopLevelItems(items)

    def _expand(self, item: QTreeWidgetItem) -> None:
        kind, pid = item.data(0, Qt.ItemDataRole.UserRole)
        if kind != "patient" or item.childCount():
            return
        studies: dict[int, QTreeWidgetItem] = {}
        for r in self._by_patient.get(pid, []):
            study = studies.get(r["study_id"])
            if study is None:
                study = QTreeWidgetItem(item, [f"Study {r['study_date'] or r['study_id']}", "", ""])
                study.setData(0, Qt.ItemDataRole.UserRole, ("study", r["study_id"]))
                studies[r["study_id"]] = study
            name = " ".join(x for x in (r["body_part"], r["view"], r["laterality"]) if x) or "image"
            leaf = QTreeWidgetItem(study, [f"{name}  #{r['id']}", "", ""])
            leaf.setData(0, Qt.ItemDataRole.UserRole, ("image", r["id"]))
            if r["excluded"]:
                leaf.setForeground(0, Qt.GlobalColor.darkGray)
            study.setText(1, str(study.childCount()))
        item.setExpanded(True)
        for s in studies.values():
            s.setExpanded(True)

    # ---- selection ----------------------------------------------------------------------
    def _tree_current(self, item, _previous) -> None:
        if self._syncing or item is None:
            return
        kind, key = item.data(0, Qt.ItemDataRole.UserRole)
        if kind == "image":
            self.image_selected.emit(key)

    def _grid_current(self, index, _previous) -> None:
        if not self._syncing and index.isValid():
            self.image_selected.emit(index.data(ImageIdRole))

    def selected_ids(self) -> list[int]:
        return [i.data(ImageIdRole) for i in self.grid.selectionModel().selectedIndexes()]

    def select_image(self, image_id: int) -> None:
        """Follow an image opened elsewhere (no signal back)."""
        self._syncing = True
        try:
            row = self.model.row_of(image_id)
            if row is not None:
                idx = self.model.index(row)
                self.grid.setCurrentIndex(idx)
                self.grid.scrollTo(idx)
            else:  # hidden by the filters: nothing else may stay highlighted as if it were open
                self.grid.clearSelection()
                self.grid.setCurrentIndex(QModelIndex())
                self.tree.clearSelection()
                self.tree.setCurrentItem(None)
                self.count.setText(f"{len(self.order):,} of {len(self.rows):,} images · "
                                   f"the open image #{image_id} is hidden by the filters")
            # Only a visible image (one the filters kept) has a leaf in the tree.
            patient = self._patients.get(self._patient_of.get(image_id)) if row is not None else None
            if patient is not None:
                self._expand(patient)
                patient.setExpanded(True)
                for s in range(patient.childCount()):
                    study = patient.child(s)
                    for k in range(study.childCount()):
                        leaf = study.child(k)
                        if leaf.data(0, Qt.ItemDataRole.UserRole) == ("image", image_id):
                            self.tree.setCurrentItem(leaf)
                            self.tree.scrollToItem(leaf)
        finally:
            self._syncing = False

    def neighbour(self, image_id: int | None, step: int) -> int | None:
        if not self.order:
            return None
        if image_id not in self.model._row_of:
            return self.order[0] if step > 0 else self.order[-1]
        i = self.model._row_of[image_id] + step
        return self.order[i] if 0 <= i < len(self.order) else None

    def next_unlabelled(self, image_id: int | None) -> int | None:
        start = self.model._row_of.get(image_id, -1) + 1 if image_id is not None else 0
        n = len(self.order)
        for k in range(n):
            cand = self.order[(start + k) % n]
            if cand != image_id and self.is_unlabelled(cand):
                return cand
        return None
