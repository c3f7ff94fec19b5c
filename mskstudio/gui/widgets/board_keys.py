"""Keyboard handling shared by the review boards (classifier review, label noise).

While a board has focus its own keys win over the window's shortcuts (1–5 are W/L
presets and A the angle tool in the viewer): the filter takes ShortcutOverride, so
Qt never hands those keys to the window's actions.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt
from PySide6.QtWidgets import QWidget

NEXT_KEYS = {Qt.Key.Key_Right, Qt.Key.Key_BracketRight, Qt.Key.Key_PageDown}
PREV_KEYS = {Qt.Key.Key_Left, Qt.Key.Key_BracketLeft, Qt.Key.Key_PageUp}
ENTER_KEYS = {Qt.Key.Key_Return, Qt.Key.Key_Enter}
DIGITS = {getattr(Qt.Key, f"Key_{n}"): n for n in range(1, 10)}
_MODIFIERS = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier | Qt.KeyboardModifier.MetaModifier


class BoardKeys:
    """Mixin for a QWidget board with ``step(delta)``, ``label_with_number(n)``, ``accept_current()``
    and ``digit_allowed(n)``; ``ACCEPT_KEYS`` says which keys accept."""

    ACCEPT_KEYS: set = ENTER_KEYS

    def install_key_filter(self) -> None:
        self.installEventFilter(self)
        for w in self.findChildren(QWidget):
            w.installEventFilter(self)

    def _key_action(self, ev):
        if ev.modifiers() & _MODIFIERS:
            return None
        key = ev.key()
        if key in self.ACCEPT_KEYS:
            return self.accept_current
        if key in NEXT_KEYS:
            return lambda: self.step(1)
        if key in PREV_KEYS:
            return lambda: self.step(-1)
        if key in DIGITS and self.digit_allowed(DIGITS[key]):
            return lambda n=DIGITS[key]: self.label_with_number(n)
        return None

    def eventFilter(self, obj, ev) -> bool:
        t = ev.type()
        if t in (QEvent.Type.ShortcutOverride, QEvent.Type.KeyPress):
            action = self._key_action(ev)
            if action is not None:
                ev.accept()
                if t == QEvent.Type.KeyPress:
                    action()
                return True
        return False
