"""Lesion detection: ``train-det`` (fold models + hold-out), ``detect`` (store predicted boxes),
``export-det`` (ONNX + parity + model card); ``evaluate RUN`` prints a detector run's figures
through ``print_detector_metrics``."""

from __future__ import annotations

import math

from mskstudio.cli.common import add_project_arg, open_writable, print_json
from mskstudio.cli.distributed import add_distributed_options, run_maybe_distributed
from mskstudio.jobrun import run_sync


def register(sub) -> None:
    p = sub.add_parser("train-det", help="train a lesion detector on the project's boxes and masks",
                       description="FCOS on a 1-channel ResNet-FPN, patient-level folds + hold-out; the "
                                   "fold ensemble with flip TTA is scored on the held-out patients.")
    add_project_arg(p)
    p.add_argument("--arch", choices=("resnet18", "resnet50"), help="backbone (default resnet18)")
    p.add_argument("--init", help="scratch | run:ID (DeepCluster or classifier run) | weights file")
    p.add_argument("--size", type=int, help="letterboxed input side, a multiple of 32 (default 512)")
    p.add_argument("--fpn-channels", type=int, help="FPN width (default 64: half the CPU time of 128 at 512 px)")
    p.add_argument("--folds", type=int, dest="k", help="cross-validation folds (default 5)")
    p.add_argument("--head-convs", type=int, help="3x3 convolutions per head branch, 1-4 (default 4; 2 is "
                                                  "faster on CPU)")
    p.add_argument("--train-folds", type=int, help="train only the first N folds (a CPU budget; default all)")
    p.add_argument("--crop", type=int, help="train on lesion-biased windows of this side (a multiple of 32 "
                                            "below --size; default: whole images)")
    p.add_argument("--holdout", choices=("random", "none"), help="default random")
    p.add_argument("--test-fraction", type=float, help="share of patients held out (default 0.2)")
    p.add_argument("--epochs", type=int, help="default 20")
    p.add_argument("--batch-size", type=int, help="default 8")
    p.add_argument("--lr", type=float, help="AdamW one-cycle peak (default 1e-3)")
    p.add_argument("--class", dest="class", help="only boxes and masks of this class (default: all)")
    p.add_argument("--fusion", choices=("wbf", "nms"), help="how folds and TTA are fused (default wbf)")
    p.add_argument("--no-tta", action="store_true", help="no horizontal-flip test-time augmentation")
    p.add_argument("--fp-budget", type=float,
                   help="false positives per image allowed at the operating threshold (default 0.25)")
    p.add_argument("--images", type=int, nargs="*", dest="image_ids", help="train on these images only")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    add_distributed_options(p)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--name")
    p.add_argument("--resume", type=int, metavar="RUN", help="continue a cancelled or crashed detector run")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_train_det)

    p = sub.add_parser("detect", help="find lesions with a detector run; stores predicted boxes (source model)")
    add_project_arg(p)
    p.add_argument("model_run", type=int, nargs="?", help="detector run (default: the latest finished)")
    p.add_argument("--images", type=int, nargs="*", dest="image_ids", help="image ids (default: all)")
    p.add_argument("--min-score", type=float, help="store boxes at or above this confidence "
                                                   "(default: the run's storing threshold)")
    p.add_argument("--fusion", choices=("wbf", "nms"))
    p.add_argument("--no-tta", action="store_true")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("export-det", help="export a detector run to ONNX (raw head outputs) with a parity "
                                          "check and a model card")
    add_project_arg(p)
    p.add_argument("model_run", type=int)
    p.add_argument("out", help="output folder")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_export_det)

    p = sub.add_parser("study-calls", help="a classifier run's lesion / no-lesion call per study "
                                           "(maximum over its AP and lateral images), on its hold-out")
    add_project_arg(p)
    p.add_argument("model_run", type=int)
    p.add_argument("--healthy", required=True, help="the class that means 'no lesion'")
    p.add_argument("--threshold", type=float, help="default: Youden's J on the same studies (optimistic)")
    p.add_argument("--all-images", action="store_true", help="also images the run trained on")
    p.set_defaults(func=cmd_study_calls)


