"""ONNX Runtime (CPU) vs torch eager: resnet18, 1 channel, 224 px, batch 8, one process.

    .venv/bin/python tests/bench/bench_onnx.py [--quick] [--threads N]

Both use the same thread count (physical cores); ORT with allow_spinning = 0.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def bench(fn, x, reps: int) -> float:
    fn(x)
    fn(x)
    t0 = time.perf_counter()
    for _ in range(reps):
        fn(x)
    return (time.perf_counter() - t0) / reps * 1000


def main() -> None:
    import torch

    from mskstudio.ml.deploy.onnx_export import export_onnx, parity, wrap_for_export
    from mskstudio.ml.deploy.onnx_runtime import OnnxBackend, TorchBackend, physical_cores
    from mskstudio.ml.models import build_backbone

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=physical_cores())
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    reps = 3 if args.quick else 10
    torch.manual_seed(0)
    net, _ = build_backbone("resnet18")
    head = torch.nn.Sequential(net, torch.nn.Linear(512, 4)).eval()
    model = wrap_for_export(head, "classifier")
    x = np.random.default_rng(0).random((args.batch, 1, args.size, args.size), dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, Path(tmp) / "r18.onnx", args.size)
        ort_b = OnnxBackend(path, threads=args.threads)
        torch_b = TorchBackend(model, device="cpu")
        p = parity(model, path, x)
        t_torch = bench(torch_b, x, reps)
        t_ort = bench(ort_b, x, reps)
    print(f"resnet18 1ch {args.size}px batch {args.batch}, threads {args.threads}, reps {reps}")
    print(f"torch eager  {t_torch:8.1f} ms/batch")
    print(f"onnxruntime  {t_ort:8.1f} ms/batch")
    print(f"speed-up     {t_torch / t_ort:8.2f}x  (target >= 1.5x)   parity max abs diff {p['max_abs_diff']:.2e}")


if __name__ == "__main__":
    main()
