"""File › exchange entries: they submit the CLI's jobs, and a returned import shows its
counts and problem lines."""

from __future__ import annotations

import pandas as pd
from PySide6.QtWidgets import QFileDialog, QMessageBox, QPlainTextEdit

from mskstudio.gui.exports.menu import add_exchange_menu, summary_text


def test_file_menu_entries_submit_jobs(window, monkeypatch, tmp_path):
    add_exchange_menu(window)
    file_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&File")
    titles = [a.text() for a in file_menu.actions()]
    assert titles.index("Import DICOM &SEG…") < titles.index("Project &info")
    submitted = []
    monkeypatch.setattr(window.runner, "submit", lambda kind, params: submitted.append((kind, params)) or 7)
    monkeypatch.setattr(QFileDialog, "getOpenFileNames", staticmethod(lambda *a, **k: (["/x/a.dcm"], "")))
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: ("/x/labels", "Parquet")))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: ("/x/in.csv", "")))
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: "/x/out"))
    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *a, **k: QMessageBox.StandardButton.No))
    for name in ("import_seg", "export_labels", "import_labels", "import_annotations"):
        window.actions_by_name[name].trigger()
    assert submitted == [
        ("import-seg", {"paths": ["/x/a.dcm"]}),
        ("export-labels", {"path": "/x/labels.parquet"}),
        ("import-labels", {"path": "/x/in.csv", "replace_human": False}),
        ("import-annotations", {"path": "/x/out", "replace_human": False}),
    ]


def test_import_labels_job_shows_its_conflicts(window, qtbot, monkeypatch, tmp_path):
    add_exchange_menu(window)
    p = window.project
    image_id = p.images.ids()[0]
    ls = p.labels.label_set("region-test")
    p.labels.set_label(image_id, ls, p.labels.class_id(ls, "knee"), source="human", author="alice")
    uid = p.images.record(image_id).sop_uid
    pd.DataFrame([{"sop_instance_uid": uid, "label_set": "region-test", "label": "hip"},
                  {"sop_instance_uid": "1.2.3", "label_set": "region-test", "label": "hip"}]
                 ).to_csv(tmp_path / "in.csv", index=False)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(tmp_path / "in.csv"), "")))
    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *a, **k: QMessageBox.StandardButton.No))
    before = len(window.dialogs)
    window.actions_by_name["import_labels"].trigger()
    qtbot.waitUntil(lambda: len(window.dialogs) > before, timeout=20000)
    text = window.dialogs[-1].findChild(QPlainTextEdit).toPlainText()
    assert '"conflicts": 1' in text and '"unknown_images": 1' in text
    assert "in.csv:2:" in text and "human label 'knee' kept" in text and "image 1.2.3 is not in the project" in text


def test_summary_of_a_folder_import_lists_every_part():
    text = summary_text({"seg": {"masks": 2, "problems": ["a.dcm: broken"]}, "labels": {"imported": 1, "unknown": []}})
    assert text.splitlines()[:2] == ['seg: {"masks": 2}', 'labels: {"imported": 1}']
    assert text.endswith("1 line(s) to look at:\na.dcm: broken")
