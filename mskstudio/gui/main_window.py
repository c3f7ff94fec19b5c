"""The main window: wires docks, workspaces, menus, the job runner and the undo stack.

Views live in their feature folders (``gui/viewer``, ``gui/clusters``, …); this module only
connects them.  Other views follow the
window through ``project_changed`` and ``image_changed(int)`` and use ``project``,
``runner``, ``undo_stack``, ``viewer`` and ``open_image(image_id)``.
"""

from __future__ import annotations

import importlib
import traceback
from pathlib import Path

from PySide6.QtCore import QByteArray, Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication, QUndoGroup, QUndoStack
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QPlainTextEdit,
    QTabWidget,
)

from mskstudio.gui import settings as prefs
from mskstudio.gui.actions import build_menus, scope_viewer_keys, shortcut_entries
from mskstudio.gui.case.browser import CaseBrowser
from mskstudio.gui.case.panel import CasePanel
from mskstudio.gui.dialogs import info as dialogs
from mskstudio.gui.dialogs.open_elsewhere import LeaseKeeper, ask_open_elsewhere, open_asking
from mskstudio.gui.jobs.jobs_view import JobsView
from mskstudio.gui.jobs.runner import JobRunner
from mskstudio.gui.viewer.viewer import Viewer
from mskstudio.gui.widgets.scrolling_dock import ScrollingDock
from mskstudio.gui.widgets.store_watch import ChangeHub
from mskstudio.gui.widgets.task_layout import TaskLayouts
from mskstudio.store import Project, StoreError

# Optional workspaces ("Title", "module:Class"), constructed as Class(main_window).
WORKSPACES = [
    ("Start here", "mskstudio.gui.start.panel:StartHere"),
    ("Clusters", "mskstudio.gui.clusters.board:ClusterBoard"),
    ("Review", "mskstudio.gui.review.board:ReviewBoard"),
    ("Dashboard", "mskstudio.gui.dashboard.dashboard:Dashboard"),
    ("Label noise", "mskstudio.gui.noise.board:NoiseBoard"),
]
# Optional docks ("Title", "module:Class", area), constructed as Class(main_window).
OPTIONAL_DOCKS = [
    ("Similar cases", "mskstudio.gui.case.gallery:Gallery", Qt.DockWidgetArea.RightDockWidgetArea),
    ("Annotate", "mskstudio.gui.annotate.dock:AnnotateDock", Qt.DockWidgetArea.RightDockWidgetArea),
    ("Lesions", "mskstudio.gui.detect.dock:DetectionsDock", Qt.DockWidgetArea.RightDockWidgetArea),
]
# Optional menus: "module:function" called as function(main_window) after the core menus.
MENU_HOOKS = ["mskstudio.gui.model_menu:add_model_menu",
              "mskstudio.gui.annotate.adjudicate:add_adjudication_menu",  # the Annotate menu
              "mskstudio.gui.readers.menu:add_readers_menu",
              "mskstudio.gui.exports.menu:add_exchange_menu",  # File › SEG, annotations, labels
              "mskstudio.gui.detect.dock:add_detect_menu"]  # Model › Find lesions…
IMPORT_KINDS = {"import": "Import DICOM", "import-clinical": "Import clinical CSV"}
# What a finished job of each kind changed in the project ("data_changed" tells every view).
JOB_CHANGES = {
    "import": {"images"}, "import-clinical": {"images"}, "demo-archive": {"images", "labels", "masks"},
    "cluster": {"runs"}, "recluster": {"runs"}, "train": {"runs"}, "train-seg": {"runs"},
    "train-seg-box": {"runs"}, "embed": {"runs"}, "predict": {"runs", "labels"},
    "prelabel": {"masks"}, "fill-boxes": {"masks"}, "noise-queue": {"runs"},
    "demo-loop": {"runs", "labels", "masks"},
}


