"""Distributed classifier training on CPU: the data path with and without the snapshot, and
1 process vs 2 gloo processes.

    .venv/bin/python tests/bench/bench_ddp.py [--images 200] [--size 96] [--arch resnet18]
        [--batch-size 32] [--steps 12]

1. Data path (one process, no training): images/s of a training epoch's batches read
   (a) from the project, decoded and letterboxed per item (no preload),
   (b) from the memory-mapped read-only snapshot (ml/scale/snapshot.py),
   and the training step (forward+backward+SGD) alone on ready tensors, to show which bounds.
2. Scaling: the same DDP training loop (DistributedSampler over the snapshot, gloo) with 1
   and 2 processes, per-process batch fixed (weak scaling), 1 thread per process; prints
   images/s, the 2-process speed-up, scaling efficiency and the core count.
Prints figures only (no targets asserted; wall-clock figures depend on the machine's load).
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import time
from pathlib import Path

import numpy as np


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_loop(rank: int, world: int, port: int, snap_dir: str, args, out: str) -> None:
    import torch
    import torch.distributed as dist

    from mskstudio.ml.classify.classifier import make_classifier
    from mskstudio.ml.classify.train_loop import FoldData
    from mskstudio.ml.scale.snapshot import open_snapshot

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    base = FoldData.from_snapshot(open_snapshot(snap_dir), {"size": args.size, "augment": True})
    ds = base.subset(base.ids, base.target_of, train=True)
    sampler = torch.utils.data.distributed.DistributedSampler(ds, num_replicas=world, rank=rank, seed=0)
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, sampler=sampler, drop_last=True)
    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(make_classifier(args.arch, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    seen, t0, steps = 0, None, 0
    epoch = 0
    while steps < args.steps + 2:
        sampler.set_epoch(epoch)
        for x, y in loader:
            if steps == 2:  # warm-up steps are not timed
                dist.barrier()
                t0, seen = time.perf_counter(), 0
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(y)
            steps += 1
            if steps >= args.steps + 2:
                break
        epoch += 1
    dist.barrier()
    dt = time.perf_counter() - t0
    total = torch.tensor([float(seen)])
    dist.all_reduce(total)
    if rank == 0:
        Path(out).write_text(f"{total.item() / dt}")
    dist.destroy_process_group()


def scaling(snap_dir: str, args, world: int) -> float:
    import torch.multiprocessing as mp

    out = tempfile.mktemp(suffix=".txt")
    mp.spawn(_rank_loop, args=(world, _free_port(), snap_dir, args, out), nprocs=world, join=True)
    return float(Path(out).read_text())


def data_path(project, snap_dir: str, args) -> dict[str, float]:
    import torch

    from mskstudio.ml.classify.classifier import input_loader, make_classifier
    from mskstudio.ml.classify.train_loop import FoldData
    from mskstudio.ml.datasets import AnalysisDataset, Augment
    from mskstudio.ml.scale.snapshot import open_snapshot

    torch.set_num_threads(1)
    ids = sorted(project.images.ids())
    raw = AnalysisDataset(project, ids, args.size, augment=Augment(args.size, scale=(0.6, 1.0), vflip=0.0),
                          targets=[0] * len(ids), preload=False, loader=input_loader(project, "image", 0.1))
    snap = FoldData.from_snapshot(open_snapshot(snap_dir), {"size": args.size, "augment": True})
    snap_ds = snap.subset(snap.ids, snap.target_of, train=True)

    def rate(ds) -> float:
        loader = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, shuffle=True)
        t0, n = time.perf_counter(), 0
        for x, _ in loader:
            n += len(x)
        return n / (time.perf_counter() - t0)

    model = make_classifier(args.arch, 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(args.batch_size, 1, args.size, args.size)
    y = torch.randint(0, 4, (args.batch_size,))
    for _ in range(2):
        torch.nn.functional.cross_entropy(model(x), y).backward()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    step_rate = args.steps * args.batch_size / (time.perf_counter() - t0)
    return {"project_decode": rate(raw), "snapshot_mmap": rate(snap_ds), "train_step_only": step_rate}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=12)
    args = ap.parse_args()

    from mskstudio.ml.classify.classifier import input_loader
    from mskstudio.ml.datasets import AnalysisDataset
    from mskstudio.ml.scale.snapshot import write_snapshot
    from mskstudio.ml.synthetic import add_synthetic_images
    from mskstudio.store import Project

    tmp = Path(tempfile.mkdtemp())
    project = Project.create(tmp / "bench.mskproj")
    add_synthetic_images(project, args.images, seed=0, size=max(128, args.size * 2), thumbnails=False)
    ids = sorted(project.images.ids())
    ds = AnalysisDataset(project, ids, args.size, preload=True, loader=input_loader(project, "image", 0.1))
    t0 = time.perf_counter()
    ds.preload()
    snap = write_snapshot(project.cache_dir / "snapshots", ids, ds._cache, np.arange(len(ids)) % 4,
                          {"input": "image"})
    print(f"snapshot of {len(ids)} images at {args.size} px written in {time.perf_counter() - t0:.1f} s")

    rates = data_path(project, str(snap), args)
    print(f"data path (1 process, batch {args.batch_size}, augmented, images/s): "
          f"from the project {rates['project_decode']:.0f}, from the snapshot {rates['snapshot_mmap']:.0f} "
          f"({rates['snapshot_mmap'] / rates['project_decode']:.1f}x); "
          f"{args.arch} training step alone {rates['train_step_only']:.1f}")
    one = scaling(str(snap), args, 1)
    two = scaling(str(snap), args, 2)
    print(f"DDP gloo, {args.arch} {args.size} px, batch {args.batch_size} per process, 1 thread each: "
          f"1 process {one:.1f} images/s, 2 processes {two:.1f} images/s, speed-up {two / one:.2f}x, "
          f"scaling efficiency {two / (2 * one):.0%}, {os.cpu_count()} cores")
    project.close()


if __name__ == "__main__":
    main()