def cmd_train_det(args) -> int:
    keys = ("arch", "init", "size", "fpn_channels", "head_convs", "crop", "k", "train_folds", "holdout",
            "test_fraction", "epochs", "batch_size", "lr", "class", "fusion", "fp_budget", "image_ids",
            "seed", "device", "threads", "name", "resume")
    params = {k: getattr(args, k) for k in keys if getattr(args, k) is not None}
    if args.no_tta:
        params["tta"] = False
    with open_writable(args.project) as project:
        result = run_maybe_distributed(project, "train-det", params, args, label="train-det")
        if result is None:  # --submit-only printed the commands
            return 0
        if args.json:
            print_json(result)
        else:
            print_detector_metrics(project.models.metrics(result["model_run_id"]), result["model_run_id"])
    return 0


def cmd_detect(args) -> int:
    params = {"model_run_id": args.model_run, "image_ids": args.image_ids, "min_score": args.min_score,
              "fusion": args.fusion, "device": args.device}
    if args.no_tta:
        params["tta"] = False
    with open_writable(args.project) as project:
        result = run_sync(project, "detect", {k: v for k, v in params.items() if v is not None}, label="detect")
    if args.json:
        print_json(result)
    else:
        print(f"detector run {result['run_id']}: {result['boxes']} boxes (score >= {result['min_score']:.2f}) "
              f"on {result['images_with_boxes']} of {result['images']} images")
    return 0


def cmd_export_det(args) -> int:
    with open_writable(args.project) as project:
        result = run_sync(project, "export-det", {"model_run_id": args.model_run, "out": args.out}, label="export-det")
    if args.json:
        print_json(result)
    else:
        print(f"{result['onnx']}: parity max |diff| raw {result['parity']['max_abs_raw']:.2e}, boxes "
              f"{result['parity']['max_abs_boxes']:.2e}; model card {result['card']}")
    return 0


def cmd_study_calls(args) -> int:
    from mskstudio.cli.common import open_project
    from mskstudio.ml.detect.study import classifier_study_calls

    with open_project(args.project) as project:
        c = classifier_study_calls(project, args.model_run, args.healthy, threshold=args.threshold,
                                   all_images=args.all_images)
    print(f"{c['studies']} studies ({c['positive_studies']} with a lesion), threshold {c['threshold']:.3f} "
          f"({c['threshold_from']}): sensitivity {_p(c['sensitivity'])}, specificity {_p(c['specificity'])}"
          + (f", AUC {c['auc']:.3f}" if "auc" in c else ""))
    return 0


def _p(prop: dict | None) -> str:
    prop = prop or {}
    v = prop.get("value")
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    lo, hi = prop.get("ci", [math.nan, math.nan])
    n = f" n={prop['n']}" if "n" in prop else ""
    return f"{v:.3f} [{lo:.3f}, {hi:.3f}]{n}"


def print_detector_metrics(metrics: dict, run_id: int) -> None:
    print(f"detector run {run_id}: {metrics.get('n_images')} images, {metrics.get('n_folds')} folds, "
          f"fusion {metrics.get('fusion')}{' + flip TTA' if metrics.get('tta') else ''}, "
          f"operating threshold {metrics.get('threshold', math.nan):.3f} (chosen out of fold)")
    for part, title in (("oof", "out-of-fold validation (single fold models)"),
                        ("holdout", "hold-out patients (fold ensemble)")):
        rep = metrics.get(part)
        if not rep:
            continue
        print(title)
        for iou, m in rep["lesion"].items():
            print(f"  IoU > {iou}: hit rate {_p(m['hit_rate'])}, missed {m['missed']}/{m['lesions']}, "
                  f"FP/image {_p(m['fp_per_image'])}, FP/lesion-free image {_p(m['fp_per_lesion_free_image'])}")
        fr = rep["froc"]
        if fr.get("at"):
            print("  FROC sensitivity at FP/image " + ", ".join(f"{k}: {v:.3f}" for k, v in fr["at"].items()))
        c = rep["coco"]
        print(f"  AP50 {c['ap50']:.3f}, AP75 {c['ap75']:.3f}, mAP@[.5:.95] {c['map']:.3f}")
        s = rep["study"]
        print(f"  study calls (max over views, threshold {s['threshold']:.3f}, {s['studies']} studies): "
              f"sensitivity {_p(s['sensitivity'])}, specificity {_p(s['specificity'])}"
              + (f", AUC {s['auc']:.3f}" if "auc" in s else ""))
    if "cpu_minutes" in metrics:
        print(f"  {metrics['cpu_minutes']} CPU minutes, {metrics['wall_minutes']} wall minutes "
              f"on {metrics.get('device')}")
