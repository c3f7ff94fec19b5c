"""Clinical data in the models: fuse, ablation, shap, clinical-fields."""

from __future__ import annotations

import math

from mskstudio.cli.common import add_project_arg, open_project, open_writable, print_json
from mskstudio.jobrun import run_sync

FIELDS_HELP = ("clinical fields, comma-separated: age, sex, site, position, lab:NAME "
               "(e.g. age,sex,lab:ALP,lab:LDH; `mskstudio clinical-fields P` lists them)")


def register(sub) -> None:
    p = sub.add_parser("fuse", help="metadata-only baseline, late fusion or stacking over a classifier run "
                                    "(same folds and hold-out)")
    add_project_arg(p)
    p.add_argument("image_run", type=int, help="finished classifier run (its folds, hold-out and scores)")
    p.add_argument("--mode", choices=("metadata", "late", "stacking"), default="late")
    p.add_argument("--clinical", required=True, help=FIELDS_HELP)
    p.add_argument("--learner", choices=("logreg", "hgb", "rf"),
                   help="default: hgb (metadata), logreg (late), rf (stacking)")
    add_image_input_options(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_fuse)

    p = sub.add_parser("ablation", help="what each clinical field adds: hold-out table vs the image-only model")
    add_project_arg(p)
    p.add_argument("image_run", type=int)
    p.add_argument("--mode", choices=("metadata", "late", "stacking"), default="late")
    p.add_argument("--clinical", required=True, help=FIELDS_HELP)
    p.add_argument("--groups", help="a few fields whose every subset is fitted (at most 6)")
    p.add_argument("--scheme", choices=("loo", "subsets", "both"),
                   help="leave-one-out, all subsets of --groups, or both (default: both with --groups)")
    p.add_argument("--learner", choices=("logreg", "hgb", "rf"))
    add_image_input_options(p)
    p.add_argument("--csv", help="also write the table to this CSV file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ablation)

    p = sub.add_parser("shap", help="SHAP of a fusion run: mean |SHAP| per class and field, per case")
    add_project_arg(p)
    p.add_argument("fusion_run", type=int)
    p.add_argument("--case", type=int, metavar="IMAGE", help="print one hold-out image's explanation")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_shap)

    p = sub.add_parser("clinical-fields", help="the clinical fields a fusion can use in this project")
    add_project_arg(p)
    p.set_defaults(func=cmd_clinical_fields)


def add_image_input_options(p) -> None:
    p.add_argument("--image-input", choices=("probs", "embedding"), default="probs",
                   help="what the fusion reads of the image run: its out-of-fold probabilities (default) or "
                        "its fold models' out-of-fold embeddings, PCA-reduced (fitted on training rows)")
    p.add_argument("--pca", type=int, default=16, help="PCA components of the embeddings (default %(default)s)")


def add_train_options(p) -> None:
    """``mskstudio train … --fusion late|stacking --clinical age,sex``: fuse right after training;
    ``--fusion joint``: train the classifier with a metadata branch, end to end."""
    p.add_argument("--fusion", choices=("late", "stacking", "joint"),
                   help="joint: train end to end with a metadata MLP over the --clinical fields "
                        "(two-input model); late/stacking: after training, fit this fusion of the new "
                        "run's scores with the --clinical fields")
    p.add_argument("--clinical", help=FIELDS_HELP)


def check_train_options(project, args) -> None:
    """Fail before an hour of training, not after it."""
    if getattr(args, "fusion", None):
        from mskstudio.ml.fuse.features import parse_fields

        parse_fields(args.clinical, project)
    elif getattr(args, "clinical", None):
        from mskstudio.jobrun import UserError

        raise UserError("--clinical needs --fusion (joint, late or stacking)")


def joint_fields(args) -> str | None:
    """The ``clinical`` parameter of job ``train``: set for ``--fusion joint`` only."""
    return args.clinical if getattr(args, "fusion", None) == "joint" else None


def fuse_after_train(project, args, image_run: int) -> None:
    if getattr(args, "fusion", None) not in ("late", "stacking"):
        return
    result = run_sync(project, "fuse", {"model_run_id": image_run, "mode": args.fusion,
                                        "clinical": args.clinical, "seed": args.seed}, label="fuse")
    _print_fusion(project, result)


def cmd_fuse(args) -> int:
    with open_writable(args.project) as project:
        result = run_sync(project, "fuse", {"model_run_id": args.image_run, "mode": args.mode,
                                            "clinical": args.clinical, "learner": args.learner,
                                            "image_input": args.image_input, "pca": args.pca,
                                            "seed": args.seed, "name": args.name}, label="fuse")
        if args.json:
            print_json(result)
        else:
            _print_fusion(project, result)
    return 0


