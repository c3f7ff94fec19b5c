"""Crash suite, import: a real ``run-job`` subprocess killed with SIGKILL at a seeded random
file, resumed with ``mskstudio jobs PROJECT --resume JOB``, ends in exactly the state of an
uninterrupted import (same images, blobs, patients, studies, analysis caches), and the
killed import's decoder workers do not outlive it."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import signal
import time
from pathlib import Path

import pytest
from test_kill_resume import SEEDS, _cli, check_consistent, resume_cli

from mskstudio.io.importer import run_import
from mskstudio.jobs import JobContext
from mskstudio.store import Project


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _state(root: Path) -> dict:
    with Project.open(root) as project:
        rows = project.db.query(
            "SELECT i.id, i.sop_uid, i.frame, i.blob_sha, i.rows, i.cols, s.study_uid, p.pseudonym AS patient "
            "FROM images i JOIN studies s ON s.id = i.study_id JOIN patients p ON p.id = s.patient_id")
        images = sorted(
            (r["sop_uid"], r["frame"], r["blob_sha"], r["rows"], r["cols"], r["study_uid"], r["patient"],
             hashlib.sha256(project.images.analysis_path(r["id"]).read_bytes()).hexdigest())
            for r in rows)
        return {"images": images,
                "patients": project.db.scalar("SELECT COUNT(*) FROM patients"),
                "studies": project.db.scalar("SELECT COUNT(*) FROM studies")}


@pytest.mark.parametrize("seed", SEEDS)
def test_killed_import_resumes_to_the_state_of_an_uninterrupted_one(tmp_path, phantom_archive, seed):
    if not Path("/proc/self/stat").exists():
        pytest.skip("needs /proc to find the worker processes")
    folder = str(phantom_archive.parent / "dicom")
    empty = tmp_path / "empty.mskproj"
    Project.create(empty).close()
    reference, killed = tmp_path / "reference.mskproj", tmp_path / "killed.mskproj"
    shutil.copytree(empty, reference)  # the same secret: the same pseudonyms and pseudo-UIDs
    shutil.copytree(empty, killed)
    with Project.open(reference) as project:
        run_import(project, {"paths": [folder], "workers": 2}, JobContext.null())
    with Project.open(killed) as project:
        job = project.jobs.submit("import", {"paths": [folder], "workers": 2})

    kill_after = random.Random(f"import-{seed}").randrange(2, 50)  # files decoded before the kill
    proc = _cli("run-job", str(killed), str(job), "--jsonl")
    seen, workers = 0, []
    for line in proc.stdout:
        msg = json.loads(line)
        assert msg["type"] != "returned", "the import finished before its kill point"
        if msg["type"] == "progress" and msg["fraction"] > 0:
            seen += 1
            workers = workers or _children(proc.pid)
            if seen >= kill_after:
                break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    proc.stderr.close()
    assert workers, "the import ran no worker processes"
    deadline = time.monotonic() + 10
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers), "decoder workers outlived the killed import"

    check_consistent(killed)
    with Project.open(killed) as project:
        assert project.jobs.get(job)["status"] == "interrupted"
        stored_before = len(project.images.ids())
    assert stored_before < len(_state(reference)["images"])
    summary = resume_cli(killed, job)
    assert summary["imported"] + summary["duplicates"] >= 1
    check_consistent(killed)
    assert _state(killed) == _state(reference)
