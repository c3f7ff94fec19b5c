"""DICOM SR (TID 1500) export: every report reads back with highdicom and holds the rulers,
angles, lesion sizes, boxes and classifications of its image, each referencing that image."""

from __future__ import annotations

import json
import math

import highdicom as hd
import numpy as np
import pytest

from mskstudio.imaging.masks import max_feret
from mskstudio.io.exports.annotations import export_annotations, import_masks
from mskstudio.io.exports.sr import write_report


def _texts(dataset, meaning):
    """TextValue of every content item named ``meaning`` anywhere in the SR tree."""
    out = []
    for item in getattr(dataset, "ContentSequence", []):
        if item.get("ConceptNameCodeSequence") and item.ConceptNameCodeSequence[0].CodeMeaning == meaning:
            out.append(str(item.get("TextValue", "")))
        out += _texts(item, meaning)
    return out


@pytest.fixture
def measured(phantom_project, phantom_archive):
    p = phantom_project
    import_masks(p, phantom_archive)
    image_id = p.annotations.all_masks(source="import")[0].image_id
    p.measurements.add(image_id, "ruler", [(10.0, 10.0), (40.5, 50.0)])
    p.measurements.add(image_id, "angle", [(10.0, 10.0), (30.0, 30.0), (50.0, 10.0)])
    p.annotations.add_box(image_id, p.annotations.class_id("tumour"), (5, 6, 50, 60))
    ls = p.labels.label_set("region")
    knee = p.labels.class_id(ls, "knee")
    run_id = p.models.create("classifier", "resnet18", name="region net", label_set_id=ls)
    p.models.save_predictions(run_id, [(image_id, knee, 0.87, json.dumps({str(knee): 0.87}), 0)])
    return p, image_id


def test_every_report_reads_back_with_highdicom(measured, tmp_path):
    p, image_id = measured
    result = export_annotations(p, tmp_path / "out")
    files = sorted((tmp_path / "out" / "sr").glob("*.dcm"))
    assert result["sr"] == len(files) == len({m.image_id for m in p.annotations.all_masks()})
    assert result["sr_contents"] == {"rulers": 1, "angles": 1, "boxes": 1, "classifications": 1,
                                     "lesions": len(p.annotations.all_masks())}
    for path in files:  # the target: each SR is read by highdicom, groups all point at its image
        sr = hd.sr.srread(path)
        assert isinstance(sr, hd.sr.Comprehensive3DSR)
        (source_uid,) = {sop.ReferencedSOPInstanceUID for study in sr.CurrentRequestedProcedureEvidenceSequence
                         for series in study.ReferencedSeriesSequence for sop in series.ReferencedSOPSequence}
        assert source_uid in {r["sop_uid"] for r in p.images.identities()}
        for group in sr.content.get_image_measurement_groups():
            assert {ref.referenced_sop_instance_uid for ref in group.source_images} == {source_uid}
            for m in group.get_measurements():
                assert {ref.referenced_sop_instance_uid for ref in m.referenced_images} == {source_uid}
        for group in sr.content.get_planar_roi_measurement_groups():
            assert group.roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source_uid


