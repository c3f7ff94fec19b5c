"""Annotations to and from other tools: import-seg, export-labels, import-labels.

(``export-annotations`` — PNG masks, COCO, lesions.csv, DICOM SEG and SR — lives with the
other annotation commands in ``cmd_annotate``.)  Problems (an unknown image, a conflicting
label, an unreadable file) print one line each on stderr; the counts go to stdout as JSON.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mskstudio.cli.common import add_project_arg, open_writable, print_json
from mskstudio.jobrun import run_sync


def register(sub) -> None:
    p = sub.add_parser("import-seg", help="import masks from DICOM SEG files (3D Slicer, OHIF, another project)")
    add_project_arg(p)
    p.add_argument("path", help="a SEG file, or a folder searched for SEG files")
    p.add_argument("--annotator", default=None,
                   help="annotator of segments that name none (default: the SEG's content creator)")
    p.set_defaults(func=cmd_import_seg)


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
