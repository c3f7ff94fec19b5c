"""``mskstudio share``: a copy re-keyed with a fresh key that is not included."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pydicom
import pytest
from test_pseudonym_key import N_FILES, _every_cell, _import, _original_ids, _stored_pseudonyms, few_files  # noqa: F401

from mskstudio.cli import main as cli_main
from mskstudio.io.deid import pseudo_uid, pseudonym
from mskstudio.io.share import share_copy
from mskstudio.store import Project, keys
from mskstudio.store.keys import KeyMissingError


def _uids(db: Path) -> set[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT sop_uid, series_uid FROM images UNION ALL "
                            "SELECT study_uid, NULL FROM studies").fetchall()
    finally:
        conn.close()
    return {v for r in rows for v in r if v}


def test_a_shared_copy_is_rekeyed_and_carries_no_key(tmp_path, few_files):  # noqa: F811
    with Project.create(tmp_path / "p.mskproj") as project:
        _import(project, few_files)
        project.jobs.submit("import", {"paths": [str(few_files)]})  # a job row naming the archive
        key = project.secret
        old_pseudonyms = _stored_pseudonyms(project)
        old_uids = _uids(project.root / "project.db")
        labels_before = project.db.scalar("SELECT COUNT(*) FROM images")
        assert cli_main(["share", str(project.root), str(tmp_path / "shared")]) == 0
    out = tmp_path / "shared.mskproj"
    assert not list(out.glob("project.v*.db")) and not any((out / "cache").iterdir())
    with Project.open(out) as copy:
        new_pseudonyms = _stored_pseudonyms(copy)
        assert len(new_pseudonyms) == len(old_pseudonyms) == N_FILES
        assert copy.db.scalar("SELECT COUNT(*) FROM images") == labels_before
        # neither the original key on the original IDs nor on the old pseudonyms recomputes them
        originals = _original_ids(few_files)
        assert not new_pseudonyms & ({pseudonym(key, p) for p in originals} | old_pseudonyms
                                     | {pseudonym(key, p) for p in old_pseudonyms})
        assert not _uids(out / "project.db") & (old_uids | {pseudo_uid(key, u) for u in old_uids})
        assert copy.key_problem() and not keys.has_key(copy.key_fingerprint)  # the new key was not saved
        with pytest.raises(KeyMissingError):
            _import(copy, few_files)
        # each stored DICOM file carries the copy's UIDs and pseudonym, and still decodes
        for r in copy.db.query("SELECT i.id, i.sop_uid, i.series_uid, s.study_uid, p.pseudonym FROM images i "
                               "JOIN studies s ON s.id = i.study_id JOIN patients p ON p.id = s.patient_id"):
            ds = pydicom.dcmread(copy.images.dicom_path(r["id"]))
            assert (ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID) == \
                (r["sop_uid"], r["series_uid"], r["study_uid"])
            assert ds.file_meta.MediaStorageSOPInstanceUID == r["sop_uid"]
            assert ds.PatientID == str(ds.PatientName) == r["pseudonym"]
            assert ds.pixel_array.size > 0
    # nothing of the old identity is left anywhere in the copy's files
    cells = " ".join(_every_cell(out / "project.db"))
    blobs = b"".join(p.read_bytes() for p in (out / "blobs").rglob("*") if p.is_file())
    db_bytes = b"".join(p.read_bytes() for p in out.glob("project.db*"))
    assert str(few_files) not in cells and str(few_files).encode() not in db_bytes  # the sender's paths
    for old in old_pseudonyms | old_uids | originals:
        assert old not in cells and old.encode() not in blobs and old.encode() not in db_bytes
    assert key.hex().encode() not in db_bytes


def test_share_refuses_an_existing_folder(tmp_path):
    with Project.create(tmp_path / "p.mskproj") as project:
        (tmp_path / "out.mskproj").mkdir()
        with pytest.raises(ValueError, match="already exists"):
            share_copy(project, tmp_path / "out.mskproj")


def test_a_shared_copy_keeps_labels_masks_and_reads_its_pixels(phantom_project, tmp_path):
    from mskstudio.io.analysis import load_analysis

    counts = lambda p: {t: p.db.scalar(f"SELECT COUNT(*) FROM {t}")  # noqa: E731
                        for t in ("images", "labels", "masks", "boxes", "clinical", "labs")}
    import numpy as np

    ids = phantom_project.images.ids()
    run = phantom_project.clusters.create_run(image_ids=ids, assign=np.arange(len(ids)) % 2,
                                              distance=np.zeros(len(ids)), member_xy=np.zeros((len(ids), 2)))
    first_cluster = phantom_project.clusters.clusters(run)[0]["id"]
    phantom_project.clusters.label_cluster([first_cluster], "finding", "normal")  # journalled, with its author
    before = counts(phantom_project)
    result = share_copy(phantom_project, tmp_path / "shared")
    assert result["images"] == before["images"]
    with Project.open(Path(result["path"])) as copy:
        assert counts(copy) == before
        assert copy.db.scalar("SELECT COUNT(*) FROM cluster_edits") == 0, "the edit history names people"
        first = sorted(copy.images.ids())[0]
        assert load_analysis(copy, first).size > 0  # the cache is rebuilt from the re-keyed file
