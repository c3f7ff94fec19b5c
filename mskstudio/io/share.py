"""Share a copy of a project re-keyed with a fresh pseudonym key that is not included.

``share_copy(project, OUT.mskproj)`` writes a new project folder whose pseudonyms and
DICOM UIDs are keyed hashes *of the current ones* under a new random key:
``pseudonym(new_key, old_pseudonym)``, ``pseudo_uid(new_key, old_uid)``.  No original ID
is needed (the sender's project holds none), and the new key is thrown away, so

* the recipient cannot make pseudonyms (``pseudonym(key, MRN)``) and cannot import into it,
* the sender's key does not recompute the copy's pseudonyms either, and
* two copies shared with two groups cannot be linked by pseudonym.

The stored DICOM files are rewritten with the new UIDs, PatientID/PatientName and centre
codes (shifted dates, pixels and everything else stay as they are).  What would name the
sender's files or history is left out: the audit log, import failures, job parameters
(paths to the archive), originals kept by opt-in (``patients.original_id``), in-place file
references, backups and the cache (rebuilt on demand).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from mskstudio.io.deid import centre_code, pseudo_uid, pseudonym
from mskstudio.io.params import ShareParams  # the same checks as the GUI and the CLI
from mskstudio.jobs import JobContext
from mskstudio.store import SUFFIX, Project
from mskstudio.store.blobs import BlobStore
from mskstudio.store.db import connect
from mskstudio.store.keys import fingerprint, new_key
from mskstudio.store.media import StorageWriteError, storage_failure


def share_copy(project: Project, out: Path, ctx: JobContext | None = None) -> dict[str, Any]:
    ctx = ctx or JobContext.null()
    out = Path(out).absolute()
    if out.suffix != SUFFIX:
        out = out.with_name(out.name + SUFFIX)
    if out.exists():
        raise ValueError(f"{out}: already exists; a shared copy is written to a new folder")
    in_place = project.db.scalar("SELECT COUNT(*) FROM images WHERE blob_sha IS NULL")
    if in_place:
        raise ValueError(f"{project.root}: {in_place} images are referenced in place, not copied "
                         "into the project; import them with copying to share the project")
    key = new_key()  # never saved: the copy cannot be extended and its pseudonyms not recomputed
    (out / "blobs").mkdir(parents=True)
    (out / "cache").mkdir()
    try:
        db_path = out / "project.db"
        dest = sqlite3.connect(str(db_path))
        try:
            _backup(project, dest)
        finally:
            dest.close()
        conn = connect(db_path)
        try:
            summary = _rekey(project, conn, BlobStore(out / "blobs"), key, ctx)
            conn.execute("VACUUM")  # rebuild the file: no freed page keeps an old pseudonym or UID
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
    except BaseException as exc:
        shutil.rmtree(out, ignore_errors=True)
        problem = storage_failure(exc)
        if problem and not isinstance(exc, StorageWriteError):  # SQLite's message names no file
            raise StorageWriteError(f"{problem} (writing the copy {out})") from exc
        raise
    if not project.readonly:  # a read-only project can be shared; it just cannot log it
        project.audit("project.share", "project", None,
                      {"out": str(out), "key_fingerprint": fingerprint(key)})
    return {"path": str(out), "key_fingerprint": fingerprint(key), **summary}


def run_share(project: Project, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Job ``share``: params {out}.  The GUI's File › Share a copy… runs it as a job (progress,
    cancel); the CLI calls ``share_copy`` directly so that a read-only project can be shared."""
    out = ShareParams.from_json(params).check(project).out
    return share_copy(project, Path(str(out).strip()), ctx)


def _backup(project: Project, dest: sqlite3.Connection) -> None:
    src = connect(project.root / "project.db", readonly=True)
    try:
        src.backup(dest)
    finally:
        src.close()