def test_report_contents_match_the_store(measured, tmp_path):
    p, image_id = measured
    image = p.images.record(image_id)
    write_report(p, image_id, tmp_path / "r.dcm")
    sr = hd.sr.srread(tmp_path / "r.dcm")
    assert sr.PatientID == image.pseudonym and sr.StudyInstanceUID == image.study_uid
    report = sr.content
    planar = {g.tracking_identifier.split(" ")[0]: g for g in report.get_planar_roi_measurement_groups()}
    # Ruler: its two points, and the length in mm from the image's spacing.
    ruler = planar["ruler"]
    assert np.allclose(ruler.roi.value, [[10.0, 10.0], [40.5, 50.0]])
    (length,) = ruler.get_measurements()
    sr_mm, sc_mm = image.spacing_row_mm, image.spacing_col_mm
    assert length.unit.value == "mm" and length.name.value == "410668003"
    assert length.value == pytest.approx(math.hypot(30.5 * sc_mm, 40.0 * sr_mm), rel=1e-9)
    (angle,) = planar["angle"].get_measurements()
    assert angle.unit.value == "deg" and angle.value == pytest.approx(90.0, abs=1e-6)  # isotropic spacing
    box = planar["tumour"]
    assert np.allclose(box.roi.value, [[5, 6], [50, 6], [50, 60], [5, 60], [5, 6]])
    assert [q.value.meaning for q in box.get_qualitative_evaluations()
            if q.name.scheme_designator == "99MSKSTUDIO"] == ["tumour"]
    assert box.finding_type.value == "108369006"
    # Lesion: long axis and area equal the stored mask's, recomputed here from its pixels.
    groups = {g.tracking_identifier.split(" ")[0]: g for g in report.get_image_measurement_groups()}
    (mask_row,) = p.annotations.masks_of(image_id)
    mask = p.annotations.load_mask(mask_row.id)
    values = {m.name.meaning: m for m in groups["tumour"].get_measurements()}
    assert values["Long axis"].unit.value == "mm" and values["Area"].unit.value == "mm2"
    assert values["Long axis"].value == pytest.approx(max_feret(mask, sr_mm, sc_mm), rel=1e-6)
    assert values["Area"].value == pytest.approx(mask.sum() * sr_mm * sc_mm, rel=1e-6)
    # Classification: the predicted class, its probability and the algorithm that gave it.
    cls = groups["knee"]
    assert [(q.name.meaning, q.value.meaning) for q in cls.get_qualitative_evaluations()] == [("region", "knee")]
    (prob,) = cls.get_measurements()
    assert prob.name.value == "122157" and prob.value == pytest.approx(0.87)
    assert _texts(sr, "Algorithm Name") == ["region net"]


def test_image_without_spacing_reports_pixels(new_project, tmp_path):
    p = new_project
    sid = p.images.study_id(p.images.patient_id("P-px"), "2.25.21")
    image_id = p.images.add_image({"study_id": sid, "sop_uid": "2.25.22", "rows": 30, "cols": 40}, None)
    p.measurements.add(image_id, "ruler", [(0, 0), (3, 4)])
    mask = np.zeros((30, 40), bool)
    mask[5:10, 5:25] = True
    p.annotations.save_mask(image_id, p.annotations.class_id("reactive zone"), mask)
    write_report(p, image_id, tmp_path / "px.dcm")
    report = hd.sr.srread(tmp_path / "px.dcm").content
    (ruler,) = report.get_planar_roi_measurement_groups()
    (length,) = ruler.get_measurements()
    assert (length.value, length.unit.value) == (5.0, "{pixels}")
    (lesion,) = report.get_image_measurement_groups()
    values = {m.name.meaning: (m.value, m.unit.value) for m in lesion.get_measurements()}
    assert values["Area"] == (100.0, "{pixels}")
    assert values["Long axis"][0] == pytest.approx(max_feret(mask))
    assert lesion.finding_type.value == "79654002"  # SNOMED CT Edema


def test_frame_of_a_multiframe_object(new_project, tmp_path):
    """The SR cites the frame; the SEG of such a frame is one problem line (not yet), the rest goes on."""
    p = new_project
    sid = p.images.study_id(p.images.patient_id("P-mf"), "2.25.31")
    ids = [p.images.add_image({"study_id": sid, "sop_uid": "2.25.32", "frame": f, "n_frames": 2,
                               "rows": 20, "cols": 30}, None) for f in range(2)]
    single = p.images.add_image({"study_id": sid, "sop_uid": "2.25.33", "rows": 20, "cols": 30}, None)
    mask = np.zeros((20, 30), bool)
    mask[5:10, 5:20] = True
    for image_id in (ids[1], single):
        p.annotations.save_mask(image_id, p.annotations.class_id("tumour"), mask)
    result = export_annotations(p, tmp_path / "out")
    assert result["seg"] == 1 and result["sr"] == 2
    assert result["problems"] == ["SEG of image 2.25.32.f1: image 2.25.32 frame 1: a frame of a multi-frame "
                                  "object is not exported as DICOM SEG yet (its PNG masks are)"]
    (group,) = hd.sr.srread(tmp_path / "out" / "sr" / "2.25.32.f1.dcm").content.get_image_measurement_groups()
    assert [(s.referenced_sop_instance_uid, s.referenced_frame_numbers) for s in group.source_images] == \
        [("2.25.32", [2])]
