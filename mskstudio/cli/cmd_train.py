"""Classifiers: train, predict, explain, evaluate."""

from __future__ import annotations

import json
import math

from mskstudio.cli.cmd_fuse import add_train_options as add_fusion_options
from mskstudio.cli.cmd_fuse import check_train_options as check_fusion_options
from mskstudio.cli.cmd_fuse import fuse_after_train, joint_fields
from mskstudio.cli.common import add_project_arg, open_project, open_writable, print_json
from mskstudio.cli.distributed import add_distributed_options, run_maybe_distributed
from mskstudio.jobrun import UserError, run_sync
from mskstudio.ml.classify.params import (
    HOLDOUTS,
    INPUTS,
    LOSS_WEIGHTINGS,
    OPTIMIZERS,
    REJECTS,
    SCHEDULES,
    TrainParams,
)
from mskstudio.ml.explain.gradcam import DEFAULT_SCALES, parse_scales

D = TrainParams()  # the defaults of job ``train``, defined once
SCALES_DEFAULT = ",".join(f"{s:g}" for s in DEFAULT_SCALES)
SCALES_HELP = ("input scales of the Grad-CAM, times the run's input size; the maps are averaged "
               "(default: %(default)s; 1 = single-scale Grad-CAM, about one forward pass)")


def register(sub) -> None:
    p = sub.add_parser("train", help="train a classifier on a label set (patient-level CV + hold-out)")
    add_project_arg(p)
    p.add_argument("label_set", help="label set name (not a truth: set)")
    p.add_argument("--arch", default=D.arch,
                   help="resnet18 | resnet50 | efficientnet_b0 | swin_t | tinycnn (default: %(default)s)")
    p.add_argument("--init", default=D.init, help="scratch | run:ID (DeepCluster backbone) | weights file")
    p.add_argument("--freeze-encoder", action="store_true")
    p.add_argument("--input", choices=INPUTS, default=D.input)
    p.add_argument("--size", type=int, default=D.size)
    p.add_argument("--folds", type=int, default=D.k, dest="k")
    p.add_argument("--holdout", choices=HOLDOUTS, default=D.holdout)
    p.add_argument("--test-fraction", type=float, default=D.test_fraction)
    p.add_argument("--test-centre", help="centre code held out as an external test (--holdout centre)")
    p.add_argument("--external-centre", action="append", dest="external_centres", metavar="CENTRE",
                   help="also hold this centre's patients out as an external test set, reported apart "
                        "from the hold-out (repeat for several centres)")
    p.add_argument("--epochs", type=int, default=D.epochs)
    p.add_argument("--batch-size", type=int, default=D.batch_size)
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=D.optimizer)
    p.add_argument("--lr", type=float, default=D.lr)
    p.add_argument("--schedule", choices=SCHEDULES, default=D.schedule)
    p.add_argument("--loss-weighting", choices=LOSS_WEIGHTINGS, default=D.loss_weighting)
    p.add_argument("--patience", type=int, default=D.patience)
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--exclude-burned-in", action="store_true",
                   help="leave out images whose header says BurnedInAnnotation YES (text or markers "
                        "in the pixels); recorded in the run's parameters")
    p.add_argument("--mask-guidance", type=float, default=D.mask_guidance, metavar="WEIGHT",
                   help="teach the network to look at the lesion masks: weight of the attention term "
                        "(e.g. 1; default 0 = off)")
    p.add_argument("--reject", choices=REJECTS, default=D.reject)
    p.add_argument("--cascade", metavar="HEALTHY_CLASS",
                   help="two-stage cascade: HEALTHY_CLASS vs pathological, then among pathological")
    p.add_argument("--seed", type=int, default=D.seed)
    p.add_argument("--device", default=D.device)
    add_distributed_options(p)
    p.add_argument("--name")
    p.add_argument("--resume", type=int, metavar="RUN", help="continue a cancelled/crashed classifier run")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_fusion_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="apply a classifier run to images and store predictions")
    add_project_arg(p)
    p.add_argument("model_run", type=int)
    p.add_argument("--images", type=int, nargs="*", help="image ids (default: all)")
    p.add_argument("--no-label", action="store_true", help="do not write model-source labels")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("explain", help="Grad-CAM heatmaps (cached) for a classifier run")
    add_project_arg(p)
    p.add_argument("model_run", type=int)
    p.add_argument("--images", type=int, nargs="*", help="image ids (default: all)")
    p.add_argument("--method", choices=("gradcam", "scorecam"), default="gradcam")
    p.add_argument("--layer", help="dotted module path (default: last conv stage)")
    p.add_argument("--class-id", type=int, help="explain this class (default: the predicted one)")
    p.add_argument("--scales", default=SCALES_DEFAULT, help=SCALES_HELP)
    p.add_argument("--png", metavar="FOLDER", help="also write heatmap PNGs here")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("pointing-game", help="share of held-out lesion images whose Grad-CAM peak is on the lesion")
    add_project_arg(p)
    p.add_argument("model_run", type=int)
    p.add_argument("--tolerance-mm", type=float, default=5.0, help="grow the lesion mask by this much (mm)")
    p.add_argument("--all-cases", action="store_true", help="also score misclassified images")
    p.add_argument("--layer", help="dotted module path (default: last conv stage)")
    p.add_argument("--scales", default=SCALES_DEFAULT, help=SCALES_HELP)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_pointing_game)

    p = sub.add_parser("evaluate", help="show a classifier or detector run's metrics (per fold and hold-out)")
    add_project_arg(p)
    p.add_argument("model_run", type=int)
    p.add_argument("--json", action="store_true", help="print every figure as JSON")
    p.set_defaults(func=cmd_evaluate)


