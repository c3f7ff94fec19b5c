"""DICOM SEG export: read back with pydicom, frames equal the stored masks, references are the stored UIDs."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom import dcmread

from mskstudio.io.dicom_seg import SEG_SOP_CLASS_UID, read_seg_frames, rgb_to_dicom_lab, write_seg
from mskstudio.io.export_annotations import export_annotations, import_masks


def _disc(shape, cy, cx, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def test_cielab_of_reference_colours():
    # sRGB white is L* 100, a* = b* = 0; pure red is L* 53.24, a* 80.09, b* 67.20 (CIE D65).
    white = rgb_to_dicom_lab((255, 255, 255))
    assert white[0] == 65535 and all(abs(v - 128 * 65535 / 255) <= 1 for v in white[1:])
    red = rgb_to_dicom_lab((255, 0, 0))
    expected = [53.24 * 65535 / 100, (80.09 + 128) * 65535 / 255, (67.20 + 128) * 65535 / 255]
    assert np.allclose(red, expected, atol=0.02 * 65535 / 100)


def test_phantom_seg_roundtrip(phantom_project, phantom_archive, tmp_path):
    p = phantom_project
    import_masks(p, phantom_archive)
    imported = p.annotations.all_masks(source="import")[0]
    image_id = imported["image_id"]
    image = p.images.get(image_id)
    shape = (image["rows"], image["cols"])
    ann = p.annotations
    tumour, mass = ann.class_id("tumour"), ann.class_id("soft-tissue mass")
    human = _disc(shape, shape[0] // 2, shape[1] // 2, min(shape) // 5)
    ann.save_mask(image_id, tumour, human)  # a human mask outranks the imported one
    model = _disc(shape, shape[0] // 3, shape[1] // 3, min(shape) // 8)
    ann.save_mask(image_id, mass, model, source="model")

    result = export_annotations(p, tmp_path / "out")
    assert result["seg"] == len({r["image_id"] for r in ann.all_masks()})
    path = tmp_path / "out" / "seg" / f"{image['sop_uid']}.dcm"
    ds = dcmread(path)
    assert ds.SOPClassUID == SEG_SOP_CLASS_UID == ds.file_meta.MediaStorageSOPClassUID
    assert (ds.Modality, ds.SegmentationType, ds.BitsAllocated, ds.NumberOfFrames) == ("SEG", "BINARY", 1, 2)
    # The de-identified identity and UIDs the project stores, nothing else.
    assert ds.PatientID == image["pseudonym"] and ds.StudyInstanceUID == image["study_uid"]
    (series,) = ds.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == image["series_uid"]
    assert series.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == image["sop_uid"]
    for frame in ds.PerFrameFunctionalGroupsSequence:
        src = frame.DerivationImageSequence[0].SourceImageSequence[0]
        assert (src.ReferencedSOPInstanceUID, src.ReferencedSOPClassUID) == (image["sop_uid"], image["sop_class_uid"])
    assert ds.FrameOfReferenceUID
    spacing = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
    assert [float(v) for v in spacing] == pytest.approx([image["spacing_row_mm"], image["spacing_col_mm"]])
    # Segments: one per class, algorithm type by source, colour and codes.
    segs = {s.SegmentLabel: s for s in ds.SegmentSequence}
    assert set(segs) == {"tumour", "soft-tissue mass"}
    assert segs["tumour"].SegmentAlgorithmType == "MANUAL"
    assert segs["soft-tissue mass"].SegmentAlgorithmType == "AUTOMATIC"
    assert segs["tumour"].SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Neoplasm"
    assert segs["tumour"].SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
    colour = next(c["color"] for c in ann.classes() if c["name"] == "tumour")
    rgb = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
    assert list(segs["tumour"].RecommendedDisplayCIELabValue) == rgb_to_dicom_lab(rgb)
    # Pixels: unpacked frames equal the stored masks (the human one for tumour).
    frames, labels = read_seg_frames(path)
    stored = {
        "tumour": ann.load_mask(ann.find_mask(image_id, tumour)),
        "soft-tissue mass": ann.load_mask(ann.find_mask(image_id, mass, source="model")),
    }
    assert np.array_equal(stored["tumour"], human)
    for frame, label in zip(frames, labels, strict=True):
        assert np.array_equal(frame, stored[label])
    assert not np.array_equal(stored["tumour"], ann.load_mask(imported["id"]))


def test_odd_sized_frames_pack_back_to_back_and_uids_follow_content(new_project, tmp_path):
    p = new_project
    sid = p.images.study_id(p.images.patient_id("P-odd"), "2.25.1")
    image_id = p.images.add_image({"study_id": sid, "sop_uid": "2.25.2", "rows": 29, "cols": 43}, None)
    a, b = _disc((29, 43), 10, 12, 7), _disc((29, 43), 20, 30, 9)
    ann = p.annotations
    ann.save_mask(image_id, ann.class_id("tumour"), a)
    ann.save_mask(image_id, ann.class_id("reactive zone"), b, annotator="bob")
    assert write_seg(p, image_id, tmp_path / "a.dcm") == 2
    frames, labels = read_seg_frames(tmp_path / "a.dcm")
    assert labels == ["tumour", "reactive zone"]  # 29 x 43 bits: frame 2 starts mid-byte
    assert np.array_equal(frames[0], a) and np.array_equal(frames[1], b)
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
