"""Lesion detector on the phantom demo: held-out patients, lesion-level and study-level figures,
CPU minutes, and torch vs ONNX Runtime inference time at 512 px.

The phantom demo's lesion masks and boxes (source 'import') are the ground truth; every image
without one is lesion-free.  ``train-det`` splits by patient (hold-out + k folds), trains the
fold models, chooses the operating threshold on out-of-fold predictions and scores the fold
ensemble (+ flip TTA, WBF) on the held-out patients.  A baseline is scored on the same images:
a box of the median lesion size on the brightest blob.  Timings are CPU minutes on a shared
2-core machine: noisy while others work.

    .venv/bin/python tests/bench/bench_detect.py              # reduced CPU run (REDUCED below)
    .venv/bin/python tests/bench/bench_detect.py --full       # the target run (FULL below; GPU-sized)
        [--images N] [--size S] [--crop C] [--epochs E] [--folds K] [--train-folds N] [--lr LR]
        [--fpn-channels F] [--threads T] [--device cuda] [--project P] [--run ID] [--timing-only]

Target (issue 26): hit rate at IoU > 0.2 >= 0.90 on 2,000 images at 512 px; ORT <= 300 ms an
image at 512 px on 2 cores.  Prints figures only.

Checked for bugs (no bug found): boxes land on the lesions after letterboxing (drawn and looked
at, and ``Letterbox`` is tested both ways); the truth is the imported mask boxes (class id 25,
one box a lesion image, 140 of 400 images); labels are 0 for FCOS's one class; normalisation is
the same in training (FCOS transform) and scoring (``RawDetector``); FCOS's transform does not
resize (min = max = size, or = crop when training on windows).  Lesion sides at a 128-px letterbox
are 3-23 px (median 10; 5th-95th percentile), so a 5th-percentile lesion holds no P3 location
(stride 8) and a median one 1-2: the 128-px run of the previous stop had almost no positive
locations.  At 512 px the median lesion is ~40 px (fine for P3).

Measured on the shared 2-core box (load 11-13, every helper niced: this process got ~9 % of a
core).  Reduced project: 400 phantom images, 140 with a lesion, patient hold-out 81 images
(28 lesions, 53 lesion-free), k = 5 with only fold 0 trained (256 training images), 8 epochs,
AdamW one-cycle 3e-3, batch 8, FPN 64, 1 thread, from scratch:

    run                               CPU min  hold-out hit IoU>0.2  FP/lesion-free  FROC@1  FROC@4  AP50
    192 px, 96-px lesion windows       3.3       0/28 [0, 0.12]        0.42           0.07    0.43   0.001
    96 px whole images (same FLOPs)    3.0       0/28 [0, 0.12]        0.13           0.32    0.43   0.007

FP per lesion-free image 95 % CIs (bootstrap, n=53): [0, 0.91] and [0, 0.30].  The brightest-blob
baseline on the same hold-out: 2/28, 1.0 FP per lesion-free image.  Study level (max over views,
44 held-out studies, 14 with a lesion, threshold from out-of-fold studies): AUC 0.63 and 0.85;
the 96-px model's best box score already separates studies, its boxes do not yet sit on lesions.
The same models on 40 of their own training lesions: 0/40 at the threshold, FROC@4 0.13 / 0.33:
they do not fit their training set either.  So the failure is the optimisation budget (256
optimizer steps from scratch, classification focal loss 0.97 -> 0.56), not a geometry bug and not
overfitting; the planted squares (one bright square, 64 px) are learnt in ~24 epochs of 22 images.
Training on lesion windows made whole-image false positives worse (the model never saw film
borders and burned-in text), so windows need whole-image epochs at the end, or hard negatives.

What the full run costs: ~3 CPU s an image-step at 512 px (FPN 64) -> 2,000 x 0.8 x 5 folds x 20
epochs ~ 130 CPU hours here.  On one H100 with autocast the same run is ~0.5 M image-steps of a
ResNet-18 FCOS: an estimated 10-20 minutes, the scale at which the seed detector reached 94.5 %;
that run is what measures the >= 0.90 target.  A DeepCluster-initialised backbone (``--init
run:ID``) should cut the epochs needed; it was not measured here.

Inference, one fold model at 512 px, batch 1, ONNX Runtime (graph optimisation ORT_ENABLE_ALL;
ORT_ENABLE_BASIC costs ~25 % more CPU), CPU ms an image over 3 measurements under that load:
FPN 64 / 4 head convs 296-432 (1 or 2 threads), FPN 64 / 2 head convs 265-521, FPN 128 / 4
head convs 496-678; torch 480-3,300.  Wall time was 2-7 s (the process got a tenth of a core),
so the <= 300 ms wall target on 2 idle cores is estimated, not shown: ~300-430 CPU ms spread over
2 threads is ~150-250 ms.  FPN 64 is now the default.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from mskstudio.jobrun import submit_and_run
from mskstudio.ml.detect import metrics as M
from mskstudio.store import Project, is_project


def build_project(path: Path, images: int, size: str) -> Project:
    from mskstudio.io.demo import run_demo_archive
    from mskstudio.jobs import JobContext

    project = Project.create(path, name="detector bench")
    r = run_demo_archive(project, {"images": images, "size": size, "archive_dir": str(path.parent / "archive")},
                         JobContext.null())
    print("phantoms:", r["import"]["imported"], "images;", r["masks"]["imported"], "lesion masks + boxes")
    return project


def fmt(p: dict) -> str:
    v = p.get("value")
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "n/a"
    lo, hi = p.get("ci", [float("nan")] * 2)
    return f"{v:.3f} [{lo:.3f}, {hi:.3f}] n={p.get('n')}"


def baseline(project: Project, ids, truth_sq, images) -> dict:
    """Brightest blob of the letterboxed image, box of the median training-lesion side."""
    from scipy import ndimage

    sides = [float(np.sqrt((b[2] - b[0]) * (b[3] - b[1]))) for v in truth_sq.values() for b in v]
    side = float(np.median(sides)) if sides else 16.0
    out = {}
    for i in ids:
        a = ndimage.uniform_filter(images.square(i), size=max(3, int(side / 2)))
        y, x = np.unravel_index(int(np.argmax(a)), a.shape)
        out[i] = (np.array([[x - side / 2, y - side / 2, x + side / 2, y + side / 2]], np.float32),
                  np.array([float(a[y, x])], np.float32))
    return out


def timing(size: int, threads: int, n: int = 8, variants=((64, 4), (64, 2), (128, 4))) -> None:
    """ms per image, one fold model, torch vs ONNX Runtime (raw outputs + the same numpy decoding),
    for a few (FPN width, head convolutions).  Wall time suffers from every other process on a
    shared box; the CPU time of the process is the figure that carries over to an idle machine
    (its wall time with the same threads is about CPU time / threads, or a little more)."""
    import tempfile

    import torch

    from mskstudio.ml.detect.export import OrtDetector, export_raw
    from mskstudio.ml.detect.model import RawDetector, anchor_table, build_detector, decode
    from mskstudio.ml.detect.predict import make_decoder

    torch.set_num_threads(threads)
    x = torch.rand(n, 1, size, size)
    print(f"\ninference at {size} px, {threads} thread(s), one fold model, batch 1 (n={n}); ms per image, "
          "wall / CPU:")
    print(f"  {'FPN':>4} {'head convs':>10} {'torch wall':>11} {'torch CPU':>10} {'ORT wall':>9} {'ORT CPU':>8}")
    for fpn, head_convs in variants:
        model = build_detector("resnet18", size=size, fpn_channels=fpn, head_convs=head_convs).eval()
        raw = RawDetector.wrap(model)
        anchors, per_level = anchor_table(model, size)
        p = {"size": size, "score_thresh": 0.05, "nms_thresh": 0.5, "detections": 20}
        dec = make_decoder(model, p)
        with tempfile.TemporaryDirectory() as d:
            export_raw(raw, Path(d) / "fold0.onnx", size)
            np.save(Path(d) / "anchors.npy", anchors)
            (Path(d) / "detector.json").write_text(json.dumps({**p, "per_level": per_level, "files": ["fold0.onnx"],
                                                               "tta": False, "fusion": "wbf", "fusion_iou": 0.55}))
            run = OrtDetector(d, threads=threads).raws()[0]  # graph optimisation ORT_ENABLE_ALL
            run(x[:1].numpy())
            t, c = time.perf_counter(), time.process_time()
            for k in range(n):
                cl, r, s = run(x[k:k + 1].numpy())
                decode(cl[0], r[0], s[0], anchors, per_level, size)
            ort_ms = ((time.perf_counter() - t) / n * 1000, (time.process_time() - c) / n * 1000)
        with torch.inference_mode():
            raw(x[:1])
            t, c = time.perf_counter(), time.process_time()
            for k in range(n):
                cl, r, s = (v.numpy() for v in raw(x[k:k + 1]))
                dec(cl[0], r[0], s[0])
            torch_ms = ((time.perf_counter() - t) / n * 1000, (time.process_time() - c) / n * 1000)
        print(f"  {fpn:>4} {head_convs:>10} {torch_ms[0]:>11.0f} {torch_ms[1]:>10.0f} {ort_ms[0]:>9.0f} "
              f"{ort_ms[1]:>8.0f}")
    print("  a k-fold ensemble with flip TTA costs 2k of these passes per image (+ fusion, < 1 ms)")


# The reduced configuration runs by default (what a shared 2-core CPU box finishes in about an
# hour of wall time); ``--full`` is the target run, sized for a GPU.
REDUCED = {"images": 400, "size": 192, "crop": 96, "epochs": 8, "folds": 5, "train_folds": 1,
           "batch_size": 8, "lr": 3e-3, "fpn_channels": 64, "threads": 1}
FULL = {"images": 2000, "size": 512, "crop": None, "epochs": 20, "folds": 5, "train_folds": None,
        "batch_size": 8, "lr": 1e-3, "fpn_channels": 64, "threads": 2}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true", help="the target run: 2,000 images, 512 px, 5 folds x 20 "
                                                        "epochs (GPU-sized); default the reduced CPU run")
    ap.add_argument("--images", type=int)
    ap.add_argument("--phantom-size", default="small", help="phantom DICOM size: small | medium | full")
    ap.add_argument("--size", type=int)
    ap.add_argument("--crop", type=int, help="training window side (0: whole images)")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--folds", type=int)
    ap.add_argument("--train-folds", type=int, help="train only the first N folds (0: all)")
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--fpn-channels", type=int)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--device", help="auto | cpu | cuda")
    ap.add_argument("--fusion", default="wbf")
    ap.add_argument("--project", type=Path, help="default /tmp/bench_detect/{reduced,full}.mskproj")
    ap.add_argument("--run", type=int, help="score an existing detector run")
    ap.add_argument("--timing-only", action="store_true")
    ap.add_argument("--timing-size", type=int, default=512)
    ap.add_argument("--timing-n", type=int, default=8)
    a = ap.parse_args()
    cfg = dict(FULL if a.full else REDUCED)
    for key in cfg:
        if getattr(a, key, None) is not None:
            cfg[key] = getattr(a, key) or None  # 0 means "none" for crop and train_folds
    a.size = cfg["size"]
    a.project = a.project or Path(f"/tmp/bench_detect/{'full' if a.full else 'reduced'}.mskproj")
    if a.timing_only:
        timing(a.timing_size, cfg["threads"], a.timing_n)
        return
    import torch

    torch.set_num_threads(cfg["threads"])
    a.project.parent.mkdir(parents=True, exist_ok=True)
    project = Project.open(a.project) if is_project(a.project) else build_project(a.project, cfg["images"],
                                                                                   a.phantom_size)
    run_id = a.run
    print("configuration:", "full" if a.full else "reduced", json.dumps(cfg))
    if run_id is None:
        cpu0 = time.process_time()
        params = {"size": cfg["size"], "crop": cfg["crop"], "epochs": cfg["epochs"], "k": cfg["folds"],
                  "train_folds": cfg["train_folds"], "batch_size": cfg["batch_size"], "lr": cfg["lr"],
                  "fpn_channels": cfg["fpn_channels"], "fusion": a.fusion, "threads": cfg["threads"],
                  "device": a.device}
        res = submit_and_run(project, "train-det", {k: v for k, v in params.items() if v is not None})
        run_id = res["model_run_id"]
        print(f"trained run {run_id} in {(time.process_time() - cpu0) / 60:.1f} CPU minutes")
    m = project.models.metrics(run_id)
    hold = m["holdout"]
    split = json.loads(project.models.get(run_id)["split"])
    print(f"\nphantom project: {m['n_images']} images at {a.size} px letterbox, {m['n_folds']} folds, "
          f"{len(split['test'])} held-out images ({len(split['patients'])} patients in all)")
    print(f"operating threshold {m['threshold']:.3f} (out of fold, <= 0.25 FP/image); fusion {m['fusion']}, "
          f"TTA {m['tta']}")
    print(f"{'':34}{'detector (hold-out)':>36}{'brightest blob':>30}")
    from mskstudio.ml.detect.data import DetImages, truth_boxes

    truth, _ = truth_boxes(project, split["test"])
    images = DetImages(project, split["test"], truth, int(a.size))
    truth_sq = {i: images.boxes[i] for i in split["test"]}
    base = baseline(project, split["test"], truth_sq, images)
    for iou in ("0.2", "0.5"):
        d = hold["lesion"][iou]
        b = M.lesion_metrics(truth_sq, base, threshold=0.0, iou_thr=float(iou))
        print(f"hit rate IoU > {iou:<19}{fmt(d['hit_rate']):>36}{fmt(b['hit_rate']):>30}")
        print(f"  missed / lesions{'':15}{d['missed']:>30} / {d['lesions']:<4}{b['missed']:>24} / {b['lesions']}")
        print(f"  FP per image{'':20}{fmt(d['fp_per_image']):>36}{fmt(b['fp_per_image']):>30}")
        print(f"  FP per lesion-free image{'':8}{fmt(d['fp_per_lesion_free_image']):>36}"
              f"{fmt(b['fp_per_lesion_free_image']):>30}")
    for iou, per in (hold.get("per_class") or {}).items():
        print(f"hit rate IoU > {iou} per lesion class: "
              + "; ".join(f"{c} {fmt(v)}" for c, v in per.items()))
    print("FROC (IoU > 0.2) sensitivity at FP/image: "
          + ", ".join(f"{k}: {v:.3f}" for k, v in hold["froc"]["at"].items()))
    print(f"AP50 {hold['coco']['ap50']:.3f}  AP75 {hold['coco']['ap75']:.3f}  mAP {hold['coco']['map']:.3f}")
    s = hold["study"]
    print(f"study calls (max over AP + lateral, {s['studies']} studies, {s['positive_studies']} with a lesion): "
          f"sensitivity {fmt(s['sensitivity'])}, specificity {fmt(s['specificity'])}, "
          f"AUC {s.get('auc', float('nan')):.3f}")
    sl = hold.get("study_learned")
    if sl:
        print(f"study calls (logistic regression over per-view scores, fitted on {sl['fitted_on']} out-of-fold "
              f"studies): sensitivity {fmt(sl['sensitivity'])}, specificity {fmt(sl['specificity'])}, "
              f"AUC {sl.get('auc', float('nan')):.3f}")
    print(f"training: {m['cpu_minutes']} CPU minutes, {m['wall_minutes']} wall minutes on {m['device']}")
    timing(a.timing_size, cfg["threads"], a.timing_n)


if __name__ == "__main__":
    main()
