"""Jobs dock: every job row with progress, ETA, status, cancel, log tail and error details.

Rows come from the ``jobs`` table; live jobs update from the runner's signals.  Beside the
selected job's log, its per-epoch metrics (losses, accuracy, NMI...) plot live
(``job_curves``).  Jobs a
previous crash left behind (``project.jobs.interrupted()``) are offered for resume in a
banner (``jobs.resubmit`` + runner).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from mskstudio.gui.jobs.curves import JobCurves
from mskstudio.gui.jobs.param_form import ParamsForm

COLUMNS = ["Job", "Kind", "Status", "Progress", "ETA", "Message", ""]
STATUS_COLORS = {"running": "#4fc3f7", "done": "#81c784", "error": "#ff6b6b", "cancelled": "#b0bec5",
                 "interrupted": "#ffb74d", "submitted": "#d8dee9", "queued": "#d8dee9"}


def fmt_eta(eta) -> str:
    if eta is None:
        return ""
    eta = int(eta)
    return f"{eta // 3600}h{eta % 3600 // 60:02d}m" if eta >= 3600 else f"{eta // 60}m{eta % 60:02d}s"


def summarize(result) -> str:
    """One line for a job's result: the scalar entries of a dict, or its text."""
    if isinstance(result, dict):
        return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in result.items()
                         if isinstance(v, (int, float, str)))[:200] or "done"
    return "done" if result is None else str(result)[:200]


