"""Readers in the store: migration 3 keeps every label, readers' labels coexist."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mskstudio.imaging.masks import encode_png
from mskstudio.store import Project, schema


def _v2_project(root: Path, monkeypatch) -> dict:
    """A project as schema 2 left it: human labels by two authors and one without a name,
    machine labels, masks and boxes."""
    with monkeypatch.context() as m:
        m.setattr(schema, "MIGRATIONS", [schema.upgrade_to_1, schema.upgrade_to_2])
        with Project.create(root) as project:
            assert project.db.scalar("PRAGMA user_version") == 2
            pid = project.images.patient_id("P-OLD")
            study = project.images.study_id(pid, "1.2.3")
            images = [project.images.add_image({"study_id": study, "sop_uid": f"1.2.3.{i}", "rows": 12,
                                                "cols": 10}, b"png") for i in range(4)]
            ls = project.labels.label_set("diagnosis")
            a, b = project.labels.class_id(ls, "tumour"), project.labels.class_id(ls, "infection")
            # the rows as schema-2 code wrote them (today's set_labels needs the readers table)
            rows = [(images[0], a, "human", "dr_old"), (images[1], b, "human", "dr_other"),
                    (images[2], b, "human", ""),  # no name: the default reader
                    *[(i, b, "model", None) for i in images], *[(i, a, "cluster", None) for i in images[:2]]]
            with project.db.transaction() as c:
                c.executemany("INSERT INTO labels(image_id, label_set_id, class_id, source, author) "
                              "VALUES (?, ?, ?, ?, ?)", [(i, ls, k, s, w) for i, k, s, w in rows])
            mclass = project.annotations.class_id("lesion")
            mask = np.zeros((12, 10), bool)
            mask[2:5, 3:7] = True
            with project.db.transaction() as c:  # the row as schema-2 code wrote it
                c.execute("INSERT INTO masks(image_id, class_id, annotator, source, png, area_px) "
                          "VALUES (?, ?, 'dr_old', 'human', ?, ?)",
                          (images[0], mclass, encode_png(mask), int(mask.sum())))
            project.annotations.add_box(images[1], mclass, (1, 1, 5, 6), annotator="dr_other")
            labels = [tuple(r) for r in project.db.query(
                "SELECT id, image_id, label_set_id, class_id, source, author, run_id, created_at "
                "FROM labels ORDER BY id")]
            effective = project.labels.effective(ls)
            created_by = project.meta("created_by")
    return {"images": images, "ls": ls, "a": a, "b": b, "labels": labels, "effective": effective,
            "created_by": created_by}


def test_migration_3_keeps_every_label_and_names_readers(tmp_path, monkeypatch):
    root = tmp_path / "old.mskproj"
    old = _v2_project(root, monkeypatch)
    with Project.open(root) as project:
        assert project.db.scalar("PRAGMA user_version") == schema.latest_version() >= 3
        labels = [tuple(r) for r in project.db.query(
            "SELECT id, image_id, label_set_id, class_id, source, author, run_id, created_at "
            "FROM labels ORDER BY id")]
        assert labels == old["labels"]
        assert project.labels.effective(old["ls"]) == old["effective"]
        names = {r["name"] for r in project.readers.all()}
        assert {"dr_old", "dr_other", old["created_by"]} <= names
        human = project.readers.human_labels(old["ls"])
        assert human["dr_old"] == {old["images"][0]: old["a"]}
        assert human[old["created_by"]] == {old["images"][2]: old["b"]}
        # machine labels have no reader; every human label, mask and box has one
        assert project.db.scalar("SELECT COUNT(*) FROM labels WHERE source != 'human' "
                                 "AND reader_id IS NOT NULL") == 0
        for table in ("labels", "masks", "boxes"):
            assert project.db.scalar(f"SELECT COUNT(*) FROM {table} WHERE source = 'human' "
                                     "AND reader_id IS NULL") == 0
        mask_reader = project.db.scalar("SELECT r.name FROM masks m JOIN readers r ON r.id = m.reader_id")
        box_reader = project.db.scalar("SELECT r.name FROM boxes b JOIN readers r ON r.id = b.reader_id")
        assert (mask_reader, box_reader) == ("dr_old", "dr_other")
    assert (root / "project.v2.backup.db").exists()


def test_several_readers_label_one_image_latest_human_wins(new_project):
    p = new_project
    pid = p.images.patient_id("P1")
    image = p.images.add_image({"study_id": p.images.study_id(pid, "9.9"), "sop_uid": "9.9.1",
                                "rows": 8, "cols": 8}, b"png")
    ls = p.labels.label_set("dx")
    a, b = p.labels.class_id(ls, "a"), p.labels.class_id(ls, "b")
    p.labels.set_label(image, ls, b, source="model")
    p.labels.set_label(image, ls, b, source="model")  # a machine source still keeps one row
    p.labels.set_label(image, ls, a, author="ann")
    p.labels.set_label(image, ls, b, author="bob")
    assert p.labels.effective(ls) == {image: b}  # bob's is the latest human label
    p.labels.set_label(image, ls, a, author="ann")  # ann relabels: now hers is the latest
    assert p.labels.effective(ls) == {image: a}
    assert p.readers.human_labels(ls) == {"ann": {image: a}, "bob": {image: b}}
    assert p.db.scalar("SELECT COUNT(*) FROM labels WHERE source = 'model'") == 1
    # removing the current reader's label leaves the other reader's
    p.author = "ann"
    p.labels.remove_labels([image], ls, source="human")
    assert p.readers.human_labels(ls) == {"bob": {image: b}}
    assert p.labels.effective(ls) == {image: b}


def test_reader_profiles_validate_role_and_years(new_project):
    rid = new_project.readers.save("carla", role="subspecialist", years=12)
    assert new_project.readers.save("carla") == rid
    row = new_project.readers.find("carla")
    assert (row["role"], row["years"]) == ("subspecialist", 12)
    with pytest.raises(ValueError, match="role"):
        new_project.readers.save("dan", role="boss")
    with pytest.raises(ValueError, match="years"):
        new_project.readers.save("dan", years=-3)
