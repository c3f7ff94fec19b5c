"""A full disk or a read-only project: import, training and export stop with one line
naming what failed (no traceback), and the project stays consistent.

The full disk is a file size limit (RLIMIT_FSIZE) on the CLI subprocess, with SIGXFSZ
ignored so that a write past the limit raises EFBIG as a full disk raises ENOSPC; both
are the same ``storage_failure`` to the code.  Limits are chosen below the size of the
first blob each job writes (a 16-bit radiograph, a checkpoint), so the failure is met
mid-job, after rows were written.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mskstudio.store import Project

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def _cli(args: list[str], *, fsize: int | None = None) -> subprocess.CompletedProcess:
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # inherited by exec and the import workers
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run([sys.executable, "-m", "mskstudio", *args], cwd=REPO, env=ENV, text=True,
                          capture_output=True, timeout=600, preexec_fn=limit if fsize else None)


def assert_one_line_error(proc: subprocess.CompletedProcess, *words: str) -> str:
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("mskstudio: error:")]
    assert len(errors) == 1, proc.stderr[-2000:]
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


def assert_consistent(root: Path) -> None:
    with Project.open(root) as project:
        assert project.db.scalar("PRAGMA integrity_check") == "ok"
        assert project.db.query("PRAGMA foreign_key_check") == []
        named = {r[0] for r in project.db.query(
            "SELECT blob_sha FROM images WHERE blob_sha IS NOT NULL "
            "UNION SELECT checkpoint_sha FROM model_runs WHERE checkpoint_sha IS NOT NULL")}
        assert all(project.blobs.exists(s) for s in named), "a row names a missing blob"
        assert project.blobs.orphans(named, partial=True) == [], "a blob no row names"
        assert project.db.scalar("SELECT COUNT(*) FROM jobs WHERE status = 'running'") == 0
        assert project.db.scalar("SELECT COUNT(*) FROM model_runs WHERE status = 'running'") == 0


def test_import_on_a_full_disk_stops_with_one_line(tmp_path, phantom_archive):
    dicom = phantom_archive.parent / "dicom"
    root = tmp_path / "p.mskproj"
    Project.create(root).close()
    sizes = sorted(p.stat().st_size for p in dicom.rglob("*.dcm"))
    # Room for the small files and the database's first pages, not for the larger radiographs.
    # Two worker processes: both inherit the limit, and the import stops at the first refusal.
    proc = _cli(["import", str(root), str(dicom), "--workers", "2"], fsize=max(96_000, sizes[len(sizes) // 4]))
    line = assert_one_line_error(proc, "import", "failed")
    assert "size limit" in line or "disk" in line  # SQLite reports EFBIG as a disk I/O error
    assert_consistent(root)
    with Project.open(root) as project:
        assert project.db.scalar("SELECT COUNT(*) FROM images") < len(sizes)
        blamed = [tuple(r) for r in project.jobs.failures()]
        assert blamed == [], blamed  # no file blamed for the disk
        assert project.db.scalar("SELECT status FROM jobs WHERE kind = 'import'") == "error"
    # With room on the disk again, the same import completes.
    proc = _cli(["import", str(root), str(dicom), "--workers", "1"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    with Project.open(root) as project:
        expected = len(phantom_archive.read_text().splitlines()) - 1  # manifest: one row per image
        assert project.db.scalar("SELECT COUNT(*) FROM images") == expected
        assert project.jobs.failures() == []
    assert_consistent(root)


def _training_project(root: Path) -> None:
    from mskstudio.ml.synthetic import add_synthetic_images

    with Project.create(root) as project:
        add_synthetic_images(project, 24, seed=1, size=32, thumbnails=False)


def test_training_on_a_full_disk_stops_with_one_line(tmp_path):
    root = tmp_path / "p.mskproj"
    _training_project(root)
    # A checkpoint of the tiny network is ~100 KB, bigger than the limit; the database's
    # rows (metrics, the run) fit in the write-ahead log below it.
    proc = _cli(["train", str(root), "region", "--arch", "tinycnn", "--size", "32", "--epochs", "1",
                 "--folds", "2", "--batch-size", "8", "--patience", "5", "--seed", "0"], fsize=48_000)
    assert_one_line_error(proc, "train", "failed")
    assert_consistent(root)
    with Project.open(root) as project:
        assert project.db.scalar("SELECT COUNT(*) FROM model_runs WHERE status = 'done'") == 0


def test_share_copy_on_a_full_disk_stops_with_one_line(tmp_path, phantom_project_path):
    """``share`` exports the whole project (database and every DICOM file, re-keyed)."""
    root = tmp_path / "p.mskproj"
    shutil.copytree(phantom_project_path, root)
    out = tmp_path / "copy.mskproj"
    proc = _cli(["share", str(root), str(out)], fsize=64_000)  # the database copy is larger
    assert_one_line_error(proc, "share failed", "copy.mskproj")
    assert not out.exists()  # no half-written copy left behind
    assert_consistent(root)


def test_an_export_job_on_a_full_disk_leaves_no_running_row(tmp_path, phantom_project_path):
    """The same through a job row (what the GUI runs): the job ends 'error' with the line."""
    root = tmp_path / "p.mskproj"
    shutil.copytree(phantom_project_path, root)
    with Project.open(root) as project:
        job = project.jobs.submit("share", {"out": str(tmp_path / "copy.mskproj")})
    proc = _cli(["run-job", str(root), str(job)], fsize=64_000)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert_consistent(root)
    with Project.open(root) as project:
        record = project.jobs.record(job)
        assert record.status == "error"
        assert record.error.splitlines()[0].startswith(f"share (job {job}) failed: ")


EXPORT_ON_A_FULL_DISK = """
import resource, signal, sys
from mskstudio.jobrun import submit_and_run
from mskstudio.store import Project, StoreError
project = Project.open(sys.argv[1])  # opened first: SQLite's shared-memory file is 32 KB
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
try:
    submit_and_run(project, "export-labels", {"path": sys.argv[2]})
