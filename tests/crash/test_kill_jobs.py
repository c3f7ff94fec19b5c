"""Crash suite, the per-image jobs: predict, Grad-CAM, embeddings, "cluster now", the
annotation export and the ONNX export, each a real ``run-job`` subprocess killed with
SIGKILL after a seeded number of its progress messages, then resumed with
``mskstudio jobs PROJECT --resume JOB``.

After each: the project opens, integrity and foreign keys hold, no orphan blobs, no job or
run left ``running``, the killed job shows as interrupted, the resumed job says how many
pieces the killed one had finished when it had finished any, and the end state equals
that of an uninterrupted run of the same job on a copy of the same project (these jobs are
deterministic on the CPU).  ``predict`` (seed 0) runs in the normal suite; every kind and
more seeds run with ``--run-slow`` (``MSKSTUDIO_CRASH_SEEDS=0,1,2,3`` for a sweep).
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
from test_kill_resume import SEEDS, _cli, check_consistent

from mskstudio.store import Project

REPO = Path(__file__).resolve().parents[2]
SLOW_SEEDS = sorted(set(SEEDS) | {0, 1, 2})


@pytest.fixture(scope="module")
def trained(phantom_project_path, tmp_path_factory) -> tuple[Path, int]:
    """The phantom project with a tiny classifier run (trained once for the module)."""
    sys.path.insert(0, str(REPO / "tests" / "gui"))
    from trained_project import build_trained_project

    return build_trained_project(phantom_project_path, tmp_path_factory.mktemp("crash-jobs"))


def _params(case: str, run_id: int, out: Path) -> tuple[str, dict]:
    return {
        "predict": ("predict", {"model_run_id": run_id, "batch_size": 4}),
        "explain": ("explain", {"model_run_id": run_id, "scales": "1"}),
        "embed": ("embed", {"run_id": run_id, "roi": False}),
        "cluster-now": ("cluster", {"mode": "fast", "k": 4, "input_size": 48, "batch_size": 4,
                                    "init": "scratch", "seed": 0, "device": "cpu", "workers": 0}),
        "export-annotations": ("export-annotations", {"outdir": str(out / "export")}),
        "export-onnx": ("export-onnx", {"model_run_id": run_id, "outdir": str(out / "onnx"), "n_parity": 2}),
    }[case]


def _run(root: Path, job: int, kill_after: int | None) -> list[dict]:
    """Run ``job`` as the app's runner does; SIGKILL it after ``kill_after`` progress messages
    (None: let it finish).  Returns the JSON lines it wrote."""
    proc = _cli("run-job", str(root), str(job), "--jsonl")
    lines, ticks = [], 0
    try:
        for line in proc.stdout:
            msg = json.loads(line)
            lines.append(msg)
            if kill_after is not None:
                assert msg["type"] != "returned", "the job finished before its kill point"
                ticks += msg["type"] == "progress"
                if ticks >= kill_after:
                    proc.send_signal(signal.SIGKILL)
                    break
    finally:
        proc.wait(timeout=600)
        err = proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
    if kill_after is None:
        assert proc.returncode == 0, err[-3000:]
    else:
        assert proc.returncode == -signal.SIGKILL
    return lines


def _resume(root: Path, job: int) -> tuple[dict, str]:
    proc = _cli("jobs", str(root), "--resume", str(job))
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out), err


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _state(case: str, root: Path, run_id: int, out: Path, result: dict) -> dict:
    """What the job leaves behind, in a form two runs can be compared by."""
    with Project.open(root) as p:
        if case == "predict":
            rows = p.db.query("SELECT image_id, class_id, probs, rejected FROM predictions "
                              "WHERE model_run_id = ? ORDER BY image_id", (run_id,))
            labels = p.db.query("SELECT image_id, class_id, source, run_id FROM labels "
                                "WHERE source = 'model' ORDER BY image_id")
            return {"result": result, "rows": [tuple(r) for r in rows], "labels": [tuple(r) for r in labels]}
        if case == "explain":
            cams = sorted(p.cache_path("cam", str(run_id), "x").parent.glob("*.npy"))
            return {"result": {k: v for k, v in result.items() if k != "cache"},
                    "maps": {c.name: np.load(c).round(5).tobytes() for c in cams if ".tmp" not in c.name}}
        if case == "embed":
            from mskstudio.ml.retrieve.embeddings import load

            x, ids = load(p, run_id, roi=False)
            return {"n": result["n"], "x": x.round(5).tobytes(), "ids": ids.tolist()}
        if case == "cluster-now":
            run = p.clusters.run(result["cluster_run_id"])
            assign = p.clusters.assignment(result["cluster_run_id"])
            return {"k": run["k"], "assign": sorted(assign.items()),
                    "runs": p.db.scalar("SELECT COUNT(*) FROM cluster_runs")}
        if case == "export-annotations":
            files = sorted(f.relative_to(out / "export").as_posix() for f in (out / "export").rglob("*")
                           if f.is_file())
            return {"result": {k: v for k, v in result.items() if k not in ("outdir", "csv", "coco")},
                    "files": files,
                    "same": {f: _digest(out / "export" / f) for f in files if f.endswith((".png", ".csv"))}}
        if case == "export-onnx":
            files = sorted(f.name for f in (out / "onnx").iterdir())
            return {"files": files, "roles": [f["role"] for f in result["files"]],
                    "onnx": {f: _digest(out / "onnx" / f) for f in files if f.endswith(".onnx")}}
    raise AssertionError(case)


def _kept(case: str, p: Project, run_id: int) -> bool:
    """Whether the killed job left finished pieces a resume can skip."""
    if case == "explain":
        return any(p.cache_path("cam", str(run_id), "x").parent.glob("*-pred.npy"))
    if case == "embed":
        from mskstudio.ml.retrieve.embeddings import cache_files

        return cache_files(p, run_id)[1].exists()
    folder = p.cache_dir / "resume"
    if any(folder.glob("features-*.npz")):  # "cluster now": feature rows kept
        return True
    # Marks with finished pieces (a kill while the first marks were written leaves only a
    # temporary file, which counts for nothing).
    return any(json.loads(f.read_text()).get("done") for f in folder.glob("job*.json"))


def _case(trained, tmp_path, case: str, seed: int) -> None:
    root0, run_id = trained
    if case == "export-annotations":  # predictions give every image a DICOM SR to export
        from mskstudio.jobrun import submit_and_run

        shutil.copytree(root0, tmp_path / "base.mskproj")
        root0 = tmp_path / "base.mskproj"
        with Project.open(root0) as p:
            submit_and_run(p, "predict", {"model_run_id": run_id})
    ref_dir, killed_dir = tmp_path / "ref", tmp_path / "killed"
    roots = {}
    for d in (ref_dir, killed_dir):
        d.mkdir()
        roots[d] = d / "p.mskproj"
        shutil.copytree(root0, roots[d])
    kind, params = _params(case, run_id, ref_dir)
    with Project.open(roots[ref_dir]) as p:
        ref_job = p.jobs.submit(kind, params)
    ref_lines = _run(roots[ref_dir], ref_job, None)
    ref_result = next(m for m in ref_lines if m["type"] == "returned")["result"]
    ticks = sum(m["type"] == "progress" for m in ref_lines)
    assert ticks >= 2, f"{case}: too few progress messages to kill in between ({ticks})"

    kind, params = _params(case, run_id, killed_dir)
    with Project.open(roots[killed_dir]) as p:
        job = p.jobs.submit(kind, params)
    kill_after = random.Random(f"{case}-{seed}").randrange(1, ticks)
    _run(roots[killed_dir], job, kill_after)

    check_consistent(roots[killed_dir])
    with Project.open(roots[killed_dir]) as p:
        assert p.jobs.get(job)["status"] == "interrupted"
        kept = _kept(case, p, run_id)
    result, err = _resume(roots[killed_dir], job)
    assert f"resumes job {job}: {kind} continues where it stopped" in err
    if kept:  # the killed job had finished some pieces: the resumed one says so and skips them
        assert "resuming: " in err, err[-2000:]
    check_consistent(roots[killed_dir])
    with Project.open(roots[killed_dir]) as p:
        assert [r["status"] for r in p.jobs.list()][0] == "done"
        assert not list((p.cache_dir / "resume").glob("*")), "the finished job left resume marks"
    assert _state(case, roots[killed_dir], run_id, killed_dir, result) == \
        _state(case, roots[ref_dir], run_id, ref_dir, ref_result)


def test_killed_predict_resumes_to_the_result_of_an_uninterrupted_run(trained, tmp_path):
    _case(trained, tmp_path, "predict", SEEDS[0])


CASES = ["predict", "explain", "embed", "cluster-now", "export-annotations", "export-onnx"]


@pytest.mark.slow
@pytest.mark.parametrize("seed", SLOW_SEEDS)
@pytest.mark.parametrize("case", CASES)
def test_killed_job_resumes_to_the_result_of_an_uninterrupted_run(trained, tmp_path, case, seed):
    _case(trained, tmp_path, case, seed)
