"""Burned-in annotation in the GUI (issue 23, item 4): the case view says what the header
states; the Train dialog can leave those images out, its counts follow, and the job gets it."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.gui


def test_case_view_shows_burned_in_annotation(window):
    p, panel = window.project, window.case_panel
    ids = p.images.ids()[:3]
    with p.db.transaction() as c:
        for image_id, flag in zip(ids, (1, 0, None), strict=True):
            c.execute("UPDATE images SET burned_in_annotation = ? WHERE id = ?", (flag, image_id))
    texts = []
    for image_id in ids:
        window.open_image(image_id)
        texts.append(panel.burned_in.text())
    assert "yes" in texts[0] and "not removed" in texts[0]
    assert texts[1] == "no"
    assert "not stated" in texts[2]


def test_train_dialog_can_leave_burned_in_images_out(window):
    from mskstudio.gui.dialogs.train_dialog import TRAIN_SOURCES, TrainDialog

    p = window.project
    d = TrainDialog(window)
    ls = p.labels.find_label_set(d.label_set.currentData())
    labelled = p.labels.effective(ls, sources=TRAIN_SOURCES)
    some = sorted(labelled)[: len(labelled) // 3]
    with p.db.transaction() as c:
        c.execute("UPDATE images SET burned_in_annotation = 0")
        c.executemany("UPDATE images SET burned_in_annotation = 1 WHERE id = ?", [(i,) for i in some])
    d._fill_classes()
    assert not d.exclude_burned_in.isChecked() and d.params()["exclude_burned_in"] is False
    assert f"({len(labelled)} labelled images)" in d.class_counts.text()
    d.exclude_burned_in.setChecked(True)
    assert f"({len(labelled) - len(some)} labelled images)" in d.class_counts.text()
    assert d.params()["exclude_burned_in"] is True
    d.close()
