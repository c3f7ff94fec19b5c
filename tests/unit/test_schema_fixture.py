"""Migrations against a real file: tests/fixtures/schema_v2.mskproj was written by the
schema of version 2 (tests/fixtures/make_schema_fixture.py).  Opening a copy must bring it
to the latest version with a backup first and keep everything it held."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from mskstudio.store import Project
from mskstudio.store.schema import latest_version

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "schema_v2.mskproj"
TABLES = ("patients", "studies", "images", "labels", "masks", "boxes", "measurements", "labs", "jobs",
          "job_metrics", "model_runs", "cluster_runs", "audit")


def _counts(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES}
    finally:
        conn.close()


def test_the_fixture_is_a_version_2_file():
    conn = sqlite3.connect(f"file:{FIXTURE / 'project.db'}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    finally:
        conn.close()


def test_a_version_2_project_opens_migrated_with_everything_kept(tmp_path):
    root = tmp_path / "old.mskproj"
    shutil.copytree(FIXTURE, root)
    before = _counts(root / "project.db")
    assert all(before[t] > 0 for t in ("images", "labels", "masks", "boxes", "measurements", "labs",
                                        "job_metrics", "model_runs", "cluster_runs"))
    with Project.open(root) as project:
        assert project.db.scalar("PRAGMA user_version") == latest_version()
        assert project.db.scalar("PRAGMA integrity_check") == "ok"
        assert project.db.query("PRAGMA foreign_key_check") == []
        assert len(project.images.ids()) == before["images"]
        assert project.labels.effective(project.labels.label_set("region"))
        first = sorted(project.images.ids())[0]
        assert project.annotations.masks_of(first) and project.measurements.for_image(first)
        assert project.models.list("classifier")[0]["status"] == "done"
    after = _counts(root / "project.db")
    assert {t: after[t] for t in TABLES if t != "audit"} == {t: before[t] for t in TABLES if t != "audit"}
    if latest_version() > 2:  # a migration ran: the untouched old file is kept beside it
        assert (root / "project.v2.backup.db").exists()
