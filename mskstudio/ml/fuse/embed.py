"""Out-of-fold image embeddings of a classifier run, the image input of late fusion and stacking
when ``image_input = "embedding"`` (instead of the run's probabilities).

Each fold model of the image run embeds (its encoder's penultimate features, on the run's
own input: whole image or ROI crop) only images it never trained on:

* a cross-validation image: the fold model that validated it (its OOF model), exactly as
  its out-of-fold probabilities were made;
* a hold-out (or new) image: every fold model, one *view* each.  The fold models learned
  different feature spaces, so the views are not averaged: the fusion learner scores each
  view and the probabilities are averaged (``crossfit.Design.test_views``).

The PCA that reduces them is fitted inside every fusion fit on that fit's rows only
(``crossfit.fit``).  ``plan`` says which fold model embedded which image; the tests check
that no fold model embeds an image it trained on.  Cached per image run in
``cache/fusion/run{ID}.embeddings.npz`` (derived; keyed by the checkpoint).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mskstudio.jobs import JobContext

if TYPE_CHECKING:
    from mskstudio.ml.fuse.image_run import ImageRun
    from mskstudio.store import Project


@dataclass
class OofEmbeddings:
    cv: np.ndarray                    # [n_cv, D]: each CV row by its own out-of-fold model
    test_views: list[np.ndarray]      # per fold model, [n_test, D]
    plan: dict[int, list[int]]        # fold model -> image ids it embedded


def fold_embeddings(project: Project, image_run: int, image_ids: Sequence[int],
                    ctx: JobContext | None = None, batch_size: int = 64) -> list[np.ndarray]:
    """[n_folds] x [N, D] penultimate features of ``image_ids`` by every fold model."""
    import torch

    from mskstudio.ml.classify.classifier import input_loader, load_ensemble
    from mskstudio.ml.datasets import AnalysisDataset, make_loader
    from mskstudio.ml.models import normalise

    ctx = ctx or JobContext.null()
    loaded = load_ensemble(project, int(image_run))
    if "main" not in loaded:
        raise ValueError(f"classifier run {image_run} is a two-stage cascade; embeddings need a flat run")
    ens = loaded["main"]
    ids = [int(i) for i in image_ids]
    ds = AnalysisDataset(project, ids, ens.size, augment=None, preload=False,
                         loader=input_loader(project, ens.input_mode, ens.margin))
    out: list[list[np.ndarray]] = [[] for _ in ens.models]
    done = 0
    with torch.inference_mode():
        for x, _ in make_loader(ds, batch_size=batch_size):
            ctx.check_cancelled()
            z = normalise(x)
            for f, m in enumerate(ens.models):
                out[f].append(m.eval().encoder(z).float().numpy())
            done += len(x)
            ctx.progress(done / max(len(ids), 1), f"embeddings {done}/{len(ids)}")
    dim = ens.models[0].feature_dim
    return [np.concatenate(parts) if parts else np.zeros((0, dim), np.float32) for parts in out]


def oof_embeddings(project: Project, ir: ImageRun, ctx: JobContext | None = None) -> OofEmbeddings:
    ctx = ctx or JobContext.null()
    cached = _read_cache(project, ir)
    if cached is not None:
        return cached
    folds = ir.split.get("folds", [])
    per_fold = fold_embeddings(project, ir.run_id, ir.cv_ids + ir.test_ids, ctx)
    if len(per_fold) != len(folds):
        raise ValueError(f"classifier run {ir.run_id}: {len(per_fold)} fold models for {len(folds)} folds")
    n_cv = len(ir.cv_ids)
    cv = np.stack([per_fold[int(f)][r] for r, f in enumerate(ir.fold)]) if n_cv else \
        np.zeros((0, per_fold[0].shape[1]), np.float32)
    plan = {f: [i for i, g in zip(ir.cv_ids, ir.fold, strict=True) if g == f] + list(ir.test_ids)
            for f in range(len(folds))}
    out = OofEmbeddings(cv.astype(np.float32), [e[n_cv:] for e in per_fold], plan)
    _write_cache(project, ir, out)
    return out


def embedding_views(project: Project, image_run: int, image_ids: Sequence[int],
                    ctx: JobContext | None = None) -> list[np.ndarray]:
    """New images: one view per fold model (none trained on them)."""
    return fold_embeddings(project, image_run, image_ids, ctx)


def _cache_file(project: Project, ir: ImageRun):
    return project.cache_path("fusion", f"run{ir.run_id}.embeddings.npz")


def _stamp(project: Project, ir: ImageRun) -> str:
    row = project.models.get(ir.run_id)
    return f"{row['checkpoint_sha']}:{len(ir.cv_ids)}:{len(ir.test_ids)}"


def _read_cache(project: Project, ir: ImageRun) -> OofEmbeddings | None:
    path = _cache_file(project, ir)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["stamp"]) != _stamp(project, ir):
                return None
            views = [z[f"test{f}"] for f in range(int(z["n_folds"]))]
            plan = {f: z[f"plan{f}"].tolist() for f in range(int(z["n_folds"]))}
            return OofEmbeddings(z["cv"], views, plan)
    except (OSError, ValueError, KeyError):
        return None


def _write_cache(project: Project, ir: ImageRun, e: OofEmbeddings) -> None:
    path = _cache_file(project, ir)
    tmp = path.with_name(path.stem + ".tmp.npz")
    arrays = {"cv": e.cv, "n_folds": np.asarray(len(e.test_views)), "stamp": np.asarray(_stamp(project, ir))}
    arrays.update({f"test{f}": v for f, v in enumerate(e.test_views)})
    arrays.update({f"plan{f}": np.asarray(ids, np.int64) for f, ids in e.plan.items()})
    np.savez(tmp, **arrays)
    tmp.replace(path)
