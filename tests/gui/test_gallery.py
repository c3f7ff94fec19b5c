"""Gallery dock with a stub main window: hits, vote, click opens, embed job submitted."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")
pytest.importorskip("faiss")

from PySide6.QtCore import QObject, Signal  # noqa: E402


class StubRunner(QObject):
    job_returned = Signal(int, object)

    def __init__(self, project):
        super().__init__()
        self.project, self.submitted = project, []

    def submit(self, kind, params=None, **kw):
        from mskstudio.jobrun import submit_and_run

        self.submitted.append((kind, params))
        result = submit_and_run(self.project, kind, params or {})
        self.job_returned.emit(1, result)
        return 1


class StubWindow(QObject):
    image_changed = Signal(int)
    project_changed = Signal()

    def __init__(self, project):
        super().__init__()
        self.project = project
        self.runner = StubRunner(project)
        self.opened = []

    def open_image(self, image_id):
        self.opened.append(image_id)

    def show_in_viewer(self):
        self.shown_in_viewer = getattr(self, "shown_in_viewer", 0) + 1

    def store_edited(self):
        pass

    def show_error(self, title, message, details=""):
        self.errors = [*getattr(self, "errors", []), (title, message)]


def test_gallery_flow(qtbot, new_project):
    from mskstudio.gui.case.gallery import Gallery
    from mskstudio.ml.synthetic import add_synthetic_images

    add_synthetic_images(new_project, 16, seed=2, size=48)
    pid = new_project.images.patient_id("syn-2-0")
    new_project.images.set_clinical(pid, {"diagnosis": "osteochondroma", "dignity": "benign"})
    mw = StubWindow(new_project)
    g = Gallery(mw)
    qtbot.addWidget(g)
    first = new_project.images.ids()[2]
    mw.image_changed.emit(first)
    assert g.compute.isVisibleTo(g) and g.list.count() == 0
    qtbot.mouseClick(g.compute, __import__("PySide6.QtCore", fromlist=["Qt"]).Qt.MouseButton.LeftButton)
    assert mw.runner.submitted == [("embed", {"run_id": "pixels"})]
    assert g.list.count() == 5 and "Vote of 5" in g.vote.text()
    g.k.setValue(3)
    assert g.list.count() == 3
    item = g.list.item(0)
    g._open(item)
    assert mw.opened == [g.result.hits[0].image_id]
    patient = new_project.images.patient_of()
    assert all(patient[h.image_id] != patient[first] for h in g.result.hits)
