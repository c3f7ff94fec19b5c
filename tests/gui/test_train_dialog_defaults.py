"""Train dialog: a real label set by default, its class counts, folds 0 explained (issue 22, item 6)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.gui


def test_dialog_defaults_to_a_labelled_set_and_shows_counts_and_folds(window):
    from mskstudio.gui.dialogs.train_dialog import TRAIN_SOURCES, TrainDialog

    p = window.project
    empty = p.labels.label_set("aaa empty")  # sorts first: the old dialog opened on it
    p.labels.class_id(empty, "x")
    d = TrainDialog(window)
    chosen = d.label_set.currentData()
    ls = p.labels.find_label_set(chosen)
    eff = p.labels.effective(ls, sources=TRAIN_SOURCES)
    assert chosen != "aaa empty" and len(set(eff.values())) >= 2
    names = {r.id: r.name for r in p.labels.classes(ls)}
    for class_id in set(eff.values()):
        n = sum(1 for c in eff.values() if c == class_id)
        assert f"{names[class_id]} {n}" in d.class_counts.text()
    assert f"({len(eff)} labelled images)" in d.class_counts.text()

    d.label_set.setCurrentIndex(d.label_set.findData("aaa empty"))
    assert "No labelled images" in d.class_counts.text()

    d.folds.setValue(0)
    assert d.folds.value() == 0, "0 is kept and explained, not clamped"
    assert "without validation" in d.folds_note.text()
    assert any("at least 2 folds" in m for m in d.validate())
    d.folds.setValue(4)
    assert "4 models" in d.folds_note.text()
    d.close()
