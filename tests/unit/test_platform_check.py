"""Start-up check for Qt's xcb libraries (issue 22, item 10): name the packages, do not let Qt abort."""

from __future__ import annotations

from mskstudio.gui.platform_check import XCB_LIBRARIES, missing_xcb_packages, uses_xcb, xcb_problem


def _loads_all_but(*missing):
    return lambda soname: soname not in missing


def test_the_message_names_the_debian_packages_of_missing_libraries():
    env = {"DISPLAY": ":0"}
    msg = xcb_problem(env, "linux", _loads_all_but("libxcb-icccm.so.4", "libxcb-keysyms.so.1"))
    assert "sudo apt-get install libxcb-icccm4 libxcb-keysyms1" in msg
    assert xcb_problem(env, "linux", _loads_all_but()) is None


def test_only_when_qt_would_use_xcb():
    none = _loads_all_but(*XCB_LIBRARIES)
    assert missing_xcb_packages(none) == sorted(set(XCB_LIBRARIES.values()))
    assert xcb_problem({"DISPLAY": ":0", "QT_QPA_PLATFORM": "offscreen"}, "linux", none) is None
    assert xcb_problem({"DISPLAY": ":0"}, "darwin", none) is None
    assert xcb_problem({}, "linux", none) is None  # no display: Qt's own message is about that
    assert uses_xcb({"QT_QPA_PLATFORM": "xcb"}, "linux")
    assert not uses_xcb({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"}, "linux")


def test_gui_main_stops_with_the_message_before_qt(monkeypatch, capsys, tmp_path):
    from mskstudio.gui import app, platform_check

    monkeypatch.setenv("MSKSTUDIO_SETTINGS_DIR", str(tmp_path))
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(platform_check, "_loads", lambda soname: soname != "libxcb-image.so.0")
    monkeypatch.setattr(platform_check.sys, "platform", "linux")
    monkeypatch.setattr(app, "make_app", lambda: (_ for _ in ()).throw(AssertionError("Qt started")))
    assert app.main([]) == 3
    assert "apt-get install libxcb-image0\n" in capsys.readouterr().err