def cmd_train(args) -> int:
    params = {k: getattr(args, k) for k in (
        "label_set", "arch", "init", "freeze_encoder", "input", "size", "k", "holdout",
        "test_fraction", "test_centre", "epochs", "batch_size", "optimizer", "lr", "schedule",
        "loss_weighting", "patience", "reject", "cascade", "mask_guidance", "seed", "device", "name",
        "external_centres", "exclude_burned_in")}
    params["augment"] = not args.no_augment
    params["clinical"] = joint_fields(args)
    if args.resume:
        params = {"resume": args.resume, "device": args.device}
    with open_writable(args.project) as project:
        check_fusion_options(project, args)
        result = run_maybe_distributed(project, "train", params, args, label="train")
        if result is None:  # --submit-only
            return 0
        if args.json:
            print_json(result)
        else:
            _print_metrics(project.models.metrics(result["model_run_id"]), result["model_run_id"])
        fuse_after_train(project, args, result["model_run_id"])
    return 0


def cmd_predict(args) -> int:
    with open_writable(args.project) as project:
        result = run_sync(project, "predict", {"model_run_id": args.model_run, "image_ids": args.images,
                                               "label": not args.no_label, "device": args.device},
                          label="predict")
    print_json(result)
    return 0


def _scales(args) -> list[float]:
    try:
        return list(parse_scales(args.scales))
    except ValueError as exc:
        raise UserError(str(exc)) from None


def cmd_explain(args) -> int:
    scales = _scales(args)
    with open_writable(args.project) as project:
        result = run_sync(project, "explain", {"model_run_id": args.model_run, "image_ids": args.images,
                                               "method": args.method, "layer": args.layer,
                                               "class_id": args.class_id, "scales": scales},
                          label="explain")
        if args.png:
            _write_pngs(project, args, scales)
    print_json(result)
    return 0


def cmd_pointing_game(args) -> int:
    scales = _scales(args)
    with open_writable(args.project) as project:
        result = run_sync(project, "pointing-game", {"model_run_id": args.model_run,
                                                     "tolerance_mm": args.tolerance_mm,
                                                     "only_correct": not args.all_cases, "layer": args.layer,
                                                     "scales": scales}, label="pointing game")
    if args.json:
        print_json(result)
        return 0
    hit = result["pointing"]
    chance = result["chance_mean"]
    print(f"model run {result['model_run_id']}: {result['held_out_lesion_images']} held-out lesion images, "
          f"{result['correctly_classified']} classified correctly"
          + ("" if result["only_correct"] else "; all of them scored"))
    if hit["n"]:
        print(f"  Grad-CAM peak on the lesion (+{result['tolerance_mm']:g} mm): {hit['k']}/{hit['n']} = "
              f"{hit['value']:.3f} (95% CI {hit['ci'][0]:.3f}-{hit['ci'][1]:.3f}); "
              f"a random body point: {chance:.3f}")
    else:
        print("  nothing to score: no correctly classified held-out image has a lesion mask")
    return 0


