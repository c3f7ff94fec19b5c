"""A project opened without its pseudonym key says so in the status bar at open."""

from __future__ import annotations


def test_the_status_bar_names_a_missing_key(window, project_copy, monkeypatch, tmp_path):
    from mskstudio.store import Project

    assert "pseudonym key" not in window.status_project.text()  # the test key store holds it
    monkeypatch.setenv("MSKSTUDIO_KEY_DIR", str(tmp_path / "no-keys"))
    window.set_project(Project.open(project_copy))
    text = window.status_project.text()
    assert "pseudonym key" in text and window.project.key_fingerprint in text
    assert str(tmp_path / "no-keys") in text
