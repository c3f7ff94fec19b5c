"""A finished classifier run with made-up scores, for the fusion tests (unit and GUI)."""

from __future__ import annotations

import json

import numpy as np

from mskstudio.ml.splits import make_split


def fake_image_run(project, *, seed: int = 0, signal: float = 1.5) -> int:
    """A finished classifier run as train.py stores it, with made-up (noisy, truthful) scores."""
    set_id = project.labels.find_label_set("diagnosis")
    labels = project.labels.effective(set_id, sources=("import",))
    classes = [r for r in project.labels.classes(set_id) if r.id in set(labels.values())]
    names = [r.name for r in classes]
    index = {r.id: j for j, r in enumerate(classes)}
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


# ---- a planted set for joint fusion and fusion runs in use (test_fuse_joint, test_fuse_serve) ----
FAST = {"arch": "tinycnn", "size": 64, "k": 2, "epochs": 6, "batch_size": 16, "lr": 1e-2,
        "n_boot": 100, "patience": 20, "seed": 0, "augment": False}
FIELDS = "age,sex,lab:ALP"


def plant(project, n_images: int = 120, seed: int = 3) -> dict[int, int]:
    """A 'planted' label set whose class only the clinical data tells; returns image -> class."""
    from mskstudio.ml.synthetic import add_synthetic_images

    rng = np.random.default_rng(seed)
    images = add_synthetic_images(project, n_images, seed=seed, size=64, thumbnails=False)
    ls = project.labels.label_set("planted")
    cls = [project.labels.class_id(ls, "low"), project.labels.class_id(ls, "high")]
    patient_of = project.images.patient_of(list(images))
    label_of_patient = {p: int(rng.integers(2)) for p in sorted(set(patient_of.values()))}
    for pid, c in label_of_patient.items():
        project.images.set_clinical(pid, {"age_years": float(rng.normal(35 + 20 * c, 8)),
                                          "sex": "F" if rng.random() < 0.5 else "M"})
        if rng.random() < 0.9:  # some patients without the lab: missing, never dropped
            times_uln = float(rng.normal(0.7 + 1.6 * c, 0.3))
            if pid % 2:
                project.images.set_lab(pid, "ALP", times_uln * 130.0, "U/L", 40.0, 130.0)
            else:
                project.images.set_lab(pid, "ALP", times_uln * 2.2, "µkat/L", 0.6, 2.2)
    truth = {i: label_of_patient[patient_of[i]] for i in images}
    for c in (0, 1):
        project.labels.set_labels([i for i, t in truth.items() if t == c], ls, cls[c], source="import")
    return truth
