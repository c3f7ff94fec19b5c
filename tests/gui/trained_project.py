"""A phantom project with a tiny trained classifier run (for review / dashboard GUI tests).

``build_trained_project(phantom_project_path, folder)`` copies the phantom project, copies
its hidden truth into a trainable label set ``region`` (import labels), and trains a
tinycnn run (64 px, 2 folds, 2 epochs) in-process.  ``open_window`` builds the real main
window on a private copy of it.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FAST = {"label_set": "region", "arch": "tinycnn", "size": 64, "k": 2, "epochs": 2, "batch_size": 16,
        "lr": 3e-3, "n_boot": 50, "patience": 10, "seed": 0, "augment": False, "device": "cpu"}


def build_trained_project(phantom_project_path: Path, folder: Path) -> tuple[Path, int]:
    import torch

    from mskstudio.jobrun import submit_and_run
    from mskstudio.store import Project

    torch.set_num_threads(2)
    root = folder / "trained.mskproj"
    shutil.copytree(phantom_project_path, root)
    with Project.open(root) as project:
        truth = project.labels.label_set("truth:region")
        names = {r.id: r.name for r in project.labels.classes(truth)}
        ls = project.labels.label_set("region")
        by_class: dict[str, list[int]] = {}
        for image_id, cid in project.labels.effective(truth).items():
            by_class.setdefault(names[cid], []).append(image_id)
        for name, ids in sorted(by_class.items()):
            project.labels.set_labels(ids, ls, project.labels.class_id(ls, name), source="import")
        result = submit_and_run(project, "train", dict(FAST))
    return root, int(result["model_run_id"])


def open_window(qtbot, trained_root: Path, tmp_path: Path):
    from mskstudio.gui.app import make_app
    from mskstudio.gui.main_window import MainWindow

    copy = tmp_path / "w.mskproj"
    shutil.copytree(trained_root, copy)
    make_app()
    w = MainWindow(copy, load_workspaces=False)
    w.runner.subprocess_prefix = [sys.executable, str(HERE / "jobhost.py")]
    w.runner.kill_after_s = 3.0
    w.confirm = lambda *a: True
    qtbot.addWidget(w)
    w.resize(1500, 950)
    w.show()
    return w


def close_window(w, *boards) -> None:
    w.runner.shutdown(10)
    w.viewer.loader.wait(5000)
    for b in boards:
        viewer = getattr(b, "viewer", None)
        if viewer is not None and viewer is not w.viewer:
            viewer.loader.wait(5000)
    for d in list(w.dialogs):
        with contextlib.suppress(RuntimeError):
            d.close()
