"""Cluster review board: every cluster as a montage, a clickable 2-D map, one open cluster.

Constructed as ``ClusterBoard(main_window)``; uses ``window.project``,
``window.runner.submit(kind, params)``, ``window.undo_stack``,
``window.open_image(image_id)`` and refreshes on ``window.project_changed``.

Keys: 1-9 label the selected clusters with the first classes of the label set,
D discards, M merges the selected clusters, S splits the selected one; a class
name typed in "New class" labels with a new class.  Every action is a QUndoCommand
on the window's undo stack, which follows the store's cluster edit journal (journal_sync.py):
edits made elsewhere (``mskstudio clusters …``) show at once and Edit › Undo undoes them too.
Review time (selection to action) is stored with the label for the images-per-minute figure.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from mskstudio.gui.clusters.commands import ClusterActionCommand
from mskstudio.gui.clusters.detail import ClusterDetail
from mskstudio.gui.clusters.journal_sync import sync_undo_stack
from mskstudio.gui.clusters.montage import ThumbCache, montage
from mskstudio.gui.widgets.board_keys import BoardKeys
from mskstudio.gui.widgets.workspace import follow_window
from mskstudio.ml.cluster.split import split_cluster

if TYPE_CHECKING:
    from mskstudio.domain import LabelClass
    from mskstudio.gui.window_contract import ViewWindow

SORTS = (("Largest first", "size"), ("Most spread first", "spread"), ("Unlabelled first", "unlabelled"))
DEFAULT_LABEL_SET = "finding"


class ClusterBoard(BoardKeys, QWidget):
    # Keys through BoardKeys (not QShortcuts, which clashed with the viewer's presets 1-5
    # and its ruler M): arrows/[ ] step through the clusters, digits label, D M S act.
    ACCEPT_KEYS: set = set()
    LETTER_KEYS = {Qt.Key.Key_D: "discard_selected", Qt.Key.Key_M: "merge_selected",
                   Qt.Key.Key_S: "split_by_spin"}
    KEYS_HELP = [("1–9", "Label the selected clusters with that class"), ("D", "Discard the selected clusters"),
                 ("M", "Merge the selected clusters"), ("S", "Split the selected cluster"),
                 ("Right, ], Page Down / Left, [, Page Up", "Next / previous cluster")]

    def __init__(self, window, parent=None):
        super().__init__(parent if parent is not None else (window if isinstance(window, QWidget) else None))
        self.window_: ViewWindow = window
        self.thumbs = ThumbCache()
        self.run_id: int | None = None
        self._selected_at = time.monotonic()
        self.last_error: BaseException | None = None
        self._journal_project = None  # the project whose journal the stack follows
        self._journal_after = 0       # edits up to this id were made before the project opened here
        self._syncing = False
        self._stale = False

        self.run_combo = QComboBox()
        self.run_combo.currentIndexChanged.connect(self._run_chosen)
        self.label_set = QComboBox()
        self.label_set.setEditable(True)
        # Another set: its classes, its labels and its progress (classes belong to their set).
        self.label_set.currentTextChanged.connect(lambda _: self.refresh())
        self.sort = QComboBox()
        for text, key in SORTS:
            self.sort.addItem(text, key)
        self.sort.currentIndexChanged.connect(self.refresh)
        self.cluster_now_btn = QPushButton("Cluster now")
        self.cluster_now_btn.clicked.connect(lambda: self.submit_clustering(fast=True))
        self.deepcluster_btn = QPushButton("DeepCluster…")
        self.deepcluster_btn.clicked.connect(self.ask_deepcluster)
        self.recluster_btn = QPushButton("Re-cluster…")
        self.recluster_btn.setToolTip("A new run with another number of clusters from this run's "
                                      "features, by k-means or by merging its clusters (about a second)")
        self.recluster_btn.clicked.connect(self.ask_recluster)
        self.progress = QLabel()

        self.clusters = QListWidget()
        self.clusters.setViewMode(QListWidget.IconMode)
        self.clusters.setIconSize(QSize(128, 146))
        self.clusters.setResizeMode(QListWidget.Adjust)
        self.clusters.setMovement(QListWidget.Static)
        self.clusters.setSelectionMode(QAbstractItemView.ExtendedSelection)
        self.clusters.itemSelectionChanged.connect(self._selection_changed)

        import pyqtgraph as pg

        self.map = pg.PlotWidget()
        self.map.setMenuEnabled(False)
        self.map.hideAxis("left")
        self.map.hideAxis("bottom")
        self.points = pg.ScatterPlotItem(hoverable=True)
        self.points.sigClicked.connect(self._map_clicked)
        self.map.addItem(self.points)

        self.detail = ClusterDetail(self.thumbs)
        self.detail.image_activated.connect(self._open_image)
        self.detail.move_out_requested.connect(self.move_out)
        self.detail.label_requested.connect(self._ask_label_images)

        self.class_combo = QComboBox()
        self.new_class = QLineEdit(placeholderText="New class…")
        self.new_class.returnPressed.connect(self._label_new_class)
        label_btn = QPushButton("Label")
        label_btn.clicked.connect(lambda: self.label_selected(self.class_combo.currentData()))
        discard_btn = QPushButton("Discard (D)")
        discard_btn.clicked.connect(self.discard_selected)
        merge_btn = QPushButton("Merge (M)")
        merge_btn.clicked.connect(self.merge_selected)
        self.split_n = QSpinBox(minimum=2, maximum=20, value=2)
        split_btn = QPushButton("Split (S)")
        split_btn.clicked.connect(lambda: self.split_selected(self.split_n.value()))

        # Three rows (what to show, how to cluster, what to do with the selection): with the
        # Cases and Case docks open the tab is about 600 px wide, and two rows cut the
        # clustering buttons' text to "luster nov" and "epCluster".
        top = QHBoxLayout()
        for w in (QLabel("Run"), self.run_combo, QLabel("Label set"), self.label_set, QLabel("Sort"),
                  self.sort):
            top.addWidget(w, 1 if isinstance(w, QComboBox) else 0)
        make = QHBoxLayout()
        for w in (self.cluster_now_btn, self.deepcluster_btn, self.recluster_btn):
            make.addWidget(w)
        self.progress.setWordWrap(True)
        make.addWidget(self.progress, 1)
        actions = QHBoxLayout()
        for w in (self.class_combo, label_btn, self.new_class, discard_btn, merge_btn, self.split_n,
                  split_btn):
            actions.addWidget(w, 1 if w in (self.class_combo, self.new_class) else 0)
        right = QSplitter(Qt.Vertical)
        right.addWidget(self.map)
        right.addWidget(self.detail)
        body = QSplitter(Qt.Horizontal)
        body.addWidget(self.clusters)
        body.addWidget(right)
        body.setSizes([600, 500])
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addLayout(make)
        lay.addLayout(actions)
        lay.addWidget(body, 1)

        self.install_key_filter()

        follow_window(window, self.reload, on_returned=self._job_returned)
        changed = getattr(window, "data_changed", None)
        if changed is not None:  # the store's change feed and finished jobs
            changed.connect(self._store_changed)

    # ---- keys (BoardKeys) ---------------------------------------------------------------
    def accept_current(self) -> None:
        pass  # no Enter action: a cluster is labelled by its number

    def digit_allowed(self, n: int) -> bool:
        return True  # a digit on the board is always a class number, never a W/L preset

    def step(self, delta: int) -> None:
        n = self.clusters.count()
        if n == 0:
            return
        row = self.clusters.currentRow()
        row = 0 if row < 0 else max(0, min(n - 1, row + delta))
        self.clusters.setCurrentRow(row)
        self.select_clusters([int(self.clusters.item(row).data(Qt.UserRole))])

    def focus_default(self) -> None:
        self.clusters.setFocus()

    def split_by_spin(self) -> bool:
        return self.split_selected(self.split_n.value())

    # ---- data ---------------------------------------------------------------------------
    @property
    def project(self):
        return self.window_.project

    def reload(self) -> None:
        """Project opened or changed: refill runs and label sets, keep the run if it still exists."""
        if self._journal_project is not self.project:
            self._journal_project = self.project
            self._journal_after = self.project.cluster_edits.last_id() if self.project is not None else 0
        self.thumbs.set_project(self.project)
        self.run_combo.blockSignals(True)
        self.run_combo.clear()
        if self.project is not None:
            for r in self.project.clusters.runs():
                self.run_combo.addItem(f"run {r['id']}: k={r['n_clusters']}, {r['n_images']} images", r["id"])
        self.run_combo.blockSignals(False)
        keep = self.run_combo.findData(self.run_id) if self.run_id else -1
        self.run_combo.setCurrentIndex(keep if keep >= 0 else 0)
        self._run_chosen()

    def _run_chosen(self) -> None:
        self.run_id = self.run_combo.currentData()
        self._fill_label_sets()
        self.refresh()

    def _fill_label_sets(self) -> None:
        current = self.label_set.currentText()
        self.label_set.blockSignals(True)
        self.label_set.clear()
        names = [r["name"] for r in self.project.labels.label_sets("image")] if self.project else []
        run = self.project.clusters.run(self.run_id) if (self.project and self.run_id) else None
        preferred = None
        if run is not None and run["label_set_id"]:
            preferred = self.project.labels.label_set_name(run["label_set_id"])
        self.label_set.addItems(names or [DEFAULT_LABEL_SET])
        self.label_set.setCurrentText(preferred or current or (names[0] if names else DEFAULT_LABEL_SET))
        self.label_set.blockSignals(False)
        self._refresh_classes()

    def label_set_id(self) -> int:
        return self.project.labels.label_set(self.label_set.currentText().strip() or DEFAULT_LABEL_SET)

    def _existing_label_set_id(self) -> int | None:
        name = self.label_set.currentText().strip()
        return self.project.labels.find_label_set(name) if name else None

    def review_classes(self) -> list[LabelClass]:
        ls = self._existing_label_set_id() if self.project else None
        return [c for c in self.project.labels.classes(ls) if not c.is_reject] if ls else []

    def _refresh_classes(self) -> None:
        current = self.class_combo.currentData()
        self.class_combo.clear()
        for n, c in enumerate(self.review_classes(), 1):
            self.class_combo.addItem(f"{n}: {c.name}" if n <= 9 else c.name, c.id)
        i = self.class_combo.findData(current)
        if i >= 0:
            self.class_combo.setCurrentIndex(i)

    # ---- changes made elsewhere ------------------------------------------------------------
    def _store_changed(self, subjects) -> None:
        """The window's ``data_changed``: follow the journal, then redraw what moved."""
        if self.project is None:
            return
        if "clusters" in subjects:
            self.sync_journal(redraw=False)  # redrawn once below
        if subjects & {"clusters", "labels"}:
            self._add_new_label_sets()
        runs = [self.run_combo.itemData(i) for i in range(self.run_combo.count())]
        if "runs" in subjects and [r["id"] for r in self.project.clusters.runs()] != runs:
            self.reload()
        elif subjects & {"clusters", "labels"}:  # not "runs" alone: a training job's epochs move it
            if self.isVisible():
                self.refresh()
            else:
                self._stale = True  # redrawn when shown: montages cost more than a poll

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._stale:
            self.refresh()

    def _add_new_label_sets(self) -> None:
        """A set made elsewhere (``clusters … --label-set NEW``) is offered; the shown one stays."""
        names = [r["name"] for r in self.project.labels.label_sets("image")]
        shown = [self.label_set.itemText(i) for i in range(self.label_set.count())]
        if any(n not in shown for n in names):
            current = self.label_set.currentText()
            self.label_set.blockSignals(True)
            self.label_set.clear()
            self.label_set.addItems(names)
            self.label_set.setCurrentText(current)
            self.label_set.blockSignals(False)

    def sync_journal(self, *, redraw: bool = True) -> int:
        """Adopt edits made elsewhere onto the undo stack (see journal_sync.py)."""
        if self.project is None:
            return 0
        stack = self.window_.undo_stack
        before = (stack.index(), stack.count())
        self._syncing = True
        try:
            adopted = sync_undo_stack(stack, self.project, after=self._journal_after,
                                      on_change=self.refresh, on_refused=self._undo_refused)
        finally:
            self._syncing = False
        if redraw and (adopted or (stack.index(), stack.count()) != before):
            self.refresh()
        return adopted

    def _undo_refused(self, exc: Exception) -> None:
        """Undo met a later edit from elsewhere that the stack had not adopted yet: adopt it now;
        the next Undo undoes it."""
        self.last_error = exc
        QTimer.singleShot(0, self.sync_journal)

    def refresh(self) -> None:
        """Redraw montages, map and progress from the store (after any action, undo or redo)."""
        if self._syncing:
            return  # once, after the journal sync
        self._stale = False
        selected = set(self.selected_cluster_ids())
        self.clusters.clear()
        self.points.clear()
        if self.project is None or self.run_id is None:
            self.progress.setText("No cluster run yet: press Cluster now")
            self.detail.show_cluster(self.project, None)
            return
        rows = self.project.clusters.clusters(self.run_id, order=self.sort.currentData())
        shown_set = self._existing_label_set_id()
        spots = []
        for r in rows:
            central = [m["image_id"] for m in
                       self.project.clusters.members(r["id"], order="central", limit=4)]
            in_set = r["class_label_set_id"] == shown_set  # a class of another set is not this set's
            label = "discarded" if r["discarded"] and in_set else (r["class_name"] or "") if in_set else ""
            pix = montage(self.thumbs, central, caption=f"#{r['idx']}  n={r['size']}  {label}",
                          color=r["class_color"] if in_set else None, discarded=bool(r["discarded"]) and in_set)
            it = QListWidgetItem(QIcon(pix), "")
            it.setData(Qt.UserRole, int(r["id"]))
            it.setToolTip(f"cluster #{r['idx']}: {r['size']} images, spread {r['spread'] or 0:.3f}, "
                          f"{label or 'unlabelled'}")
            it.setSizeHint(QSize(136, 160))
            self.clusters.addItem(it)
            if int(r["id"]) in selected:
                it.setSelected(True)
            spots.append({"pos": (r["map_x"] or 0.0, r["map_y"] or 0.0), "data": int(r["id"]),
                          "size": 6 + 2 * min(r["size"], 200) ** 0.5,
                          "brush": (r["class_color"] if in_set else None)
                          or ("#555" if r["discarded"] and in_set else "#aaaaaa")})
        self.points.addPoints(spots)
        self._refresh_classes()
        self._show_progress()
        open_id = self.detail.cluster_id
        sel = self.selected_cluster_ids()
        self.detail.show_cluster(self.project, sel[0] if sel else open_id)

    def _show_progress(self) -> None:
        ls = self._existing_label_set_id()
        name = self.label_set.currentText().strip()
        if ls is None and name:  # a new set, typed in: nothing is labelled in it yet
            p = self.project.clusters.progress(self.run_id, -1)
        else:
            p = self.project.clusters.progress(self.run_id, ls)
        speed = f", {p['images_per_minute']:.0f} images/min" if p["images_per_minute"] else ""
        self.progress.setText(f"{p['clusters_reviewed']}/{p['clusters_total']} clusters reviewed, "
                              f"{p['images_covered']}/{p['images_total']} images labelled{speed}")

    # ---- selection ----------------------------------------------------------------------------
    def selected_cluster_ids(self) -> list[int]:
        return [int(it.data(Qt.UserRole)) for it in self.clusters.selectedItems()]

    def select_clusters(self, cluster_ids: list[int]) -> None:
        self.clusters.clearSelection()
        for i in range(self.clusters.count()):
            it = self.clusters.item(i)
            if int(it.data(Qt.UserRole)) in cluster_ids:
                it.setSelected(True)
                self.clusters.scrollToItem(it)

    def _selection_changed(self) -> None:
        self._selected_at = time.monotonic()
        sel = self.selected_cluster_ids()
        if sel:
            self.detail.show_cluster(self.project, sel[0])

    def _map_clicked(self, _item, points, *_):
        if len(points):
            self.select_clusters([int(points[0].data())])

    def _open_image(self, image_id: int) -> None:
        self.window_.open_image(image_id)

    # ---- actions (each one QUndoCommand) -------------------------------------------------------------
    def _push(self, text: str, do) -> bool:
        if self.project is None or self.run_id is None:
            return False
        self.sync_journal()  # edits made elsewhere go below this one, in the journal's order
        cmd = ClusterActionCommand(self.project, text, do, on_change=self.refresh,
                                   on_refused=self._undo_refused)
        self.window_.undo_stack.push(cmd)
        if cmd.error is not None:
            self.last_error = cmd.error
            self.window_.show_error("Cluster action failed", str(cmd.error))
            return False
        return True

    def _review_seconds(self) -> float:
        return max(0.0, time.monotonic() - self._selected_at)

    def label_selected(self, cls, clusters: list[int] | None = None) -> bool:
        ids = clusters or self.selected_cluster_ids()
        if not ids or cls is None:
            return False
        ls, secs = self.label_set_id(), self._review_seconds()
        name = cls if isinstance(cls, str) else self.project.labels.class_name(cls)
        return self._push(f"Label {len(ids)} cluster(s) {name}",
                          lambda: self.project.clusters.label_cluster(ids, ls, cls, review_seconds=secs))

    def label_with_number(self, n: int) -> bool:
        classes = self.review_classes()
        return self.label_selected(classes[n - 1].id) if n <= len(classes) else False

    def _label_new_class(self) -> None:
        name = self.new_class.text().strip()
        if name and self.label_selected(name):
            self.new_class.clear()

    def discard_selected(self) -> bool:
        ids = self.selected_cluster_ids()
        if not ids:
            return False
        ls, secs = self.label_set_id(), self._review_seconds()
        return self._push(f"Discard {len(ids)} cluster(s)",
                          lambda: self.project.clusters.discard(ids, ls, review_seconds=secs))

    def merge_selected(self) -> bool:
        ids = self.selected_cluster_ids()
        if len(ids) < 2:
            return False
        ls = self.label_set_id()  # the set the board shows, never the run's first one
        return self._push(f"Merge {len(ids)} clusters", lambda: self.project.clusters.merge(ids, ls))

    def split_selected(self, n: int = 2) -> bool:
        ids = self.selected_cluster_ids()
        if len(ids) != 1:
            return False
        return self._push(f"Split cluster into {n}", lambda: split_cluster(self.project, ids[0], n))

    def move_out(self, image_ids: list[int]) -> bool:
        if not image_ids:
            return False
        run, ls = self.run_id, self.label_set_id()
        return self._push(f"Move {len(image_ids)} image(s) out",
                          lambda: self.project.clusters.move_out(run, image_ids, label_set=ls))

    def label_images(self, image_ids: list[int], cls) -> bool:
        if not image_ids or cls is None:
            return False
        ls, run = self.label_set_id(), self.run_id
        return self._push(f"Label {len(image_ids)} image(s)",
                          lambda: self.project.clusters.label_images(run, image_ids, ls, cls))

    def _ask_label_images(self, image_ids: list[int]) -> None:
        names = [c.name for c in self.review_classes()]
        name, ok = QInputDialog.getItem(self, "Label images", "Class (or a new name):", names, 0, True)
        if ok and name.strip():
            self.label_images(image_ids, name.strip())

    # ---- jobs ----------------------------------------------------------------------------------------
    def submit_clustering(self, *, fast: bool, **params) -> int | None:
        if self.project is None:
            return None
        ls = self.label_set.currentText().strip()
        return self.window_.runner.submit("cluster", {"mode": "fast" if fast else "deepcluster",
                                         **({"label_set": ls} if ls else {}), **params})

    def ask_deepcluster(self) -> None:
        from mskstudio.gui.clusters.dialog import DeepClusterDialog

        if self.project is None:
            return
        dialog = DeepClusterDialog(self.project, self)
        if dialog.exec():
            params = dialog.params()
            params.pop("mode")
            self.submit_clustering(fast=False, **params)

    def ask_recluster(self) -> None:
        run = self.project.clusters.run(self.run_id) if self.project is not None and self.run_id else None
        if run is None:
            return
        from mskstudio.gui.clusters.dialog import ReclusterDialog

        assignment = self.project.clusters.assignment(self.run_id)
        dialog = ReclusterDialog(len(assignment), len(set(assignment.values())), self)
        if dialog.exec():
            self.recluster(**dialog.params())

    def recluster(self, k: int, method: str = "kmeans") -> int | None:
        """Submit job ``recluster``: k-means with ``k``, or ``method="merge"`` into ``k`` groups."""
        if self.run_id is None:
            return None
        params = {"cluster_run_id": self.run_id, "k": int(k)} | ({"method": method} if method != "kmeans" else {})
        return self.window_.runner.submit("recluster", params)

    def _job_returned(self, _job_id: int, result) -> None:
        if isinstance(result, dict) and "cluster_run_id" in result:
            self.run_id = result["cluster_run_id"]
            self.reload()