def _rekey(project: Project, conn: sqlite3.Connection, blobs: BlobStore, key: bytes,
           ctx: JobContext) -> dict[str, int]:
    uid = lambda old: pseudo_uid(key, old) if old else old  # noqa: E731
    patients = {r["pseudonym"]: pseudonym(key, r["pseudonym"])
                for r in conn.execute("SELECT pseudonym FROM patients")}
    centres = {r["code"]: centre_code(key, r["code"])
               for r in conn.execute("SELECT code FROM centres") if str(r["code"]).startswith("C-")}
    conn.execute("BEGIN IMMEDIATE")
    try:
        for old, new in patients.items():
            conn.execute("UPDATE patients SET pseudonym = ?, original_id = NULL WHERE pseudonym = ?", (new, old))
        for old, new in centres.items():
            conn.execute("UPDATE centres SET code = ? WHERE code = ?", (new, old))
        for r in conn.execute("SELECT id, study_uid FROM studies").fetchall():
            conn.execute("UPDATE studies SET study_uid = ? WHERE id = ?", (uid(r["study_uid"]), r["id"]))
        rows = conn.execute("SELECT i.id, i.sop_uid, i.series_uid, i.original_sop_hash, i.blob_sha, "
                            "p.pseudonym AS old_patient FROM images i JOIN studies s ON s.id = i.study_id "
                            "JOIN patients p ON p.id = s.patient_id").fetchall()
        # images.patient pseudonyms were just updated: map back to the old one for the blob check
        old_of = {new: old for old, new in patients.items()}
        new_blob: dict[str, str] = {}
        for n, r in enumerate(rows):
            ctx.check_cancelled()
            sha = r["blob_sha"]
            if sha not in new_blob:
                new_blob[sha] = _rewrite_dicom(project, blobs, sha, key, old_of[r["old_patient"]])
            conn.execute("UPDATE images SET sop_uid = ?, series_uid = ?, original_sop_hash = ?, "
                         "blob_sha = ?, source_path = NULL WHERE id = ?",
                         (uid(r["sop_uid"]), uid(r["series_uid"]), uid(r["original_sop_hash"]),
                          new_blob[sha], r["id"]))
            ctx.progress((n + 1) / max(len(rows), 1), f"{n + 1} images re-keyed")
        _copy_other_blobs(project, conn, blobs)
        # The sender's history names its files and people: the copy starts a fresh one.
        # The audit log is append-only; the copy is a new file whose log starts here, so
        # the guard is lifted for this one delete in the copy only and put back as it was.
        guard = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'trigger' "
                             "AND name = 'audit_no_delete'").fetchone()
        conn.execute("DROP TRIGGER IF EXISTS audit_no_delete")
        conn.execute("DELETE FROM audit")
        if guard:
            conn.execute(guard["sql"])
        conn.execute("INSERT INTO audit(author, action, entity, entity_id, details) "
                     "VALUES ('share', 'project.shared-copy', 'project', NULL, NULL)")
        conn.execute("DELETE FROM import_failures")
        # The cluster edit history names its authors (and undo snapshots of their labels).
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'cluster_edits'").fetchone():
            conn.execute("DELETE FROM cluster_edits")
        conn.execute("UPDATE jobs SET params = ?, message = NULL, error = NULL",
                     (json.dumps({"redacted": "shared copy"}),))
        # imports' and exports' results list the files they read or wrote
        conn.execute("UPDATE jobs SET result = NULL WHERE kind LIKE 'import%' OR kind LIKE 'export%' "
                     "OR kind LIKE 'demo%'")
        conn.execute("DELETE FROM meta WHERE key IN ('secret', 'key_fingerprint')")
        conn.execute("INSERT INTO meta(key, value) VALUES ('key_fingerprint', ?)", (fingerprint(key),))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return {"patients": len(patients), "images": len(rows), "dicom_files": len(new_blob)}


def _rewrite_dicom(project: Project, blobs: BlobStore, sha: str, key: bytes, old_patient: str) -> str:
    """The stored DICOM file with its keyed UIDs, patient and centre re-keyed; the new blob's sha."""
    from pydicom import dcmread

    from mskstudio.io.dicom_bytes import dataset_file_chunks

    ds = dcmread(project.blobs.path(sha))
    if str(ds.get("PatientID", "")) != old_patient:
        raise ValueError(f"image file {sha[:12]}… was not de-identified by this project "
                         "(its PatientID is not the project's pseudonym); it cannot be shared")
    _rekey_uids(ds, key)
    _rekey_uids(ds.file_meta, key)
    ds.PatientID = ds.PatientName = pseudonym(key, old_patient)
    code = str(ds.get("InstitutionName", "") or "")
    if code.startswith("C-"):
        ds.InstitutionName = centre_code(key, code)
    return blobs.put_chunks(dataset_file_chunks(ds))


def _rekey_uids(ds, key: bytes) -> None:
    # De-identification replaced every instance UID with '2.25.<keyed hash>'; class and
    # transfer-syntax UIDs are registry values (1.2.840.…) and stay.
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                _rekey_uids(item, key)
        elif elem.VR == "UI" and elem.value:
            values = list(elem.value) if elem.VM > 1 else [elem.value]
            new = [pseudo_uid(key, v) if str(v).startswith("2.25.") else v for v in values]
            elem.value = new if elem.VM > 1 else new[0]


def _copy_other_blobs(project: Project, conn: sqlite3.Connection, blobs: BlobStore) -> None:
    """Checkpoints and other blobs named by the database (not the DICOM files) are copied as they are."""
    for r in conn.execute("SELECT checkpoint_sha FROM model_runs WHERE checkpoint_sha IS NOT NULL").fetchall():
        sha = r["checkpoint_sha"]
        if project.blobs.exists(sha) and not blobs.exists(sha):
            blobs.put_file(project.blobs.path(sha))
