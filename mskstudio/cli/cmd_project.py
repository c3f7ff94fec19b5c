"""Project life cycle: new, info, jobs, run-job, gui."""

from __future__ import annotations

import json
import signal
import sys

from mskstudio.cli.common import add_project_arg, open_project, open_writable, print_json
from mskstudio.jobs import CancelToken
from mskstudio.store import Project
from mskstudio.store.lease import open_elsewhere


def register(sub) -> None:
    p = sub.add_parser("new", help="create an empty project folder")
    p.add_argument("path", help="folder to create (the .mskproj suffix is added if missing)")
    p.add_argument("--name", help="display name (default: folder name)")
    p.set_defaults(func=cmd_new)

    p = sub.add_parser("info", help="counts, label sets, runs and jobs of a project")
    add_project_arg(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("jobs", help="list the jobs of a project with their status")
    add_project_arg(p)
    p.add_argument("--failures", action="store_true", help="also list files an import skipped")
    p.add_argument("--resume", type=int, metavar="JOB",
                   help="resume an interrupted (or cancelled) job: the same run continues at its next "
                        "epoch, an import at its next file")
    p.set_defaults(func=cmd_jobs)

    p = sub.add_parser("run-job", help="run a submitted job (used by the GUI's subprocess runner)")
    add_project_arg(p)
    p.add_argument("job_id", type=int)
    p.add_argument("--jsonl", action="store_true", help="report progress as JSON lines on stdout")
    p.set_defaults(func=cmd_run_job)

    p = sub.add_parser("gui", help="open the desktop application")
    p.add_argument("project", nargs="?", help="project to open")
    p.set_defaults(func=cmd_gui)


def cmd_new(args) -> int:
    project = Project.create(args.path, name=args.name)
    print(f"created {project.root}")
    return 0


def cmd_info(args) -> int:
    with open_project(args.project) as project:
        info = project.summary()
        holder = open_elsewhere(project.root)
    info["open_in_window"] = holder.describe() if holder else None
    if args.json:
        print_json(info)
        return 0
    print(f"{info['name']}  ({info['path']}, schema {info['schema']})")
    if info["readonly"]:
        print(f"  read-only: {info['readonly']}")
    if holder:  # CLI work beside it is safe (SQLite serialises the writes); the window sees it on reload
        print(f"  open in a window: {holder.describe()}")
    print(f"  patients {info['patients']}, studies {info['studies']}, images {info['images']}")
    print(f"  masks {info['masks']}, boxes {info['boxes']}, cluster runs {info['cluster_runs']}, "
          f"model runs {info['model_runs']}, files skipped at import {info['import_failures']}")
    for name, n in info["label_sets"].items():
        print(f"  label set {name}: {n} labels")
    jobs = ", ".join(f"{k} {v}" for k, v in info["jobs"].items()) or "none"
    print(f"  jobs: {jobs}")
    return 0


def cmd_jobs(args) -> int:
    if args.resume:
        return _resume_job(args.project, args.resume)
    with open_project(args.project) as project:
        print(f"{'id':>4}  {'kind':<16} {'status':<11} {'progress':>8}  message")
        for job in project.jobs.records():
            text = job.error or job.message or ""
            msg = text.splitlines()[0][:70] if text else ""
            print(f"{job.id:>4}  {job.kind:<16} {job.status:<11} {job.progress*100:7.0f}%  {msg}")
        if args.failures:
            for f in project.jobs.failures():
                print(f"  job {f['job_id']}: {f['path']}: {f['reason']}")
    return 0


def _resume_job(path: str, job_id: int) -> int:
    from mskstudio.jobrun import UserError, resume_plan, run_existing

    with open_writable(path) as project:
        row = project.jobs.get(job_id)
        if row is None:
            raise UserError(f"{path}: no job {job_id}")
        if row["status"] not in ("interrupted", "cancelled", "error"):
            raise UserError(f"job {job_id} is {row['status']}: only an interrupted, cancelled or failed "
                            "job can be resumed")
        new_id = project.jobs.resubmit(job_id)
        print(f"job {new_id} resumes job {job_id}: {resume_plan(row['kind'])[1]}", file=sys.stderr)
        result = run_existing(project, new_id, label=f"{row['kind']} (resumed)")
    print_json(result)
    return 0


class JsonLinesSink:
    """One JSON object per line on stdout: the subprocess half of the GUI job runner."""

    def _emit(self, **obj) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    def on_progress(self, fraction, message, eta_s):
        self._emit(type="progress", fraction=fraction, message=message, eta_s=eta_s)

    def on_metric(self, name, value, step):
        self._emit(type="metric", name=name, value=value, step=step)

    def on_log(self, message):
        self._emit(type="log", message=message)


def cmd_run_job(args) -> int:
    from mskstudio.jobrun import TqdmSink, UserError, ctrl_c_cancels, run_job
    from mskstudio.ml.scale import ddp

    if ddp.launched() and ddp.rank() > 0:
        # A torchrun rank other than 0 never opens the project: rank 0 runs the job and
        # broadcasts the plan; this rank trains its share on the read-only snapshot.
        from mskstudio.ml.scale.worker import worker_main

        return worker_main()

    token = CancelToken()
    # The GUI asks a subprocess job to stop with SIGTERM; the job stops at its next check.
    signal.signal(signal.SIGTERM, lambda *_: token.cancel())
    project = open_writable(args.project)
    if ddp.launched():  # rank 0 under torchrun: only the trainers have a distributed half
        from mskstudio.ml.scale.worker import WORKERS

        job = project.jobs.record(args.job_id)
        if job is not None and job.kind not in WORKERS:
            project.close()
            raise UserError(f"job {args.job_id} ({job.kind}) does not run distributed; run it without torchrun "
                            f"(distributed: {', '.join(sorted(WORKERS))})")
    sink = JsonLinesSink() if args.jsonl else TqdmSink(f"job {args.job_id}")
    try:
        with ctrl_c_cancels(token):
            result = run_job(project, args.job_id, sink=sink, token=token)
    except Exception as exc:
        if args.jsonl:
            sink._emit(type="error", message=str(exc))
        raise
    finally:
        if not args.jsonl:
            sink.close()
        project.close()
    if args.jsonl:
        sink._emit(type="returned", result=result)
    return 0


def cmd_gui(args) -> int:
    import os

    # The core (this CLI included) never imports Qt: the GUI is its own program,
    # started in place of this process.
    argv = [sys.executable, "-m", "mskstudio.gui"] + ([args.project] if args.project else [])
    os.execv(sys.executable, argv)
    return 0  # not reached
