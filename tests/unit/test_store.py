"""Project store: settings, migrations, concurrency, crash safety, bad input."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from mskstudio.store import Project, StoreError, schema
from mskstudio.store.db import APPLICATION_ID, connect


def test_new_project_has_house_settings(new_project):
    db = new_project.db
    assert db.scalar("PRAGMA journal_mode") == "wal"
    assert db.scalar("PRAGMA foreign_keys") == 1
    assert db.scalar("PRAGMA busy_timeout") > 0
    assert db.scalar("PRAGMA application_id") == APPLICATION_ID
    assert db.scalar("PRAGMA user_version") == schema.latest_version()
    assert (new_project.root / "blobs").is_dir() and (new_project.root / "cache").is_dir()
    assert new_project.root.suffix == ".mskproj"
    assert len(new_project.secret) == 32


def test_foreign_keys_are_enforced(new_project):
    with pytest.raises(sqlite3.IntegrityError), new_project.db.transaction() as c:
        c.execute("INSERT INTO studies(patient_id, study_uid) VALUES (999, '1.2.3')")
    assert new_project.db.scalar("SELECT COUNT(*) FROM studies") == 0


def test_audit_log_is_append_only(new_project):
    new_project.audit("test.action", "thing", 1, {"a": 1})
    with pytest.raises(sqlite3.IntegrityError, match="append-only"), new_project.db.transaction() as c:
        c.execute("DELETE FROM audit")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"), new_project.db.transaction() as c:
        c.execute("UPDATE audit SET action = 'x'")
    actions = [r["action"] for r in new_project.audit_log()]
    assert actions[:2] == ["test.action", "project.create"]


def _v0_database(path: Path) -> None:
    """The v0 fixture: an SQLite file at user_version 0, as a pre-migration build left it."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE legacy_notes(id INTEGER PRIMARY KEY, text TEXT)")
    conn.execute("INSERT INTO legacy_notes(text) VALUES ('kept across migration')")
    conn.commit()
    conn.close()


def test_migrates_v0_fixture_to_latest(tmp_path):
    root = tmp_path / "old.mskproj"
    root.mkdir()
    _v0_database(root / "project.db")
    with Project.open(root) as project:
        assert project.db.scalar("PRAGMA user_version") == schema.latest_version()
        assert project.db.scalar("SELECT text FROM legacy_notes") == "kept across migration"
        assert project.db.scalar("SELECT COUNT(*) FROM images") == 0


def test_failed_migration_rolls_back_and_keeps_backup(tmp_path, monkeypatch):
    root = tmp_path / "p.mskproj"
    Project.create(root).close()
    released = list(schema.MIGRATIONS)

    def upgrade_to_next(conn):
        conn.execute("ALTER TABLE images ADD COLUMN new_col TEXT")
        raise RuntimeError("boom in the middle of a migration")

    monkeypatch.setattr(schema, "MIGRATIONS", [*released, upgrade_to_next])
    with pytest.raises(RuntimeError, match="boom"):
        Project.open(root)
    backup = root / f"project.v{len(released)}.backup.db"
    assert backup.exists()
    monkeypatch.setattr(schema, "MIGRATIONS", released)
    with Project.open(root) as project:
        cols = [r[1] for r in project.db.query("PRAGMA table_info(images)")]
        assert "new_col" not in cols
        assert project.db.scalar("PRAGMA user_version") == len(released)


def test_successful_migration_step(tmp_path, monkeypatch):
    root = tmp_path / "p.mskproj"
    Project.create(root).close()
    released = list(schema.MIGRATIONS)
    monkeypatch.setattr(schema, "MIGRATIONS", [
        *released, lambda conn: conn.execute("ALTER TABLE images ADD COLUMN extra TEXT")])
    with Project.open(root) as project:
        assert project.db.scalar("PRAGMA user_version") == len(released) + 1
        assert "extra" in [r[1] for r in project.db.query("PRAGMA table_info(images)")]


