"""Clinical data in the models (issue 24): image-only vs metadata-only vs late fusion vs stacking
vs joint (end-to-end) fusion, and late fusion on out-of-fold embeddings.

Builds (or reuses) a phantom demo project, trains an image classifier of the diagnosis
label set (six phantom diagnoses plus healthy) with a patient-level hold-out, then fits
the metadata-only baselines, late fusion and stacking on exactly that run's folds and
hold-out, late fusion over the run's out-of-fold embeddings (PCA), and trains the same
classifier with a metadata branch end to end (joint fusion; same seed, so the same split),
and prints for each: accuracy, macro AUC, per-class sensitivity (n, 95% CIs),
and the paired hold-out differences (fusion − image-only, fusion − metadata-only) with
their bootstrap 95% CIs and McNemar p.  Also the fusion training time on cached
features (target ≤ 10 s) and the CPU minutes of every step.

    .venv/bin/python tests/bench/bench_fusion.py [--project P] [--images 2000] [--image-run ID]
        [--epochs 4] [--size 64] [--clinical age,sex,site,lab:ALP,lab:LDH,lab:CRP,lab:WBC]

Target: fusion beats BOTH image-only and metadata-only with the paired 95% CI above 0.
Prints figures only.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from mskstudio.cli.cmd_data import build_demo
from mskstudio.jobrun import submit_and_run
from mskstudio.ml.fuse import compare

# ``position`` (diaphysis, metaphysis…) is left out by default: the phantoms leave it blank for
# healthy patients, so it would tell "no lesion" without being clinical data.
FIELDS = "age,sex,site,lab:ALP,lab:LDH,lab:CRP,lab:WBC"


def cpu_minutes() -> float:
    t = time.process_time()
    try:
        import resource

        ch = resource.getrusage(resource.RUSAGE_CHILDREN)
        t += ch.ru_utime + ch.ru_stime
    except ImportError:  # pragma: no cover - Windows
        pass
    return t / 60


def fmt(p: dict) -> str:
    lo, hi = p.get("ci", [np.nan, np.nan])
    return f"{p['value']:.3f} [{lo:.3f}, {hi:.3f}]"


def print_report(title: str, rep: dict) -> None:
    sens = "  ".join(f"{c[:10]} {v['sensitivity']['value']:.2f} (n={v['support']})"
                     for c, v in rep["per_class"].items())
    print(f"{title:<28} n={rep['n']:<4} accuracy {fmt(rep['accuracy'])}  macro AUC {fmt(rep['macro']['auc'])}")
    print(f"{'':<28} sensitivity: {sens}")


def print_diff(title: str, d: dict) -> None:
    a, u = d["accuracy"], d["macro_auc"]
    print(f"  {title:<40} accuracy {a['value']:+.3f} [{a['ci'][0]:+.3f}, {a['ci'][1]:+.3f}] "
          f"McNemar p {a['p_mcnemar']:.3g}; macro AUC {u['value']:+.3f} [{u['ci'][0]:+.3f}, {u['ci'][1]:+.3f}]")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--project", help="an existing demo project (default: build one in a temp folder)")
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--image-run", type=int, help="reuse this classifier run of the diagnosis label set")
    ap.add_argument("--arch", default="tinycnn")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--clinical", default=FIELDS)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--no-joint", action="store_true", help="skip the joint (end-to-end) fusion run")
    args = ap.parse_args()

    cpu0, t0 = cpu_minutes(), time.perf_counter()
    root = Path(args.project) if args.project else Path(tempfile.mkdtemp()) / "bench.mskproj"
    project = build_demo(root, images=args.images, size="small")  # reuses a finished demo at root
    print(f"project {root}: {project.images.count()} images "
          f"(demo {time.perf_counter() - t0:.0f} s, {cpu_minutes() - cpu0:.1f} CPU-min)")

    cpu1, t1 = cpu_minutes(), time.perf_counter()
    train = {"label_set": "diagnosis", "arch": args.arch, "input": "roi", "size": args.size, "k": args.folds,
             "epochs": args.epochs, "batch_size": 32, "reject": "none", "seed": 0, "n_boot": args.n_boot}
    image_run = args.image_run or submit_and_run(project, "train", train)["model_run_id"]
    print(f"image run #{image_run} ({args.arch} ROI {args.size} px, {args.folds} folds, {args.epochs} epochs): "
          f"{time.perf_counter() - t1:.0f} s, {cpu_minutes() - cpu1:.1f} CPU-min")

    runs = {"image-only": image_run}
    if not args.no_joint:
        cpu1, t1 = cpu_minutes(), time.perf_counter()
        runs["joint (end to end)"] = submit_and_run(project, "train", {**train, "clinical": args.clinical}
                                                    )["model_run_id"]
        print(f"joint run #{runs['joint (end to end)']}: {time.perf_counter() - t1:.0f} s, "
              f"{cpu_minutes() - cpu1:.1f} CPU-min")
    fit_s = {}
    for title, mode, learner, image_input in (
            ("metadata-only (logreg)", "metadata", "logreg", "probs"),
            ("metadata-only (HGB)", "metadata", "hgb", "probs"),
            ("late fusion (logreg)", "late", "logreg", "probs"),
            ("stacking (random forest)", "stacking", "rf", "probs"),
            ("late fusion on embeddings", "late", "logreg", "embedding")):
        cpu2, t2 = cpu_minutes(), time.perf_counter()
        res = submit_and_run(project, "fuse", {"image_run": image_run, "mode": mode, "learner": learner,
                                               "clinical": args.clinical, "n_boot": args.n_boot,
                                               "image_input": image_input})
        runs[title] = res["model_run_id"]
        fit_s[title] = res["fit_s"]
        print(f"{title}: run #{res['model_run_id']}, fit on cached features {res['fit_s']:.2f} s "
              f"(job {time.perf_counter() - t2:.1f} s, {cpu_minutes() - cpu2:.2f} CPU-min)")

    metrics = {t: project.models.metrics(r) for t, r in runs.items()}
    print(f"\nhold-out (patient level), fields {args.clinical}")
    for title, m in metrics.items():
        print_report(title, m["holdout"])

    hold = {t: m["holdout"] for t, m in metrics.items()}
    y = np.asarray(hold["image-only"]["y_true"])
    probs = {t: np.asarray(h["probs"]) for t, h in hold.items()}
    assert all(h["image_ids"] == hold["image-only"]["image_ids"] for h in hold.values())
    print("\npaired differences on the same hold-out cases (95% bootstrap CI)")
    verdict = {}
    fusions = [t for t in ("late fusion (logreg)", "stacking (random forest)", "late fusion on embeddings",
                           "joint (end to end)") if t in probs]
    for fusion in fusions:
        above = []
        for base in ("image-only", "metadata-only (logreg)", "metadata-only (HGB)"):
            d = compare.paired(y, probs[base], probs[fusion], n_boot=args.n_boot)
            print_diff(f"{fusion} − {base}", d)
            above.append(d["accuracy"]["ci"][0] > 0)
        verdict[fusion] = all(above)
    print("\nfusion training time on cached features: "
          + ", ".join(f"{t} {s:.2f} s" for t, s in fit_s.items()) + " (target ≤ 10 s)")
    for fusion, ok in verdict.items():
        print(f"{fusion} beats image-only AND both metadata-only baselines, paired accuracy CI > 0: "
              f"{'YES' if ok else 'NO'}")
    print(f"total {time.perf_counter() - t0:.0f} s wall, {cpu_minutes() - cpu0:.1f} CPU-min")


if __name__ == "__main__":
    main()
