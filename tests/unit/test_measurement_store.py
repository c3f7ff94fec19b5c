"""Saved measurements and lab records in the store, and the ``measurements`` CLI command."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest

from mskstudio.cli import main as cli_main
from mskstudio.store.repo_images import check_lab


def _image(project, sop: str, **spacing) -> int:
    pid = project.images.patient_id(f"P-{sop}")
    study = project.images.study_id(pid, f"1.2.{sop}")
    return project.images.add_image({"study_id": study, "sop_uid": f"1.2.{sop}.1", "rows": 200, "cols": 300,
                                     **spacing}, None)


@pytest.fixture
def images(new_project):
    p = new_project
    return p, {
        "pixel": _image(p, "1", spacing_row_mm=0.15, spacing_col_mm=0.1, spacing_source="pixel"),
        "imager": _image(p, "2", spacing_row_mm=0.2, spacing_col_mm=0.2, spacing_source="imager"),
        "corrected": _image(p, "3", spacing_row_mm=0.18, spacing_col_mm=0.18, spacing_source="imager_corrected"),
        "none": _image(p, "4"),
    }


def test_ruler_values_use_the_spacing_and_keep_its_source(images):
    p, ids = images
    expected = {"pixel": "PixelSpacing", "imager": "ImagerPixelSpacing", "corrected": "estimated", "none": "none"}
    for key, image_id in ids.items():
        p.measurements.add(image_id, "ruler", [(10, 20), (40, 60)])
        (m,) = p.measurements.for_image(image_id)
        row = p.images.record(image_id)
        assert m["spacing_source"] == expected[key]
        assert m["length_px"] == pytest.approx(50.0)  # a 30-40-50 triangle
        if key == "none":
            assert m["length_mm"] is None and m["spacing_row_mm"] is None
        else:
            mm = math.hypot(30 * row.spacing_col_mm, 40 * row.spacing_row_mm)
            assert m["length_mm"] == pytest.approx(mm)
        assert m["author"] == p.author and m["created_at"]
        assert m["points"] == [(10.0, 20.0), (40.0, 60.0)]


def test_angle_in_mm_geometry(images):
    p, ids = images
    # a right angle in pixels is not one in mm when rows and columns differ in size
    mid = p.measurements.add(ids["pixel"], "angle", [(0, 10), (0, 0), (10, 0)])
    assert p.measurements.get(mid)["angle_deg"] == pytest.approx(90.0)
    mid = p.measurements.add(ids["pixel"], "angle", [(10, 10), (0, 0), (10, 0)])
    expected = math.degrees(math.atan2(10 * 0.15, 10 * 0.1))
    assert p.measurements.get(mid)["angle_deg"] == pytest.approx(expected)
    assert p.measurements.get(mid)["length_mm"] is None


def test_move_delete_restore_and_audit(images):
    p, ids = images
    mid = p.measurements.add(ids["pixel"], "ruler", [(0, 0), (10, 0)])
    p.measurements.move(mid, [(0, 0), (0, 20)])
    moved = p.measurements.get(mid)
    assert moved["length_mm"] == pytest.approx(20 * 0.15) and moved["points"][1] == (0.0, 20.0)
    row = p.measurements.delete(mid)
    assert p.measurements.for_image(ids["pixel"]) == []
    p.measurements.restore(row)
    assert p.measurements.get(mid) == moved  # same id, author, times and values
    # ids are never reused, so the audit trail of one id is one measurement's story
    other = p.measurements.add(ids["pixel"], "ruler", [(1, 1), (2, 2)])
    p.measurements.delete(other)
    assert p.measurements.add(ids["pixel"], "ruler", [(1, 1), (3, 3)]) > other
    actions = [r["action"] for r in p.audit_log() if r["entity"] == "measurement" and r["entity_id"] == mid]
    assert actions == ["measurement.restore", "measurement.delete", "measurement.move", "measurement.add"]


def test_bad_measurements_are_refused(images):
    p, ids = images
    with pytest.raises(ValueError, match="2 points"):
        p.measurements.add(ids["pixel"], "ruler", [(0, 0)])
    with pytest.raises(ValueError, match="unknown measurement kind"):
        p.measurements.add(ids["pixel"], "circle", [(0, 0), (1, 1)])
    with pytest.raises(ValueError, match="finite"):
        p.measurements.add(ids["pixel"], "ruler", [(0, 0), (math.nan, 1)])
    with pytest.raises(KeyError):
        p.measurements.add(99999, "ruler", [(0, 0), (1, 1)])


def test_measurements_go_with_their_image(images):
    p, ids = images
    p.measurements.add(ids["none"], "ruler", [(0, 0), (5, 5)])
    with p.db.transaction() as c:
        c.execute("DELETE FROM images WHERE id = ?", (ids["none"],))
    assert p.measurements.listing() == []


def test_labs_add_delete_and_validation(new_project):
    p = new_project
    pid = p.images.patient_id("P-LAB")
    p.images.add_lab(pid, " ALP ", 312.0, "U/L", 40.0, 130.0, "2024-03-01")
    (lab,) = p.images.labs(pid)
    assert (lab["name"], lab["value"], lab["taken_on"]) == ("ALP", 312.0, "2024-03-01")
    with pytest.raises(ValueError, match="recorded already"):
        p.images.add_lab(pid, "alp", 1.0)
    removed = p.images.delete_lab(pid, "ALP")
    assert removed["value"] == 312.0 and p.images.labs(pid) == []
    assert p.images.delete_lab(pid, "ALP") is None
    actions = [r["action"] for r in p.audit_log(5)]
    assert actions[:2] == ["lab.delete", "lab.add"]
    with pytest.raises(ValueError, match="normal low .* above the normal high"):
        check_lab("CRP", 3.0, 10.0, 5.0, None)
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        check_lab("CRP", 3.0, 0.0, 5.0, "01/03/2024")
    with pytest.raises(ValueError, match="needs a name"):
        check_lab("  ", 3.0, None, None, None)
    assert check_lab(" CRP ", None, None, None, "") == "CRP"


def test_cli_lists_measurements(images, capsys):
    p, ids = images
    first = p.measurements.add(ids["pixel"], "ruler", [(10, 20), (40, 60)])
    p.measurements.add(ids["none"], "angle", [(0, 10), (0, 0), (10, 0)])
    root = str(p.root)
    assert cli_main(["measurements", root]) == 0
    out = capsys.readouterr().out
    mm = math.hypot(30 * 0.1, 40 * 0.15)
    assert f"{mm:.2f} mm" in out and "PixelSpacing" in out and "90.0°" in out and "2 measurements" in out
    assert cli_main(["measurements", root, "--image", str(ids["pixel"]), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["id"] == first and row["length_mm"] == pytest.approx(mm) and row["length_px"] == pytest.approx(50)
    assert cli_main(["measurements", root, "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["kind"] for r in rows] == ["ruler", "angle"] and rows[1]["spacing_source"] == "none"
    assert rows[0]["points"] == "10.00,20.00;40.00,60.00"
    assert cli_main(["measurements", root, "--image", "424242"]) == 1
    assert "no image 424242" in capsys.readouterr().err