def _v1_project(root: Path, monkeypatch) -> dict:
    """A project as schema 1 left it: a patient with a lab and an image with pixel spacing."""
    with monkeypatch.context() as m:
        m.setattr(schema, "MIGRATIONS", [schema.upgrade_to_1])
        with Project.create(root) as project:
            pid = project.images.patient_id("P-OLD")
            study = project.images.study_id(pid, "1.2.3")
            image = project.images.add_image({"study_id": study, "sop_uid": "1.2.3.4", "rows": 100, "cols": 80,
                                              "spacing_row_mm": 0.2, "spacing_col_mm": 0.1,
                                              "spacing_source": "pixel"}, b"png")
            project.images.set_lab(pid, "ALP", 312.0, "U/L", 40.0, 130.0)
            assert project.db.scalar("PRAGMA user_version") == 1
    return {"patient": pid, "image": image}


def test_v1_project_upgrades_to_2_keeping_data_and_a_backup(tmp_path, monkeypatch):
    root = tmp_path / "old.mskproj"
    ids = _v1_project(root, monkeypatch)
    with Project.open(root) as project:
        assert project.db.scalar("PRAGMA user_version") == schema.latest_version() >= 2
        # data survives: the lab (now with an empty date) and the image
        (lab,) = project.images.labs(ids["patient"])
        assert (lab["name"], lab["value"], lab["ref_high"], lab["taken_on"]) == ("ALP", 312.0, 130.0, None)
        assert project.images.record(ids["image"]).spacing_col_mm == 0.1
        # the new table works: a ruler 10 columns by 10 rows with spacing 0.2 (row) × 0.1 (col) mm
        mid = project.measurements.add(ids["image"], "ruler", [(0, 0), (10, 10)])
        (saved,) = project.measurements.for_image(ids["image"])
        assert saved["id"] == mid and saved["spacing_source"] == "PixelSpacing"
        assert saved["length_mm"] == pytest.approx((1.0 ** 2 + 2.0 ** 2) ** 0.5)
    # the backup is the schema-1 database as it was, before the upgrade
    backup = root / "project.v1.backup.db"
    conn = sqlite3.connect(backup)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        assert conn.execute("SELECT value FROM labs WHERE name = 'ALP'").fetchone()[0] == 312.0
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "measurements" not in tables
    finally:
        conn.close()


def test_v1_project_in_a_read_only_folder_still_opens(tmp_path, monkeypatch):
    """It cannot be migrated there: it opens read-only at schema 1 and shows no measurements."""
    root = tmp_path / "old.mskproj"
    ids = _v1_project(root, monkeypatch)
    monkeypatch.setattr(os, "access", lambda *a, **k: False)
    with Project.open(root) as project:
        assert project.readonly and project.db.scalar("PRAGMA user_version") == 1
        assert project.measurements.for_image(ids["image"]) == []
        assert [r["name"] for r in project.images.labs(ids["patient"])] == ["ALP"]


def test_newer_schema_opens_read_only(tmp_path):
    root = tmp_path / "p.mskproj"
    Project.create(root).close()
    conn = sqlite3.connect(root / "project.db")
    conn.execute(f"PRAGMA user_version = {schema.latest_version() + 5}")
    conn.close()
    with Project.open(root) as project:
        assert project.readonly
        assert "newer" in project.readonly_reason
        assert project.summary()["images"] == 0
        with pytest.raises(StoreError, match="read-only"):
            project.audit("x", None, None)


