"""Case panel labs: add with the form (validated), out-of-range marks, delete, undo/redo, audit."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

pytestmark = pytest.mark.gui


def _fill(editor, **values) -> None:
    for key, text in values.items():
        editor.fields[key].setText(text)


def _row_of(table, name: str) -> int:
    return next(r for r in range(table.rowCount()) if table.item(r, 0).text() == name)


def _lab(w, pid, name):
    return next((dict(r) for r in w.project.images.labs(pid) if r["name"] == name), None)


def test_add_lab_marks_out_of_range_and_undoes(qtbot, window):
    w, panel = window, window.case_panel
    editor, pid = panel.lab_editor, panel.row.patient_id
    rows_before = panel.labs.rowCount()
    _fill(editor, name="Calcium", value="2,9", unit="mmol/L", low="2.15", high="2.55", date="2024-05-02")
    QTest.mouseClick(editor.add_button, Qt.MouseButton.LeftButton)
    lab = _lab(w, pid, "Calcium")
    assert (lab["value"], lab["unit"], lab["ref_low"], lab["ref_high"], lab["taken_on"]) == \
        (2.9, "mmol/L", 2.15, 2.55, "2024-05-02")
    assert editor.message.text() == "" and editor.fields["name"].text() == ""
    table = panel.labs
    assert table.rowCount() == rows_before + 1
    r = _row_of(table, "Calcium")
    assert [table.item(r, c).text() for c in range(table.columnCount())] == \
        ["Calcium", "2.9", "mmol/L", "2.15–2.55", "2024-05-02", "↑ high"]
    assert table.item(r, 1).foreground().color().name() == "#ff8a65"
    audit = w.project.db.one("SELECT * FROM audit WHERE action = 'lab.add' ORDER BY id DESC")
    assert audit["entity_id"] == pid and '"Calcium"' in audit["details"]
    w.actions_by_name["undo"].trigger()
    assert _lab(w, pid, "Calcium") is None and panel.labs.rowCount() == rows_before
    w.actions_by_name["redo"].trigger()
    assert _lab(w, pid, "Calcium")["value"] == 2.9


@pytest.mark.parametrize("values, message", [
    ({"name": "ESR", "value": "high"}, "must be a number"),
    ({"name": "ESR", "value": "30", "low": "20", "high": "5"}, "normal low (20) is above the normal high (5)"),
    ({"name": "", "value": "30"}, "needs a name"),
    ({"name": "ESR", "value": ""}, "Type the ESR value"),
    ({"name": "ESR", "value": "30", "date": "2.5.2024"}, "YYYY-MM-DD"),
])
def test_bad_input_is_explained_and_nothing_is_written(qtbot, window, values, message):
    w, editor = window, window.case_panel.lab_editor
    pid = window.case_panel.row.patient_id
    before = [dict(r) for r in w.project.images.labs(pid)]
    _fill(editor, **values)
    assert editor.add_from_form() is False
    assert message in editor.message.text()
    assert [dict(r) for r in w.project.images.labs(pid)] == before
    assert w.undo_stack.count() == 0


def test_duplicate_name_is_refused_without_an_undo_step(qtbot, window):
    w, editor = window, window.case_panel.lab_editor
    pid = window.case_panel.row.patient_id
    w.project.images.set_lab(pid, "ALP", 100.0, "U/L", 40.0, 130.0)
    _fill(editor, name="alp", value="300")
    editor.fields["name"].returnPressed.emit()
    assert "ALP is recorded already" in editor.message.text()
    assert _lab(w, pid, "ALP")["value"] == 100.0
    assert w.undo_stack.count() == 0


def test_known_lab_fills_unit_and_range(qtbot, window):
    editor = window.case_panel.lab_editor
    editor.fields["name"].setText("phosphate")
    editor.fields["name"].editingFinished.emit()
    assert (editor.fields["unit"].text(), editor.fields["low"].text(), editor.fields["high"].text()) == \
        ("mmol/L", "0.8", "1.5")
    editor.fields["unit"].setText("mg/dL")  # what the user typed is kept
    editor.fields["name"].editingFinished.emit()
    assert editor.fields["unit"].text() == "mg/dL"


def test_delete_lab_and_undo_restores_everything(qtbot, window):
    w, panel = window, window.case_panel
    editor, pid = panel.lab_editor, panel.row.patient_id
    w.project.images.add_lab(pid, "PTH", 9.1, "pmol/L", 1.6, 6.9, "2024-01-15")
    panel.refresh()
    assert not editor.delete_button.isEnabled()
    panel.labs.selectRow(_row_of(panel.labs, "PTH"))
    assert editor.delete_button.isEnabled()
    editor.delete_button.click()
    assert _lab(w, pid, "PTH") is None
    assert "PTH" not in [panel.labs.item(r, 0).text() for r in range(panel.labs.rowCount())]
    w.undo_stack.undo()
    lab = _lab(w, pid, "PTH")
    assert (lab["value"], lab["unit"], lab["ref_low"], lab["ref_high"], lab["taken_on"]) == \
        (9.1, "pmol/L", 1.6, 6.9, "2024-01-15")
    # the Delete key in the table does the same
    panel.tabs.setCurrentWidget(editor)
    panel.labs.selectRow(_row_of(panel.labs, "PTH"))
    panel.labs.setFocus()
    QTest.keyClick(panel.labs, Qt.Key.Key_Delete)
    assert _lab(w, pid, "PTH") is None
    actions = [r["action"] for r in w.project.audit_log(4)]
    assert actions[:3] == ["lab.delete", "lab.undo", "lab.delete"]


def test_editing_a_value_in_place_still_validates(qtbot, window):
    w, panel = window, window.case_panel
    pid = panel.row.patient_id
    w.project.images.set_lab(pid, "CRP", 3.0, "mg/L", 0.0, 5.0)
    panel.refresh()
    r = _row_of(panel.labs, "CRP")
    panel.labs.item(r, 1).setText("abc")
    assert "must be a number" in panel.lab_editor.message.text()
    assert _lab(w, pid, "CRP")["value"] == 3.0
    r = _row_of(panel.labs, "CRP")
    panel.labs.item(r, 1).setText("48")
    assert _lab(w, pid, "CRP")["value"] == 48.0
    assert panel.labs.item(_row_of(panel.labs, "CRP"), 5).text() == "↑ high"
