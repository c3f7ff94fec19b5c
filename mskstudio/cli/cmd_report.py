"""Evaluation: ``report`` (the study report, HTML + CSV) and ``operating-point`` (threshold on validation)."""

from __future__ import annotations

from mskstudio.cli.common import add_project_arg, open_writable, print_json


def register(sub) -> None:
    p = sub.add_parser(
        "report", help="write the study report (HTML, CSV tables, figures) of a project's model runs",
        description="Selection flow, cohort tables (STROBE), every run's hold-out metrics with 95%% CIs, "
                    "calibration and operating point, subgroups with forest plots, DeLong / McNemar "
                    "comparisons with Holm-adjusted p-values, cached Grad-CAM examples and a TRIPOD+AI / "
                    "CLAIM checklist. Regenerating gives the same tables.")
    add_project_arg(p)
    p.add_argument("--runs", help="model run ids, comma-separated (default: every run with hold-out results)")
    p.add_argument("--out", required=True, help="output folder (created; report.html, tables/, figures/)")
    p.add_argument("--rule", choices=("youden", "sensitivity", "specificity"),
                   help="operating-point rule for runs without a stored one (default youden)")
    p.add_argument("--target", type=float, help="target sensitivity / specificity for --rule")
    p.add_argument("--png", action="store_true", help="figures as PNG instead of SVG")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "operating-point", help="fit temperature scaling and a decision threshold of a run on its "
                                "validation folds, report them on the hold-out and store them on the run")
    add_project_arg(p)
    p.add_argument("run", type=int, help="model run id")
    p.add_argument("--rule", choices=("youden", "sensitivity", "specificity"), default="youden")
    p.add_argument("--target", type=float, help="target sensitivity or specificity (0-1) for --rule")
    p.add_argument("--class", dest="positive", help="class scored one-vs-rest (default: the second of two)")
    p.set_defaults(func=cmd_operating_point)


def cmd_report(args) -> int:
    from mskstudio.jobrun import run_sync

    params = {"out": args.out, "runs": args.runs, "rule": args.rule, "target": args.target,
              "figure_format": "png" if args.png else "svg"}
    with open_writable(args.project) as project:
        result = run_sync(project, "report", {k: v for k, v in params.items() if v is not None},
                          label="study report")
    if args.json:
        print_json(result)
    else:
        print(f"report: {result['html']} ({len(result['runs'])} runs, {result['tables']} tables, "
              f"{result['figures']} figures)")
    return 0


def cmd_operating_point(args) -> int:
    from mskstudio.jobrun import run_sync

    params = {"model_run_id": args.run, "rule": args.rule, "target": args.target, "positive": args.positive}
    with open_writable(args.project) as project:
        r = run_sync(project, "operating-point", {k: v for k, v in params.items() if v is not None},
                     label="operating point", quiet=True)
    print(f"run {r['run']}: P({r['positive']}) ≥ {r['threshold']:.4f} ({r['rule']}, chosen on validation), "
          f"temperature {r['temperature']:.3f}")
    if r["holdout_n"]:
        print(f"hold-out (n = {r['holdout_n']}): sensitivity {r['holdout_sensitivity']:.3f}, "
              f"specificity {r['holdout_specificity']:.3f}")
    return 0
