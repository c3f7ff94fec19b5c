"""Model menu entries for segmentation, pre-labelling and exports submit the right jobs."""

from __future__ import annotations

import numpy as np
from PySide6.QtWidgets import QFileDialog, QInputDialog

from mskstudio.gui import model_menu


def test_segmentation_and_export_entries_submit_jobs(window, monkeypatch, tmp_path):
    submitted = []
    monkeypatch.setattr(window.runner, "submit", lambda kind, params: submitted.append((kind, params)) or 99)
    monkeypatch.setattr(QInputDialog, "getItem", staticmethod(lambda *a, **k: (a[3][0], True)))
    monkeypatch.setattr(QInputDialog, "getInt", staticmethod(lambda *a, **k: (a[3], True)))
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(tmp_path)))
    menu = model_menu.add_model_menu(window)
    titles = [a.text() for a in menu.actions()]
    assert "Train &segmenter…" in titles and "Export to &ONNX…" in titles

    window.errors.clear()
    window.actions_by_name["train_seg"].trigger()  # no masks yet: explained, nothing submitted
    assert submitted == [] and window.errors[-1][0] == "No masks"

    project, image_id = window.project, window.image_id
    mask = np.zeros((project.images.record(image_id).rows, project.images.record(image_id).cols), bool)
    mask[10:30, 10:30] = True
    project.annotations.save_mask(image_id, project.annotations.classes()[0].id, mask, annotator="tester")
    window.actions_by_name["train_seg"].trigger()
    assert submitted[-1] == ("train-seg", {"arch": "unet-resnet34", "size": 256, "epochs": 30})
    window.actions_by_name["train_seg_box"].trigger()
    assert submitted[-1] == ("train-seg-box", {"epochs": 24})

    window.actions_by_name["export_annotations"].trigger()
    assert submitted[-1] == ("export-annotations", {"outdir": str(tmp_path)})

    window.actions_by_name["prelabel"].trigger()  # no segmenter run: explained
    assert window.errors[-1][0] == "No model" and submitted[-1][0] == "export-annotations"
