"""Before Qt starts on Linux/X11: are the xcb platform plugin's system libraries there?

Without them Qt prints "Could not load the Qt platform plugin "xcb" … This application
failed to start" and aborts, naming no package.  The wheels of PySide6 bring Qt itself but
not these X11 helper libraries; minimal desktops and fresh containers often lack them.
Each library is tried with ``ctypes`` by its soname, so the check is what the dynamic loader
will really find (not a guess from file paths).
"""

from __future__ import annotations

import ctypes
import os
import sys

# soname -> Debian/Ubuntu package (the names apt knows; Fedora: the xcb-util-* packages).
XCB_LIBRARIES = {
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libEGL.so.1": "libegl1",
    "libfontconfig.so.1": "libfontconfig1",
}


def _loads(soname: str) -> bool:
    try:
        ctypes.CDLL(soname)
    except OSError:
        return False
    return True


def uses_xcb(environ=None, platform: str | None = None) -> bool:
    """Qt will pick the xcb plugin: Linux, not told otherwise, an X display and no Wayland one."""
    environ = os.environ if environ is None else environ
    if not (platform or sys.platform).startswith("linux"):
        return False
    chosen = environ.get("QT_QPA_PLATFORM", "")
    if chosen:
        return chosen.startswith("xcb")
    return bool(environ.get("DISPLAY")) and not environ.get("WAYLAND_DISPLAY")


def missing_xcb_packages(loads=None) -> list[str]:
    """Debian packages of the xcb libraries the loader cannot find (empty: all there)."""
    loads = loads or _loads
    return sorted({pkg for soname, pkg in XCB_LIBRARIES.items() if not loads(soname)})


def xcb_problem(environ=None, platform: str | None = None, loads=None) -> str | None:
    """One message naming the packages to install, or None when Qt can start."""
    if not uses_xcb(environ, platform):
        return None
    missing = missing_xcb_packages(loads)
    if not missing:
        return None
    return ("mskstudio: the Qt X11 (xcb) platform needs system libraries that are not installed.\n"
            f"  Debian/Ubuntu: sudo apt-get install {' '.join(missing)}\n"
            "  (Fedora: sudo dnf install xcb-util-wm xcb-util-keysyms xcb-util-image "
            "xcb-util-renderutil xcb-util-cursor libxkbcommon-x11)\n"
            "  Without a display, run `mskstudio demo --headless` or any `mskstudio` command instead.")
