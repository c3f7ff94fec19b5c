"""Measurements drawn in the viewer: ``mskstudio measurements PROJECT [--image ID] [--json|--csv]``."""

from __future__ import annotations

import csv
import sys

from mskstudio.cli.common import add_project_arg, open_project, print_json
from mskstudio.jobrun import UserError

CSV_COLUMNS = ("id", "image_id", "pseudonym", "kind", "length_mm", "length_px", "angle_deg", "spacing_row_mm",
               "spacing_col_mm", "spacing_source", "author", "created_at", "updated_at", "points")


def register(sub) -> None:
    p = sub.add_parser("measurements", help="list the rulers and angles saved on images (mm, pixels, spacing)")
    add_project_arg(p)
    p.add_argument("--image", type=int, metavar="ID", help="only the measurements of this image")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="machine-readable output")
    out.add_argument("--csv", action="store_true", help="CSV on stdout (one row per measurement)")
    p.set_defaults(func=cmd_measurements)


def cmd_measurements(args) -> int:
    with open_project(args.project) as project:
        if args.image is not None and project.images.record(args.image) is None:
            raise UserError(f"{args.project}: no image {args.image}")
        rows = project.measurements.listing(args.image)
    if args.json:
        print_json(rows)
    elif args.csv:
        write_csv(rows)
    else:
        print_table(rows)
    return 0


def value_text(m: dict) -> str:
    if m["kind"] == "angle":
        return f"{m['angle_deg']:.1f}°"
    if m["length_mm"] is None:
        return "—"
    return f"{m['length_mm']:.2f} mm"


def print_table(rows: list[dict]) -> None:
    if not rows:
        print("no measurements")
        return
    print(f"{'id':>5} {'image':>6}  {'patient':<14} {'kind':<6} {'value':>11} {'pixels':>9}  "
          f"{'spacing (row×col mm)':<22} {'source':<19} {'author':<12} updated")
    for m in rows:
        px = "" if m["length_px"] is None else f"{m['length_px']:.1f}"
        spacing = (f"{m['spacing_row_mm']:.4g}×{m['spacing_col_mm']:.4g}" if m["spacing_row_mm"] else "—")
        when = (m["updated_at"] or "")[:19].replace("T", " ")
        print(f"{m['id']:>5} {m['image_id']:>6}  {m['pseudonym'][:14]:<14} {m['kind']:<6} {value_text(m):>11} "
              f"{px:>9}  {spacing:<22} {m['spacing_source']:<19} {(m['author'] or '')[:12]:<12} {when}")
    print(f"{len(rows)} measurement{'s' if len(rows) != 1 else ''}")


def write_csv(rows: list[dict]) -> None:
    writer = csv.DictWriter(sys.stdout, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for m in rows:
        writer.writerow({**m, "points": ";".join(f"{x:.2f},{y:.2f}" for x, y in m["points"])})