def test_concurrent_reader_and_writer_threads(new_project):
    errors: list[BaseException] = []
    stop = threading.Event()
    written = 200

    def writer():
        try:
            for i in range(written):
                new_project.images.patient_id(f"P-{i:04d}")
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            stop.set()

    seen: list[int] = []

    def reader():
        try:
            while not stop.is_set():
                seen.append(new_project.db.scalar("SELECT COUNT(*) FROM patients"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert new_project.db.scalar("SELECT COUNT(*) FROM patients") == written
    assert seen == sorted(seen)  # a reader never sees a count go backwards


def test_kill_minus_9_mid_transaction_leaves_consistent_db(tmp_path):
    root = tmp_path / "p.mskproj"
    Project.create(root).close()
    script = textwrap.dedent(f"""
        import sys, time
        from mskstudio.store import Project
        p = Project.open({str(root)!r})
        with p.db.transaction() as c:
            for i in range(500):
                c.execute("INSERT INTO patients(pseudonym) VALUES (?)", (f"P-{{i}}",))
            print("inside", flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "inside"
    proc.kill()
    proc.wait(10)
    with Project.open(root) as project:
        assert project.db.scalar("PRAGMA integrity_check") == "ok"
        assert project.db.scalar("SELECT COUNT(*) FROM patients") == 0  # no partial rows


def test_not_a_project(tmp_path):
    with pytest.raises(StoreError, match="not an mskstudio project"):
        Project.open(tmp_path)
    with pytest.raises(StoreError, match="no such project"):
        Project.open(tmp_path / "missing.mskproj")


def test_create_refuses_to_overwrite(tmp_path):
    Project.create(tmp_path / "p.mskproj").close()
    with pytest.raises(StoreError, match="already exists"):
        Project.create(tmp_path / "p.mskproj")


def test_truncated_database_is_refused_and_not_overwritten(tmp_path):
    root = tmp_path / "p.mskproj"
    with Project.create(root) as project:
        for i in range(300):
            project.images.patient_id(f"P-{i}")
    db = root / "project.db"
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2])
    before = db.read_bytes()
    with pytest.raises(StoreError, match="truncated|damaged"):
        Project.open(root)
    assert db.read_bytes() == before


def test_garbage_database_is_refused(tmp_path):
    root = tmp_path / "p.mskproj"
    root.mkdir()
    (root / "project.db").write_bytes(b"this is not sqlite at all" * 10)
    with pytest.raises(StoreError, match="not an SQLite database"):
        Project.open(root)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_folder_opens_read_only(tmp_path):
    root = tmp_path / "p.mskproj"
    Project.create(root).close()
    os.chmod(root / "project.db", 0o444)
    os.chmod(root, 0o555)
    try:
        with Project.open(root) as project:
            assert project.readonly and "not writable" in project.readonly_reason
    finally:
        os.chmod(root, 0o755)


def test_read_only_folder_as_root_via_readonly_flag(tmp_path, monkeypatch):
    """Root ignores permissions, so simulate an unwritable folder through os.access."""
    root = tmp_path / "p.mskproj"
    Project.create(root).close()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if mode == os.W_OK else real_access(p, mode))
    with Project.open(root) as project:
        assert project.readonly
        assert project.summary()["patients"] == 0


def test_blob_store_is_content_addressed_and_atomic(new_project):
    blobs = new_project.blobs
    sha = blobs.put_bytes(b"hello radiograph")
    assert blobs.path(sha).read_bytes() == b"hello radiograph"
    assert blobs.put_bytes(b"hello radiograph") == sha
    leftovers = [p for p in blobs.root.rglob(".incoming-*")]
    assert leftovers == []
    src = new_project.root / "x.bin"
    src.write_bytes(os.urandom(3 << 20))
    sha2 = blobs.put_file(src)
    assert blobs.read_bytes(sha2) == src.read_bytes()
    assert blobs.orphans({sha}) == [blobs.path(sha2)]


def test_labels_human_wins_over_machine(new_project):
    p = new_project
    patient = p.images.patient_id("P-1")
    study = p.images.study_id(patient, "1.2.3")
    image = p.images.add_image({"study_id": study, "sop_uid": "1.2.3.4", "rows": 10, "cols": 10}, None)
    region = p.labels.label_set("region")
    hand, knee = p.labels.class_id(region, "hand"), p.labels.class_id(region, "knee")
    p.labels.set_label(image, region, hand, source="human")
    p.labels.set_label(image, region, knee, source="cluster", run_id=1)
    p.labels.set_label(image, region, knee, source="model", run_id=2)
    assert p.labels.effective(region) == {image: hand}
    sources = [r.source for r in p.labels.labels_of(image)]
    assert sources == ["human", "cluster", "model"]
    p.labels.remove_labels([image], region, source="human")
    assert p.labels.effective(region) == {image: knee}
    assert p.labels.counts(region) == {"knee": 1}


def test_jobs_interrupted_after_crash(tmp_path):
    root = tmp_path / "p.mskproj"
    with Project.create(root) as project:
        job = project.jobs.submit("import", {"paths": ["/x"]})
        project.jobs.started(job)
        project.db.execute("UPDATE jobs SET pid = 2147480000 WHERE id = ?", (job,))  # a dead pid
    with Project.open(root) as project:
        assert [r["id"] for r in project.jobs.interrupted()] == [job]
        again = project.jobs.resubmit(job)
        assert project.jobs.params(again)["resume_of"] == job


def test_each_thread_gets_its_own_connection(new_project):
    conns = []
    t = threading.Thread(target=lambda: conns.append(new_project.db.conn))
    t.start()
    t.join()
    assert conns[0] is not new_project.db.conn


def test_write_lock_waits_instead_of_failing(tmp_path):
    root = tmp_path / "p.mskproj"
    Project.create(root).close()
    a, b = Project.open(root), Project.open(root)
    release = threading.Event()

    def hold():
        with a.db.transaction() as c:
            c.execute("INSERT INTO patients(pseudonym) VALUES ('A')")
            release.wait(5)

    t = threading.Thread(target=hold)
    t.start()
    time.sleep(0.2)
    threading.Timer(0.5, release.set).start()
    b.images.patient_id("B")  # blocks on busy_timeout until A commits, then succeeds
    t.join()
    assert b.db.scalar("SELECT COUNT(*) FROM patients") == 2
    a.close()
    b.close()


def test_connect_readonly_refuses_writes(tmp_path):
    root = tmp_path / "p.mskproj"
    Project.create(root).close()
    conn = connect(root / "project.db", readonly=True)
    with pytest.raises(sqlite3.OperationalError):
        conn.execute("INSERT INTO meta(key, value) VALUES ('a', 'b')")
    conn.close()


def test_a_replaced_checkpoint_blob_is_deleted_unless_another_run_names_it(new_project):
    p = new_project
    run = p.models.create("classifier", "resnet18")
    other = p.models.create("classifier", "resnet18")
    first = p.blobs.put_bytes(b"epoch 0 weights")
    p.models.set_checkpoint(run, first)
    p.models.set_checkpoint(other, first)  # the same bytes, named twice
    second = p.blobs.put_bytes(b"epoch 1 weights")
    p.models.set_checkpoint(run, second)
    assert p.blobs.exists(first), "still the other run's checkpoint"
    third = p.blobs.put_bytes(b"epoch 2 weights")
    p.models.set_checkpoint(run, third)
    assert not p.blobs.exists(second) and p.blobs.exists(third)
    p.models.set_checkpoint(run, third)  # the same checkpoint again keeps it
    assert p.blobs.exists(third)
    assert p.models.get(run)["checkpoint_sha"] == third


def test_reopening_in_process_keeps_the_first_connection_consistent(tmp_path):
    """The GUI opens a project, a thread job opens it again, a job subprocess writes and
    exits.  Reading the header with a plain open()/close() on the second open dropped the
    GUI connection's POSIX locks, the subprocess then checkpointed and removed the WAL
    under it, and the GUI saw table rows its cached index did not have."""
    root = tmp_path / "p.mskproj"
    gui = Project.create(root)
    job_id = gui.jobs.submit("train", {})
    for step in range(3):
        gui.jobs.metric(job_id, "fold0/val_loss", 1.0, step)
    assert len(gui.jobs.metrics(job_id)["fold0/val_loss"]) == 3   # the index pages are cached now
    Project.open(root).close()                                  # a thread job's own open
    script = textwrap.dedent(f"""
        from mskstudio.store import Project
        with Project.open({str(root)!r}) as p:
            for step in range(3, 200):
                p.jobs.metric({job_id}, "fold0/val_loss", 0.5, step)
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    assert gui.db.scalar("PRAGMA integrity_check") == "ok"
    assert len(gui.jobs.metrics(job_id)["fold0/val_loss"]) == 200
    gui.close()
