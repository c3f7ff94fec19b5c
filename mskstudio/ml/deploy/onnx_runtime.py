"""Inference backends: torch eager or ONNX Runtime, chosen per call ("torch" | "onnx").

Both take what the exported models take: float32 ``[B, 1, S, S]`` letterboxed
analysis pixels in [0, 1] (normalisation is inside the network) and return a
numpy array (class probabilities for classifiers, penultimate features for
embedders, mask logits for segmenters).

ONNX Runtime sessions are built to share the machine with the GUI: intra-op
threads = physical cores, inter-op 1, ``session.intra_op.allow_spinning = 0``
(idle threads sleep instead of spinning).  The CUDA execution provider is asked
for only when ``torch.cuda.is_available()`` *and* ORT lists it; otherwise CPU only
(asking for CUDA on a machine without a GPU makes ORT log library errors).

A model run's backends (exported on first use into the cache) are built in
``onnx_export`` (``backend_for_run``, ``onnx_module_for_run``): this module only runs
graphs, so it imports nothing of the export or of retrieval.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    import torch

BACKENDS = ("torch", "onnx")


def physical_cores() -> int:
    """Physical cores (not hyper-threads) this process may use; falls back to the logical count."""
    logical = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        pairs, phys, core = set(), None, None
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("physical id"):
                    phys = line.split(":")[1].strip()
                elif line.startswith("core id"):
                    core = line.split(":")[1].strip()
                elif not line.strip() and core is not None:
                    pairs.add((phys, core))
                    core = None
        if core is not None:
            pairs.add((phys, core))
        if pairs:
            return max(1, min(len(pairs), logical))
    except OSError:
        pass
    return max(1, logical)


def providers() -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    want = ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in available:
        try:
            import torch

            if torch.cuda.is_available():
                want.insert(0, "CUDAExecutionProvider")
        except ImportError:
            pass
    return want


def make_session(path: str | Path, *, threads: int | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads or physical_cores())
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=so, providers=providers())


class Backend(Protocol):
    name: str

    def __call__(self, x: np.ndarray) -> np.ndarray: ...


class OnnxBackend:
    name = "onnx"

    def __init__(self, path: str | Path, *, threads: int | None = None):
        self.path = Path(path)
        self.session = make_session(self.path, threads=threads)
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float32)
        return self.session.run([self.output_name], {self.input_name: x})[0]


class TorchBackend:
    name = "torch"

    def __init__(self, module: torch.nn.Module, device: str | None = None):
        from mskstudio.ml.models import pick_device

        self.device = pick_device(device)
        self.module = module.to(self.device).eval()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self.module(torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(self.device))
        return out.float().cpu().numpy()


def describe() -> dict[str, Any]:
    import onnxruntime as ort

    return {"onnxruntime": ort.__version__, "providers": providers(), "threads": physical_cores()}
