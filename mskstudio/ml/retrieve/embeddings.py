"""Per-image embeddings for retrieval: from a model run's penultimate layer, or raw pixels.

A *representation* is a model run id (``int``) or ``"pixels"`` (the baseline: the
analysis array letterboxed to ``PIXEL_SIZE`` squared, flattened, L2-normalised).

Model-run embeddings use the penultimate layer of the run's network, computed on
the ROI crop when the image has a mask or box (square box around it + 15 % margin),
else on the whole image — except for a classifier trained on whole images, which embeds
whole images (``sees_roi``): a crop it never saw lost it a third of its precision@5 on the
demo (0.441 against 0.656 on whole images, n=600); they are cached per run in ``cache/embeddings/run{id}.npy``
with ``run{id}.ids.npy`` and ``run{id}.json`` (derived, rebuilt on demand: missing
images are appended, a changed checkpoint rebuilds all).  Job kind ``embed``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mskstudio.io.analysis import load_analysis
from mskstudio.io.resume_marks import chunk_size
from mskstudio.jobs import JobContext
from mskstudio.ml.deploy.onnx_export import onnx_module_for_run
from mskstudio.ml.retrieve.embedders import embedding_module
from mskstudio.ml.retrieve.params import EmbedParams

if TYPE_CHECKING:

    from mskstudio.store import Project

PIXEL_SIZE = 32


def rep_key(rep: int | str | None) -> str:
    if rep is None or rep == "pixels" or rep == 0:
        return f"pixels{PIXEL_SIZE}"
    return f"run{int(rep)}"


def cache_files(project: Project, rep: int | str | None) -> tuple[Path, Path, Path]:
    key = rep_key(rep)
    base = project.cache_path("embeddings", f"{key}.npy")
    return base, base.with_name(f"{key}.ids.npy"), base.with_name(f"{key}.json")


# ---- ROI ---------------------------------------------------------------------------------
def roi_loader(project: Project):
    """A ``load(image_id) -> float32 array`` that crops to the ROI where one exists (the
    square around the image's masks and boxes + margin, as the classifier sees it)."""
    from mskstudio.ml.roi import crop_roi, image_roi_rect

    def load(image_id: int) -> np.ndarray:
        arr = load_analysis(project, image_id)
        rect = image_roi_rect(project, image_id, arr.shape)
        return crop_roi(arr, rect)[0] if rect is not None else arr

    return load


# ---- computing ------------------------------------------------------------------------------
def pixel_embeddings(project: Project, image_ids: Sequence[int], ctx: JobContext | None = None,
                     size: int = PIXEL_SIZE) -> np.ndarray:
    from mskstudio.ml.cluster.features import l2_normalise
    from mskstudio.ml.datasets import letterbox

    ctx = ctx or JobContext.null()
    out = np.empty((len(image_ids), size * size), np.float32)
    for i, image_id in enumerate(image_ids):
        if i % 32 == 0:
            ctx.check_cancelled()
            ctx.progress(i / max(len(image_ids), 1), f"pixels {i}/{len(image_ids)}")
        out[i] = letterbox(load_analysis(project, int(image_id)), size).ravel()
    ctx.progress(1.0, "pixels done")
    return l2_normalise(out)


def model_embeddings(project: Project, run_id: int, image_ids: Sequence[int],
                     ctx: JobContext | None = None, *, roi: bool = True, backend: str = "torch",
                     batch_size: int = 32) -> np.ndarray:
    from mskstudio.ml.cluster.features import extract_features
    from mskstudio.ml.datasets import AnalysisDataset

    ctx = ctx or JobContext.null()
    module = embedding_module(project, run_id)
    size = getattr(module, "input_size", None) or 224
    loader = roi_loader(project) if roi else None
    dataset = AnalysisDataset(project, image_ids, size, augment=None, preload=False, loader=loader)
    if backend == "onnx":

        module = onnx_module_for_run(project, run_id, module, size)
    return extract_features(project, module, image_ids, ctx, size=size, dataset=dataset,
                            batch_size=batch_size, device="cpu" if backend == "onnx" else None)


def compute(project: Project, rep: int | str | None, image_ids: Sequence[int],
            ctx: JobContext | None = None, **kw: Any) -> np.ndarray:
    if rep_key(rep).startswith("pixels"):
        return pixel_embeddings(project, image_ids, ctx)
    from mskstudio.ml.cluster.features import l2_normalise
    from mskstudio.ml.fuse.serve import clinical_block, run_fields_and_cv

    fused = run_fields_and_cv(project, int(rep))
    if fused is None:
        return l2_normalise(model_embeddings(project, int(rep), image_ids, ctx, **kw))
    # A fusion run, or a classifier trained with clinical data: the image embedding (of the
    # image run it fuses) beside that patient's standardised clinical columns, each block
    # L2-normalised, so image and clinical data weigh alike in the cosine distance.
    fields, cv_ids, image_run = fused
    image = l2_normalise(model_embeddings(project, image_run, image_ids, ctx, **kw))
    clinical = clinical_block(project, fields, cv_ids, image_ids)
    return l2_normalise(np.hstack([image, clinical]).astype(np.float32))


def sees_roi(project: Project, rep: int | str | None) -> bool:
    """Whether a run's network was trained on ROI crops (False: a classifier of whole images).
    Runs without that record (DeepCluster, embedders) keep the ROI crop."""
    if rep_key(rep).startswith("pixels"):
        return False
    row = project.models.get(int(rep))
    if row is None or row["kind"] != "classifier":
        return True
    try:
        params = json.loads(row["params"] or "{}")
    except (TypeError, ValueError):
        return True
    return params.get("input", "image") == "roi"


def _stamp(project: Project, rep: int | str | None, roi: bool) -> dict[str, Any]:
    if rep_key(rep).startswith("pixels"):
        return {"rep": rep_key(rep)}
    row = project.models.get(int(rep))
    return {"rep": rep_key(rep), "checkpoint_sha": row["checkpoint_sha"] if row else None, "roi": roi}


def load(project: Project, rep: int | str | None, image_ids: Sequence[int] | None = None,
         ctx: JobContext | None = None, *, roi: bool = True, backend: str = "torch",
         rebuild: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(L2-normalised embeddings [N, D], image ids [N]) covering ``image_ids`` (default: all).

    Reads the cache, computes only what is missing (everything when the checkpoint
    changed), and writes the cache back atomically.
    """
    ctx = ctx or JobContext.null()
    roi = roi and sees_roi(project, rep)  # the input the network was trained on
    wanted = [int(i) for i in (image_ids if image_ids is not None else project.images.ids())]
    emb_path, ids_path, meta_path = cache_files(project, rep)
    stamp = _stamp(project, rep, roi)
    x = ids = None
    if not rebuild and emb_path.exists() and ids_path.exists() and meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
            if all(meta.get(k) == v for k, v in stamp.items()):
                x, ids = np.load(emb_path), np.load(ids_path)
        except (OSError, ValueError):
            x = ids = None
    if rebuild:  # the old cache goes first: a killed rebuild, resumed, keeps only new rows
        for path in (emb_path, ids_path, meta_path):
            path.unlink(missing_ok=True)
    have = set(ids.tolist()) if ids is not None else set()
    missing = [i for i in wanted if i not in have]
    kw = {} if stamp["rep"].startswith("pixels") else {"roi": roi, "backend": backend}
    # The cache is written after every chunk (about a tenth of the images; each write rewrites
    # the whole array, hence no smaller pieces), so a killed job, resumed, computes only the rest.
    chunk = chunk_size(len(missing), lo=16, hi=8192)
    for a in range(0, len(missing), chunk):
        part = missing[a:a + chunk]
        sub = ctx.sub(a / len(missing), min(len(missing), a + chunk) / len(missing))
        new = compute(project, rep, part, sub, **kw)
        x = new if x is None or len(x) == 0 else np.concatenate([x, new])
        ids = (np.asarray(part, np.int64) if ids is None
               else np.concatenate([ids, part]).astype(np.int64))
        meta_path.unlink(missing_ok=True)  # no meta while the arrays disagree: a kill here drops the cache
        _save(emb_path, x)
        _save(ids_path, ids)
        meta_path.write_text(json.dumps({**stamp, "n": int(len(ids)), "dim": int(x.shape[1]),
                                         "backend": backend}))
    assert x is not None and ids is not None
    row = {int(i): r for r, i in enumerate(ids)}
    sel = np.fromiter((row[i] for i in wanted), np.int64, len(wanted))
    return x[sel], np.asarray(wanted, np.int64)


def _save(path: Path, array: np.ndarray) -> None:
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, array)
    tmp.replace(path)


def run_embed(project: Project, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Job ``embed``: params run_id (or "pixels"), roi (True), backend ("torch"|"onnx"), rebuild."""
    EmbedParams.from_json(params).check(project)
    rep = params.get("run_id", "pixels")
    # A resumed job (resume_of) keeps what the killed one cached, even when it was a rebuild:
    # the rebuild deleted the old cache before it wrote any new row.
    rebuild = bool(params.get("rebuild", False)) and not params.get("resume_of")
    ids_path = cache_files(project, rep)[1]
    if params.get("resume_of") and ids_path.exists():
        ctx.log(f"resuming: {len(np.load(ids_path))} embeddings were cached before the job stopped")
    x, ids = load(project, rep, None, ctx, roi=bool(params.get("roi", True)),
                  backend=params.get("backend", "torch"), rebuild=rebuild)
    emb_path, _, _ = cache_files(project, rep)
    return {"rep": rep_key(rep), "n": int(len(ids)), "dim": int(x.shape[1]) if x.ndim == 2 else 0,
            "path": str(emb_path)}
