"""A workspace, dock or menu module that fails to load is shown, never skipped silently."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.gui


def test_missing_workspace_module_is_reported(window):
    before = window.workspace.count()
    window.load_workspaces(entries=[("Ghost", "mskstudio.gui.no_such_module:Board")], docks=[], menus=[])
    assert "No module named 'mskstudio.gui.no_such_module'" in window.workspace_errors["Ghost"]
    assert window.workspace.count() == before + 1
    assert window.workspace.tabText(before) == "Ghost ⚠"
