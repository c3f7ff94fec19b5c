"""Export to ONNX with a parity check and a model card (job kind ``export-onnx``).

Exported graphs take float32 ``[B, 1, S, S]``: the analysis array letterboxed to S
(long side resized, short side padded with 0), values in [0, 1], bone bright.  The
fixed normalisation of ``models.normalise`` is inside the graph, and so is the
softmax of a classifier.  The batch axis is dynamic.

``export_run(project, run_id, outdir)`` exports a model run (DeepCluster backbone or
embedder -> embedder; classifier -> classifier and its embedder trunk; segmenter
when its checkpoint pickles the module), checks parity against torch on real
project images (max abs diff recorded) and writes ``model_card.json`` and
``model_card.md``.  ``export_module`` does the same for any ``torch.nn.Module``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mskstudio.io.analysis import load_analysis
from mskstudio.io.resume_marks import ResumeMarks
from mskstudio.jobs import JobContext
from mskstudio.ml.classify.classifier import CHECKPOINT_FORMAT
from mskstudio.ml.deploy.onnx_runtime import BACKENDS, Backend, OnnxBackend, TorchBackend
from mskstudio.ml.deploy.params import ExportOnnxParams
from mskstudio.ml.retrieve.embedders import embedding_module

if TYPE_CHECKING:
    import torch

    from mskstudio.store import Project

OPSET = 17
PARITY_TOL = 1e-4
ROLES = ("embedder", "classifier", "segmenter")


def wrap_for_export(module: torch.nn.Module, role: str = "embedder") -> torch.nn.Module:
    """``module`` with the input normalisation (and a classifier's softmax) baked in."""
    import torch

    from mskstudio.ml.models import INPUT_MEAN, INPUT_STD

    if getattr(module, "_mskstudio_wrapped", False):
        return module

    class Wrapped(torch.nn.Module):
        _mskstudio_wrapped = True

        def __init__(self, inner: torch.nn.Module):
            super().__init__()
            self.inner = inner
            self.clinical_dim = int(getattr(inner, "clinical_dim", 0) or 0)  # joint fusion: 2nd input

        def forward(self, x: torch.Tensor, *clinical: torch.Tensor) -> torch.Tensor:
            y = self.inner((x - INPUT_MEAN) / INPUT_STD, *clinical)
            if role == "classifier":
                return torch.softmax(y, dim=1)
            return torch.sigmoid(y) if role == "segmenter" else y

    return Wrapped(module).eval()


def export_onnx(module: torch.nn.Module, path: str | Path, size: int, *, opset: int = OPSET) -> Path:
    """Write ``module`` (already wrapped) as ONNX with a dynamic batch axis; atomically.

    A joint-fusion classifier (``clinical_dim`` > 0) gets a second input ``clinical``
    [batch, D]: the raw clinical vector (ml/fuse/joint.py), NaN where missing."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    module = module.cpu().eval()
    dummy: tuple = (torch.zeros(2, 1, size, size),)
    names, axes = ["image"], {"image": {0: "batch"}, "output": {0: "batch"}}
    dim = int(getattr(module, "clinical_dim", 0) or 0)
    if dim:
        dummy += (torch.zeros(2, dim),)
        names.append("clinical")
        axes["clinical"] = {0: "batch"}
    import warnings

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(module, dummy, str(tmp), input_names=names, output_names=["output"],
                          dynamic_axes=axes, opset_version=opset, dynamo=False)
    import onnx

    onnx.checker.check_model(str(tmp))
    tmp.replace(path)
    return path


def parity(module: torch.nn.Module, onnx_path: str | Path, x: np.ndarray,
           clinical: np.ndarray | None = None) -> dict[str, Any]:
    """Max abs difference between torch (CPU, fp32) and ONNX Runtime on the same batch
    (and, for a joint-fusion classifier, the same clinical vectors)."""
    import torch

    x = np.ascontiguousarray(x, np.float32)
    extra = () if clinical is None else (np.ascontiguousarray(clinical, np.float32),)
    with torch.inference_mode():
        ref = module.cpu().eval()(torch.from_numpy(x), *map(torch.from_numpy, extra)).numpy()
    if extra:
        from mskstudio.ml.deploy.onnx_runtime import make_session

        got = make_session(onnx_path).run(None, {"image": x, "clinical": extra[0]})[0]
    else:
        got = OnnxBackend(onnx_path)(x)
    diff = float(np.abs(ref - got).max()) if ref.size else 0.0
    return {"max_abs_diff": diff, "n": int(len(x)), "shape": list(got.shape), "ok": diff < PARITY_TOL,
            "tolerance": PARITY_TOL}


def sample_inputs(project: Project, size: int, n: int = 8, image_ids: Sequence[int] | None = None
                  ) -> tuple[np.ndarray, list[int]]:
    """Up to ``n`` real project images, letterboxed, [n, 1, size, size] in [0, 1]."""
    from mskstudio.ml.datasets import letterbox

    ids = list(image_ids if image_ids is not None else project.images.ids())[:n]
    x = np.stack([letterbox(load_analysis(project, i), size)[None] for i in ids]) if ids else \
        np.zeros((0, 1, size, size), np.float32)
    return x.astype(np.float32), [int(i) for i in ids]


# ---- model runs -------------------------------------------------------------------------
def _classifier_module(ckpt: dict[str, Any], arch: str) -> tuple[torch.nn.Module, list[str]]:
    """Backbone + linear head from a classifier checkpoint.

    Accepted layouts: a pickled module under ``"module"``; or ``"backbone"`` and ``"head"``
    state dicts; or one ``"model"``/``"state_dict"`` with ``backbone.*`` and ``head.*``/``fc.*``.
    Classes come from ``"classes"`` (names) or the head's output size.
    """
    import torch

    from mskstudio.ml.models import build_backbone

    classes = [str(c) if not isinstance(c, dict) else str(c.get("name")) for c in ckpt.get("classes", [])]
    if isinstance(ckpt.get("module"), torch.nn.Module):
        return ckpt["module"].eval(), classes
    full = ckpt.get("model") or ckpt.get("state_dict") or {}
    bb = ckpt.get("backbone") if isinstance(ckpt.get("backbone"), dict) else \
        {k.removeprefix("backbone."): v for k, v in full.items() if k.startswith("backbone.")}
    head = ckpt.get("head") if isinstance(ckpt.get("head"), dict) else \
        {k.split(".", 1)[1]: v for k, v in full.items() if k.startswith(("head.", "fc."))}
    if not head or "weight" not in head:
        raise ValueError(
            "classifier checkpoint: no head weights found (expected 'head' or 'model' with head.*)")
    backbone, dim = build_backbone(arch)
    backbone.load_state_dict(bb)
    n_out = head["weight"].shape[0]
    lin = torch.nn.Linear(dim, n_out)
    lin.load_state_dict(head)
    return torch.nn.Sequential(backbone, lin).eval(), classes or [str(i) for i in range(n_out)]


def _fold_ensemble(project: Project, run_id: int) -> tuple[torch.nn.Module, int, list[str]]:
    """A trained classifier run as one module: the mean of its fold models' logits.

    Takes normalised input (``wrap_for_export`` adds the normalisation), so it calls each
    fold's encoder and head directly instead of ``forward``, which normalises itself."""
    import torch

    from mskstudio.ml.classify.classifier import load_ensemble

    loaded = load_ensemble(project, run_id)
    if "main" not in loaded:
        raise ValueError(f"model run {run_id} is a two-stage cascade; export of cascades is not supported")
    ens = loaded["main"]

    class FoldMean(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.folds = torch.nn.ModuleList(ens.models)

        def forward(self, x, clinical=None):
            return torch.stack([m.head(m.fuse(m.encoder(x), clinical)) for m in self.folds]).mean(0)

    module = FoldMean().eval()
    module.clinical_dim = len(ens.clinical["columns"]) if ens.clinical else 0
    module.clinical_spec = ens.clinical
    return module, int(ens.size), list(ens.class_names)


def load_run_module(project: Project, run_id: int, role: str = "embedder"
                    ) -> tuple[torch.nn.Module, int, dict[str, Any]]:
    """(unwrapped module, input size, metadata) of a model run for ``role``."""
    import torch

    from mskstudio.ml.models import load_checkpoint

    row = project.models.get(int(run_id))
    if row is None:
        raise ValueError(f"no model run {run_id}")
    if row["kind"] == "fusion":
        raise ValueError(f"model run {run_id} is a fusion run (a scikit-learn learner over classifier run "
                         f"{row['parent_run_id']}'s scores), not a network; export that classifier run, or "
                         "train a joint-fusion classifier (train --fusion joint), whose ONNX takes the "
                         "image and the clinical vector")
    ckpt = load_checkpoint(project, int(run_id))
    size = int(ckpt.get("input_size") or (ckpt.get("params") or {}).get("input_size") or 224)
    meta: dict[str, Any] = {"run_id": int(run_id), "kind": row["kind"], "arch": row["arch"], "classes": []}
    if role == "embedder":
        module = embedding_module(project, int(run_id))
        meta["feature_dim"] = getattr(module, "feature_dim", None)
        return module, int(getattr(module, "input_size", None) or size), meta
    if role == "classifier" and ckpt.get("format") == CHECKPOINT_FORMAT:
        module, size, meta["classes"] = _fold_ensemble(project, int(run_id))
        if module.clinical_spec:
            meta["clinical_input"] = module.clinical_spec
        return module, size, meta
    if role == "classifier":
        module, classes = _classifier_module(ckpt, ckpt.get("arch") or row["arch"])
        meta["classes"] = classes
        return module, size, meta
    if role == "segmenter":
        if isinstance(ckpt.get("module"), torch.nn.Module):
            return ckpt["module"].eval(), size, meta
        if "state_dict" in ckpt and "arch" in ckpt:  # what train-seg writes
            from mskstudio.ml.segment.train import load_segmenter

            return load_segmenter(project, int(run_id))[0], size, meta
        raise ValueError(f"model run {run_id}: segmenter checkpoints without a pickled 'module' are "
                         "not supported yet; use export_module(segmenter, ...)")
    raise ValueError(f"unknown role {role!r}; known: {', '.join(ROLES)}")


# ---- a run's backends, exported on first use into the cache (derived data) ----------------
def onnx_path_for_run(project: Project, run_id: int, role: str = "embedder") -> Path:
    return project.cache_path("onnx", f"run{int(run_id)}.{role}.onnx")


def ensure_onnx(project: Project, run_id: int, module: torch.nn.Module, size: int,
                role: str = "embedder") -> Path:
    """The run's exported ONNX file in the cache (exported on first use; derived data)."""
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


def roles_for_kind(kind: str) -> list[str]:
    return {"deepcluster": ["embedder"], "embedder": ["embedder"],
            "classifier": ["classifier", "embedder"], "segmenter": ["segmenter"]}.get(kind, ["embedder"])


def export_module(module: torch.nn.Module, outdir: str | Path, *, role: str, size: int,
                  name: str = "model", sample: np.ndarray | None = None,
                  card: dict[str, Any] | None = None, clinical: np.ndarray | None = None) -> dict[str, Any]:
    """Export one module as ``outdir/name.onnx`` with parity on ``sample`` (and ``clinical``,
    the sample's clinical vectors, for a joint-fusion classifier); returns its record."""
    outdir = Path(outdir)
    wrapped = wrap_for_export(module, role)
    t0 = time.perf_counter()
    path = export_onnx(wrapped, outdir / f"{name}.onnx", size)
    dim = wrapped.clinical_dim
    record: dict[str, Any] = {"file": path.name, "role": role, "opset": OPSET, "input": "image",
                              "inputs": ["image", "clinical"] if dim else ["image"],
                              "input_shape": ["batch", 1, size, size], "output": "output",
                              "export_s": round(time.perf_counter() - t0, 2),
                              "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    if dim:
        record["clinical_shape"] = ["batch", dim]
    if sample is None:
        sample = np.random.default_rng(0).random((2, 1, size, size), dtype=np.float32)
        record["parity_inputs"] = "random"
    if dim and (clinical is None or len(clinical) != len(sample)):
        clinical = np.random.default_rng(1).normal(size=(len(sample), dim)).astype(np.float32)
        record["parity_clinical"] = "random"
    record["parity"] = parity(wrapped, path, sample, clinical if dim else None)
    if card is not None:
        card.setdefault("files", []).append(record)
    return record


def data_summary(project: Project, row) -> dict[str, Any]:
    """Training data hash, label counts and split of a model run, from its row."""
    out: dict[str, Any] = {"data_hash": row["data_hash"], "label_set": None, "label_counts": {}}
    if row["label_set_id"] is not None:
        out["label_set"] = project.labels.label_set_name(row["label_set_id"])
        out["label_counts"] = project.labels.counts(row["label_set_id"])
        if not out["data_hash"]:
            eff = project.labels.effective(row["label_set_id"])
            out["data_hash"] = "sha256:" + hashlib.sha256(
                json.dumps(sorted(eff.items())).encode()).hexdigest()
    split = json.loads(row["split"]) if row["split"] else None
    if split:
        out["split"] = {"holdout": split.get("holdout"), "seed": split.get("seed"), "k": split.get("k"),
                        "n_test": len(split.get("test", [])),
                        "patients": len(split.get("patients", {}))}
    else:
        out["split"] = None
    return out


INTENDED_USE = ("Research and decision support for musculoskeletal radiographs inside mskstudio: "
                "ranking, triage of labels and retrieval of similar cases for a human reader. "
                "Not a medical device; not for diagnosis without a qualified reader.")
LIMITS = ("Trained on the data of one project; performance on other centres, devices, age groups "
          "or anatomical regions is unknown until measured there. Inputs must follow the "
          "preprocessing exactly (16-bit analysis array, letterbox, [0, 1], one channel). "
          "Metrics are estimates with the intervals shown; classes absent from training are never predicted.")


def model_card(project: Project, run_id: int, files: list[dict[str, Any]],
               meta: dict[str, Any]) -> dict[str, Any]:
    row = project.models.get(int(run_id))
    metrics = json.loads(row["metrics"]) if row["metrics"] else {}
    task = {"classifier": "image classification", "segmenter": "lesion segmentation",
            "deepcluster": "image embedding (self-supervised DeepCluster backbone)",
            "embedder": "image embedding"}.get(row["kind"], row["kind"])
    size = files[0]["input_shape"][-1] if files else None
    return {
        "name": row["name"], "model_run_id": int(run_id), "kind": row["kind"], "task": task,
        "arch": row["arch"], "classes": meta.get("classes", []), "created_at": row["created_at"],
        "preprocessing": {"input": f"float32 [batch, 1, {size}, {size}]",
                          "steps": ["modality LUT to the 16-bit analysis array (bone bright, MONOCHROME1 "
                                    "inverted)", "scale to [0, 1]",
                                    f"letterbox: long side resized to {size} (antialiased), "
                                    "short side padded with 0",
                                    "normalisation (x - 0.5) / 0.25 is inside the graph"],
                          "roi": "embedders: square crop around the mask/box + 15 % margin when one exists"},
        "training_data": data_summary(project, row), "metrics": metrics,
        "intended_use": INTENDED_USE, "limits": LIMITS, "files": files,
        **({"clinical_input": meta["clinical_input"]} if meta.get("clinical_input") else {}),
        "exported_by": project.author, "project": project.name,
    }


def _fmt(v: Any) -> str:
    """A metric for people: value with its 95 % CI and n where the record has them."""
    if isinstance(v, dict) and ("value" in v or "mean" in v):
        value = v.get("value", v.get("mean"))
        ci = v.get("ci") or v.get("ci95")
        n = f", n = {v['n']}" if "n" in v else ""
        return f"{value:.3g}" + (f" (95 % CI {ci[0]:.3g} – {ci[1]:.3g}{n})" if ci else n)
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _metric_lines(metrics: dict[str, Any]) -> list[str]:
    """Headline metrics in Markdown; the JSON card keeps the full record (curves, arrays)."""
    hold = metrics.get("holdout")
    if isinstance(hold, dict) and "accuracy" in hold:  # a classifier's hold-out report
        lines = [f"Hold-out (patients never used in training), n = {hold.get('n')}:", "",
                 f"- accuracy: {_fmt(hold['accuracy'])}", f"- top-2 accuracy: {_fmt(hold['top2_accuracy'])}"]
        macro = hold.get("macro", {})
        if "auc" in macro:
            lines.append(f"- macro one-vs-rest AUC: {_fmt(macro['auc'])}")
        lines += ["", "| class | n | sensitivity | specificity | PPV | F1 |", "|---|---|---|---|---|---|"]
        for name, c in hold.get("per_class", {}).items():
            lines.append(f"| {name} | {c['support']} | {_fmt(c['sensitivity'])} | {_fmt(c['specificity'])} "
                         f"| {_fmt(c['ppv'])} | {_fmt(c['f1'])} |")
        return lines
    out = []
    for key, value in metrics.items():  # e.g. a segmenter's IoU/Dice, a DeepCluster run's NMI
        if isinstance(value, (int, float, str)) or (isinstance(value, dict) and ("value" in value or "mean" in value)):
            out.append(f"- {key}: {_fmt(value)}")
        elif isinstance(value, dict):
            flat = {k: v for k, v in value.items() if isinstance(v, (int, float))}
            if flat:
                out.append(f"- {key}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in flat.items()))
    return out


def card_markdown(card: dict[str, Any]) -> str:
    td = card["training_data"]
    lines = [f"# Model card: {card['name']}", "",
             f"- **Task:** {card['task']}", f"- **Architecture:** {card['arch']}",
             f"- **Model run:** {card['model_run_id']} ({card['kind']}), created {card['created_at']}",
             f"- **Classes:** {', '.join(card['classes']) or '—'}", "", "## Preprocessing", "",
             f"Input {card['preprocessing']['input']}.", ""]
    lines += [f"1. {s}" for s in card["preprocessing"]["steps"]]
    lines += ["", f"ROI: {card['preprocessing']['roi']}", ""]
    if card.get("clinical_input"):
        from mskstudio.ml.fuse.joint import card_section

        lines += card_section(card["clinical_input"])
    lines += ["## Training data", "",
              f"- Data hash: `{td['data_hash']}`", f"- Label set: {td['label_set']}",
              "- Label counts: " + (", ".join(f"{k}: {v}" for k, v in td["label_counts"].items()) or "—"),
              f"- Split: {json.dumps(td['split']) if td['split'] else '—'}", "", "## Metrics", ""]
    lines += _metric_lines(card["metrics"]) or ["No metrics recorded for this run."]
    lines += ["", "## Files", "",
              "| file | role | parity max abs diff | n | sha256 |", "|---|---|---|---|---|"]
    for f in card["files"]:
        p = f["parity"]
        lines.append(f"| {f['file']} | {f['role']} | {p['max_abs_diff']:.2e} | {p['n']} "
                     f"| {f['sha256'][:12]}… |")
    lines += ["", "## Intended use", "", card["intended_use"], "", "## Limits", "", card["limits"], ""]
    return "\n".join(lines)


def export_run(project: Project, run_id: int, outdir: str | Path, ctx: JobContext | None = None, *,
               roles: Sequence[str] | None = None, n_parity: int = 8,
               marks: ResumeMarks | None = None) -> dict[str, Any]:
    """Every role of a run as ONNX with parity, and the model card.  ``marks``: roles the
    killed job this one resumes exported (file still there, same sha256) are kept."""
    ctx = ctx or JobContext.null()
    marks = marks or ResumeMarks(None)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    row = project.models.get(int(run_id))
    if row is None:
        raise ValueError(f"no model run {run_id}")
    roles = list(roles or roles_for_kind(row["kind"]))
    files, meta_all = [], {}
    for i, role in enumerate(roles):
        ctx.check_cancelled()
        module, size, meta = load_run_module(project, run_id, role)
        meta_all.update({k: v for k, v in meta.items() if v})
        rec = marks.get(role)
        if rec is None or not _same_file(outdir / rec["file"], rec["sha256"]):
            x, ids = sample_inputs(project, size, n_parity)
            clinical = None
            if getattr(module, "clinical_spec", None) and ids:  # joint fusion: the same images' vectors
                from mskstudio.ml.fuse.joint import clinical_vectors

                clinical = clinical_vectors(project, ids, module.clinical_spec)
            rec = export_module(module, outdir, role=role, size=size, name=f"run{run_id}_{role}",
                                sample=x if len(x) else None, clinical=clinical)
            rec["parity_image_ids"] = ids
            marks.add({role: rec})
        files.append(rec)
        ctx.progress((i + 1) / len(roles), f"exported {role}")
    card = model_card(project, run_id, files, meta_all)
    (outdir / "model_card.json").write_text(json.dumps(card, indent=2, default=str))
    (outdir / "model_card.md").write_text(card_markdown(card))
    project.audit("model_run.export_onnx", "model_run", int(run_id),
                  {"outdir": str(outdir), "files": [f["file"] for f in files],
                   "max_abs_diff": max(f["parity"]["max_abs_diff"] for f in files)})
    return {"outdir": str(outdir), "files": files, "card": str(outdir / "model_card.md")}


def _same_file(path: Path, sha: str) -> bool:
    return path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == sha


def run_export_onnx(project: Project, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Job ``export-onnx``: params run_id, outdir, roles (optional), n_parity (8).  Resumed
    (``resume_of``), it keeps the roles the killed job exported."""
    p = ExportOnnxParams.from_json(params).check(project)
    marks = ResumeMarks.for_job(project, ctx.job_id, params, signature={
        "run": int(p.model_run_id), "outdir": str(p.outdir), "roles": params.get("roles"),
        "n_parity": int(params.get("n_parity", 8)),
        "checkpoint": project.models.get(int(p.model_run_id))["checkpoint_sha"]})
    if marks.resumed:
        ctx.log(f"resuming: {', '.join(marks.done)} exported before the job stopped")
    result = export_run(project, int(p.model_run_id), p.outdir, ctx, marks=marks,
                        roles=params.get("roles"), n_parity=int(params.get("n_parity", 8)))
    marks.finish()
    return result
