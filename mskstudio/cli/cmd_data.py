"""Getting data in: import, import-clinical, demo."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mskstudio.cli.common import add_project_arg, open_writable, print_json
from mskstudio.io.params import DEMO_IMAGES
from mskstudio.jobrun import UserError, run_sync, submit_and_run
from mskstudio.store import Project, is_project


def register(sub) -> None:
    p = sub.add_parser("import", help="import DICOM folders/files (de-identified by default)")
    add_project_arg(p)
    p.add_argument("paths", nargs="+", help="folders or files to import (DICOMDIR supported)")
    p.add_argument("--in-place", action="store_true",
                   help="reference files where they are instead of copying (needs --no-deid)")
    p.add_argument("--no-deid", action="store_true", help="keep identifying tags (not recommended)")
    p.add_argument("--full-dates", action="store_true",
                   help="keep study and acquisition dates unchanged (default for a new project: every "
                        "date of a patient shifted by one keyed offset, PS3.15 Modified Dates; intervals "
                        "survive); a project keeps the option of its first import")
    p.add_argument("--keep-map", action="store_true",
                   help="keep the original PatientID beside the pseudonym (opt-in)")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                   help="decoding processes (default: %(default)s)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("import-clinical", help="import a clinical CSV (one row per patient)")
    add_project_arg(p)
    p.add_argument("csv", help="CSV file: patient_id, age, sex, site, position, diagnosis, dignity, "
                               "diagnosis_source, lab_NAME[_unit|_low|_high] …")
    p.set_defaults(func=cmd_import_clinical)

    p = sub.add_parser("demo", help="build the phantom demo project and open it (or run headless)")
    p.add_argument("path", nargs="?", default="demo.mskproj", help="project folder (default: %(default)s)")
    p.add_argument("--images", type=int, default=600, help="number of phantom radiographs")
    p.add_argument("--size", choices=("small", "medium", "full"), default="medium",
                   help="image size: small ~300 px (tests), medium ~1000 px, full 2000–3000 px")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--headless", action="store_true",
                   help="do not open the GUI (default when there is no display)")
    p.add_argument("--no-loop", action="store_true",
                   help="headless: only build the project, do not run the whole loop on it")
    p.set_defaults(func=cmd_demo)


def cmd_import(args) -> int:
    with open_writable(args.project) as project:
        result = run_sync(project, "import", {
            "paths": [str(Path(p).absolute()) for p in args.paths], "copy": not args.in_place,
            "deidentify": not args.no_deid, "keep_map": args.keep_map,
            "dates": "full" if args.full_dates else None, "workers": args.workers,
        }, label="import", echo_log=False)
    _print_import(result)
    return 0 if result["imported"] or result["duplicates"] else 1


def _print_import(result: dict) -> None:
    """The summary and the skipped files, once (the job's own log lines are not echoed)."""
    from mskstudio.io.importer import summary_line

    print(f"{summary_line(result)} in {result['seconds']} s")
    for path, reason in result["failures"]:
        print(f"  skipped {path}: {reason}")


def cmd_import_clinical(args) -> int:
    with open_writable(args.project) as project:
        result = run_sync(project, "import-clinical", {"path": str(Path(args.csv).absolute())},
                          label="clinical")
    print(f"{result['imported']} of {result['rows']} rows imported")
    if result["unknown_columns"]:
        print(f"  unknown columns (ignored): {', '.join(result['unknown_columns'])}")
    for line, reason in result["bad_rows"]:
        print(f"  line {line}: {reason}")
    return 0 if result["n_bad_rows"] == 0 else 3


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or sys.platform in (
        "darwin", "win32")


def cmd_demo(args) -> int:
    from mskstudio.jobrun import TqdmSink

    if args.images < 1:
        raise UserError(f"--images must be ≥ 1, got {args.images}")
    sink = TqdmSink("demo")
    try:
        project = build_demo(Path(args.path), images=args.images, size=args.size, seed=args.seed, sink=sink)
    finally:
        sink.close()
    with project:
        info = project.summary()
        r = project.jobs.last_result("demo-archive")
    print(f"demo project ready: {info['path']}")
    print(f"  {info['patients']} patients, {info['studies']} studies, {info['images']} images")
    if r is not None:
        print(f"  generated in {r.get('generate_s')} s, imported in {r.get('import_s')} s; "
              f"clinical rows {r['clinical']['imported']}/{r['clinical']['rows']}")
        if r.get("masks"):
            print(f"  lesion masks and boxes of the phantom surgeons: {r['masks']['imported']} masks, "
                  f"{r['masks']['boxes']} boxes")
    if args.headless or not has_display():
        headless_tour(Path(info["path"]), loop=not args.no_loop)
        return 0
    os.execv(sys.executable, [sys.executable, "-m", "mskstudio.gui", info["path"]])
    return 0  # not reached


def headless_tour(path: Path, *, loop: bool = True) -> None:
    """Without a screen: run the whole loop on the demo (job ``demo-loop``: cluster, label the
    clusters, train, predict and explain, similar cases, box segmenter, ONNX) and print each
    step's figures and time; a project that already ran it prints the stored result."""
    with open_writable(path) as project:
        if loop:
            result = project.jobs.last_result("demo-loop")
            if result is None:
                print("no display: running the whole loop on the demo project (about 2-5 minutes)")
                result = run_sync(project, "demo-loop", {}, label="demo loop")
            else:
                print("the demo loop already ran on this project; its figures:")
            print_loop(result)
        else:
            print_json({k: v for k, v in project.summary().items() if k in ("label_sets", "jobs")})
    print("no display: ran headless. Open it later with `mskstudio gui " + str(path) + "`.")


def print_loop(result: dict) -> None:
    for n, s in enumerate(result["steps"], 1):
        print(f"  {n}. {s['step']:<20} {s['seconds']:>6.1f} s  {s['figures']}")
    print(f"  whole loop: {result['seconds']:.1f} s of pipeline")


def build_demo(path: Path, *, images: int = DEMO_IMAGES, size: str = "medium", seed: int = 0,
               sink=None, token=None) -> Project:
    """Create (or reuse, if complete) the demo project at ``path``."""
    path = Path(path)
    if is_project(path):
        project = Project.open(path)
        if project.meta("demo") == "phantoms" and project.images.count() > 0:
            return project
        raise ValueError(f"{path}: a project exists here that is not a finished demo; "
                         "choose another path or delete it")
    project = Project.create(path, name="Demo (phantoms)")
    submit_and_run(project, "demo-archive", {"images": images, "size": size, "seed": seed},
                   sink=sink, token=token)
    return project
