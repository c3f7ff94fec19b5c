"""A finished classifier run with made-up scores, for the fusion tests (unit and GUI)."""

from __future__ import annotations

import json

import numpy as np

from mskstudio.ml.splits import make_split


def fake_image_run(project, *, seed: int = 0, signal: float = 1.5) -> int:
    """A finished classifier run as train.py stores it, with made-up (noisy, truthful) scores."""
    set_id = project.labels.find_label_set("diagnosis")
    labels = project.labels.effective(set_id, sources=("import",))
    classes = [r for r in project.labels.classes(set_id) if r["id"] in set(labels.values())]
    names = [r["name"] for r in classes]
    index = {int(r["id"]): j for j, r in enumerate(classes)}
    ids = sorted(labels)
    y = {i: index[labels[i]] for i in ids}
    split = make_split(ids, project.images.patient_of(ids), [y[i] for i in ids], k=3, test_fraction=0.25,
                       seed=seed)
    rng = np.random.default_rng(seed)

    def probs(part):
        z = rng.normal(0, 1, (len(part), len(names)))
        z[np.arange(len(part)), [y[i] for i in part]] += signal
        e = np.exp(z)
        return (e / e.sum(1, keepdims=True)).round(5).tolist()

    oof_ids = [i for f in split["folds"] for i in f["val"]]
    metrics = {"label_set": "diagnosis", "classes": names,
               "main": {"oof": {"image_ids": oof_ids, "probs": probs(oof_ids), "y_true": [y[i] for i in oof_ids]}},
               "holdout": {"classes": names, "image_ids": split["test"], "probs": probs(split["test"]),
                           "y_true": [y[i] for i in split["test"]]}}
    run_id = project.models.create("classifier", "tinycnn", params={}, label_set_id=set_id)
    project.models.set_fields(run_id, split=json.dumps(split), metrics=json.dumps(metrics))
    project.models.set_status(run_id, "done")
    return run_id
