"""Study report at scale: a 2,000-image project with three model runs.

The report reads the store and the runs' stored predictions; it never decodes pixels
(Grad-CAM examples only when cached, none here).  So the project is built from image
*rows* (patients, studies with centres and ages, devices, views, clinical data, a label
set, a patient-level split) and three runs whose out-of-fold and hold-out probabilities
are simulated with different skill — the same JSON shape training writes.  Prints the
time to build the report (twice: the first includes importing scipy / matplotlib, the second
must give identical tables), wall and CPU (the box is shared), and what it holds.

    .venv/bin/python tests/bench/bench_report.py [--images 2000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's mskstudio

CLASSES = ("healthy", "benign", "malignant")


def build_project(root: Path, n_images: int, seed: int = 0) -> list[int]:
    from mskstudio.ml.evaluate import metrics as ev
    from mskstudio.ml.splits import make_split
    from mskstudio.store import Project

    rng = np.random.default_rng(seed)
    with Project.create(root) as p:
        centres = [p.images.centre_id(c) for c in ("Centre A", "Centre B", "Centre C")]
        ls = p.labels.label_set("lesion")
        class_ids = [p.labels.class_id(ls, c) for c in CLASSES]
        n_patients = max(4, n_images * 2 // 5)
        image_ids, targets = [], []
        by_class: dict[int, list[int]] = {}
        for k in range(n_patients):
            pid = p.images.patient_id(f"P{k:05d}", sex="FM"[k % 2])
            age = float(np.clip(rng.gamma(4, 10), 3, 90))
            sid = p.images.study_id(pid, f"1.2.3.{k}", age_years=age, centre_id=centres[k % 3])
            y = int(rng.choice(3, p=[0.5, 0.3, 0.2]))
            p.images.set_clinical(pid, {"age_years": age, "sex": "FM"[k % 2],
                                        "site": ("femur", "tibia", "humerus", "pelvis")[k % 4],
                                        "diagnosis_source": (None, "histology", "follow_up")[y] if y else
                                        "follow_up"}, audit_action="bench")
            for v in range(n_images // n_patients + (1 if k < n_images % n_patients else 0)):
                iid = p.images.add_image({
                    "study_id": sid, "sop_uid": f"1.2.3.{k}.{v}", "rows": 512, "cols": 512,
                    "manufacturer": ("Acme", "Fujimoto", "Nordlys")[(k + v) % 3],
                    "model": ("X1", "X2")[v % 2], "view": ("AP", "LAT")[v % 2], "body_part": "LEG",
                    "spacing_row_mm": 0.15}, None)
                image_ids.append(iid)
                targets.append(y)
                by_class.setdefault(y, []).append(iid)
        for y, ids in by_class.items():
            p.labels.set_labels(ids, ls, class_ids[y], source="human")
        patient_of = p.images.patient_of(image_ids)
        split = make_split(image_ids, patient_of, targets, k=5, holdout="random", seed=seed)
        target_of = dict(zip(image_ids, targets, strict=True))
        runs = []
        for r, skill in enumerate((0.8, 1.2, 1.3)):
            def simulate(ids, skill=skill, r=r):
                y = np.array([target_of[i] for i in ids])
                logits = np.random.default_rng(100 + r).normal(0, 1, (len(ids), 3))
                logits[np.arange(len(ids)), y] += skill
                return y, ev.softmax(logits * 1.5)
            oof_ids = [i for f in split["folds"] for i in f["val"]]
            y_o, p_o = simulate(oof_ids)
            y_h, p_h = simulate(split["test"])
            oof = ev.classification_report(y_o, p_o, CLASSES, n_boot=200)
            hold = ev.classification_report(y_h, p_h, CLASSES, n_boot=200)
            oof.update(image_ids=oof_ids, probs=p_o.round(5).tolist(), y_true=y_o.tolist())
            hold.update(image_ids=list(split["test"]), probs=p_h.round(5).tolist(), y_true=y_h.tolist())
            metrics = {"label_set": "lesion", "classes": list(CLASSES), "main": {"oof": oof, "holdout": hold},
                       "holdout": hold}
            rid = p.models.create("classifier", "resnet18", name=f"simulated skill {skill}",
                                  params={"arch": "resnet18", "seed": r}, label_set_id=ls)
            p.models.set_fields(rid, split=json.dumps(split), metrics=json.dumps(metrics))
            p.models.set_status(rid, "done")
            runs.append(rid)
    return runs


def main() -> None:
    from mskstudio.jobs import JobContext
    from mskstudio.ml.report.report import run_report
    from mskstudio.store import Project

    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--keep", help="write the project and reports here instead of a temporary folder")
    args = ap.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-report-"))
    work.mkdir(parents=True, exist_ok=True)
    root = work / "bench.mskproj"
    if root.exists():
        shutil.rmtree(root)
    t0 = time.perf_counter()
    runs = build_project(root, args.images)
    print(f"built a {args.images}-image project with runs {runs} in {time.perf_counter() - t0:.1f} s")
    timings, tables = [], []
    for k in range(2):
        out = work / f"report{k}"
        shutil.rmtree(out, ignore_errors=True)
        with Project.open(root) as p:
            t0, c0 = time.perf_counter(), time.process_time()
            result = run_report(p, {"out": str(out)}, JobContext.null())
            timings.append(time.perf_counter() - t0)
            cpu = time.process_time() - c0
        tables.append({f.name: f.read_bytes() for f in sorted((out / "tables").glob("*.csv"))})
        print(f"report {k + 1}: {timings[-1]:.2f} s wall, {cpu:.2f} s CPU — {result['tables']} tables, "
              f"{result['figures']} figures, "
              f"{(out / 'report.html').stat().st_size / 1024:.0f} KiB HTML")
    print(f"regenerated tables identical: {tables[0] == tables[1]} ({len(tables[0])} CSV files)")
    cmp_rows = (work / "report0" / "tables" / "comparisons.csv").read_text().splitlines()
    print(f"comparisons: {len(cmp_rows) - 1} paired tests")
    for line in cmp_rows[1:4]:
        print("  " + line)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
