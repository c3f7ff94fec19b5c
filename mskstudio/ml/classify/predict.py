"""Apply a trained classifier (fold ensemble, or cascade) to images and store the predictions.

``run_predict(project, {"model_run": id, "image_ids": [...] | None}, ctx)`` is the
job of kind ``"predict"``.  Each image gets a ``predictions`` row (class, confidence,
probabilities JSON {class_id: p}, ``rejected``) and, unless ``label`` is false, a
``model``-source label in the run's label set (``run_id`` = the model run) so the
prediction shows in filters.  A model label never overrides a human, imported or
cluster label (labels precedence).  A rejected image (out of distribution) gets the
label set's reject class when it has one, else no model label.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mskstudio.jobs import JobContext
from mskstudio.ml.classify.params import PredictParams
from mskstudio.ml.evaluate.metrics import softmax

if TYPE_CHECKING:
    from mskstudio.store import Project


def _ensemble_probs(project: Project, ens, image_ids: Sequence[int], ctx: JobContext,
                    batch_size: int, device) -> np.ndarray:
    import torch

    from mskstudio.ml.classify.classifier import input_loader
    from mskstudio.ml.datasets import AnalysisDataset, make_loader

    ds = AnalysisDataset(project, image_ids, ens.size, augment=None, preload=False,
                         loader=input_loader(project, ens.input_mode, ens.margin))
    models = [m.to(device).eval() for m in ens.models]
    clinical = ens.clinical_vectors(project, image_ids)  # joint fusion: the patient's clinical vector
    out, conf, done = [], [], 0
    cuda = device.type == "cuda"
    with torch.inference_mode():
        for x, _ in make_loader(ds, batch_size=batch_size, device=device):
            ctx.check_cancelled()
            x = x.to(device)
            c = None if clinical is None else torch.from_numpy(clinical[done:done + len(x)]).to(device)
            with torch.autocast(device.type, enabled=cuda):
                each = torch.stack([m(x, c).float() for m in models])
            out.append(each.mean(0).cpu().numpy())
            # The reject score: mean of the fold models' own max-softmax, which is what the
            # threshold was chosen on (the ensemble's averaged softmax is flatter).
            conf.append(each.softmax(-1).amax(-1).mean(0).cpu().numpy())
            done += len(x)
            ctx.progress(done / max(len(ds), 1), f"predict {done}/{len(ds)}")
    n_cls = len(ens.class_ids)
    if not out:
        return np.zeros((0, n_cls)), np.zeros(0)
    return softmax(np.concatenate(out)), np.concatenate(conf)


def predict_probs(project: Project, model_run_id: int, image_ids: Sequence[int],
                  ctx: JobContext | None = None, *, batch_size: int = 32,
                  device: str | None = None, operating_point: bool = True,
                  loaded: dict[str, Any] | None = None) -> dict[str, Any]:
    """{"class_ids", "class_names", "probs" [N, C], "rejected" [N] bool} for ``image_ids``.

    A classifier run (image-only, or joint fusion: image + the patient's clinical vector),
    or a fusion run (late fusion or stacking: its image run's prediction + the patient's
    clinical features through the fusion learner, ``ml/fuse/serve.py``).
    ``loaded``: the run's ``load_ensemble`` result, when the caller predicts in chunks."""
    from mskstudio.ml.classify.classifier import load_ensemble
    from mskstudio.ml.evaluate.metrics import cascade_predict, cascade_probs
    from mskstudio.ml.models import pick_device

    ctx = ctx or JobContext.null()
    row = project.models.get(int(model_run_id))
    if row is not None and row["kind"] == "fusion":
        from mskstudio.ml.fuse.serve import fusion_probs

        def image_predict(image_run: int, ids: list[int], sub: JobContext) -> dict[str, Any]:
            return predict_probs(project, image_run, ids, sub, batch_size=batch_size, device=device,
                                 operating_point=False)  # the learner was trained on raw scores

        return fusion_probs(project, int(model_run_id), image_ids, image_predict, ctx)
    dev = pick_device(device)
    loaded = loaded or load_ensemble(project, model_run_id)
    ids = [int(i) for i in image_ids]
    if loaded["kind"] == "cascade":
        p1, _ = _ensemble_probs(project, loaded["stage1"], ids, ctx.sub(0, 0.5), batch_size, dev)
        p2, _ = _ensemble_probs(project, loaded["stage2"], ids, ctx.sub(0.5, 1), batch_size, dev)
        probs = cascade_probs(p1[:, 1], p2)
        pred = cascade_predict(p1[:, 1], p2, loaded["cascade_threshold"])
        return {"class_ids": loaded["class_ids"], "class_names": loaded["class_names"],
                "probs": probs, "pred": pred, "rejected": np.zeros(len(ids), bool),
                "reject_class_id": None}
    ens = loaded["main"]
    probs, confidence = _ensemble_probs(project, ens, ids, ctx, batch_size, dev)
    pred = probs.argmax(1) if len(probs) else np.zeros(0, int)
    if ens.reject_index is not None:
        rejected = pred == ens.reject_index
    elif ens.threshold is not None:
        rejected = confidence < ens.threshold
    else:
        rejected = np.zeros(len(ids), bool)
    reject_class = ens.class_ids[ens.reject_index] if ens.reject_index is not None else None
    # An operating point chosen on validation (mskstudio operating-point) replaces argmax.
    op = project.models.metrics(model_run_id).get("operating_point") if operating_point else None
    if op:
        from mskstudio.ml.evaluate.calibration import apply_operating_point

        probs, pred = apply_operating_point(probs, ens.class_names, op)
    return {"class_ids": ens.class_ids, "class_names": ens.class_names, "probs": probs,
            "pred": pred, "rejected": rejected, "reject_class_id": reject_class,
            "operating_point": {k: op[k] for k in ("positive", "threshold", "temperature")} if op else None}


def store_predictions(project: Project, model_run_id: int, image_ids: Sequence[int],
                      result: dict[str, Any]) -> int:
    """Write ``predictions`` rows (replacing this run's earlier ones for these images)."""
    class_ids = result["class_ids"]
    rows = []
    for k, image_id in enumerate(image_ids):
        probs = result["probs"][k]
        j = int(result["pred"][k])
        rows.append((int(image_id), int(class_ids[j]), float(probs[j]),
                     json.dumps({str(c): round(float(q), 6) for c, q in zip(class_ids, probs, strict=True)}),
                     int(bool(result["rejected"][k]))))
    return project.models.save_predictions(model_run_id, rows)


def predictions(project: Project, model_run_id: int) -> list[dict[str, Any]]:
    """Stored predictions of a run (probs decoded to {class_id: p})."""
    out = []
    for r in project.models.predictions(model_run_id):
        d = dict(r)
        d["probs"] = {int(k): v for k, v in json.loads(d["probs"] or "{}").items()}
        out.append(d)
    return out


def run_predict(project: Project, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    from mskstudio.io.resume_marks import ResumeMarks, chunk_size
    from mskstudio.ml.classify.classifier import load_ensemble

    run_id = int(PredictParams.from_json(params).check(project).model_run_id)
    row = project.models.get(run_id)
    if row is None:
        raise ValueError(f"no model run {run_id}")
    ids = [int(i) for i in (params.get("image_ids") or project.images.ids())]
    batch_size = int(params.get("batch_size") or 32)
    label = bool(params.get("label", True)) and row["label_set_id"] is not None
    marks = ResumeMarks.for_job(project, ctx.job_id, params, signature={
        "run": run_id, "checkpoint": row["checkpoint_sha"], "ids": ids, "label": label,
        "batch_size": batch_size})
    if marks.resumed:
        ctx.log(f"resuming: {sum(v['n'] for v in marks.done.values())} of {len(ids)} images "
                "were predicted before the job stopped")
    # A fusion run predicts through its image run (``predict_probs``): nothing to load here.
    loaded = None if row["kind"] == "fusion" else load_ensemble(project, run_id)
    # Predictions are computed and stored a chunk at a time (about a tenth of the images, at
    # most 64 batches): a killed job, resumed, starts at the first chunk it had not stored.
    size = chunk_size(len(ids), lo=batch_size, hi=64 * batch_size)
    for a in range(0, len(ids), size):
        if a in marks:
            continue
        part = ids[a:a + size]
        sub = ctx.sub(0.95 * a / max(len(ids), 1), 0.95 * min(len(ids), a + size) / max(len(ids), 1))
        result = predict_probs(project, run_id, part, sub, batch_size=batch_size,
                               device=params.get("device"), loaded=loaded)
        with project.db.transaction():  # the chunk's predictions and labels commit together
            store_predictions(project, run_id, part, result)
            labelled = _label(project, row, part, result) if label else 0
        per_class: dict[str, int] = {}
        for j in result["pred"]:
            name = result["class_names"][int(j)]
            per_class[name] = per_class.get(name, 0) + 1
        marks.add({a: {"n": len(part), "labelled": labelled, "counts": per_class,
                       "rejected": int(np.asarray(result["rejected"]).sum())}})
    if label:
        project.audit("predict.labels", "model_run", run_id,
                      {"n": sum(v["labelled"] for v in marks.done.values()),
                       "label_set_id": int(row["label_set_id"])})
    ctx.progress(1.0, "done")
    counts: dict[str, int] = {}
    chunks = [marks.done[k] for k in sorted(marks.done, key=int)]
    for v in chunks:
        for name, c in v["counts"].items():
            counts[name] = counts.get(name, 0) + c
    summary = {"model_run_id": run_id, "predicted": sum(v["n"] for v in chunks),
               "labelled": sum(v["labelled"] for v in chunks),
               "rejected": sum(v["rejected"] for v in chunks), "counts": counts}
    marks.finish()
    return summary


def _label(project: Project, row, ids: Sequence[int], result: dict[str, Any]) -> int:
    """Model labels of one chunk (inside the caller's transaction); returns how many."""
    ls, run_id, labelled = int(row["label_set_id"]), int(row["id"]), 0
    for k, image_id in enumerate(ids):
        if result["rejected"][k]:
            class_id = result["reject_class_id"]
            if class_id is None:
                if project.labels.has_label(image_id, ls, source="model"):
                    project.labels.remove_labels([image_id], ls, source="model")
                continue
        else:
            class_id = result["class_ids"][int(result["pred"][k])]
        project.labels.set_labels([image_id], ls, int(class_id), source="model", run_id=run_id,
                                  confidence=float(result["probs"][k].max()), audit=False,
                                  author=f"model:{run_id}")
        labelled += 1
    return labelled