def _fmt(p: dict | None, signed: bool = False) -> str:
    if not p or p.get("value") is None or (isinstance(p["value"], float) and math.isnan(p["value"])):
        return "n/a"
    s = "+.3f" if signed else ".3f"
    lo, hi = p.get("ci", [math.nan, math.nan])
    return f"{p['value']:{s}} [{lo:{s}}, {hi:{s}}]"


def _print_fusion(project, result: dict) -> None:
    m = project.models.metrics(result["model_run_id"])
    hold, vs = m.get("holdout") or {}, m.get("vs_image") or {}
    print(f"fusion run {result['model_run_id']}: {result['mode']} ({result['learner']}) over classifier run "
          f"{m['fusion']['image_run']}, fields {', '.join(result['fields']) or 'none'}; "
          f"fitted in {result['fit_s']:.2f} s")
    if not hold.get("n"):
        print("  no hold-out")
        return
    print(f"  hold-out n={hold['n']}: accuracy {_fmt(hold['accuracy'])}, macro AUC {_fmt(hold['macro']['auc'])}")
    for name, c in hold["per_class"].items():
        print(f"    {name[:22]:<22} n={c['support']:<4} sensitivity {_fmt(c['sensitivity'])}")
    if vs:
        print(f"  vs image-only (paired, same cases): accuracy {_fmt(vs['accuracy'], True)} "
              f"(McNemar p {vs['accuracy']['p_mcnemar']:.3g}), macro AUC {_fmt(vs['macro_auc'], True)}")


def cmd_ablation(args) -> int:
    from mskstudio.ml.fuse.ablation import table_lines

    with open_writable(args.project) as project:
        result = run_sync(project, "ablation", {
            "model_run_id": args.image_run, "mode": args.mode, "clinical": args.clinical, "groups": args.groups,
            "scheme": args.scheme, "learner": args.learner, "csv": args.csv,
            "image_input": args.image_input, "pca": args.pca}, label="ablation")
    if args.json:
        print_json(result)
        return 0
    lines = table_lines(result["rows"])
    widths = [max(len(r[i]) for r in lines) for i in range(len(lines[0]))]
    print(f"ablation ({result['mode']}, {result['learner']}) over classifier run {result['image_run']}")
    for r in lines:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))
    return 0


def cmd_shap(args) -> int:
    from mskstudio.ml.fuse.explain import case_explanation

    with open_writable(args.project) as project:
        result = run_sync(project, "shap", {"model_run_id": args.fusion_run}, label="shap")
        case = case_explanation(project, args.fusion_run, args.case) if args.case is not None else None
    if args.json:
        print_json({**result, "case": case})
        return 0
    classes = result["classes"]
    print(f"SHAP of fusion run {args.fusion_run} ({result['output']}, n={result['n']} hold-out cases; "
          f"additivity error {result['additivity_max_error']:.2g})")
    print("mean |SHAP| per field (one-hot parts and missing indicator summed), overall and per class")
    print(f"  {'field':<18} {'overall':>16}        " + "  ".join(c[:10].rjust(10) for c in classes))
    order = sorted(result["fields"], key=lambda f: -result["mean_abs_overall"][f])
    for f in order:
        print(f"  {f:<18} overall {result['mean_abs_overall'][f]:8.4f}        "
              + "  ".join(f"{result['mean_abs'][f][c]:10.4f}" for c in classes))
    if args.case is not None:
        if case is None:
            print(f"image {args.case} is not in the run's hold-out")
            return 0
        k = case["classes"].index(case["predicted"]) if case["predicted"] in case["classes"] else 0
        print(f"image {args.case}: truth {case['truth']}, predicted {case['predicted']}; "
              f"SHAP toward {case['classes'][k]}:")
        for f, vals in sorted(case["shap"].items(), key=lambda kv: -abs(kv[1][k])):
            v = case["values"].get(f, {})
            value = "image model scores" if f == "image" else "missing" if v.get("value") is None else v["value"]
            if "ref_high" in v and v.get("value") is not None:
                value = f"{value} {v.get('unit') or ''} (normal {v.get('ref_low')}–{v.get('ref_high')})"
            print(f"  {f:<18} {vals[k]:+.4f}   {value}")
    return 0


def cmd_clinical_fields(args) -> int:
    from mskstudio.ml.fuse.features import available_fields

    with open_project(args.project) as project:
        print("\n".join(available_fields(project)))
    return 0
