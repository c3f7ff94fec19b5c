"""A DeepCluster epoch and a classifier epoch against the bare torch loop for the same network
and shape, measured in the same run (issue 29's target: >= 0.85x the bare loop).

    .venv/bin/python tests/bench/bench_bare_loop.py [--images 600] [--size 96] [--k 30]
        [--batch-size 64] [--clf-batch-size 32] [--arch resnet18] [--epochs 2] [--channels-last]
        [--classifier-only]

``--channels-last`` adds a DeepCluster run in the contiguous layout, for the comparison.

DeepCluster: one epoch is a feature pass over the N images, k-means, a head warm-up, training
on ``samples_per_epoch`` x N images sampled uniformly over clusters (with augmentation) and a
BatchNorm recalibration pass; the bare loop is a feature pass over N images plus the same
number of SGD steps on in-memory tensors (no augmentation, no k-means, no recalibration).
Classifier: one epoch trains the fold's training images (with augmentation) and scores its
validation images; the bare loop does the same number of SGD steps and forward passes on
in-memory tensors.  Figures are images of the data set per second (N / epoch seconds), from
the epochs after the first (the first pays one-time costs), with the process CPU time beside
the wall time: the machine is shared, so CPU seconds say more than wall seconds.
Prints figures only.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def _clock():
    return time.perf_counter(), time.process_time()


def _since(t):
    w, c = _clock()
    return w - t[0], c - t[1]


def bare_deepcluster(args, n: int, samples: int, channels_last: bool) -> tuple[float, float]:
    """(wall s, CPU s) of one bare epoch: features of n images + ``samples`` training images."""
    import torch

    from mskstudio.ml.models import build_backbone, normalise

    torch.manual_seed(0)
    net, dim = build_backbone(args.arch)
    head = torch.nn.Linear(dim, args.k)
    x = torch.rand(n, 1, args.size, args.size)
    y = torch.randint(0, args.k, (n,))
    if channels_last:
        net, x = net.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(list(net.parameters()) + list(head.parameters()), lr=0.01, momentum=0.9)
    bs = args.batch_size
    t = _clock()
    net.eval()
    with torch.inference_mode():
        for a in range(0, n, bs):
            net(normalise(x[a:a + bs]))
    net.train()
    done = 0
    while done < samples:
        idx = torch.randint(0, n, (min(bs, samples - done),))
        loss = torch.nn.functional.cross_entropy(head(net(normalise(x[idx]))), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done += len(idx)
    return _since(t)


def bare_classifier(args, n_train: int, n_val: int, n_classes: int) -> tuple[float, float]:
    import torch

    from mskstudio.ml.classify.classifier import make_classifier

    torch.manual_seed(0)
    model = make_classifier(args.arch, n_classes)
    x = torch.rand(max(n_train, n_val), 1, args.size, args.size)
    y = torch.randint(0, n_classes, (len(x),))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    bs = args.clf_batch_size
    t = _clock()
    model.train()
    for a in range(0, n_train - bs + 1, bs):
        loss = torch.nn.functional.cross_entropy(model(x[a:a + bs]), y[a:a + bs])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    with torch.inference_mode():
        for a in range(0, n_val, bs):
            model(x[a:a + bs])
    return _since(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=600)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--k", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--clf-batch-size", type=int, default=32)
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--channels-last", action="store_true",
                    help="also run DeepCluster in the contiguous layout (its default is channels-last)")
    ap.add_argument("--classifier-only", action="store_true", help="skip DeepCluster")
    args = ap.parse_args()

    import torch

    from mskstudio.jobs import JobContext, RecordingSink
    from mskstudio.ml.cluster.deepcluster import DEFAULTS as DC
    from mskstudio.ml.cluster.deepcluster import run_cluster
    from mskstudio.ml.synthetic import add_synthetic_images
    from mskstudio.store import Project

    os.environ.setdefault("MSKSTUDIO_KEY_DIR", tempfile.mkdtemp())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores; "
          f"{args.images} images at {args.size} px, {args.arch}, load average {os.getloadavg()[0]:.1f}")
    root = Path(tempfile.mkdtemp()) / "bench.mskproj"
    with Project.create(root) as project:
        add_synthetic_images(project, args.images, seed=0, size=max(128, args.size), thumbnails=False)
        n = len(project.images.ids())
        samples = int(round(DC["samples_per_epoch"] * n))
        # DeepCluster trains channels-last by default (on the CPU too); "contiguous" turns it off.
        variants = [("channels-last", "1")] + ([("contiguous", "0")] if args.channels_last else [])
        if args.classifier_only:
            variants = []
        for name, cl in variants:
            os.environ["MSKSTUDIO_CHANNELS_LAST"] = cl
            sink = RecordingSink()
            t = _clock()
            run_cluster(project, {"epochs": args.epochs, "input_size": args.size, "k": args.k,
                                  "batch_size": args.batch_size, "init": "scratch", "device": "cpu"},
                        JobContext(sink))
            wall_all, cpu_all = _since(t)
            ep = [v for m, v, s in sink.metrics if m == "epoch_seconds"]
            dc = float(np.mean(ep[1:] or ep))
            cpu_per_epoch = cpu_all * dc / max(wall_all, 1e-9)  # the job's CPU share, spread over its wall time
            bw, bc = bare_deepcluster(args, n, samples, cl == "1")
            print(f"DeepCluster ({name}): epoch {dc:.1f} s = {n / dc:.1f} images/s "
                  f"(whole job {wall_all:.1f} s wall, {cpu_all:.1f} s CPU); bare loop {bw:.1f} s wall "
                  f"{bc:.1f} s CPU = {n / bw:.1f} images/s; ratio {bw / dc:.2f}x wall "
                  f"(CPU-time ratio about {bc / cpu_per_epoch:.2f}x)")
        os.environ.pop("MSKSTUDIO_CHANNELS_LAST", None)

        from mskstudio.jobrun import submit_and_run

        t = _clock()
        res = submit_and_run(project, "train", {"label_set": "region", "arch": args.arch, "size": args.size,
                                                "k": 2, "epochs": args.epochs, "batch_size": args.clf_batch_size,
                                                "seed": 0, "device": "cpu", "patience": 99, "n_boot": 50})
        wall_all, cpu_all = _since(t)
        run = project.models.record(res["model_run_id"])
        folds = run.metrics["main"]["folds"]
        split = run.split
        n_tr, n_va = len(split["folds"][0]["train"]), len(split["folds"][0]["val"])
        # Seconds per epoch from fold 0's epochs after the first (as DeepCluster's above): the
        # first pays one-time costs (importing torchvision, building the net, first allocations).
        # A run from before per-epoch seconds were recorded falls back to the fold's mean.
        per_epoch = [h["seconds"] for h in folds[0]["history"] if "seconds" in h]
        sec = (float(np.mean(per_epoch[1:] or per_epoch)) if per_epoch
               else folds[0]["seconds"] / folds[0]["epochs_run"])
        print(f"classifier fold 0: {folds[0]['seconds']:.1f} s for {folds[0]['epochs_run']} epochs "
              f"(epoch seconds {per_epoch})")
        bw, bc = bare_classifier(args, n_tr, n_va, len(run.metrics["classes"]))
        share = cpu_all / max(wall_all, 1e-9)
        print(f"classifier: fold 0 {n_tr} train + {n_va} val images, {sec:.1f} s/epoch = {(n_tr + n_va) / sec:.1f} "
              f"images/s (whole job {wall_all:.1f} s wall, {cpu_all:.1f} s CPU); bare loop {bw:.1f} s wall "
              f"{bc:.1f} s CPU = {(n_tr + n_va) / bw:.1f} images/s; ratio {bw / sec:.2f}x wall "
              f"(CPU-time ratio about {bc / (sec * share):.2f}x)")


if __name__ == "__main__":
    main()
