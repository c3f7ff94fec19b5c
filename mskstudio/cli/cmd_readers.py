"""Readers and reader studies: ``readers``, ``reader-study create|list|read|analyze|export``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mskstudio.cli.common import add_project_arg, open_project, open_writable, print_json


def register(sub) -> None:
    p = sub.add_parser("readers", help="list reader profiles, or create/update one with --set")
    add_project_arg(p)
    p.add_argument("--set", metavar="NAME", help="reader to create or update")
    p.add_argument("--role", choices=("resident", "specialist", "subspecialist", "other"))
    p.add_argument("--years", type=float, help="years of experience")
    p.set_defaults(func=cmd_readers)

    study = sub.add_parser("reader-study", help="blinded, randomised reader studies")
    ss = study.add_subparsers(dest="study_command", metavar="ACTION", required=True)

    c = ss.add_parser("create", help="set up a study: cases, readers, arms and seeded orders")
    add_project_arg(c)
    c.add_argument("--name", required=True)
    c.add_argument("--label-set", required=True, help="label set whose classes readers answer")
    c.add_argument("--truth", dest="truth_set", help="label set scored against (default: --label-set)")
    c.add_argument("--classes", help="answer classes in key order 1-9, comma-separated (default: all)")
    c.add_argument("--images", default="all",
                   help="all | holdout:RUN | filter:body_part=KNEE,view=AP | sample:N-per-class; "
                        "join stages with + (e.g. holdout:3+sample:10-per-class)")
    c.add_argument("--readers", required=True, help="reader names, comma-separated")
    c.add_argument("--arms", default="image", help="image,clinical,assisted:RUN in reading order")
    c.add_argument("--model", help="model run the readers are compared with (default: the assisted arm's)")
    c.add_argument("--washout-days", type=float, default=0.0)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--ordinal", action="store_true", help="classes are ordered (weighted kappa)")
    c.add_argument("--clinical-fields", help="clinical fields the clinical arm shows, comma-separated "
                                             "(default: age_years,sex,site,position; labs always)")
    c.add_argument("--no-confidence", dest="confidence", action="store_false",
                   help="do not ask readers for a confidence")
    c.add_argument("--boxes", action="store_true",
                   help="readers may draw lesion boxes on each case (stored with the read)")
    c.set_defaults(func=cmd_create)

    ls = ss.add_parser("list", help="studies with their progress per reader and arm")
    add_project_arg(ls)
    ls.set_defaults(func=cmd_list)

    r = ss.add_parser("read", help="open the reading window for one reader")
    add_project_arg(r)
    r.add_argument("study")
    r.add_argument("--reader", default=None, help="reader name (default: MSKSTUDIO_USER / login)")
    r.set_defaults(func=cmd_read)

    a = ss.add_parser("analyze", help="accuracy, sensitivity/specificity, kappa, readers vs model")
    add_project_arg(a)
    a.add_argument("study")
    a.add_argument("--out", help="folder for CSV tables and PNG/SVG figures")
    a.add_argument("--positive", help="class counted as positive for sensitivity (default: key 1)")
    a.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for kappa CIs")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--box-reference", default=None,
                   help="reference for the readers' boxes: 'project' (the project's human boxes of the "
                        "study images, the default) or a reader's name")
    a.set_defaults(func=cmd_analyze)

    e = ss.add_parser("export", help="every read as CSV")
    add_project_arg(e)
    e.add_argument("study")
    e.add_argument("--out", required=True, help="CSV file to write")
    e.set_defaults(func=cmd_export)


def cmd_readers(args) -> int:
    with (open_writable(args.project) if args.set else open_project(args.project)) as project:
        if args.set:
            project.readers.save(args.set, role=args.role, years=args.years)
        print_json([{k: r[k] for k in ("name", "role", "years")} for r in project.readers.all()])
    return 0


def cmd_create(args) -> int:
    from mskstudio.ml.readers.setup import create_study

    params = {k: getattr(args, k) for k in ("name", "label_set", "truth_set", "classes", "images", "readers",
                                            "arms", "model", "washout_days", "seed", "ordinal", "confidence",
                                            "clinical_fields", "boxes")}
    with open_writable(args.project) as project:
        study_id = create_study(project, params)
        print_json(_progress(project, study_id))
    return 0


def cmd_list(args) -> int:
    with open_project(args.project) as project:
        print_json([_progress(project, int(s["id"])) for s in project.readers.studies()])
    return 0


def _progress(project, study_id: int) -> dict:
    study = project.readers.study(study_id)
    rows = project.db.query(
        "SELECT rd.name, a.position, a.kind, COUNT(r.id) AS n, COUNT(r.class_id) AS done FROM reads r "
        "JOIN readers rd ON rd.id = r.reader_id JOIN study_arms a ON a.id = r.arm_id WHERE r.study_id = ? "
        "GROUP BY rd.name, a.position ORDER BY rd.name, a.position", (study_id,))
    return {"id": study_id, "name": study["name"], "cases": len(project.readers.case_images(study_id)),
            "seed": study["seed"], "washout_days": study["washout_days"],
            "progress": [f"{r['name']} arm {r['position'] + 1} ({r['kind']}): {r['done']}/{r['n']}"
                         for r in rows]}


def cmd_read(args) -> int:
    from mskstudio.ml.readers.session import ReadingSession
    from mskstudio.store.project import default_author

    reader = args.reader or default_author()
    with open_writable(args.project) as project:
        session = ReadingSession(project, _study_key(args.study), reader)  # one-line errors before the GUI
        if session.done:
            print(f"{reader} has read every case of study {session.study_name!r}")
            return 0
    env = dict(os.environ, MSKSTUDIO_USER=reader)
    argv = [sys.executable, "-m", "mskstudio.gui.readers", str(Path(args.project)), args.study, "--reader", reader]
    os.execve(sys.executable, argv, env)
    return 0  # not reached


def cmd_analyze(args) -> int:
    from mskstudio.ml.readers.analysis import analyze_study, write_outputs
    from mskstudio.ml.readers.params import ReaderAnalysisParams

    with open_project(args.project) as project:
        ReaderAnalysisParams(study=args.study, out=args.out, positive=args.positive, bootstrap=args.bootstrap,
                             seed=args.seed, box_reference=args.box_reference).check(project)
        result = analyze_study(project, _study_key(args.study), positive=args.positive,
                               n_boot=args.bootstrap, seed=args.seed, box_reference=args.box_reference)
        if args.out:
            written = write_outputs(result, Path(args.out))
            result["summary"]["written"] = [str(p) for p in written]
        print_json(result["summary"])
    return 0


def cmd_export(args) -> int:
    from mskstudio.ml.readers.analysis import export_reads

    with open_project(args.project) as project:
        n = export_reads(project, _study_key(args.study), Path(args.out))
    print(f"wrote {n} reads to {args.out}")
    return 0


def _study_key(text: str) -> str | int:
    return int(text) if text.isdigit() else text
