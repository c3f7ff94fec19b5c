"""Model › Fuse clinical data…: a fusion (or metadata-only) run over a finished classifier run.

Asks the classifier run, the mode and the fields (``ClinicalSection``), then submits job
``fuse`` (seconds: scikit-learn on the run's cached scores), optionally followed by
``shap`` on the new run, or job ``ablation`` over the same choices.  The fusion run
appears in the Dashboard beside the image-only run (same hold-out, paired difference).
"""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFormLayout, QLabel, QVBoxLayout

from mskstudio.gui.fuse.clinical_section import FUSE_MODES, ClinicalSection
from mskstudio.gui.review import review_queue as rq


class FuseDialog(QDialog):
    def __init__(self, window, parent=None):
        super().__init__(parent if parent is not None else window)
        self.window_ = window
        self.setWindowTitle("Fuse clinical data")
        self.last_job_id: int | None = None
        project = window.project
        form = QFormLayout()
        self.run = QComboBox()
        for r in rq.classifier_runs(project):
            self.run.addItem(rq.run_label(r), r["id"])
        form.addRow("Image classifier run", self.run)
        self.image_input = QComboBox()
        self.image_input.addItem("its probabilities (out-of-fold, hold-out)", "probs")
        self.image_input.addItem("its embeddings (out-of-fold fold models, PCA fitted on training rows)",
                                 "embedding")
        self.image_input.setToolTip("Embeddings: each image by a fold model that never trained on it, "
                                    "reduced by a PCA fitted inside every fit on its training rows only")
        form.addRow("Image input", self.image_input)
        self.section = ClinicalSection(project, FUSE_MODES)
        self.shap = QCheckBox("Then explain the clinical part with SHAP")
        self.shap.setChecked(True)
        self.problems = QLabel()
        self.problems.setWordWrap(True)
        self.problems.setStyleSheet("color: #ff6b6b;")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.fuse_btn = buttons.addButton("Fuse", QDialogButtonBox.ButtonRole.AcceptRole)
        self.ablation_btn = buttons.addButton("Ablation table", QDialogButtonBox.ButtonRole.ActionRole)
        buttons.accepted.connect(self.submit)
        buttons.rejected.connect(self.reject)
        self.ablation_btn.clicked.connect(self.submit_ablation)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.section)
        layout.addWidget(self.shap)
        layout.addWidget(self.problems)
        layout.addWidget(buttons)

    def params(self) -> dict[str, Any]:
        mode, fields = self.section.value()
        p = {"model_run_id": self.run.currentData(), "mode": mode, "clinical": fields}
        if self.image_input.currentData() == "embedding" and mode != "metadata":
            p["image_input"] = "embedding"
        return p

    def validate(self) -> list[str]:
        if self.run.currentData() is None:
            return ["Train an image classifier first (Model › Train classifier…).", *self.section.problems()]
        section = self.section.problems()
        if section:
            return section
        from mskstudio.ml.fuse.params import FuseParams  # the checks of the CLI and the job

        return FuseParams.from_json(self.params()).problems(self.window_.project)

    def _ok(self) -> bool:
        problems = self.validate()
        self.problems.setText("Cannot fuse yet:\n• " + "\n• ".join(problems) if problems else "")
        return not problems

    def submit(self) -> int | None:
        if not self._ok():
            return None
        runner = self.window_.runner
        self.last_params = self.params()
        self.last_job_id = runner.submit("fuse", self.last_params)
        if self.shap.isChecked() and "image_input" not in self.last_params:  # SHAP: over probabilities only
            fuse_job = self.last_job_id

            def on_returned(job_id: int, result: Any) -> None:
                if job_id == fuse_job:
                    runner.job_returned.disconnect(on_returned)
                    if isinstance(result, dict) and result.get("model_run_id"):
                        runner.submit("shap", {"model_run_id": int(result["model_run_id"])})

            runner.job_returned.connect(on_returned)
        self.accept()
        return self.last_job_id

    def submit_ablation(self) -> int | None:
        if not self._ok():
            return None
        p = self.params()
        self.last_job_id = self.window_.runner.submit("ablation", {**p, "scheme": "loo"})
        self.accept()
        return self.last_job_id


def open_fuse_dialog(window) -> FuseDialog | None:
    if not window._need_project():
        return None
    d = FuseDialog(window)
    window.dialogs.append(d)
    d.show()
    return d
