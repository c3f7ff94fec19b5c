"""DeepCluster initialisation vs scratch on a small labelled subset (issue 7's second target).

Two classifier runs that differ only in ``init``: the same label set, images, patient-level
split, seed, input and epochs. Both are scored on the same hold-out, so the difference is
reported paired (bootstrap CI and exact McNemar p), beside each run's accuracy with its
Wilson interval. Prints figures only.

    .venv/bin/python tests/bench/bench_init.py [--project P] [--dc-run ID]
        [--label-set diagnosis] [--classes ewing_sarcoma,osteomyelitis] [--input roi]
        [--size 96] [--epochs 12] [--folds 3] [--images 240] [--dc-epochs 8]

``--dc-run`` is a DeepCluster model run of the project (``mskstudio cluster P``); without it
one is trained here (``--dc-epochs``).  Without ``--project`` the phantom demo project is
built in a temporary folder (``--images``), so ``make bench`` runs this with no arguments.
The seed study reports 94.0 % (DeepCluster) vs 81.5 % (scratch), target: ≥ 5 points better.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from mskstudio.io.demo import build_demo
from mskstudio.jobrun import submit_and_run
from mskstudio.ml.evaluate.metrics import paired_accuracy_difference
from mskstudio.store import Project


def subset(project: Project, label_set: str, classes: list[str] | None) -> list[int]:
    """Images whose label in ``label_set`` is one of ``classes`` (all labelled images if None)."""
    ls = project.labels.find_label_set(label_set)
    if ls is None:
        raise SystemExit(f"{project.root}: no label set {label_set!r}")
    names = {c.id: c.name for c in project.labels.classes(ls)}
    labels = project.labels.effective(ls)
    return sorted(i for i, c in labels.items() if classes is None or names[c] in classes)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--project", help="project to use (default: build the phantom demo in a temp folder)")
    ap.add_argument("--dc-run", type=int, help="DeepCluster model run id (default: train one here)")
    ap.add_argument("--images", type=int, default=240, help="demo images when no --project is given")
    ap.add_argument("--dc-epochs", type=int, default=8, help="DeepCluster epochs when no --dc-run is given")
    ap.add_argument("--label-set", default="diagnosis")
    ap.add_argument("--classes", default="ewing_sarcoma,osteomyelitis",
                    help="comma-separated classes of the subset ('' = every labelled image)")
    ap.add_argument("--input", default="roi", choices=("roi", "image"))
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--freeze", action="store_true", help="train only the head on the frozen encoder")
    args = ap.parse_args()

    root = Path(args.project) if args.project else Path(tempfile.mkdtemp()) / "bench-init.mskproj"
    project = Project.open(root) if args.project else build_demo(root, images=args.images)
    args.project = str(root)
    if args.dc_run is None:
        t = time.perf_counter()
        out = submit_and_run(project, "cluster", {"arch": "resnet18", "epochs": args.dc_epochs,
                                                  "input_size": args.size, "seed": 0})
        args.dc_run = out.get("model_run_id") or project.models.list("deepcluster")[0]["id"]
        print(f"DeepCluster run {args.dc_run}: {args.dc_epochs} epochs at {args.size} px, "
              f"{(time.perf_counter() - t) / 60:.1f} min")
    classes = [c for c in args.classes.split(",") if c] or None
    ids = subset(project, args.label_set, classes)
    print(f"{args.project}: {len(ids)} images of {args.label_set} "
          f"{'/'.join(classes) if classes else '(all classes)'}; {args.input} at {args.size} px, "
          f"{args.epochs} epochs x {args.folds} folds, patient-level hold-out")
    hold: dict[str, dict] = {}
    for init in ("scratch", f"run:{args.dc_run}"):
        t = time.perf_counter()
        result = submit_and_run(project, "train", {
            "label_set": args.label_set, "image_ids": ids, "arch": "resnet18", "init": init,
            "freeze_encoder": args.freeze, "input": args.input, "size": args.size, "k": args.folds,
            "epochs": args.epochs, "batch_size": 32, "reject": "none", "seed": 0,
            "name": f"init {init}"})
        rep = project.models.metrics(result["model_run_id"])["holdout"]
        acc = rep["accuracy"]
        hold[init] = rep
        print(f"  init {init:>10}: hold-out accuracy {acc['k']}/{acc['n']} = {acc['value']:.3f} "
              f"(95% CI {acc['ci'][0]:.3f}–{acc['ci'][1]:.3f}); model run {result['model_run_id']}, "
              f"{(time.perf_counter() - t) / 60:.1f} min")
    a, b = hold["scratch"], hold[f"run:{args.dc_run}"]
    if a["image_ids"] != b["image_ids"]:
        raise SystemExit("the two runs were not scored on the same hold-out")
    y = np.asarray(a["y_true"])
    d = paired_accuracy_difference(np.argmax(a["probs"], 1) == y, np.argmax(b["probs"], 1) == y)
    print(f"DeepCluster - scratch: {d['value'] * 100:+.1f} points (paired 95% CI "
          f"{d['ci'][0] * 100:+.1f} to {d['ci'][1] * 100:+.1f}; McNemar p {d['p_mcnemar']:.3g}; "
          f"only DeepCluster right {d['b_only']}, only scratch right {d['a_only']}, n = {d['n']}); "
          f"target ≥ +5 points")


if __name__ == "__main__":
    main()
