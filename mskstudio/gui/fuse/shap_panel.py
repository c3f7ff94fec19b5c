"""Review tab, beside Grad-CAM: what the clinical data added to this case (SHAP of a fusion run).

``ShapPanel.show_case(project, classifier_run, image_id)`` finds the newest fusion run
over that classifier run whose ``shap`` job has run, and lists each field's SHAP value
toward the fusion's predicted class with the case's raw value, unit and reference range
(a cached JSON read: no computation on the GUI thread).
"""

from __future__ import annotations

import html

from PySide6.QtWidgets import QGroupBox, QLabel, QVBoxLayout


def fusion_with_shap(project, classifier_run: int | None) -> int | None:
    if project is None or classifier_run is None:
        return None
    for r in project.models.list("fusion"):
        if r["parent_run_id"] == classifier_run and r["status"] == "done" \
                and project.cache_path("shap", f"run{int(r['id'])}.json").is_file():
            return int(r["id"])
    return None


def case_html(case: dict, fusion_run: int) -> str:
    k = case["classes"].index(case["predicted"]) if case["predicted"] in case["classes"] else 0
    rows = []
    for field, vals in sorted(case["shap"].items(), key=lambda kv: -abs(kv[1][k])):
        v = case["values"].get(field, {})
        value = "image scores" if field == "image" else ("missing" if v.get("value") is None else f"{v['value']:g}"
                                                          if isinstance(v.get("value"), float) else str(v["value"]))
        if "ref_high" in v and v.get("value") is not None:
            value += f" {v.get('unit') or ''} (normal {v.get('ref_low')}–{v.get('ref_high')})"
        colour = "#ff9f6b" if vals[k] > 0 else "#7bb8ff"
        rows.append(f"<tr><td>{html.escape(field)}</td><td style='color:{colour}'>{vals[k]:+.3f}</td>"
                    f"<td>{html.escape(value)}</td></tr>")
    return (f"fusion run #{fusion_run}: <b>{html.escape(case['predicted'])}</b> (SHAP {case['output']}, "
            f"toward the predicted class)<table>{''.join(rows)}</table>")


class ShapPanel(QGroupBox):
    """Added to ``layout`` of a Review ``board``; follows the image its viewer loads."""

    def __init__(self, board, layout=None):
        super().__init__("Clinical data (SHAP)")
        self.text = QLabel()
        self.text.setWordWrap(True)
        QVBoxLayout(self).addWidget(self.text)
        if layout is not None:
            layout.addWidget(self)
        if hasattr(board, "viewer"):
            board.viewer.image_loaded.connect(
                lambda image_id: self.show_case(board.project, board.run_id, image_id))

    def show_case(self, project, classifier_run: int | None, image_id: int | None) -> None:
        from mskstudio.ml.fuse.explain import case_explanation

        run = fusion_with_shap(project, classifier_run)
        case = case_explanation(project, run, image_id) if run is not None and image_id is not None else None
        if run is None:
            self.text.setText("No fusion run with SHAP for this classifier (Model › Fuse clinical data…).")
        elif case is None:
            self.text.setText(f"Image #{image_id} is not in fusion run #{run}'s hold-out.")
        else:
            self.text.setText(case_html(case, run))
