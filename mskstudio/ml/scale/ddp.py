"""torchrun / DistributedDataParallel glue for the trainers.

A distributed job is the same ``mskstudio run-job P JOB`` command started N times by
``torch.distributed.run`` (torchrun), which sets RANK, WORLD_SIZE and LOCAL_RANK.  Rank 0
runs the job as usual: it opens the project writable, builds the data, writes the
read-only snapshot (snapshot.py) and broadcasts the training plan; it alone writes the
run row, checkpoints, metrics and job progress.  Every other rank runs ``worker.worker_main``:
it never opens the project, reads the snapshot memory-mapped, and trains its share.

Multi-node (the same snapshot reachable, or copied, on every node; the project on node 0)::

    mskstudio train P.mskproj LABELSET ... --submit-only      # prints JOB
    # node 0 (only it opens the project)
    torchrun --nnodes 2 --node-rank 0 --nproc-per-node 4 --rdzv-backend c10d \
        --rdzv-endpoint node0:29500 -m mskstudio run-job P.mskproj JOB
    # node 1: the same line with --node-rank 1 (the project is not opened there; set
    # MSKSTUDIO_SNAPSHOT_ROOT when the snapshot folder is copied to another path)

Collectives have a time limit (MSKSTUDIO_DDP_TIMEOUT_S, default 600 s: rank 0 may load a
large archive first), so a dead rank makes the others fail with an error instead of hanging.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from typing import Any

import numpy as np

TIMEOUT_ENV = "MSKSTUDIO_DDP_TIMEOUT_S"
# Fault injection for the tests only: rank R exits hard at the start of epoch E ("R:E").
DIE_ENV = "MSKSTUDIO_DDP_TEST_DIE"


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


def launched() -> bool:
    """True under torchrun with more than one process."""
    return world_size() > 1


def active() -> bool:
    """True once the process group is up (the trainers branch on this, not on the env)."""
    try:
        import torch.distributed as dist
    except ImportError:
        return False
    return dist.is_available() and dist.is_initialized()


def init_from_env(device_kind: str = "cpu"):
    """Start the process group (gloo on CPU, nccl on CUDA) once; return this rank's device."""
    import torch
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    device = torch.device("cuda", local) if device_kind == "cuda" else torch.device("cpu")
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                timeout=timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, "600"))))
    return device


def shutdown() -> None:
    if active():
        import torch.distributed as dist

        dist.destroy_process_group()


def broadcast(obj: Any = None) -> Any:
    """Rank 0's ``obj`` on every rank (pickled; for the plan, not for tensors)."""
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sums(values: list[float]) -> list[float]:
    """Element-wise sums over ranks (train loss/accuracy counters)."""
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def shard(items: list, r: int | None = None, n: int | None = None) -> list:
    r, n = rank() if r is None else r, world_size() if n is None else n
    return items[r::n]


def gather_sharded_rows(local: np.ndarray, n_total: int) -> np.ndarray:
    """Reassemble rows sharded with ``shard`` (rank r holds rows r, r+n, ...) on every rank."""
    import torch.distributed as dist

    parts: list[Any] = [None] * world_size()
    dist.all_gather_object(parts, local)
    width = next((p.shape[1] for p in parts if p is not None and p.ndim == 2), local.shape[1])
    out = np.zeros((n_total, width), np.float32)
    for r, part in enumerate(parts):
        out[r::len(parts)] = part
    return out


def wrap(module, device):
    """``module`` under DistributedDataParallel when the process group is up, else itself.

    The parameters stay the module's own, so optimisers built on ``module`` keep working and
    the checkpoint is the bare module's state."""
    if not active():
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)


def average_buffers(module) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over ranks, so every rank
    holds the same network after each rank recalibrated on its own share of the images."""
    if not active():
        return
    import torch.distributed as dist

    n = world_size()
    for buf in module.buffers():
        if buf.is_floating_point():
            dist.all_reduce(buf)
            buf.div_(n)


def all_reduce_mean(value: float, weight: float = 1.0) -> float:
    """Weighted mean of ``value`` over ranks (one rank: ``value``)."""
    if not active():
        return value
    s, w = all_reduce_sums([value * weight, weight])
    return s / w if w else float("nan")


def shuffled_loader(dataset, batch_size: int, *, seed: int, generator, device, workers: int = 0,
                    collate_fn=None):
    """(DataLoader, sampler or None) of a shuffled training set: on one process the loader
    shuffles with ``generator``; under DDP a DistributedSampler (seeded, ``set_epoch`` per
    epoch) hands each rank its share and the per-rank batch is ``batch_size / world size``,
    so the global batch (and the learning-rate schedule's step count) stays the same."""
    import torch

    sampler = torch.utils.data.DistributedSampler(dataset, shuffle=True, seed=int(seed)) if active() else None
    per_rank = max(1, int(batch_size) // (world_size() if sampler is not None else 1))
    n = len(sampler) if sampler is not None else len(dataset)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=per_rank, shuffle=sampler is None, sampler=sampler,
        generator=generator if sampler is None else None, drop_last=n > per_rank,
        num_workers=int(workers or 0), pin_memory=device.type == "cuda", collate_fn=collate_fn)
    return loader, sampler


class RankSlice:
    """A sampler that hands this rank its share of a sampler every rank draws identically.

    DistributedSampler shuffles ``range(N)``; a trainer with its own sampling (DeepCluster's
    uniform-over-clusters draw) keeps it: every rank draws the same indices from the same
    seed and takes every n-th from its rank on, cut to a multiple of n so every rank runs
    the same number of steps (DDP needs that)."""

    def __init__(self, base, r: int | None = None, n: int | None = None):
        self.base, self.r = base, rank() if r is None else r
        self.n = world_size() if n is None else n

    def __iter__(self):
        idx = list(iter(self.base))
        idx = idx[: len(idx) - len(idx) % self.n]
        return iter(idx[self.r::self.n])

    def __len__(self) -> int:
        return len(self.base) // self.n


def maybe_die(epoch: int) -> None:
    spec = os.environ.get(DIE_ENV)
    if spec:
        r, e = (int(v) for v in spec.split(":"))
        if r == rank() and e == epoch:
            os._exit(17)


def torchrun_argv(project: str, job_id: int, nproc: int, *, jsonl: bool = False) -> list[str]:
    """The command that runs job ``job_id`` on ``nproc`` local processes (one node)."""
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={int(nproc)}",
            "-m", "mskstudio", "run-job", str(project), str(int(job_id))]
    return argv + (["--jsonl"] if jsonl else [])


def auto_kind() -> str:
    """The device kind rank 0 picks for ``--device auto`` (the backends must agree)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
