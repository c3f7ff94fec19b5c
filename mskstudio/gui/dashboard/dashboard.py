"""Model dashboard: ROC curves, confusion matrix, per-class table, learning curves, A/B comparison.

Constructed as ``Dashboard(main_window)``; reads classifier runs' ``metrics`` JSON from
the store (``project.models``); figures come from ``dashboard_data`` (Qt-free).  A
confusion-matrix cell lists its hold-out cases; double-click opens one in the Viewer.
Figures export as PNG/SVG (pyqtgraph exporters), tables as CSV.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from mskstudio.gui.dashboard.errors_view import ErrorsView
from mskstudio.gui.fuse.clinical_section import fusion_runs
from mskstudio.gui.review import review_queue as rq
from mskstudio.gui.widgets.plots import PALETTE, epoch_plot
from mskstudio.gui.widgets.workspace import follow_window
from mskstudio.ml.evaluate import dashboard_figures as dd

if TYPE_CHECKING:
    from mskstudio.gui.window_contract import ViewWindow

FIGURES = ("roc", "curves")
_PEN_STYLES = {"solid": Qt.PenStyle.SolidLine, "dash": Qt.PenStyle.DashLine, "dot": Qt.PenStyle.DotLine}
TABLES = ("confusion", "per_class", "comparison")


def _table(rows: list[list], table: QTableWidget, *, first_col_header: bool = True) -> None:
    header, body = (rows[0], rows[1:]) if rows else ([], [])
    table.clear()
    table.setColumnCount(len(header) - (1 if first_col_header else 0))
    table.setRowCount(len(body))
    table.setHorizontalHeaderLabels([str(h) for h in header[1 if first_col_header else 0:]])
    if first_col_header:
        table.setVerticalHeaderLabels([str(r[0]) for r in body])
    for i, r in enumerate(body):
        for j, v in enumerate(r[1 if first_col_header else 0:]):
            item = QTableWidgetItem(str(v))
            item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
            table.setItem(i, j, item)


def _svg_by_painter(widget: QWidget, path: Path) -> None:
    from PySide6.QtGui import QPainter
    from PySide6.QtSvg import QSvgGenerator

    gen = QSvgGenerator()
    gen.setFileName(str(path))
    gen.setSize(widget.size())
    gen.setViewBox(widget.rect())
    gen.setTitle("mskstudio figure")
    painter = QPainter(gen)
    try:
        widget.render(painter)
    finally:
        painter.end()


class Dashboard(QWidget):
    def __init__(self, window, parent=None):
        super().__init__(parent)
        self.window_: ViewWindow = window
        self.metrics_a: dict = {}
        self.metrics_b: dict = {}
        self.cell: tuple[int, int] | None = None

        self.run_a = QComboBox()
        self.run_b = QComboBox()
        for c in (self.run_a, self.run_b):
            # long run names elide instead of pushing the labels over each other in a narrow window
            c.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            c.setMinimumContentsLength(18)
            c.currentIndexChanged.connect(lambda _i: self.refresh())
        self.which = QComboBox()
        for text, key in dd.REPORTS:
            self.which.addItem(text, key)
        self.which.currentIndexChanged.connect(lambda _i: self.refresh())
        # Attention (about 2-5) and loss/accuracy (about 0-1) on one axis flattened the
        # loss curves into a line at the bottom: the attention of guided runs gets its own view.
        self.curve_kind = QComboBox()
        for text, key in dd.CURVE_VIEWS:
            self.curve_kind.addItem(text, key)
        self.curve_kind.setToolTip("What the learning-curve plot shows")
        self.curve_kind.currentIndexChanged.connect(lambda _i: self._draw_curves())
        self.export_btn = QToolButton()
        self.export_btn.setText("Export…")
        self.export_btn.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.export_btn)
        for fig, title in (("roc", "ROC curves"), ("curves", "Learning curves")):
            menu.addAction(f"{title} as PNG…", lambda f=fig: self.ask_export_figure(f, "png"))
            menu.addAction(f"{title} as SVG…", lambda f=fig: self.ask_export_figure(f, "svg"))
        menu.addSeparator()
        for tab, title in (("confusion", "Confusion matrix"), ("per_class", "Per-class table"),
                           ("comparison", "Comparison")):
            menu.addAction(f"{title} as CSV…", lambda t=tab: self.ask_export_table(t))
        self.export_btn.setMenu(menu)
        # Two rows: with the Cases and Case docks open the tab is about 580 px wide, and one
        # row squeezed the run names to a few letters and cut the accuracy note.
        runs_row, view_row = QHBoxLayout(), QHBoxLayout()
        for w in (QLabel("Run A"), self.run_a, QLabel("compare with B"), self.run_b):
            runs_row.addWidget(w, 1 if isinstance(w, QComboBox) else 0)
        for w in (QLabel("Scores"), self.which, QLabel("Curves"), self.curve_kind, self.export_btn):
            view_row.addWidget(w)
        self.note = QLabel()
        self.note.setWordWrap(True)  # a second line rather than a cut accuracy figure
        view_row.addWidget(self.note, 1)
        top = QVBoxLayout()
        top.addLayout(runs_row)
        top.addLayout(view_row)

        self.roc = pg.PlotWidget(title="ROC (one-vs-rest)")
        self.roc.setLabel("bottom", "1 − specificity (FPR)")
        self.roc.setLabel("left", "sensitivity (TPR)")
        self.roc.setXRange(0, 1, padding=0.02)
        self.roc.setYRange(0, 1, padding=0.02)
        # Rates live in [0, 1]: a locked aspect in a tall panel showed -1..2 on the y axis.
        self.roc.getViewBox().setLimits(xMin=-0.02, xMax=1.02, yMin=-0.02, yMax=1.02)
        self.roc.showGrid(x=True, y=True, alpha=0.2)
        self.roc_legend = self.roc.addLegend(offset=(-10, -10), labelTextSize="8pt",
                                             brush=pg.mkBrush(20, 20, 20, 170))
        self.curves, self.curves_legend = epoch_plot("Learning curves (per fold)")

        self.confusion = QTableWidget()
        self.confusion.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.confusion.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.confusion.cellClicked.connect(self.select_cell)
        self.confusion.setToolTip("rows = truth, columns = prediction; click a cell to list its cases")
        self.cases = QListWidget()
        self.cases.itemDoubleClicked.connect(self._open_case)
        self.cases_title = QLabel("Click a cell to list its cases")
        mid = QWidget()
        ml = QVBoxLayout(mid)
        ml.setContentsMargins(0, 0, 0, 0)
        self.confusion_title = QLabel("<b>Confusion matrix</b> (rows = truth)")
        ml.addWidget(self.confusion_title)
        ml.addWidget(self.confusion, 3)
        ml.addWidget(self.cases_title)
        ml.addWidget(self.cases, 2)

        self.per_class = QTableWidget()
        self.per_class.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.comparison = QTableWidget()
        self.comparison.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.summary = QLabel()
        self.summary.setWordWrap(True)

        upper = QSplitter(Qt.Orientation.Horizontal)
        upper.addWidget(self.roc)
        upper.addWidget(mid)
        upper.addWidget(self.curves)
        upper.setSizes([480, 420, 480])
        lower = QSplitter(Qt.Orientation.Horizontal)
        pc = QWidget()
        pl = QVBoxLayout(pc)
        pl.setContentsMargins(0, 0, 0, 0)
        pl.addWidget(QLabel("<b>Per class</b> (run A; Wilson / bootstrap 95% CIs)"))
        pl.addWidget(self.per_class)
        cmp_ = QWidget()
        cl = QVBoxLayout(cmp_)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.addWidget(QLabel("<b>Comparison</b> (accuracy with 95% CI and n)"))
        cl.addWidget(self.comparison)
        lower.addWidget(pc)
        lower.addWidget(cmp_)
        lower.setSizes([820, 560])
        body = QSplitter(Qt.Orientation.Vertical)
        body.addWidget(upper)
        body.addWidget(lower)
        body.setSizes([560, 300])
        # Figures and the error galleries of run A share the space below the run pickers.
        self.errors = ErrorsView(window)
        self.tabs = QTabWidget()
        self.tabs.addTab(body, "Figures")
        self.tabs.addTab(self.errors, "Errors")
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.tabs, 1)

        follow_window(window, self.reload, on_returned=self._job_returned)

    # ---- runs ----------------------------------------------------------------------------
    @property
    def project(self):
        return self.window_.project

    def reload(self) -> None:
        keep_a, keep_b = self.run_a.currentData(), self.run_b.currentData()
        runs = rq.classifier_runs(self.project) if self.project is not None else []
        runs += fusion_runs(self.project)  # image-only, metadata-only and fusion side by side
        for combo, keep, none in ((self.run_a, keep_a, False), (self.run_b, keep_b, True)):
            combo.blockSignals(True)
            combo.clear()
            if none:
                combo.addItem("— none —", None)
            for run in runs:
                combo.addItem(rq.run_label(run), run["id"])
            i = combo.findData(keep) if keep is not None else -1
            combo.setCurrentIndex(max(i, 0))
            combo.blockSignals(False)
        self.refresh()

    def set_runs(self, run_a: int, run_b: int | None = None) -> None:
        self.run_a.blockSignals(True)
        self.run_a.setCurrentIndex(max(self.run_a.findData(run_a), 0))
        self.run_a.blockSignals(False)
        self.run_b.setCurrentIndex(max(self.run_b.findData(run_b), 0) if run_b is not None else 0)
        self.refresh()

    def _job_returned(self, job_id: int, _result) -> None:
        h = self.window_.runner.handle(job_id)
        if h is not None and h.kind in ("train", "fuse"):
            self.reload()

    # ---- drawing ---------------------------------------------------------------------------
    @property
    def which_key(self) -> str:
        return self.which.currentData() or "holdout"

    def refresh(self) -> None:
        p = self.project
        a, b = self.run_a.currentData(), self.run_b.currentData()
        self.metrics_a = p.models.metrics(a) if p is not None and a is not None else {}
        self.metrics_b = p.models.metrics(b) if p is not None and b is not None and b != a else {}
        self._sync_test_sets()
        self.rep = dd.report(self.metrics_a, self.which_key)
        self.classes = dd.classes_of(self.metrics_a, self.rep)
        self._draw_roc()
        self._draw_confusion()
        _table(dd.per_class_rows(self.rep, self.classes), self.per_class)
        _table(self.comparison_table(), self.comparison)
        self._draw_curves()
        self.errors.show_run(a if self.metrics_a else None, self.rep, self.classes,
                             self.which.currentText().lower())
        self.cases.clear()
        self.cell = None
        self.cases_title.setText("Click a cell to list its cases")
        if not self.metrics_a:
            self.note.setText("No finished classifier run: Model › Train classifier…")
        else:
            acc = dd.fmt_prop(self.rep.get("accuracy"))
            self.note.setText(f"run A: {self.which.currentText().lower()} n = {self.rep.get('n', 0)}, "
                              f"accuracy {acc}")

    def _sync_test_sets(self) -> None:
        """Offer run A's external test sets beside the hold-out and the out-of-fold report."""
        wanted = [*dd.REPORTS, *[(f"External test: {t.split(': ', 1)[1]}", k)
                                 for t, k in dd.test_sets(self.metrics_a)[1:]]]
        have = [(self.which.itemText(i), self.which.itemData(i)) for i in range(self.which.count())]
        if have == wanted:
            return
        keep = self.which.currentData()
        self.which.blockSignals(True)
        self.which.clear()
        for text, key in wanted:
            self.which.addItem(text, key)
        self.which.setCurrentIndex(max(self.which.findData(keep), 0))
        self.which.blockSignals(False)

    def _draw_roc(self) -> None:
        self.roc.clear()
        self.roc_legend.clear()
        self.roc.plot([0, 1], [0, 1], pen=pg.mkPen("#777", width=1, style=Qt.PenStyle.DotLine))
        runs = [("A", self.metrics_a, Qt.PenStyle.SolidLine), ("B", self.metrics_b, Qt.PenStyle.DashLine)]
        drawn = 0
        for tag, m, style in runs:
            if not m:
                continue
            rep = dd.report(m, self.which_key)
            classes = dd.classes_of(m, rep)
            for j, (name, (fpr, tpr, auc)) in enumerate(dd.roc_curves(rep, classes).items()):
                pen = pg.mkPen(PALETTE[j % len(PALETTE)], width=2, style=style)
                label = f"{tag}: {name} AUC {auc:.2f}" if self.metrics_b else f"{name} AUC {auc:.2f}"
                self.roc.plot(fpr, tpr, pen=pen, name=label)
                drawn += 1
        if self.metrics_a and not drawn:
            text = pg.TextItem("ROC needs per-case probabilities:\nthis report has none (older run)",
                               color="#bbb", anchor=(0.5, 0.5))
            text.setPos(0.5, 0.5)
            self.roc.addItem(text)

    def _draw_confusion(self) -> None:
        rows = dd.confusion_rows(self.rep, self.classes)
        _table(rows, self.confusion)
        # Short headers (class numbers) keep many classes readable; full names in tooltips.
        self.confusion.setHorizontalHeaderLabels([str(j + 1) for j in range(len(self.classes))])
        self.confusion.setVerticalHeaderLabels([f"{j + 1} {n}" for j, n in enumerate(self.classes)])
        for j, name in enumerate(self.classes):
            head = self.confusion.horizontalHeaderItem(j)
            if head is not None:
                head.setToolTip(f"predicted {name}")
        body = [r[1:] for r in rows[1:]]
        for i, r in enumerate(body):
            total = max(sum(r), 1)
            for j, v in enumerate(r):
                item = self.confusion.item(i, j)
                frac = v / total
                base = QColor("#3cb44b") if i == j else QColor("#e6194b")
                base.setAlpha(int(40 + 200 * frac) if v else 0)
                item.setBackground(QBrush(base))
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                item.setToolTip(f"truth {self.classes[i]}, predicted {self.classes[j]}: {v} of {sum(r)}")
        self.confusion_title.setText(f"<b>Confusion matrix</b> (rows = truth, n = {self.rep.get('n', 0)})")

    def confusion_values(self) -> list[list[int]]:
        """What the confusion table shows (for tests and checks)."""
        return [[int(self.confusion.item(i, j).text()) for j in range(self.confusion.columnCount())]
                for i in range(self.confusion.rowCount())]

    def _draw_curves(self) -> None:
        self.curves.clear()
        self.curves_legend.clear()
        curves = dd.learning_curves(self.metrics_a)
        if not any(v for c in curves.values() for v in c.values()) and self.project is not None:
            row = self.project.models.get(self.run_a.currentData()) if self.run_a.currentData() else None
            if row is not None and row["job_id"]:
                curves = dd.curves_from_job(self.project.jobs.metrics(row["job_id"]))
        kind = self.curve_kind.currentData() or "loss"
        has_attention = any(c.get("val_attention") or c.get("train_attention") for c in curves.values())
        self.curve_kind.model().item(self.curve_kind.findData("attention")).setEnabled(has_attention)
        if kind == "attention" and not has_attention:
            kind = "loss"
        keys = dd.CURVE_STYLES[kind]
        self.curves.setLabel("left", "   ".join(f"{k.replace('_', ' ')} {dd.STYLE_GLYPHS[st]}"
                                               for k, st in keys.items()))
        for f, (fold, c) in enumerate(curves.items()):
            color = PALETTE[f % len(PALETTE)]
            named = False  # one legend entry per fold: the line styles are on the axis label
            for key, style in keys.items():
                pts = c.get(key) or []
                if not pts:
                    continue
                x = [e + 1 for e, _ in pts]
                y = [v for _, v in pts]
                self.curves.plot(x, y, pen=pg.mkPen(color, width=2, style=_PEN_STYLES[style]), symbol="o",
                                 symbolSize=5, symbolBrush=color, name=None if named else fold)
                named = True

    def comparison_table(self) -> list[list[str]]:
        runs = []
        for combo, m in ((self.run_a, self.metrics_a), (self.run_b, self.metrics_b)):
            rid = combo.currentData()
            if rid is None or not m:
                continue
            params = self.project.models.params(rid)
            name = self.project.models.get(rid)["name"] or ""
            runs.append((f"#{rid} {name}".strip(), m, params))
        return dd.comparison_rows(runs, self.which_key) if runs else [["figure"]]

    # ---- confusion cells -> cases -> viewer ----------------------------------------------
    def select_cell(self, row: int, col: int) -> list[int]:
        self.cell = (row, col)
        ids = dd.cases_in_cell(self.rep, row, col)
        self.cases.clear()
        for i in ids:
            item = QListWidgetItem(f"#{i}  truth {self.classes[row]} → predicted {self.classes[col]}")
            item.setData(Qt.ItemDataRole.UserRole, i)
            self.cases.addItem(item)
        if not self.rep.get("image_ids"):  # runs trained before out-of-fold cases were kept
            self.cases_title.setText("This report has no per-case predictions: switch to the hold-out")
        else:
            self.cases_title.setText(f"{len(ids)} case(s): truth {self.classes[row]}, predicted "
                                     f"{self.classes[col]} — double-click opens in the Viewer")
        return ids

    def listed_cases(self) -> list[int]:
        return [self.cases.item(k).data(Qt.ItemDataRole.UserRole) for k in range(self.cases.count())]

    def _open_case(self, item: QListWidgetItem) -> None:
        image_id = item.data(Qt.ItemDataRole.UserRole)
        w = self.window_
        w.open_image(int(image_id))
        w.show_in_viewer()

    # ---- export ----------------------------------------------------------------------------
    def export_figure(self, which: str, path: str | Path) -> Path:
        """``which`` = roc | curves; PNG or SVG by the file's suffix."""
        from pyqtgraph import exporters

        path = Path(path)
        widget = {"roc": self.roc, "curves": self.curves}[which]
        plot = widget.plotItem
        if path.suffix.lower() == ".svg":
            try:
                exporters.SVGExporter(plot).export(str(path))
            except ValueError:
                # pyqtgraph's SVG exporter cannot parse some Qt 6 path data: paint the
                # widget into QSvgGenerator instead (still vector output).
                _svg_by_painter(widget, path)
        else:
            exp = exporters.ImageExporter(plot)
            exp.parameters()["width"] = max(800, int(plot.width()))
            exp.export(str(path))
        return path

    def table_rows(self, which: str) -> list[list]:
        if which == "confusion":
            return dd.confusion_rows(self.rep, self.classes)
        if which == "per_class":
            return dd.per_class_rows(self.rep, self.classes)
        if which == "comparison":
            return self.comparison_table()
        raise ValueError(which)

    def export_table(self, which: str, path: str | Path) -> Path:
        return dd.write_csv(path, self.table_rows(which))

    def _default_name(self, which: str, suffix: str) -> str:
        rid = self.run_a.currentData()
        return str(Path.home() / f"run{rid}-{self.which_key}-{which}.{suffix}")

    def ask_export_figure(self, which: str, suffix: str) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export figure", self._default_name(which, suffix),
                                              f"{suffix.upper()} (*.{suffix})")
        if path:
            self.export_figure(which, path)

    def ask_export_table(self, which: str) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export table", self._default_name(which, "csv"),
                                              "CSV (*.csv)")
        if path:
            self.export_table(which, path)
