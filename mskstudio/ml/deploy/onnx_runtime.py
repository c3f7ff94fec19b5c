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
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    import torch

    from mskstudio.store import Project

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


def onnx_path_for_run(project: Project, run_id: int, role: str = "embedder") -> Path:
    return project.cache_path("onnx", f"run{int(run_id)}.{role}.onnx")


def ensure_onnx(project: Project, run_id: int, module: torch.nn.Module, size: int,
                role: str = "embedder") -> Path:
    """The run's exported ONNX file in the cache (exported on first use; derived data)."""
    from mskstudio.ml.deploy.onnx_export import export_onnx, wrap_for_export

    path = onnx_path_for_run(project, run_id, role)
    row = project.models.get(int(run_id))
    stamp = path.with_suffix(".sha")
    sha = (row["checkpoint_sha"] or "") if row else ""
    if not path.exists() or not stamp.exists() or stamp.read_text() != sha:
        export_onnx(wrap_for_export(module, role), path, size)
        stamp.write_text(sha)
    return path


def backend_for_run(project: Project, run_id: int, backend: str = "torch", *,
                    role: str = "embedder") -> tuple[Backend, int]:
    """(backend, input size) for a run's embedder (or classifier where role="classifier")."""
    from mskstudio.ml.deploy.onnx_export import load_run_module, wrap_for_export

    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    module, size, _ = load_run_module(project, run_id, role)
    if backend == "onnx":
        return OnnxBackend(ensure_onnx(project, run_id, module, size, role)), size
    return TorchBackend(wrap_for_export(module, role)), size


def onnx_module_for_run(project: Project, run_id: int, module: torch.nn.Module, size: int):
    """A torch-module look-alike running the ONNX embedder, for ``features.extract_features``
    (which feeds *normalised* batches: undone here since the ONNX graph normalises)."""
    import torch

    from mskstudio.ml.models import INPUT_MEAN, INPUT_STD

    backend = OnnxBackend(ensure_onnx(project, run_id, module, size, "embedder"))

    class _OnnxModule(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raw = (x * INPUT_STD + INPUT_MEAN).cpu().numpy()
            return torch.from_numpy(backend(raw))

    m = _OnnxModule()
    m.input_size = size
    m.feature_dim = getattr(module, "feature_dim", 0)
    return m


def describe() -> dict[str, Any]:
    import onnxruntime as ort

    return {"onnxruntime": ort.__version__, "providers": providers(), "threads": physical_cores()}
