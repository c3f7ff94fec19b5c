"""Keyboard handling shared by the boards (clusters, classifier review, label noise).

While a board has focus its own keys win over the window's shortcuts (1–5 are W/L
presets and A the angle tool in the viewer): the filter takes ShortcutOverride, so
Qt never hands those keys to the window's actions.  Plain QShortcuts on a board
would instead clash with the window's ("Ambiguous shortcut overload") and Qt would
drop the key.  A text field of the board (a class name, a spin box) keeps its keys,
so typing "D" in "New class" types a D.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt
from PySide6.QtWidgets import QAbstractSpinBox, QLineEdit, QPlainTextEdit, QTextEdit, QWidget

NEXT_KEYS = {Qt.Key.Key_Right, Qt.Key.Key_BracketRight, Qt.Key.Key_PageDown}
PREV_KEYS = {Qt.Key.Key_Left, Qt.Key.Key_BracketLeft, Qt.Key.Key_PageUp}
ENTER_KEYS = {Qt.Key.Key_Return, Qt.Key.Key_Enter}
DIGITS = {getattr(Qt.Key, f"Key_{n}"): n for n in range(1, 10)}
TEXT_INPUTS = (QLineEdit, QAbstractSpinBox, QTextEdit, QPlainTextEdit)
_MODIFIERS = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier | Qt.KeyboardModifier.MetaModifier


class BoardKeys:
    """Mixin for a QWidget board with ``step(delta)``, ``label_with_number(n)``, ``accept_current()``
    and ``digit_allowed(n)``; ``ACCEPT_KEYS`` says which keys accept."""

    ACCEPT_KEYS: set = ENTER_KEYS
    # Further one-letter keys: Qt key -> name of the board's method to call.
    LETTER_KEYS: dict = {}

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
        if key in self.LETTER_KEYS:
            return getattr(self, self.LETTER_KEYS[key])
        return None

    def eventFilter(self, obj, ev) -> bool:
        t = ev.type()
        if isinstance(obj, TEXT_INPUTS):
            return False
        if t in (QEvent.Type.ShortcutOverride, QEvent.Type.KeyPress):
            action = self._key_action(ev)
            if action is not None:
                ev.accept()
                if t == QEvent.Type.KeyPress:
                    action()
                return True
        return False
