"""The "Clinical data" part of the Train dialog and the Fuse dialog; chaining fuse after train.

``ClinicalSection(project, modes)``: a mode combo (none / late / stacking, or the fuse
dialog's metadata / late / stacking) and one checkbox per clinical field of the project
(``age``, ``sex``, ``site``, ``position``, ``lab:NAME``).  ``value()`` is (mode or None,
fields); ``problems()`` says what is impossible in plain words (the core's message).

``fuse_after_train(window, train_job_id, mode, fields)`` submits the ``fuse`` job when
that train job returns its classifier run (the runner's ``job_returned`` signal).
"""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QCheckBox, QComboBox, QGridLayout, QGroupBox, QLabel, QVBoxLayout

TRAIN_MODES = (("None (image only)", None),
               ("Joint (metadata MLP trained end to end with the image network)", "joint"),
               ("Late fusion (logistic regression on scores + fields)", "late"),
               ("Stacking (random forest on out-of-fold scores + fields)", "stacking"))
JOINT_TIP = ("Joint: the classifier itself reads these fields through a small MLP concatenated with the "
             "image features before its head, trained end to end (imputation and scaling fitted per fold "
             "on its training rows); the exported ONNX model takes the image and the clinical vector")
FUSE_MODES = (("Late fusion (logistic regression)", "late"), ("Stacking (random forest)", "stacking"),
              ("Metadata only (no image)", "metadata"))
DEFAULT_CHECKED = ("age", "sex", "lab:ALP", "lab:LDH", "lab:CRP", "lab:WBC")


def project_fields(project) -> list[str]:
    if project is None:
        return []
    from mskstudio.ml.fuse.features import available_fields

    return available_fields(project)


class ClinicalSection(QGroupBox):
    def __init__(self, project, modes=TRAIN_MODES, parent=None):
        super().__init__("Clinical data", parent)
        self.project = project
        self.mode = QComboBox()
        for text, key in modes:
            self.mode.addItem(text, key)
        self.mode.setToolTip("Late fusion / stacking, after the image model: fuse its out-of-fold and "
                             "hold-out scores with these fields on the same patient-level folds (seconds, "
                             "a 'fusion' run).\n" + (JOINT_TIP if modes is TRAIN_MODES else ""))
        self.checks: dict[str, QCheckBox] = {}
        grid = QGridLayout()
        for k, name in enumerate(project_fields(project)):
            box = QCheckBox(name)
            box.setChecked(name in DEFAULT_CHECKED)
            if name.startswith("lab:"):
                box.setToolTip("divided by the upper limit of each row's own reference range")
            self.checks[name] = box
            grid.addWidget(box, k // 4, k % 4)
        layout = QVBoxLayout(self)
        layout.addWidget(self.mode)
        layout.addLayout(grid)
        if not self.checks:
            layout.addWidget(QLabel("No clinical data in this project (File › Import clinical CSV)."))
        self.mode.currentIndexChanged.connect(lambda _i: self._mode_changed())
        self._mode_changed()

    def _mode_changed(self) -> None:
        on = self.mode.currentData() is not None
        for box in self.checks.values():
            box.setEnabled(on)

    def fields(self) -> list[str]:
        return [name for name, box in self.checks.items() if box.isChecked()]

    def value(self) -> tuple[str | None, list[str]]:
        return self.mode.currentData(), self.fields()

    def problems(self) -> list[str]:
        mode, fields = self.value()
        if mode is None:
            return []
        if not fields:
            return ["Clinical data: tick at least one field, or choose None."]
        from mskstudio.ml.fuse.features import clinical_table, parse_fields

        try:
            parse_fields(fields, self.project)
            # A lab without a range names itself here, not after an hour of training.
            clinical_table(self.project, self.project.images.ids(), fields)
        except ValueError as exc:
            return [f"Clinical data: {exc}"]
        return []


def joint_fields(section: ClinicalSection) -> list[str] | None:
    """The train job's ``clinical`` parameter: the ticked fields in joint mode, else None."""
    mode, fields = section.value()
    return list(fields) if mode == "joint" else None


def fuse_after_train(window, train_job_id: int, mode: str, fields: list[str]) -> None:
    """Submit ``fuse`` with the classifier run that ``train_job_id`` returns."""
    runner = window.runner

    def on_returned(job_id: int, result: Any) -> None:
        if job_id != train_job_id:
            return
        runner.job_returned.disconnect(on_returned)
        run_id = (result or {}).get("model_run_id") if isinstance(result, dict) else None
        if run_id is not None:
            runner.submit("fuse", {"model_run_id": int(run_id), "mode": mode, "clinical": list(fields)})

    runner.job_returned.connect(on_returned)


def fusion_runs(project) -> list[dict[str, Any]]:
    """Finished fusion runs shaped like ``review_queue.classifier_runs`` (the Dashboard lists both)."""
    out = []
    for r in project.models.list("fusion") if project is not None else []:
        if r["status"] == "done":
            out.append({"id": int(r["id"]), "name": r["name"] or f"run {r['id']}", "arch": r["arch"],
                        "label_set_id": r["label_set_id"], "init": f"classifier #{r['parent_run_id']}"})
    return out
