"""Runs trained away from the project: ``import-run`` brings one back from a node's copy."""

from __future__ import annotations

from mskstudio.cli.common import add_project_arg, open_writable, print_json


def register(sub) -> None:
    p = sub.add_parser(
        "import-run", help="import a finished model run from a copy of this project (trained on a cluster node)",
        description="Copy one finished model run (checkpoint, parameters, metrics, split) from SOURCE, a copy "
                    "of this project that trained it (e.g. on a cluster node, with the command "
                    "--submit-only printed), into this project as an ordinary run with a new id. "
                    "Refused when SOURCE's images, label set or classes are not this project's.")
    add_project_arg(p)
    p.add_argument("source", help="the copy's project folder (NAME.mskproj) brought back from the node")
    p.add_argument("run", type=int, help="the model run id in the copy")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_import_run)


def cmd_import_run(args) -> int:
    from mskstudio.ml.scale.import_run import import_run

    with open_writable(args.project) as project:
        result = import_run(project, args.source, args.run)
    if args.json:
        print_json(result)
    else:
        print(f"imported {result['kind']} run {result['source_run_id']} of {args.source} "
              f"as model run {result['model_run_id']}")
    return 0
