"""ONNX export of a detector run (job ``export-det``), its parity check and model card.

torchvision's FCOS post-processing (per-level top-k, box decoding, batched NMS over a list of
images) does not export cleanly, so each fold model is exported up to its raw head outputs
(``cls_logits [B, A, 1]``, ``bbox_regression [B, A, 4]``, ``bbox_ctrness [B, A, 1]``, the input
normalisation inside the graph) and the decoding + NMS + fold/TTA fusion run in numpy
(``model.decode``, ``ensemble.fuse``) — the very code the torch path runs, so parity of the raw
outputs is parity of the boxes.  The folder holds ``fold{k}.onnx``, ``anchors.npy`` and
``detector.json`` (decoding parameters, fusion, thresholds); ``OrtDetector`` runs it with ONNX
Runtime alone (no torch).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mskstudio.ml.detect.ensemble import Pass, ensemble_detect
from mskstudio.ml.detect.model import decode
from mskstudio.ml.detect.params import ExportDetParams

if TYPE_CHECKING:
    from mskstudio.jobs import JobContext
    from mskstudio.store import Project

OPSET = 17
PARITY_TOL = 1e-3
OUTPUTS = ["cls_logits", "bbox_regression", "bbox_ctrness"]


def export_raw(raw, path: Path, size: int) -> Path:
    import warnings

    import onnx
    import torch

    tmp = path.with_suffix(".tmp.onnx")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(raw.cpu().eval(), (torch.zeros(2, 1, size, size),), str(tmp), input_names=["image"],
                          output_names=OUTPUTS, opset_version=OPSET, dynamo=False,
                          dynamic_axes={"image": {0: "batch"}, **{o: {0: "batch"} for o in OUTPUTS}})
    onnx.checker.check_model(str(tmp))
    tmp.replace(path)
    return path


class OrtDetector:
    """An exported detector folder run with ONNX Runtime: ``detect(x [B, 1, S, S])`` -> fused passes."""

    def __init__(self, folder: str | Path, *, threads: int | None = None):
        from mskstudio.ml.deploy.onnx_runtime import make_session

        folder = Path(folder)
        self.meta = json.loads((folder / "detector.json").read_text())
        self.anchors = np.load(folder / "anchors.npy")
        self.sessions = [make_session(folder / f, threads=threads) for f in self.meta["files"]]

    def raws(self):
        def run(session):
            return lambda x: session.run(OUTPUTS, {"image": np.ascontiguousarray(np.asarray(x), np.float32)})
        return [run(s) for s in self.sessions]

    def decoder(self):
        m = self.meta
        return lambda c, r, t: decode(c, r, t, self.anchors, m["per_level"], m["size"],
                                      score_thresh=m["score_thresh"], nms_thresh=m["nms_thresh"],
                                      detections=m["detections"])

    def detect(self, x: np.ndarray) -> list[Pass]:
        m = self.meta
        return ensemble_detect(self.raws(), _FlipArray(x), self.decoder(), m["size"], tta=m["tta"],
                               fusion=m["fusion"], iou_thr=m["fusion_iou"])


class _FlipArray(np.ndarray):
    """A numpy batch with ``.flip(-1)`` so ``ensemble_detect`` takes it as it takes a tensor."""

    def __new__(cls, x):
        return np.ascontiguousarray(x, np.float32).view(cls)

    def flip(self, axis):
        return np.ascontiguousarray(np.flip(np.asarray(self), axis)).view(_FlipArray)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export_detector(project: Project, run_id: int, outdir: str | Path, ctx: JobContext | None = None,
                    n_parity: int = 4) -> dict[str, Any]:
    import torch

    from mskstudio.jobs import JobContext
    from mskstudio.ml.deploy.onnx_export import card_markdown, model_card, sample_inputs
    from mskstudio.ml.detect.model import RawDetector, anchor_table
    from mskstudio.ml.detect.predict import load_detector, make_decoder, model_from_state, torch_raws

    ctx = ctx or JobContext.null()
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    ckpt = load_detector(project, int(run_id))
    p = ckpt["params"]
    size = int(p["size"])
    models = [model_from_state(p, s) for s in ckpt["folds"]]
    anchors, per_level = anchor_table(models[0], size)
    files = []
    for f, m in enumerate(models):
        ctx.check_cancelled()
        export_raw(RawDetector.wrap(m), outdir / f"fold{f}.onnx", size)
        files.append(f"fold{f}.onnx")
        ctx.progress((f + 1) / (len(models) + 1), f"exported fold {f}")
    np.save(outdir / "anchors.npy", anchors)
    meta = {"size": size, "per_level": per_level, "score_thresh": float(p["score_thresh"]),
            "nms_thresh": float(p["nms_thresh"]), "detections": int(p["detections"]), "tta": bool(p["tta"]),
            "fusion": p["fusion"], "fusion_iou": float(p["fusion_iou"]), "threshold": ckpt["threshold"],
            "study_threshold": ckpt.get("study_threshold"), "files": files, "outputs": OUTPUTS,
            "postprocessing": "numpy: mskstudio.ml.detect.model.decode + ensemble.fuse (not in the graph)"}
    (outdir / "detector.json").write_text(json.dumps(meta, indent=2))
    # parity: raw outputs of every fold, and the fused boxes, torch vs ONNX Runtime
    x, ids = sample_inputs(project, size, n_parity)
    ort = OrtDetector(outdir)
    raw_diff = 0.0
    with torch.no_grad():
        for m, run in zip(torch_raws(models, torch.device("cpu")), ort.raws(), strict=True):
            ref, got = m(torch.from_numpy(x)), run(x)
            raw_diff = max(raw_diff, *(float(np.abs(a - b).max()) for a, b in zip(ref, got, strict=True)))
    ref_boxes = ensemble_detect(torch_raws(models, torch.device("cpu")), torch.from_numpy(x),
                                make_decoder(models[0], p), size, tta=bool(p["tta"]), fusion=p["fusion"],
                                iou_thr=float(p["fusion_iou"]))
    got_boxes = ort.detect(x)
    box_diff, count_equal = 0.0, True
    for (b1, s1), (b2, s2) in zip(ref_boxes, got_boxes, strict=True):
        if len(s1) != len(s2):
            count_equal = False
            continue
        if len(s1):
            box_diff = max(box_diff, float(np.abs(b1 - b2).max()), float(np.abs(s1 - s2).max()))
    parity = {"max_abs_raw": raw_diff, "max_abs_boxes": box_diff, "same_box_counts": count_equal,
              "n": len(ids), "tolerance": PARITY_TOL, "ok": raw_diff < PARITY_TOL and count_equal}
    file_rows = [{"file": f, "role": "detector fold (raw head outputs)", "input_shape": [None, 1, size, size],
                  "sha256": _sha(outdir / f), "parity": {"max_abs_diff": raw_diff, "n": len(ids)}} for f in files]
    card = model_card(project, int(run_id), file_rows, {"classes": ["lesion"]})
    card["task"] = "lesion detection (boxes with confidence)"
    card["postprocessing"] = meta["postprocessing"] + f"; fusion {p['fusion']}, flip TTA {bool(p['tta'])}"
    card["parity"] = parity
    card["metrics"] = headline(card["metrics"])
    (outdir / "model_card.json").write_text(json.dumps(card, indent=2, default=str))
    md = card_markdown(card) + ("\n## Post-processing\n\nThe graphs end at FCOS's raw head outputs; decoding, "
                                "NMS and fold/TTA fusion run in numpy (`mskstudio.ml.detect`), see "
                                "`detector.json`. Parity of the fused boxes: max abs diff "
                                f"{box_diff:.2e}, same box counts: {count_equal}.\n")
    (outdir / "model_card.md").write_text(md)
    ctx.progress(1.0, f"exported {len(files)} fold models, parity {raw_diff:.1e}")
    return {"onnx": str(outdir), "files": files, "parity": parity, "card": str(outdir / "model_card.md")}


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """The figures a card shows in its Markdown (the JSON run record keeps the full curves)."""
    out: dict[str, Any] = {"operating threshold": metrics.get("threshold")}
    hold = metrics.get("holdout") or {}
    for iou, m in (hold.get("lesion") or {}).items():
        out[f"hold-out hit rate IoU > {iou}"] = m["hit_rate"]
        out[f"hold-out FP per image (IoU > {iou})"] = m["fp_per_image"]
        out[f"hold-out FP per lesion-free image (IoU > {iou})"] = m["fp_per_lesion_free_image"]
    if hold.get("study"):
        out["hold-out study sensitivity"] = hold["study"]["sensitivity"]
        out["hold-out study specificity"] = hold["study"]["specificity"]
    if hold.get("coco"):
        out["hold-out AP50"] = hold["coco"]["ap50"]
    return {k: v for k, v in out.items() if v is not None}


def run_export_det(project: Project, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    q = ExportDetParams.from_json(params).check(project)
    return export_detector(project, int(q.model_run_id), q.out, ctx)
