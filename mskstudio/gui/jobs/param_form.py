"""A job's parameters as a readable form (label, value, default marked) for the Jobs dock.

``param_rows`` is Qt-free: for a kind with a parameter object (``jobrun.JOB_PARAMS``) it lists
every field in the object's order with a human name, the job's value (or the default the job
fills in) and whether that is the default; the field's source comment (``# random | centre``)
becomes its tooltip.  Kinds without a parameter object show their stored keys as they are.
``ParamsForm`` shows those rows, with the raw JSON one click away.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import json
import re
from typing import Any, NamedTuple

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

# names a field's words do not say well enough on their own
LABELS = {"lr": "Learning rate", "k": "Cross-validation folds", "arch": "Architecture", "init": "Start from",
          "size": "Input size (px)", "seed": "Random seed", "n_boot": "Bootstrap resamples",
          "model_run_id": "Model run", "resume_of": "Resumes job", "roi_margin": "ROI margin",
          "test_centre": "Hold-out centre", "external_centres": "External test centres", "n_clusters": "Clusters",
          "label_set": "Label set", "device": "Device", "augment": "Augmentation"}


class ParamRow(NamedTuple):
    key: str        # the JSON key
    label: str
    value: str
    default: bool   # the value is the parameter object's default
    help: str       # the field's source comment, or ""


def human(key: str) -> str:
    if key in LABELS:
        return LABELS[key]
    text = key.replace("_", " ").replace("-", " ").strip()
    return text[:1].upper() + text[1:]


def fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value) or "–"
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


@functools.cache
def field_comments(cls: type) -> dict[str, str]:
    """``name: type = default  # comment`` lines of a dataclass's source: the comment per field."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    return {m.group(1): m.group(2).strip()
            for m in re.finditer(r"^\s+(\w+)\s*:[^=\n#]*=[^#\n]*#\s*(.+)$", source, re.MULTILINE)}


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def param_rows(kind: str, params: dict[str, Any] | str | None) -> list[ParamRow]:
    if isinstance(params, str):
        try:
            params = json.loads(params or "{}")
        except ValueError:
            params = {}
    params = dict(params or {})
    from mskstudio.jobrun import params_class

    try:
        cls = params_class(kind)
    except (ImportError, AttributeError):
        cls = None
    if cls is None:
        return [ParamRow(k, human(k), fmt(v), False, "") for k, v in params.items()]
    try:
        obj = cls.from_json(params)
    except (TypeError, ValueError):  # unknown or stale keys: show what is stored
        return [ParamRow(k, human(k), fmt(v), False, "") for k, v in params.items()]
    comments = field_comments(cls)
    rows = []
    for f in dataclasses.fields(cls):
        value = getattr(obj, f.name)
        if f.name == "resume_of" and value is None:
            continue
        default = _default(f)
        rows.append(ParamRow(cls.JSON_NAMES.get(f.name, f.name), human(f.name), fmt(value),
                             default is not dataclasses.MISSING and value == default, comments.get(f.name, "")))
    return rows


class ParamsForm(QWidget):
    """Label/value rows of the selected job's parameters; "Raw JSON" shows the stored text."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.title = QLabel("<b>Parameters</b>")
        self.raw_button = QToolButton()
        self.raw_button.setText("Raw JSON")
        self.raw_button.setCheckable(True)
        self.raw_button.setToolTip("Show the parameters exactly as stored with the job")
        self.raw_button.toggled.connect(self._toggle)
        self.form_widget = QWidget()
        self.form = QFormLayout(self.form_widget)
        self.form.setContentsMargins(0, 0, 0, 0)
        self.form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        self.raw = QPlainTextEdit(readOnly=True)
        self.raw.hide()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        head = QWidget()
        hl = QHBoxLayout(head)
        hl.setContentsMargins(0, 0, 0, 0)
        hl.addWidget(self.title, 1)
        hl.addWidget(self.raw_button)
        layout.addWidget(head)
        # a training job has about 40 fields: they scroll instead of stretching the dock
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setWidget(self.form_widget)
        layout.addWidget(self.scroll, 1)
        layout.addWidget(self.raw, 1)
        self.rows: list[ParamRow] = []

    def show_job(self, kind: str | None, params: str | dict | None) -> None:
        while self.form.rowCount():
            self.form.removeRow(0)
        self.rows = param_rows(kind, params) if kind else []
        for r in self.rows:
            label = QLabel(r.label)
            text = f"{r.value}  <span style='color:#8a8a8a'>(default)</span>" if r.default else f"<b>{r.value}</b>"
            value = QLabel(text)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            value.setWordWrap(True)  # a narrow dock wraps "(default)" instead of cutting it
            tip = f"{r.key}" + (f": {r.help}" if r.help else "")
            label.setToolTip(tip)
            value.setToolTip(tip)
            self.form.addRow(label, value)
        raw = params if isinstance(params, str) else json.dumps(params or {})
        with contextlib.suppress(ValueError):  # not JSON: shown as stored
            raw = json.dumps(json.loads(raw or "{}"), indent=2)
        self.raw.setPlainText(raw or "")
        self.title.setText(f"<b>Parameters</b> of {kind}" if kind else "<b>Parameters</b>")
        self.title.setToolTip("Values in bold differ from the defaults" if self.rows else "")

    def _toggle(self, raw: bool) -> None:
        self.raw.setVisible(raw)
        self.scroll.setVisible(not raw)

    def shown(self) -> list[tuple[str, str]]:
        """(label, value text) as the form shows them (for tests)."""
        out = []
        for i in range(self.form.rowCount()):
            lab = self.form.itemAt(i, QFormLayout.ItemRole.LabelRole).widget().text()
            val = self.form.itemAt(i, QFormLayout.ItemRole.FieldRole).widget().text()
            out.append((lab, val))
        return out
