"""The pseudonym key lives outside the project (store/keys.py, schema upgrade_to_6).

A project names its key by fingerprint; the key is a 0600 file in the key store
(MSKSTUDIO_KEY_DIR, a temporary folder in tests).  A copy without the key reads but
refuses imports; an old project holding meta.secret moves it out and keeps its pseudonyms.
"""

from __future__ import annotations

import shutil
import sqlite3
import stat
from pathlib import Path

import pydicom
import pytest

from mskstudio.cli import main as cli_main
from mskstudio.io.clinical import run_import_clinical
from mskstudio.io.deid import pseudonym
from mskstudio.io.importer import run_import
from mskstudio.jobs import JobContext
from mskstudio.store import Project, keys
from mskstudio.store.keys import KeyMissingError
from mskstudio.store.schema import latest_version

N_FILES = 4


@pytest.fixture
def few_files(phantom_archive, tmp_path) -> Path:
    """A handful of phantom DICOM files (several patients) to import quickly."""
    src = sorted((phantom_archive.parent / "dicom").rglob("*.dcm"))
    by_patient: dict[str, Path] = {}
    for path in src:
        by_patient.setdefault(str(pydicom.dcmread(path, stop_before_pixels=True).PatientID), path)
        if len(by_patient) == N_FILES:
            break
    folder = tmp_path / "incoming"
    folder.mkdir()
    for i, path in enumerate(by_patient.values()):
        shutil.copy(path, folder / f"{i}.dcm")
    return folder


def _import(project: Project, folder: Path) -> dict:
    return run_import(project, {"paths": [str(folder)], "workers": 1}, JobContext.null())


def _original_ids(folder: Path) -> set[str]:
    return {str(pydicom.dcmread(p, stop_before_pixels=True).PatientID) for p in folder.glob("*.dcm")}


def _stored_pseudonyms(project: Project) -> set[str]:
    return {r["pseudonym"] for r in project.db.query("SELECT pseudonym FROM patients")}