except StoreError as exc:
    print(exc)
"""


def test_export_labels_on_a_full_disk_fails_its_job_with_one_line(tmp_path, phantom_project_path):
    root = tmp_path / "p.mskproj"
    shutil.copytree(phantom_project_path, root)
    out = tmp_path / "labels.csv"  # ~30 KB for the phantom project's label sets
    proc = subprocess.run([sys.executable, "-c", EXPORT_ON_A_FULL_DISK, str(root), str(out)], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("export-labels (job ") and "size limit" in proc.stdout, proc.stdout
    assert str(out) in proc.stdout
    assert_consistent(root)
    with Project.open(root) as project:
        assert project.db.scalar("SELECT status FROM jobs WHERE kind = 'export-labels'") == "error"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes read-only folders")
def test_read_only_project_folder_opens_read_only_and_refuses_jobs(tmp_path, phantom_archive):
    root = tmp_path / "p.mskproj"
    Project.create(root).close()
    for path in [root, *root.iterdir()]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        with Project.open(root) as project:
            assert project.readonly and "not writable" in project.readonly_reason
            assert project.db.scalar("PRAGMA integrity_check") == "ok"
        proc = _cli(["import", str(root), str(phantom_archive.parent / "dicom")])
        assert_one_line_error(proc, "not writable")
    finally:
        for path in [root, *root.iterdir()]:
            path.chmod(0o755 if path.is_dir() else 0o644)


def _read_only_view(folder: Path, mount: Path, script: str) -> subprocess.CompletedProcess | None:
    """Run ``script`` (Python) where ``mount`` is a read-only bind mount of ``folder``, in a
    private mount namespace; None where the system does not allow one (not root, no unshare)."""
    if shutil.which("unshare") is None:
        return None
    mount.mkdir()
    shell = (f"mount --bind {folder} {mount} && mount -o remount,ro,bind {mount} && "
             f"{sys.executable} -c \"$SCRIPT\"")
    proc = subprocess.run(["unshare", "-m", "sh", "-c", shell], env={**ENV, "SCRIPT": script}, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    if "mount" in proc.stderr and proc.returncode != 0 and "Traceback" not in proc.stderr:
        return None
    return proc


def test_a_project_on_read_only_media_opens_read_only(tmp_path):
    """A project on a DVD or a write-protected stick, closed cleanly (no -shm file beside the
    database, which SQLite cannot create there): it opens read-only and says why."""
    media = tmp_path / "media"
    with Project.create(media / "p.mskproj") as project:
        project.set_meta("probe", "42")
    assert not (media / "p.mskproj" / "project.db-shm").exists()
    script = ("from mskstudio.store import Project\n"
              f"p = Project.open({str(tmp_path / 'ro' / 'p.mskproj')!r})\n"
              "print(p.readonly, p.readonly_reason, p.meta('probe'), p.db.scalar('PRAGMA integrity_check'))\n")
    proc = _read_only_view(media, tmp_path / "ro", script)
    if proc is None:
        pytest.skip("no private read-only mount here (needs unshare and mount rights)")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "True the project is on a read-only disk 42 ok"