class JobsView(QWidget):
    resume_requested = Signal(list)

    def __init__(self, runner, parent=None):
        super().__init__(parent)
        self.runner, self.project = runner, None
        self.rows: dict[int, int] = {}  # job id -> table row
        self.banner = QWidget()
        bl = QHBoxLayout(self.banner)
        bl.setContentsMargins(8, 4, 8, 4)
        self.banner_text = QLabel("")
        self.resume_button = QPushButton("Resume")
        self.dismiss_button = QPushButton("Dismiss")
        bl.addWidget(self.banner_text, 1)
        bl.addWidget(self.resume_button)
        bl.addWidget(self.dismiss_button)
        self.banner.setObjectName("banner")
        self.banner.hide()
        self.resume_button.clicked.connect(self.resume_interrupted)
        self.dismiss_button.clicked.connect(self.banner.hide)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(26)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        hh = self.table.horizontalHeader()
        hh.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        hh.setSectionResizeMode(5, QHeaderView.ResizeMode.Stretch)
        self.table.currentCellChanged.connect(lambda *_: self._selection_changed())
        self.details = QPlainTextEdit(readOnly=True)
        self.details.setPlaceholderText("Select a job to see its log and error details")
        self.curves = JobCurves()
        self.curves.hide()  # until a job with metrics is selected
        # Side by side, not stacked: the dock is wide and short, and a plot under the log
        # was 60 px tall at the default height.
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.table)
        # the selected job's parameters as a form beside its log (raw JSON one click away)
        self.params_form = ParamsForm()
        split.addWidget(self.params_form)
        split.addWidget(self.details)
        split.addWidget(self.curves)
        split.setSizes([620, 260, 300, 300])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.banner)
        layout.addWidget(split)

        r = runner
        r.job_submitted.connect(self._add_live)
        r.job_started.connect(lambda j: self._set_status(j, "running"))
        r.job_progress.connect(self._progress)
        r.job_log.connect(lambda j, m: self._show_details() if j == self.current_job() else None)
        r.job_metric.connect(lambda j, *_: self._show_curves() if j == self.current_job() else None)
        r.job_returned.connect(lambda j, res: self._set_status(j, "done", 1.0, summarize(res)))
        r.job_errored.connect(self._errored)
        r.job_cancelled.connect(lambda j: self._set_status(j, "cancelled"))

    def _errored(self, job_id: int, message: str, _details: str) -> None:
        """An error, or a job process killed outright: the runner stored that as 'interrupted',
        which is shown as such and offered for resume."""
        row = self.project.jobs.get(job_id) if self.project is not None else None
        if row is not None and row["status"] == "interrupted":
            self._set_status(job_id, "interrupted", message=message)
            self.offer_resume()
        else:
            self._set_status(job_id, "error", message=message)

    # ---- rows ------------------------------------------------------------------------------
    def set_project(self, project) -> None:
        self.project = project
        self._form_of = None
        self.table.setRowCount(0)
        self.rows.clear()
        self.curves.hide()
        if project is None:
            self.banner.hide()
            return
        for row in reversed(project.jobs.list()):
            error = (row["error"] or "").strip().splitlines()
            message = error[0] if row["status"] in ("error", "interrupted") and error else row["message"]
            self._insert(row["id"], row["kind"], row["status"], row["progress"], message or "")
        self.offer_resume()

    def offer_resume(self) -> None:
        stale = self.project.jobs.interrupted() if self.project is not None else []
        stale = [r for r in stale if not self._resumed(r["id"])]
        self.interrupted_ids = [r["id"] for r in stale]
        if stale:
            from mskstudio.jobrun import resume_plan

            kinds = ", ".join(f"#{r['id']} {r['kind']}" for r in stale[:4])
            # A kind that cannot continue where it stopped says why: Resume restarts it.
            restarts = [f"#{r['id']}: {resume_plan(r['kind'])[1]}." for r in stale[:4]
                        if not resume_plan(r["kind"])[0]]
            self.banner_text.setText(f"⚠ {len(stale)} job(s) were interrupted when mskstudio last stopped "
                                     f"({kinds}). Resume them?" + "".join(f"\n{t}" for t in restarts))
            self.banner.show()
        else:
            self.banner.hide()

    def _resumed(self, job_id: int) -> bool:
        return self.project.jobs.was_resumed(job_id)

    def resume_interrupted(self) -> list[int]:
        ids = []
        for job_id in self.interrupted_ids:
            new_id = self.project.jobs.resubmit(job_id)
            self.runner.run_existing(new_id)
            ids.append(new_id)
        self.interrupted_ids = []
        self.banner.hide()
        self.resume_requested.emit(ids)
        return ids

    def _insert(self, job_id: int, kind: str, status: str, progress: float, message: str) -> None:
        self.table.insertRow(0)
        self.rows = {j: r + 1 for j, r in self.rows.items()}
        self.rows[job_id] = 0
        self.table.setItem(0, 0, QTableWidgetItem(str(job_id)))
        self.table.setItem(0, 1, QTableWidgetItem(kind))
        self.table.setItem(0, 2, QTableWidgetItem(status))
        bar = QProgressBar()
        bar.setRange(0, 1000)
        bar.setValue(int(progress * 1000))
        bar.setTextVisible(True)
        bar.setFormat("%p%")
        self.table.setCellWidget(0, 3, bar)
        self.table.setItem(0, 4, QTableWidgetItem(""))
        self.table.setItem(0, 5, QTableWidgetItem(message))
        cancel = QPushButton("Cancel")
        cancel.setObjectName("flat")
        cancel.clicked.connect(lambda: self.runner.cancel(job_id))
        self.table.setCellWidget(0, 6, cancel)
        self._set_status(job_id, status)

    def _add_live(self, job_id: int) -> None:
        h = self.runner.handle(job_id)
        if job_id in self.rows:
            self._set_status(job_id, "queued")
        else:
            self._insert(job_id, h.kind, "queued", 0.0, "")

    def _progress(self, job_id: int, fraction: float, message: str, eta) -> None:
        row = self.rows.get(job_id)
        if row is None:
            return
        self.table.cellWidget(row, 3).setValue(int(fraction * 1000))
        self.table.item(row, 4).setText(fmt_eta(eta))
        self.table.item(row, 5).setText(message)

    def _set_status(self, job_id: int, status: str, fraction: float | None = None,
                    message: str | None = None):
        row = self.rows.get(job_id)
        if row is None:
            return
        item = self.table.item(row, 2)
        item.setText(status)
        item.setForeground(Qt.GlobalColor.white)
        from PySide6.QtGui import QColor

        item.setForeground(QColor(STATUS_COLORS.get(status, "#d8dee9")))
        if fraction is not None:
            self.table.cellWidget(row, 3).setValue(int(fraction * 1000))
        if message is not None:
            self.table.item(row, 5).setText(message.splitlines()[0] if message else "")
        if status not in ("queued", "running", "submitted"):
            self.table.item(row, 4).setText("")
        h = self.runner.handle(job_id)
        self.table.cellWidget(row, 6).setEnabled(h is not None and h.active)
        if job_id == self.current_job():
            self._show_details()

    def current_job(self) -> int | None:
        row = self.table.currentRow()
        item = self.table.item(row, 0) if row >= 0 else None
        return int(item.text()) if item else None

    def status_of(self, job_id: int) -> str | None:
        row = self.rows.get(job_id)
        return None if row is None else self.table.item(row, 2).text()

    def _selection_changed(self) -> None:
        self._show_details()
        self._show_curves()

    def _show_curves(self) -> None:
        self.curves.setVisible(self.curves.show_job(self.project, self.current_job()))

    def _show_details(self) -> None:
        job_id = self.current_job()
        if job_id is None or self.project is None:
            self.details.clear()
            self.params_form.show_job(None, None)
            return
        h = self.runner.handle(job_id)
        row = self.project.jobs.get(job_id)
        if (job_id, row["params"]) != getattr(self, "_form_of", None):  # log lines arrive often
            self._form_of = (job_id, row["params"])
            self.params_form.show_job(row["kind"], row["params"])
        lines = [f"job {job_id}  {row['kind']}  {row['status']}"]
        if h is not None and h.logs:
            lines += ["", "log:"] + list(h.logs)[-40:]
        error = (h.error[1] if h is not None and h.error else None) or row["error"]
        if error:
            lines += ["", "error:", error]
        if row["result"]:
            lines += ["", f"result: {row['result'][:2000]}"]
        self.details.setPlainText("\n".join(lines))
