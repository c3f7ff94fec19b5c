"""``--nproc N`` and ``--submit-only`` for every trainer: one launcher, any job kind.

The job is submitted once (rank 0 runs it from its row); ``torchrun`` starts N copies of
``mskstudio run-job P JOB``; the other ranks never open the project (ml/scale/worker.py).
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

from mskstudio.jobrun import UserError, check_params, run_sync


def add_distributed_options(p) -> None:
    p.add_argument("--nproc", type=int, default=1,
                   help="train with N processes on this machine (torchrun + DistributedDataParallel; "
                        "gloo on CPU, nccl on CUDA, one GPU per process)")
    p.add_argument("--submit-only", action="store_true",
                   help="only submit the job and print the torchrun commands that run it (multi-node)")


def run_maybe_distributed(project, kind: str, params: dict[str, Any], args, *, label: str) -> dict | None:
    """Run job ``kind`` here, under torchrun (``--nproc N``), or only submit it (``--submit-only``:
    prints the commands and returns None)."""
    if getattr(args, "submit_only", False):
        submit_only(project, kind, params)
        return None
    nproc = int(getattr(args, "nproc", 1) or 1)
    if nproc < 1:
        raise UserError(f"--nproc must be at least 1, not {nproc}")
    if nproc == 1:
        return run_sync(project, kind, params, label=label)
    return run_distributed(project, kind, params, nproc, device=params.get("device"))


def run_distributed(project, kind: str, params: dict[str, Any], nproc: int, *, device=None) -> dict:
    """Submit the job, run it under torchrun on ``nproc`` processes, return its result."""
    from mskstudio.ml.scale.ddp import torchrun_argv

    check_params(project, kind, params)
    job_id = project.jobs.submit(kind, params)
    cuda = str(device or "").startswith("cuda") or (device in (None, "auto") and _cuda())
    env = {**os.environ, "MSKSTUDIO_DDP_DEVICE": "cuda" if cuda else "cpu"}
    rc = subprocess.call(torchrun_argv(str(project.root), job_id, nproc), env=env)
    job = project.jobs.record(job_id)
    if rc != 0 or job is None or job.status != "done":
        status = job.status if job else "missing"
        raise UserError(f"distributed {kind} job {job_id} ended {status} (torchrun exit {rc})")
    return job.result


def submit_only(project, kind: str, params: dict[str, Any]) -> int:
    check_params(project, kind, params)
    job_id = project.jobs.submit(kind, params)
    root = project.root
    print(f"submitted {kind} job {job_id}; run it on one node with N processes:\n"
          f"  torchrun --standalone --nproc-per-node N -m mskstudio run-job {root} {job_id}\n"
          f"or on several nodes (node-rank 0 is the one holding the project; the others only read\n"
          f"the snapshot in {root / 'cache' / 'snapshots'}, or a copy named by MSKSTUDIO_SNAPSHOT_ROOT):\n"
          f"  torchrun --nnodes M --node-rank R --nproc-per-node N --rdzv-backend c10d "
          f"--rdzv-endpoint HOST0:29500 -m mskstudio run-job {root} {job_id}\n"
          f"or on a node without the project: copy the project folder there, run the same command\n"
          f"on the copy, bring the copy back and import its run as an ordinary run:\n"
          f"  mskstudio import-run {root} COPY.mskproj RUN")
    return job_id


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
