"""DICOM SEG export through highdicom: every file reads back with highdicom.seg.segread,
its pixels equal the stored masks, and it references the stored de-identified UIDs."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pytest
from pydicom import dcmread

from mskstudio.io.exports.annotations import export_annotations, import_masks
from mskstudio.io.exports.probability import encode_probability
from mskstudio.io.exports.seg_write import SEG_SOP_CLASS_UID, rgb_to_dicom_lab, write_seg


def _disc(shape, cy, cx, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _segments(seg):
    """{segment label: (description, plane)} of a highdicom Segmentation of one source image."""
    (uid,) = {ref[2] for ref in seg.get_source_image_uids()}
    pixels = seg.get_pixels_by_source_instance([uid], combine_segments=False)[0]
    return {
        seg.get_segment_description(n).segment_label: (seg.get_segment_description(n), pixels[..., i])
        for i, n in enumerate(seg.segment_numbers)
    }


def test_cielab_of_reference_colours():
    # sRGB white is L* 100, a* = b* = 0; pure red is L* 53.24, a* 80.09, b* 67.20 (CIE D65).
    white = rgb_to_dicom_lab((255, 255, 255))
    assert white[0] == 65535 and all(abs(v - 128 * 65535 / 255) <= 1 for v in white[1:])
    red = rgb_to_dicom_lab((255, 0, 0))
    expected = [53.24 * 65535 / 100, (80.09 + 128) * 65535 / 255, (67.20 + 128) * 65535 / 255]
    assert np.allclose(red, expected, atol=0.02 * 65535 / 100)


def test_every_exported_seg_reads_back_with_highdicom(phantom_project, phantom_archive, tmp_path):
    p = phantom_project
    import_masks(p, phantom_archive)
    imported = p.annotations.all_masks(source="import")[0]
    image_id = imported.image_id
    image = p.images.record(image_id)
    shape = (image.rows, image.cols)
    ann = p.annotations
    tumour, mass = ann.class_id("tumour"), ann.class_id("soft-tissue mass")
    human = _disc(shape, shape[0] // 2, shape[1] // 2, min(shape) // 5)
    ann.save_mask(image_id, tumour, human)  # a human mask outranks the imported one
    run_id = p.models.create("segmenter", "unet-small", name="lesion unet")
    model = _disc(shape, shape[0] // 3, shape[1] // 3, min(shape) // 8)
    ann.save_mask(image_id, mass, model, source="model", run_id=run_id, annotator="model")

    result = export_annotations(p, tmp_path / "out")
    files = sorted((tmp_path / "out" / "seg").glob("*.dcm"))
    assert result["seg"] == len(files) == len({r.image_id for r in ann.all_masks()})
    for path in files:  # the target: every SEG reads back, pixels equal the stored best masks
        seg = hd.seg.segread(path)
        (uid,) = {ref[2] for ref in seg.get_source_image_uids()}
        (row,) = [r for r in p.images.identities() if r["sop_uid"] == uid]
        for label, (_desc, plane) in _segments(seg).items():
            best = [m for m in ann.masks_of(row["id"]) if m.class_name == label]
            order = ("adjudicated", "human", "import", "model")
            best.sort(key=lambda m: order.index(m.source))
            assert np.array_equal(plane.astype(bool), ann.load_mask(best[0].id))

    path = tmp_path / "out" / "seg" / f"{image.sop_uid}.dcm"
    seg = hd.seg.segread(path)
    assert seg.SOPClassUID == SEG_SOP_CLASS_UID and seg.SegmentationType == "BINARY"
    # The de-identified identity and UIDs the project stores, nothing else.
    assert seg.PatientID == image.pseudonym and seg.StudyInstanceUID == image.study_uid
    assert seg.get_source_image_uids() == [(image.study_uid, image.series_uid, image.sop_uid)]
    stored = dcmread(p.images.dicom_path(image_id), stop_before_pixels=True)
    assert stored.SOPInstanceUID == image.sop_uid  # the blob is the de-identified file the SEG cites
    spacing = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
    assert [float(v) for v in spacing] == pytest.approx([image.spacing_row_mm, image.spacing_col_mm])
    segs = _segments(seg)
    assert set(segs) == {"tumour", "soft-tissue mass"}
    t_desc, t_plane = segs["tumour"]
    m_desc, m_plane = segs["soft-tissue mass"]
    assert t_desc.algorithm_type == hd.seg.SegmentAlgorithmTypeValues.MANUAL
    assert m_desc.algorithm_type == hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
    algo = m_desc.algorithm_identification[0]
    assert algo.AlgorithmName == "lesion unet" and f"run {run_id}" in algo.AlgorithmVersion
    assert t_desc.segmented_property_type.value == "108369006"  # SNOMED CT Neoplasm
    assert m_desc.segmented_property_type.value == "4147007"  # SNOMED CT Mass
    assert t_desc.segmented_property_category.value == "49755003"
    assert t_desc.tracking_id == f"human:{p.author}" and m_desc.tracking_id == "model:model"
    colour = next(c.color for c in ann.classes() if c.name == "tumour")
    rgb = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
    assert list(t_desc.RecommendedDisplayCIELabValue) == rgb_to_dicom_lab(rgb)
    assert np.array_equal(t_plane.astype(bool), human) and np.array_equal(m_plane.astype(bool), model)
    assert not np.array_equal(human, ann.load_mask(imported.id))


def test_model_probabilities_export_as_fractional_seg(new_project, tmp_path):
    p = new_project
    sid = p.images.study_id(p.images.patient_id("P-frac"), "2.25.11")
    image_id = p.images.add_image({"study_id": sid, "sop_uid": "2.25.12", "rows": 40, "cols": 50}, None)
    yy, xx = np.mgrid[:40, :50]
    prob = np.exp(-((yy - 20) ** 2 + (xx - 25) ** 2) / 150.0)
    mask = prob > 0.4  # the model's own threshold is not 0.5
    run_id = p.models.create("segmenter", "unet-small", name="frac")
    ann = p.annotations
    ann.save_mask(image_id, ann.class_id("tumour"), mask, source="model", run_id=run_id,
                  annotator="model", probability_png=encode_probability(prob))
    drawn = _disc((40, 50), 8, 8, 5)
    ann.save_mask(image_id, ann.class_id("reactive zone"), drawn)
    assert write_seg(p, image_id, tmp_path / "f.dcm") == 2
    seg = hd.seg.segread(tmp_path / "f.dcm")
    assert seg.SegmentationType == "FRACTIONAL" and seg.SegmentationFractionalType == "PROBABILITY"
    segs = _segments(seg)
    t = segs["tumour"][1]
    assert np.array_equal(t > 0.5, mask)  # a reader's 0.5 threshold gives the stored mask exactly
    levels = np.round(prob * 255)
    agree = (levels > 127) == mask
    assert np.array_equal(np.round(t * 255)[agree], levels[agree])  # the stored 8-bit probabilities
    assert set(np.round(t * 255)[~agree]) <= {128.0}  # nudged only where 0.4 < p <= 0.5
    assert ((prob > 0.4) & (prob <= 0.5 + 0.5 / 255))[~agree].all() and (~agree).any()
    assert np.array_equal(segs["reactive zone"][1], drawn.astype(float))


def test_odd_sized_hand_made_rows_and_uids_follow_content(new_project, tmp_path):
    p = new_project
    sid = p.images.study_id(p.images.patient_id("P-odd"), "2.25.1")
    image_id = p.images.add_image({"study_id": sid, "sop_uid": "2.25.2", "rows": 29, "cols": 43}, None)
    a, b = _disc((29, 43), 10, 12, 7), _disc((29, 43), 20, 30, 9)
    ann = p.annotations
    ann.save_mask(image_id, ann.class_id("tumour"), a)
    ann.save_mask(image_id, ann.class_id("reactive zone"), b, annotator="bob")
    assert write_seg(p, image_id, tmp_path / "a.dcm") == 2
    segs = _segments(hd.seg.segread(tmp_path / "a.dcm"))
    assert np.array_equal(segs["tumour"][1], a) and np.array_equal(segs["reactive zone"][1], b)
    write_seg(p, image_id, tmp_path / "again.dcm")
    first = dcmread(tmp_path / "a.dcm")
    assert dcmread(tmp_path / "again.dcm").SOPInstanceUID == first.SOPInstanceUID
    assert first.FrameOfReferenceUID == dcmread(tmp_path / "again.dcm").FrameOfReferenceUID
    ann.save_mask(image_id, ann.class_id("tumour"), b)
    write_seg(p, image_id, tmp_path / "changed.dcm")
    assert dcmread(tmp_path / "changed.dcm").SOPInstanceUID != first.SOPInstanceUID


def test_cli_export_writes_seg_unless_told_not_to(new_project, tmp_path):
    import argparse

    from mskstudio.cli import cmd_annotate

    p = new_project
    sid = p.images.study_id(p.images.patient_id("P-cli"), "2.25.3")
    image_id = p.images.add_image({"study_id": sid, "sop_uid": "2.25.4", "rows": 16, "cols": 16}, None)
    p.annotations.save_mask(image_id, p.annotations.class_id("tumour"), _disc((16, 16), 8, 8, 4))
    root = p.root
    p.close()
    parser = argparse.ArgumentParser()
    cmd_annotate.register(parser.add_subparsers(dest="command"))
    for extra, expected in (([], 1), (["--no-seg"], 0)):
        out = tmp_path / f"out{len(extra)}"
        args = parser.parse_args(["export-annotations", str(root), str(out), *extra])
        assert args.func(args) == 0
        assert len(list((out / "seg").glob("*.dcm"))) == expected