class MainWindow(QMainWindow):
    image_changed = Signal(int)
    project_changed = Signal()
    # One notification when the project's data changed under the views: a set of subjects
    # ("runs", "labels", "masks", "boxes", "images", "clusters").  Emitted after every finished
    # job, every undoable edit and every change the store's feed reports from another process
    # (the CLI, a job subprocess), so a new model run shows in Similar cases and a label set
    # from a terminal shows in the tree without reopening the project.
    data_changed = Signal(object)

    def __init__(self, project_path: str | Path | None = None, *, load_workspaces: bool = True):
        super().__init__()
        self.setWindowTitle("mskstudio")
        self.project: Project | None = None
        self.image_id: int | None = None
        # One undo group: the project-wide stack (clinical edits, labels, clusters) and,
        # while an annotation tool is active, the open image's stroke stack.
        self.undo_group = QUndoGroup(self)
        self.undo_stack = QUndoStack(self.undo_group)
        self.undo_group.setActiveStack(self.undo_stack)
        self.runner = JobRunner(parent=self)
        self.lease = LeaseKeeper(self)  # tells a second window this project is open here
        self.errors: list[tuple[str, str, str]] = []
        self.dialogs: list = []
        self.workspace_errors: dict[str, str] = {}

        self.viewer = Viewer()
        self.viewer.measurement_undo_stack = self.undo_stack
        self.workspace = QTabWidget()
        self.workspace.setDocumentMode(True)
        # A wide workspace must not force the window wider than the screen: the central
        # area's own minimum wins over the tabs' minimum size hints.
        self.workspace.setMinimumSize(320, 240)
        self.add_workspace("Viewer", self.viewer)
        self.setCentralWidget(self.workspace)
        self.browser = CaseBrowser()
        self.case_panel = CasePanel(self.undo_stack, on_change=self.store_edited)
        self.jobs_view = JobsView(self.runner)
        self.docks = {
            "browser": self._dock("Cases", self.browser, Qt.DockWidgetArea.LeftDockWidgetArea),
            "case": self._dock("Case", self.case_panel, Qt.DockWidgetArea.RightDockWidgetArea),
            "jobs": self._dock("Jobs", self.jobs_view, Qt.DockWidgetArea.BottomDockWidgetArea),
        }
        build_menus(self)
        for dock in self.docks.values():
            self.docks_menu.addAction(dock.toggleViewAction())
        self.status_project = QLabel("No project")
        self.status_readout = QLabel("")
        self.statusBar().addWidget(self.status_project)
        self.statusBar().addPermanentWidget(self.status_readout)

        self.browser.image_selected.connect(self.open_image)
        self.browser.notice.connect(lambda text: self.statusBar().showMessage(text, 10000))
        self.viewer.readout_changed.connect(self.status_readout.setText)
        self.viewer.load_failed.connect(lambda i, m, d: self.show_error(f"Cannot show image {i}", m, d))
        self.runner.job_errored.connect(self._job_errored)
        self.runner.job_returned.connect(self._job_returned)
        self.workspace.currentChanged.connect(self._workspace_shown)
        self.task_layouts = TaskLayouts(self)
        self.changes = ChangeHub(self, self.data_changed)  # views' edits + other processes' (store feed)
        self.store_watch = self.changes.watch
        self.undo_stack.indexChanged.connect(lambda _i: self.notify_changed({"labels"}))
        self.data_changed.connect(self._data_changed)
        if load_workspaces:
            self.load_workspaces()
        self._default_state = self.saveState()
        self._default_sizes_pending = True  # the first-run split, unless a saved layout is restored
        self.restore_layout()
        if project_path:
            self.open_project(project_path)

    # ---- layout ------------------------------------------------------------------------
    def _dock(self, title: str, widget, area) -> ScrollingDock:
        dock = ScrollingDock(title, widget, self)
        dock.setObjectName(f"dock_{title.lower()}")
        self.addDockWidget(area, dock)
        return dock

    def add_workspace(self, title: str, widget) -> int:
        return self.workspace.addTab(widget, title)

    def _construct(self, target: str, title: str):
        """``module:name`` called with this window; None when it failed.

        Every failure, a missing module included (a renamed file, a broken install), is
        shown in a tab with the traceback and kept in ``workspace_errors``, never skipped."""
        module, name = target.split(":")
        try:
            return getattr(importlib.import_module(module), name)(self)
        except Exception as exc:  # noqa: BLE001 - shown in its tab, never swallowed
            self._workspace_failed(title, exc)
        return None

    def load_workspaces(self, entries=None, docks=None, menus=None) -> None:
        """Optional workspaces (tabs), docks and menus written by other parts of the product."""
        for title, target in WORKSPACES if entries is None else entries:
            widget = self._construct(target, title)
            if widget is not None:
                self.add_workspace(title, widget)
        for title, target, area in OPTIONAL_DOCKS if docks is None else docks:
            widget = self._construct(target, title)
            if widget is not None:
                self.docks[title] = self._dock(title, widget, area)
                self.docks_menu.addAction(self.docks[title].toggleViewAction())
        for target in MENU_HOOKS if menus is None else menus:
            self._construct(target, target)

    def notify_changed(self, subjects) -> None:
        """Tell every view that ``subjects`` changed; bursts (a job and its undo) become one signal."""
        self.changes.notify(subjects)

    def _data_changed(self, subjects) -> None:
        if subjects & {"labels", "images"}:
            self.store_edited()  # the tree and grid, keeping the open image selected
        if subjects & {"masks", "labels", "boxes"} and self.image_id is not None:
            self.viewer.load_boxes()

    def _workspace_shown(self, _index: int) -> None:
        """Keys are scoped per workspace: the viewer's keys only on the Viewer, and the shown
        board gets the keyboard so its keys (1-9, D, M, S, arrows) work at once."""
        current = self.workspace.currentWidget()
        scope_viewer_keys(self, current is self.viewer)
        self.apply_task_layout()
        focus = getattr(current, "focus_default", None)
        if callable(focus):
            focus()
        elif current is not None:
            current.setFocus()

    def apply_task_layout(self) -> None:
        """The shown workspace's docks (a board gets most of the window; see task_layout.py)."""
        if self.isVisible():
            self.task_layouts.apply(self.workspace.tabText(self.workspace.currentIndex()))

    def _workspace_failed(self, title: str, exc: BaseException) -> None:
        details = "".join(traceback.format_exception(exc))
        self.workspace_errors[title] = details
        view = QPlainTextEdit(f"The {title} workspace failed to load:\n\n{details}", readOnly=True)
        self.add_workspace(f"{title} ⚠", view)

    def restore_layout(self) -> None:
        s = prefs.settings()
        geometry, state = s.value("window/geometry"), s.value("window/state")
        if not (isinstance(geometry, QByteArray) and self.restoreGeometry(geometry)):
            self.fit_to_screen()
        else:
            self.fit_to_screen(self.width(), self.height())  # saved on a larger screen
        if isinstance(state, QByteArray) and self.restoreState(state):
            self._default_sizes_pending = False

    def fit_to_screen(self, width: int = 1600, height: int = 1000) -> None:
        """At most ``width`` × ``height``, never larger than the screen's free area, centred on it."""
        screen = self.screen() or QGuiApplication.primaryScreen()
        if screen is None:
            self.resize(width, height)
            return
        free = screen.availableGeometry()
        w, h = min(width, free.width()), min(height, free.height())
        if (w, h) != (self.width(), self.height()) or not free.contains(self.frameGeometry()):
            self.resize(w, h)
            self.move(free.x() + (free.width() - w) // 2, free.y() + (free.height() - h) // 2)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._default_sizes_pending:
            self._default_sizes_pending = False
            # After this show's layout pass: before it the window has no final size and the
            # docks' heights are shared out again.
            QTimer.singleShot(0, self.default_dock_sizes)

    def default_dock_sizes(self) -> None:
        """The first-run split: the case form whole (its height depends on the style's
        fonts), the docks under it sharing the rest of the column, the jobs table a few
        rows.  Docks scroll when made smaller than their views."""
        # On a 1366 px screen fixed 340 + 400 px left the image about 350 px wide: the side
        # columns take at most a fifth and a quarter of the width.
        width, height = max(self.width(), 800), max(self.height(), 600)
        self.resizeDocks([self.docks["browser"], self.docks["case"]],
                         [min(340, width // 5), min(400, width // 4 + 40)], Qt.Orientation.Horizontal)
        self.resizeDocks([self.docks["jobs"]], [min(190, height // 6)], Qt.Orientation.Vertical)
        right = [self.docks[k] for k in ("case", "Similar cases", "Annotate") if k in self.docks]
        # resizeDocks scales sizes that add up to more than the column: share out what is there.
        column = sum(d.height() for d in right)
        case = self.case_panel.minimumSizeHint().height() + 30  # + the dock's title bar
        rest = max(column - case, 0)
        below = len(right) - 1
        heights = [case] + [rest // below] * below if below else [case]
        self.resizeDocks(right, heights, Qt.Orientation.Vertical)

    def save_layout(self) -> None:
        s = prefs.settings()
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState())
        s.sync()

    def reset_layout(self) -> None:
        self.task_layouts.reset()
        self.restoreState(self._default_state)
        self.default_dock_sizes()

    # ---- project ------------------------------------------------------------------------
    def open_project(self, path: str | Path) -> bool:
        if self.runner.active_jobs():
            self.show_error("Jobs are running",
                            "Wait for the running jobs or cancel them before switching project.")
            return False
        try:
            project = open_asking(Path(path), lambda holder: self.ask_open_elsewhere(Path(path), holder))
        except StoreError as exc:
            self.show_error("Cannot open project", str(exc))
            return False
        if project is None:  # open in another window, and the user cancelled
            return False
        self.set_project(project)
        prefs.add_recent(str(path))
        return True

    def ask_open_elsewhere(self, root: Path, holder) -> str | None:
        """Read-only, continue or cancel for a project another window has open (tests replace this)."""
        return ask_open_elsewhere(self, root, holder)

    def new_project(self, path: str | Path) -> bool:
        try:
            project = Project.create(Path(path))
        except StoreError as exc:
            self.show_error("Cannot create project", str(exc))
            return False
        self.set_project(project)
        prefs.add_recent(str(project.root))
        return True

    def set_project(self, project: Project | None) -> None:
        self._close_project_dialogs()
        if self.project is not None:
            self.project.close()
        self.project = project
        self.lease.hold(project.root if project else None, writable=project is not None and not project.readonly)
        self.image_id = None
        self.undo_stack.clear()
        self.runner.set_project(project)
        self.store_watch.set_project(project)
        for view in (self.viewer, self.browser, self.case_panel, self.jobs_view):
            view.set_project(project)
        ro = f" — read-only: {project.readonly_reason}" if project is not None and project.readonly else ""
        self.setWindowTitle(f"{project.name} — mskstudio{ro}" if project else "mskstudio")
        # A project whose pseudonym key is not on this machine: reading and training work,
        # imports refuse; say so at open rather than at the first import.
        key_problem = project.key_problem() if project is not None else ""
        key_note = f" — {key_problem}" if key_problem else ""
        self.status_project.setText(f"{project.root}{ro}{key_note}" if project else "No project")
        self.project_changed.emit()
        if project is not None and self.browser.order:
            self.open_image(self.browser.order[0])

    def store_edited(self) -> None:
        """Labels or clinical fields changed outside the browser (a view's edit): refresh it."""
        self.browser.reload()
        if self.image_id is not None:
            self.browser.select_image(self.image_id)

    def show_in_viewer(self) -> None:
        self.workspace.setCurrentWidget(self.viewer)

    # ---- images -------------------------------------------------------------------------
    def open_image(self, image_id: int) -> None:
        if self.project is None or image_id is None:
            return
        self.image_id = int(image_id)
        self.viewer.open_image(self.image_id)
        self.case_panel.show_image(self.image_id)
        self.browser.select_image(self.image_id)
        self.image_changed.emit(self.image_id)

    def step_image(self, step: int) -> None:
        nxt = self.browser.neighbour(self.image_id, step)
        if nxt is not None:
            self.open_image(nxt)

    def next_unlabelled(self) -> None:
        nxt = self.browser.next_unlabelled(self.image_id)
        if nxt is None:
            self.statusBar().showMessage("No unlabelled image left in this list", 4000)
        else:
            self.open_image(nxt)

    # ---- asking (dialogs) then doing ---------------------------------------------------------
    def ask_new_project(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "New project", str(Path.home() / "Untitled.mskproj"))
        if path:
            self.new_project(path)

    def ask_open_project(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open project (a NAME.mskproj folder)")
        if path:
            self.open_project(path)

    def fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        for path in prefs.recent_projects():
            self.recent_menu.addAction(path, lambda p=path: self.open_project(p))
        if self.recent_menu.isEmpty():
            self.recent_menu.addAction("(none)").setEnabled(False)

    def ask_import_dicom(self) -> None:
        if self._need_project():
            folder = QFileDialog.getExistingDirectory(self, "Import DICOM folder")
            if folder:
                self.import_dicom(folder)

    def ask_import_clinical(self) -> None:
        if self._need_project():
            path, _ = QFileDialog.getOpenFileName(self, "Import clinical CSV", "",
                                                  "CSV files (*.csv);;All (*)")
            if path:
                self.import_clinical(path)

    def import_dicom(self, folder: str, copy: bool = True) -> int:
        return self.runner.submit("import", {"paths": [str(folder)], "copy": copy})

    def import_clinical(self, path: str) -> int:
        return self.runner.submit("import-clinical", {"path": str(path)})

    def build_demo(self, path: str | Path, images: int = 600) -> int | None:
        """Create the phantom demo project at ``path`` and fill it in the background."""
        if not self.new_project(path):
            return None
        return self.runner.submit("demo-archive", {"images": images})

    def _need_project(self) -> bool:
        if self.project is None:
            self.show_error("No project open", "Open or create a project first (File › Open project).")
        return self.project is not None

    # ---- jobs and messages ----------------------------------------------------------------
    def _job_returned(self, job_id: int, result) -> None:
        h = self.runner.handle(job_id)
        if h is not None:
            self.notify_changed(JOB_CHANGES.get(h.kind, {"runs"}))
        if h is not None and h.kind == "demo-archive":
            self.browser.reload()
            self.project_changed.emit()
            if self.browser.order:
                self.open_image(self.browser.order[0])
            return
        if h is None or h.kind not in IMPORT_KINDS:
            return
        self.show_import_failures(job_id, kind=h.kind, result=result)
        current = self.image_id
        self.browser.reload()
        self.project_changed.emit()
        if current is None and self.browser.order:
            self.open_image(self.browser.order[0])
        elif current is not None:
            self.browser.select_image(current)

    def _job_errored(self, job_id: int, message: str, details: str) -> None:
        h = self.runner.handle(job_id)
        self.show_error(f"Job {job_id} ({h.kind if h else '?'}) failed", message, details)

    def show_error(self, title: str, message: str, details: str = "") -> None:
        self.errors.append((title, message, details))
        self.statusBar().showMessage(f"{title}: {message.splitlines()[0] if message else ''}", 8000)
        self.dialogs.append(dialogs.error(self, title, message, details))

    def show_import_failures(self, job_id: int | None = None, *, kind: str = "import", result=None):
        from mskstudio.gui.dialogs.import_failures import show_import_failures

        return show_import_failures(self, job_id, kind=kind, result=result) if self._need_project() else None

    def show_jobs(self) -> None:
        self.docks["jobs"].show()
        self.docks["jobs"].raise_()

    def show_project_info(self):
        if self._need_project():
            d = dialogs.project_info(self, self.project)
            d.setProperty("project_dialog", True)  # closed when another project opens
            self.dialogs.append(d)
            return d
        return None

    def _close_project_dialogs(self) -> None:
        """Dialogs about the open project (Project info) would show the old one after a switch."""
        for d in list(self.dialogs):
            try:
                if d.property("project_dialog"):
                    d.close()
                    self.dialogs.remove(d)
            except RuntimeError:  # deleted on close already
                self.dialogs.remove(d)

    def show_shortcuts(self):
        d = dialogs.shortcuts(self, shortcut_entries(self))
        self.dialogs.append(d)
        return d

    def show_about(self) -> None:
        from mskstudio import __version__

        self.dialogs.append(dialogs.text(self, "About mskstudio", (
            f"mskstudio {__version__}\nHuman-in-the-loop deep learning on musculoskeletal radiographs.\n\n"
            "Not a medical device: for research use only.")))

    # ---- closing -------------------------------------------------------------------------
    def confirm(self, title: str, question: str) -> bool:
        """Asks yes/no (tests replace this)."""
        answer = QMessageBox.question(self, title, question)
        return answer == QMessageBox.StandardButton.Yes

    def closeEvent(self, event) -> None:
        active = self.runner.active_jobs()
        if active and not self.confirm("Jobs are running",
                                       f"{len(active)} job(s) are running. Cancel them and quit?"):
            event.ignore()
            return
        self.runner.shutdown()
        self.viewer.loader.wait(5000)
        for dock in self.docks.values():  # background writers (the mask saver) stop with the window
            stop = getattr(dock.view(), "shutdown", None)
            if callable(stop):
                stop()
        self.save_layout()
        self.lease.release()
        self.store_watch.stop()
        if self.project is not None:
            self.project.close()
        event.accept()