def _write_pngs(project, args, scales: list[float]) -> None:
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from mskstudio.ml.explain.gradcam import explain

    out = Path(args.png)
    out.mkdir(parents=True, exist_ok=True)
    for image_id in args.images or project.images.ids():
        heat = explain(project, args.model_run, image_id, args.class_id, method=args.method,
                       layer=args.layer, scales=scales)
        Image.fromarray((heat * 255).astype(np.uint8)).save(out / f"{image_id}.png")


def cmd_evaluate(args) -> int:
    with open_project(args.project) as project:
        run = project.models.record(args.model_run)
        if run is None:
            raise UserError(f"no model run {args.model_run}")
        metrics = run.metrics
        if not metrics:
            raise UserError(f"model run {args.model_run} has no metrics (status {run.status})")
        if args.json:
            print_json(metrics)
        elif run.kind == "detector":
            from mskstudio.cli.cmd_detect import print_detector_metrics

            print_detector_metrics(metrics, args.model_run)
        else:
            _print_metrics(metrics, args.model_run)
    return 0


def _fmt(prop: dict | None) -> str:
    value = (prop or {}).get("value")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    lo, hi = prop.get("ci", [math.nan, math.nan])
    n = f" n={prop['n']}" if "n" in prop else ""
    return f"{prop['value']:.3f} [{lo:.3f}, {hi:.3f}]{n}"


def _print_report(title: str, rep: dict) -> None:
    if not rep or not rep.get("n"):
        print(f"{title}: no cases")
        return
    print(f"{title} (n={rep['n']}, majority-class rate {rep.get('majority_rate', math.nan):.3f})")
    print(f"  accuracy       {_fmt(rep['accuracy'])}")
    print(f"  top-2 accuracy {_fmt(rep['top2_accuracy'])}")
    print(f"  macro AUC      {_fmt(rep['macro']['auc'])}   macro F1 {rep['macro']['f1']:.3f}")
    if "rejected" in rep:
        print(f"  rejected       {_fmt(rep['rejected'])}; "
              f"accuracy of accepted {_fmt(rep['accuracy_accepted'])}")
    print(f"  {'class':<16}{'n':>5}  {'sens':>6} {'spec':>6} {'ppv':>6} {'npv':>6} {'f1':>6} {'auc':>6}")
    for name, c in rep["per_class"].items():
        vals = [c[k]["value"] for k in ("sensitivity", "specificity", "ppv", "npv")]
        vals += [c["f1"], c["auc"]["value"]]
        print(f"  {name[:16]:<16}{c['support']:>5}  " + " ".join(f"{v:6.3f}" for v in vals))
    print("  confusion (rows = truth): " + json.dumps(rep["confusion"]))


def _print_metrics(metrics: dict, run_id: int) -> None:
    print(f"model run {run_id}: label set {metrics.get('label_set')!r}, classes {metrics.get('classes')}")
    if metrics.get("clinical"):
        print(f"joint fusion: image + metadata MLP over {', '.join(metrics['clinical']['fields'])} "
              f"({len(metrics['clinical']['columns'])} columns)")
    for task in ("main", "stage1", "stage2"):
        if task not in metrics:
            continue
        for f, fold in enumerate(metrics[task]["folds"]):
            val = fold["val"]
            epochs = f"best epoch {fold['best_epoch'] + 1}/{fold['epochs_run']}, " if "best_epoch" in fold else ""
            print(f"[{task}] fold {f}: {epochs}val accuracy {_fmt(val.get('accuracy'))}")
        _print_report(f"[{task}] out-of-fold validation", metrics[task]["oof"])
    _print_report("hold-out (fold ensemble)" if "main" in metrics else "hold-out (cascade)",
                  metrics.get("holdout") or {})
