"""The CLI pipeline a user runs on a fresh machine: demo → info → import again → jobs."""

from __future__ import annotations

import json
import subprocess
import sys


def cli(*args, cwd=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "mskstudio", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd)


def test_demo_headless_then_inspect(tmp_path):
    project = tmp_path / "demo.mskproj"
    r = cli("demo", project, "--images", 24, "--size", "small", "--headless", "--no-loop")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "demo project ready" in r.stdout and "ran headless" in r.stdout
    info = json.loads(cli("info", project, "--json").stdout)
    assert info["images"] == 24
    assert info["patients"] >= 4
    assert info["label_sets"]["diagnosis"] > 0
    assert info["jobs"] == {"done": 1}
    # Running the demo again reuses the finished project instead of rebuilding it.
    again = cli("demo", project, "--headless", "--no-loop")
    assert again.returncode == 0 and "24 images" in again.stdout
    jobs = cli("jobs", project)
    assert "demo-archive" in jobs.stdout and "done" in jobs.stdout


def test_import_cli_reports_skips(tmp_path, phantom_archive):
    project = tmp_path / "p.mskproj"
    assert cli("new", project).returncode == 0
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "readme.txt").write_text("hello")
    (junk / "half.dcm").write_bytes(next((phantom_archive.parent / "dicom").rglob("*.dcm")).read_bytes()[:2000])
    r = cli("import", project, phantom_archive.parent / "dicom", junk)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "imported 60 files" in r.stdout
    assert "readme.txt: not a DICOM file" in r.stdout
    both = r.stdout + r.stderr  # the skipped list once (the job's log lines were echoed too)
    assert both.count("readme.txt: not a DICOM file") == 1 and both.count("half.dcm:") == 1
    assert "(2 skipped)" in r.stdout
    assert "half.dcm" in r.stdout
    r = cli("import-clinical", project, phantom_archive.parent / "clinical.csv")
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(cli("info", project, "--json").stdout)["images"] == 60
