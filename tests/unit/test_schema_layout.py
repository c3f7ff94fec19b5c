"""The schema a fresh project gets, table by table and trigger by trigger, as migrations 1-7
wrote it before they were split into one module each (``sqlite_master`` dumped from that
code into tests/fixtures/schema_v7_sqlite_master.json).  A later migration adds to it; this
test runs only the first seven, so it keeps guarding what is released."""

from __future__ import annotations

import json
from pathlib import Path

from mskstudio.store import Project, schema
from mskstudio.store.schema.v3_readers import SCHEMA_V3_TRIGGERS, reader_trigger

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "schema_v7_sqlite_master.json"


def test_a_fresh_project_has_the_released_schema(tmp_path, monkeypatch):
    released = json.loads(FIXTURE.read_text(encoding="utf-8"))
    monkeypatch.setattr(schema, "MIGRATIONS", list(schema.MIGRATIONS)[: released["user_version"]])
    with Project.create(tmp_path / "fresh.mskproj") as project:
        rows = project.db.conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name").fetchall()
        assert project.db.scalar("PRAGMA user_version") == released["user_version"]
    assert [list(r) for r in rows] == released["sqlite_master"]


def test_the_reader_triggers_come_from_one_template():
    assert [reader_trigger(t).split("\n")[1] for t in ("labels", "masks", "boxes")] == [
        f"CREATE TRIGGER {t}_reader AFTER INSERT ON {t}" for t in ("labels", "masks", "boxes")]
    assert SCHEMA_V3_TRIGGERS.count("CREATE TRIGGER") == 3
    assert "NEW.source = 'human'" in reader_trigger("labels")
    assert "NEW.annotator" in reader_trigger("boxes") and "NEW.author" not in reader_trigger("boxes")
