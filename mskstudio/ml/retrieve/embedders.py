"""The penultimate-layer network of a model run, as a torch module: what retrieval embeds
with and what the ONNX export ships as the run's embedder.

Its own module (not ``embeddings``) so ``deploy.onnx_export`` can load a run's embedder
while ``embeddings`` runs it through ONNX Runtime, without the two importing each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mskstudio.ml.classify.classifier import CHECKPOINT_FORMAT

if TYPE_CHECKING:
    import torch

    from mskstudio.store import Project


def classifier_trunk(project: Project, run_id: int) -> torch.nn.Module:
    """Penultimate features of a trained classifier: its fold models' encoders side by side.

    The folds learned different feature spaces, so their features are concatenated (and
    later L2-normalised as a whole) rather than averaged."""
    import torch

    from mskstudio.ml.classify.classifier import load_ensemble

    loaded = load_ensemble(project, run_id)
    stages = [loaded[k] for k in ("main", "stage1", "stage2") if k in loaded]
    encoders = [m.encoder for ens in stages for m in ens.models]

    class Trunk(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoders = torch.nn.ModuleList(encoders)

        def forward(self, x):  # x is already normalised by extract_features
            return torch.cat([e(x) for e in self.encoders], dim=1)

    trunk = Trunk().eval()
    trunk.feature_dim = sum(m.feature_dim for ens in stages for m in ens.models)
    trunk.arch, trunk.input_size = stages[0].arch, stages[0].size
    return trunk


def embedding_module(project: Project, run_id: int) -> torch.nn.Module:
    """The penultimate-layer network of a model run (DeepCluster backbone, classifier trunk …)."""
    from mskstudio.ml.models import build_backbone, load_backbone, load_checkpoint

    row = project.models.get(int(run_id))
    if row is None:
        raise ValueError(f"no model run {run_id}")
    ckpt = load_checkpoint(project, int(run_id))
    if isinstance(ckpt.get("backbone"), dict) and "arch" in ckpt and row["kind"] == "deepcluster":
        return load_backbone(project, int(run_id))
    if row["kind"] == "classifier" and ckpt.get("format") == CHECKPOINT_FORMAT:
        return classifier_trunk(project, int(run_id))
    arch = ckpt.get("arch") or ckpt.get("backbone_arch") or row["arch"]
    backbone, dim = build_backbone(arch)
    state = ckpt.get("backbone") if isinstance(ckpt.get("backbone"), dict) else None
    if state is None:
        full = ckpt.get("model") or ckpt.get("state_dict") or {}
        state = {k.removeprefix("backbone."): v for k, v in full.items() if k.startswith("backbone.")}
        if not state:  # a plain torchvision-style state dict: drop the head
            state = {k: v for k, v in full.items() if not k.startswith(("fc.", "head."))}
    missing, _ = backbone.load_state_dict(state, strict=False)
    if len(missing) > len(state):
        raise ValueError(f"model run {run_id}: checkpoint holds no backbone weights for {arch}")
    backbone.feature_dim, backbone.arch = dim, arch
    backbone.input_size = ckpt.get("input_size") or (ckpt.get("params") or {}).get("input_size")
    return backbone.eval()
