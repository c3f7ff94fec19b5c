"""Label-noise queue on the phantom demo: does it surface wrong cluster-derived labels?

Two measurements on a copy of a demo project whose label set (default ``region``) holds
cluster-derived labels (bench_classifier.py leaves such a project behind):

1. **Natural errors**: cluster labels that disagree with the phantom truth. How many of
   them are in the top N of the queue (N = their number), against the base rate.
2. **Flipped on purpose**: a further ``--flip`` share of the labels changed to another
   class at random (seeded). How many flipped images are in the top N (N = flipped).

Each with the kNN vote over the raw-pixel baseline and over a model run's embeddings,
and with a classifier run's out-of-sample opinion where given. Truth is read only to
score. Prints figures only.

    .venv/bin/python tests/bench/bench_noise.py [--project P] [--run RUN] [--classifier RUN] [--flip 0.1]

Without ``--project`` a demo project is built in a temporary folder, clustered (fast mode)
and its clusters labelled by the simulated reviewer of bench_classifier.py (no classifier:
the raw-pixel kNN queue only), so ``make bench`` runs this with no arguments.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np


def _hits(items, wrong: set[int], n: int) -> int:
    return sum(1 for it in items[:n] if it.image_id in wrong)


def _report(title: str, queues: dict, wrong: set[int], total: int) -> None:
    n = len(wrong)
    print(f"{title}: {n} wrong of {total} labels (base rate {n / total:.3f})")
    for name, items in queues.items():
        hits = _hits(items, wrong, n)
        print(f"  {name:<34} top-{n}: {hits:>3} wrong = precision {hits / max(n, 1):.3f} "
              f"({hits / max(n, 1) / (n / total):.1f}x the base rate)")


def _build_labelled_demo(root: Path, images: int) -> None:
    from bench_classifier import simulated_review

    from mskstudio.io.demo import build_demo
    from mskstudio.jobrun import submit_and_run

    project = build_demo(root, images=images)
    truth_set = project.labels.find_label_set("truth:region")
    names = {c.id: c.name for c in project.labels.classes(truth_set)}
    truth = {i: names[c] for i, c in project.labels.effective(truth_set).items()}
    run = submit_and_run(project, "cluster", {"mode": "fast", "k": max(10, len(truth) // 20)})["cluster_run_id"]
    simulated_review(project, run, truth)
    project.close()


def main() -> None:
    from mskstudio.ml.noise.queue import noise_queue
    from mskstudio.store import Project

    ap = argparse.ArgumentParser()
    ap.add_argument("--project", help="a demo project with cluster-derived labels (default: build one)")
    ap.add_argument("--images", type=int, default=240, help="demo images when no --project is given")
    ap.add_argument("--label-set", default="region")
    ap.add_argument("--run", help="model run whose embeddings vote (default: the newest classifier)")
    ap.add_argument("--classifier", type=int, help="classifier run giving its opinion (default: --run)")
    ap.add_argument("--flip", type=float, default=0.1)
    ap.add_argument("--k", type=int, default=10)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-noise-")) / "p.mskproj"
    if args.project:
        shutil.copytree(args.project, work)
    else:
        _build_labelled_demo(work, args.images)
        args.project = str(work)
    project = Project.open(work)
    set_id = project.labels.label_set(args.label_set)
    truth_set = project.labels.label_set("truth:region")
    names = {r.id: r.name for r in project.labels.classes(set_id)}
    truth_names = {r.id: r.name for r in project.labels.classes(truth_set)}
    truth = {i: truth_names[c] for i, c in project.labels.effective(truth_set).items()}
    given = project.labels.effective(set_id, sources=("cluster",))
    if not given:
        raise SystemExit(f"{args.project}: label set {args.label_set!r} has no cluster-derived labels")
    runs = project.models.list("classifier")
    run_id = int(args.run) if args.run else (runs[0]["id"] if runs else None)
    clf = args.classifier if args.classifier is not None else run_id

    def queues() -> dict:
        out = {"kNN raw pixels": noise_queue(project, args.label_set, run_id="pixels", k=args.k,
                                             include_agreeing=True)}
        if run_id is not None:
            out[f"kNN run {run_id} embeddings"] = noise_queue(project, args.label_set, run_id=run_id, k=args.k,
                                                              include_agreeing=True)
            out[f"kNN + classifier run {clf}"] = noise_queue(project, args.label_set, run_id=run_id,
                                                             classifier_run_id=clf, k=args.k,
                                                             include_agreeing=True)
        return out

    # Discarded (reject) clusters have no anatomical truth to disagree with: left out.
    scored = {i: c for i, c in given.items() if i in truth and names[c] in set(truth.values())}
    natural = {i for i, c in scored.items() if names[c] != truth[i]}
    _report("Natural cluster-label errors", queues(), natural, len(scored))

    rng = np.random.default_rng(0)
    clean = sorted(i for i in scored if i not in natural)
    flipped = set(rng.choice(clean, int(round(args.flip * len(scored))), replace=False).tolist())
    classes = sorted({c for c in scored.values()})
    by_class: dict[int, list[int]] = {}
    for i in flipped:
        by_class.setdefault(int(rng.choice([c for c in classes if c != scored[i]])), []).append(i)
    for c, ids in by_class.items():
        project.labels.set_labels(ids, set_id, c, source="cluster", audit=False)
    _report(f"Flipped on purpose ({args.flip:.0%} of the clean labels' count)", queues(), flipped, len(scored))
    print("  (the classifier and embeddings were trained before the flips: its opinion on them is "
          "closer to a clean model's than a retrained one would be)")
    project.close()
    shutil.rmtree(work.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
