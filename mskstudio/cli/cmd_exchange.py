"""Annotations to and from other tools: import-annotations, import-seg, export-labels, import-labels.

(``export-annotations`` — PNG masks, COCO, lesions.csv, DICOM SEG and SR — lives with the
other annotation commands in ``cmd_annotate``.)  Problems (an unknown image, a conflicting
label, an unreadable file) print one line each on stderr; the counts go to stdout as JSON.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mskstudio.cli.common import add_project_arg, open_project, open_writable, print_json
from mskstudio.jobrun import run_sync


def register(sub) -> None:
    p = sub.add_parser("import-annotations",
                       help="import an export-annotations folder (SEG masks, COCO boxes, labels.csv) from another "
                            "project holding the same images")
    add_project_arg(p)
    p.add_argument("path", help="the folder export-annotations wrote")
    p.add_argument("--replace-human", action="store_true",
                   help="where a label conflicts with a human label, take the file's (default: keep and list)")
    p.set_defaults(func=cmd_import_annotations)

    p = sub.add_parser("import-seg", help="import masks from DICOM SEG files (3D Slicer, OHIF, another project)")
    add_project_arg(p)
    p.add_argument("path", help="a SEG file, or a folder searched for SEG files")
    p.add_argument("--annotator", default=None,
                   help="annotator of segments that name none (default: the SEG's content creator)")
    p.set_defaults(func=cmd_import_seg)

    p = sub.add_parser("export-labels", help="write image labels (every source, with provenance) to CSV or Parquet")
    add_project_arg(p)
    p.add_argument("path", help="output table: NAME.csv or NAME.parquet")
    p.add_argument("--label-set", dest="label_sets", action="append", default=None,
                   help="only this label set (repeat for several; default: all)")
    p.set_defaults(func=cmd_export_labels)

    p = sub.add_parser("import-labels", help="import image labels from a CSV or Parquet table (export-labels format)")
    add_project_arg(p)
    p.add_argument("path", help="table with sop_instance_uid (or image), label_set, label [, source, author, reader, "
                                "confidence, time] columns")
    p.add_argument("--replace-human", action="store_true",
                   help="where the project has a different human label, take the file's (default: keep the human "
                        "label and list the conflict)")
    p.add_argument("--label-set", dest="label_sets", action="append", default=None,
                   help="only rows of this label set (repeat for several)")
    p.add_argument("--author", default=None, help="author of rows that name none (default: 'import')")
    p.set_defaults(func=cmd_import_labels)


def print_problems(problems: list[str], limit: int = 50) -> None:
    for line in problems[:limit]:
        print(line, file=sys.stderr)
    if len(problems) > limit:
        print(f"… and {len(problems) - limit} more", file=sys.stderr)


def cmd_import_seg(args) -> int:
    with open_writable(args.project) as project:
        result = run_sync(project, "import-seg",
                          {"path": str(Path(args.path).absolute()), "annotator": args.annotator},
                          label="import-seg")
    print_problems(result.get("problems", []))
    print_json({k: v for k, v in result.items() if k != "problems"})
    return 0 if result["masks"] else 1


def cmd_export_labels(args) -> int:
    from mskstudio.io.exports.labels_table import export_labels

    # Reads the store only (one audit line when writable): a read-only project can be exported.
    with open_project(args.project) as project:
        result = export_labels(project, Path(args.path).absolute(), label_sets=args.label_sets)
    print_json(result)
    return 0


def cmd_import_labels(args) -> int:
    with open_writable(args.project) as project:
        result = run_sync(project, "import-labels",
                          {"path": str(Path(args.path).absolute()), "replace_human": args.replace_human,
                           "label_sets": args.label_sets, "author": args.author}, label="import-labels")
    print_problems(result["unknown"] + result["conflict_lines"] + result["problems"])
    print_json({k: v for k, v in result.items() if k not in ("unknown", "conflict_lines", "problems")})
    return 0


def cmd_import_annotations(args) -> int:
    with open_writable(args.project) as project:
        result = run_sync(project, "import-annotations",
                          {"path": str(Path(args.path).absolute()), "replace_human": args.replace_human},
                          label="import-annotations")
    lines: list[str] = []
    for part in result.values():
        lines += part.get("unknown", []) + part.get("conflict_lines", []) + part.get("problems", [])
    print_problems(lines)
    print_json({name: {k: v for k, v in part.items() if not isinstance(v, list)} for name, part in result.items()})
    return 0
