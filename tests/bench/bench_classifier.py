"""The seed-study loop on the phantom demo: cluster → label whole clusters → train a region
classifier on the cluster-derived labels → score it against the true regions on a
patient-level hold-out it never trained on.

The "radiologist" is simulated: a mixed cluster (majority region < ``--split-below``) is
split with the board's Split action, then each cluster gets its majority true region
(non-MSK clusters are discarded into the reject class); every split, label and discard
is one action. Truth labels are read only to play that role and to score; training
sees only the cluster labels.

    .venv/bin/python tests/bench/bench_classifier.py [--project P] [--images 600] [--epochs 6]
        [--init scratch|run:ID] [--cluster-run ID]

Targets (issue 7): top-1 ≥ 97 %, top-2 ≥ 99.5 % on the hold-out. Prints figures only.
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time
from pathlib import Path

import numpy as np

from mskstudio.cli.cmd_data import build_demo
from mskstudio.io.phantoms import NON_MSK
from mskstudio.jobrun import submit_and_run
from mskstudio.ml.cluster.split import split_cluster
from mskstudio.ml.evaluate.metrics import proportion
from mskstudio.store import Project


def simulated_review(project: Project, run_id: int, truth: dict[int, str], *, split_below: float = 0.9,
                     max_depth: int = 3) -> dict[str, float]:
    """Label (or discard) every cluster by its majority true region, as a reviewer would.

    A reviewer who sees a mixed montage splits it (the board's Split action, sub-k-means
    into 2) instead of labelling it: a cluster whose majority region holds less than
    ``split_below`` of its members is split, up to ``max_depth`` times, then each part is
    labelled.  Every split and every label or discard counts as one action.  Returns the
    actions, the images labelled and the share of images whose cluster label is their
    true region (the label noise the classifier trains on).
    """
    actions = images = correct = 0
    pending = [(c["id"], 0) for c in project.clusters.clusters(run_id)]
    while pending:
        cluster_id, depth = pending.pop()
        members = project.clusters.member_ids(cluster_id)
        counts = collections.Counter(truth[i] for i in members if i in truth)
        if not counts:
            continue
        region, hits = counts.most_common(1)[0]
        if split_below and hits / sum(counts.values()) < split_below and depth < max_depth \
                and len(members) >= 4:
            record = split_cluster(project, cluster_id, 2, seed=depth)
            actions += 1
            pending += [(c, depth + 1) for c in (cluster_id, *record["created"])]
            continue
        if region in NON_MSK:
            project.clusters.discard(cluster_id, "region")
            correct += sum(counts[r] for r in NON_MSK)
        else:
            project.clusters.label_cluster(cluster_id, "region", region)
            correct += hits
        actions += 1
        images += len(members)
    return {"actions": actions, "images": images, "label_accuracy": correct / max(images, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--project", help="an existing demo project (default: build one in a temp folder)")
    ap.add_argument("--images", type=int, default=600)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--init", default="scratch")
    ap.add_argument("--cluster-run", type=int, help="reuse this cluster run instead of 'cluster now'")
    ap.add_argument("--split-below", type=float, default=0.9,
                    help="the simulated reviewer splits clusters whose majority share is below this (0: never)")
    args = ap.parse_args()

    root = Path(args.project) if args.project else Path(tempfile.mkdtemp()) / "bench.mskproj"
    project = Project.open(root) if args.project else build_demo(root, images=args.images)
    truth_set = project.labels.find_label_set("truth:region")
    names = {c.id: c.name for c in project.labels.classes(truth_set)}
    truth = {i: names[c] for i, c in project.labels.effective(truth_set).items()}
    print(f"project {root}: {len(truth)} images with true regions")

    t = time.perf_counter()
    run_id = args.cluster_run or submit_and_run(
        project, "cluster", {"mode": "fast", "k": max(10, len(truth) // 20), "input_size": args.size}
    )["cluster_run_id"]
    print(f"clusters: run {run_id} ({time.perf_counter() - t:.0f} s)")
    review = simulated_review(project, run_id, truth, split_below=args.split_below)
    actions, images = review["actions"], review["images"]
    print(f"review: {actions} actions (labels, discards, splits of clusters whose majority < "
          f"{args.split_below:.0%}) labelled {images} images ({images / max(actions, 1):.1f} images per "
          f"action); {review['label_accuracy']:.3f} of them carry their true region")

    t = time.perf_counter()
    result = submit_and_run(project, "train", {
        "label_set": "region", "arch": "resnet18", "init": args.init, "size": args.size,
        "k": args.folds, "epochs": args.epochs, "batch_size": 32, "reject": "class", "seed": 0})
    minutes = (time.perf_counter() - t) / 60
    metrics = project.models.metrics(result["model_run_id"])
    hold = metrics["holdout"]
    classes = metrics["classes"]
    probs = np.asarray(hold["probs"])
    truth_names = ["rejected" if truth[i] in NON_MSK else truth[i] for i in hold["image_ids"]]
    order = np.argsort(-probs, axis=1)
    top1 = sum(classes[o[0]] == t for o, t in zip(order, truth_names, strict=True))
    top2 = sum(t in (classes[o[0]], classes[o[1]]) for o, t in zip(order, truth_names, strict=True))
    n = len(truth_names)
    for name, hits, target in (("top-1", top1, 0.97), ("top-2", top2, 0.995)):
        p = proportion(hits, n)
        print(f"hold-out vs true regions {name}: {hits}/{n} = {p['value']:.3f} "
              f"(95% CI {p['ci'][0]:.3f}–{p['ci'][1]:.3f}; target ≥ {target})")
    acc = hold["accuracy"]
    print(f"hold-out vs cluster labels: accuracy {acc['value']:.3f} (n={n}); "
          f"training {minutes:.1f} CPU-min, {args.epochs} epochs × {args.folds} folds at {args.size} px")


if __name__ == "__main__":
    main()