def _every_cell(db: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return [str(v) for t in tables for row in conn.execute(f'SELECT * FROM "{t}"') for v in row
                if v is not None]
    finally:
        conn.close()


def _assert_key_absent(key: bytes, root: Path) -> None:
    for path in root.glob("project*.db*"):  # the database, its WAL and any migration backup
        data = path.read_bytes()
        assert key.hex().encode() not in data and key.hex().upper().encode() not in data, path
        assert key not in data, path
    assert not any(key.hex() in cell.lower() for cell in _every_cell(root / "project.db"))


def test_a_new_project_keeps_only_the_fingerprint(tmp_path, few_files):
    with Project.create(tmp_path / "p.mskproj") as project:
        fp = project.key_fingerprint
        assert project.meta("secret") is None and len(fp) == 16
        path = keys.key_path(fp)
        assert path.parent == Path(keys.key_dir()) and path.name == f"{fp}.key"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        key = keys.load_key(fp)
        assert keys.fingerprint(key) == fp and project.secret == key
        result = _import(project, few_files)
        assert result["imported"] == N_FILES
        # the pseudonyms are exactly those made with the key file's key
        assert _stored_pseudonyms(project) == {pseudonym(key, pid) for pid in _original_ids(few_files)}
        root = project.root
    _assert_key_absent(key, root)


def test_a_copy_without_the_key_reads_but_refuses_imports(tmp_path, few_files, monkeypatch):
    with Project.create(tmp_path / "p.mskproj") as project:
        _import(project, few_files)
        fp = project.key_fingerprint
        exported = tmp_path / "site.key"
        assert cli_main(["key", str(project.root), "--export", str(exported)]) == 0
        assert stat.S_IMODE(exported.stat().st_mode) == 0o600
    copy = tmp_path / "elsewhere" / "copy.mskproj"
    shutil.copytree(project.root, copy)
    other_machine = tmp_path / "other-keys"
    monkeypatch.setenv("MSKSTUDIO_KEY_DIR", str(other_machine))
    with Project.open(copy) as project:
        assert not project.readonly
        assert project.summary()["images"] == N_FILES and len(project.images.ids()) == N_FILES
        problem = project.key_problem()
        assert fp in problem and str(other_machine) in problem
        with pytest.raises(KeyMissingError) as err:
            _import(project, few_files)
        message = str(err.value)
        assert "\n" not in message and fp in message and str(other_machine / f"{fp}.key") in message
        csv = tmp_path / "clinical.csv"
        csv.write_text("patient_id,age\n" + "".join(f"{p},50\n" for p in _original_ids(few_files)))
        with pytest.raises(KeyMissingError, match=fp):
            run_import_clinical(project, {"path": str(csv)}, JobContext.null())
        assert project.db.scalar("SELECT COUNT(*) FROM images") == N_FILES  # nothing was written
    # the CLI says the key is missing; importing the exported key makes imports work again
    assert cli_main(["key", str(copy)]) == 0
    assert cli_main(["key", str(copy), "--import", str(exported)]) == 0
    assert keys.has_key(fp)
    with Project.open(copy) as project:
        assert project.key_problem() == ""
        result = run_import_clinical(project, {"path": str(csv)}, JobContext.null())
        assert result["imported"] == N_FILES


def test_the_cli_reports_a_missing_key_and_refuses_a_foreign_one(tmp_path, capsys, monkeypatch):
    with Project.create(tmp_path / "p.mskproj") as project:
        fp = project.key_fingerprint
    monkeypatch.setenv("MSKSTUDIO_KEY_DIR", str(tmp_path / "empty"))
    assert cli_main(["key", str(tmp_path / "p.mskproj")]) == 0
    out = capsys.readouterr().out
    assert fp in out and "MISSING" in out
    foreign = tmp_path / "foreign.key"
    foreign.write_text(keys.new_key().hex())
    assert cli_main(["key", str(tmp_path / "p.mskproj"), "--import", str(foreign)]) != 0
    assert "fingerprint" in capsys.readouterr().err and not keys.has_key(fp)


def _make_old(root: Path, key: bytes) -> None:
    """Turn a project into what schema 5 wrote: the key in meta.secret, no fingerprint."""
    conn = sqlite3.connect(str(root / "project.db"), isolation_level=None)
    try:
        conn.execute("DELETE FROM meta WHERE key = 'key_fingerprint'")
        conn.execute("INSERT INTO meta(key, value) VALUES ('secret', ?)", (key.hex(),))
        conn.execute("DROP TABLE read_boxes")  # what versions 7 and 8 added, so 6, 7 and 8 run again
        for (trigger,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' "
                                       "AND name LIKE 'change_%'").fetchall():
            conn.execute(f"DROP TRIGGER {trigger}")
        conn.execute("DROP TABLE change_topics")
        conn.execute("DROP TABLE cluster_edits")
        conn.execute("PRAGMA user_version = 5")
    finally:
        conn.close()
    keys.key_path(keys.fingerprint(key)).unlink()


def test_an_old_project_moves_its_key_out_and_keeps_its_pseudonyms(tmp_path, few_files):
    with Project.create(tmp_path / "old.mskproj") as project:
        _import(project, few_files)
        key = project.secret
        before = _stored_pseudonyms(project)
        root = project.root
    _make_old(root, key)
    assert key.hex().encode() in (root / "project.db").read_bytes()
    with Project.open(root) as project:
        assert project.db.scalar("PRAGMA user_version") == latest_version()
        assert project.meta("secret") is None
        assert project.key_fingerprint == keys.fingerprint(key) and keys.load_key(project.key_fingerprint) == key
        assert project.secret == key and _stored_pseudonyms(project) == before
        # a re-import of one patient's file under a new SOP UID lands on the same pseudonym
        again = tmp_path / "again"
        again.mkdir()
        ds = pydicom.dcmread(next(few_files.glob("*.dcm")))
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
        ds.save_as(again / "x.dcm")
        assert _import(project, again)["imported"] == 1
        assert _stored_pseudonyms(project) == before
        assert project.db.scalar("SELECT COUNT(*) FROM images") == N_FILES + 1
    assert (root / "project.v5.backup.db").exists()
    _assert_key_absent(key, root)  # the backup written before the migration included


def test_the_schema_2_fixture_key_moves_out_of_the_file_and_its_backup(tmp_path):
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "schema_v2.mskproj"
    root = tmp_path / "v2.mskproj"
    shutil.copytree(fixture, root)
    conn = sqlite3.connect(f"file:{root / 'project.db'}?mode=ro", uri=True)
    key = bytes.fromhex(conn.execute("SELECT value FROM meta WHERE key = 'secret'").fetchone()[0])
    conn.close()
    with Project.open(root) as project:
        assert project.secret == key and project.key_problem() == ""
    backup = root / "project.v2.backup.db"
    conn = sqlite3.connect(f"file:{backup}?mode=ro", uri=True)
    try:  # a restored backup still names its key, so the key store finds it
        assert conn.execute("SELECT value FROM meta WHERE key = 'key_fingerprint'").fetchone()[0] \
            == keys.fingerprint(key)
    finally:
        conn.close()
    _assert_key_absent(key, root)
