"""Annotations leave one project and enter another: DICOM SEG import (ours and a foreign
one drawn on the original files), and the whole round trip export -> new project -> import."""

from __future__ import annotations

import shutil

import highdicom as hd
import numpy as np
import pytest
from pydicom import dcmread
from pydicom.sr.codedict import codes

from mskstudio.io.exports.annotations import export_annotations, import_masks
from mskstudio.io.exports.seg_read import import_seg
from mskstudio.io.importer import run_import
from mskstudio.jobs import JobContext
from mskstudio.store import Project


def _disc(shape, cy, cx, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


@pytest.fixture
def annotated(phantom_project, phantom_archive):
    """The phantom project with imported truth masks, a second reader and a model mask on one image."""
    p = phantom_project
    import_masks(p, phantom_archive)
    ann = p.annotations
    image_id = ann.all_masks(source="import")[0].image_id
    image = p.images.record(image_id)
    shape = (image.rows, image.cols)
    tumour = ann.class_id("tumour")
    ann.save_mask(image_id, tumour, _disc(shape, shape[0] // 2, shape[1] // 2, min(shape) // 5), annotator="alice")
    ann.save_mask(image_id, tumour, _disc(shape, shape[0] // 2, shape[1] // 2, min(shape) // 6), annotator="bob")
    run_id = p.models.create("segmenter", "unet-small", name="lesion unet")
    ann.save_mask(image_id, ann.class_id("soft-tissue mass"), _disc(shape, shape[0] // 3, shape[1] // 3, 6),
                  annotator="model", source="model", run_id=run_id)
    return p


def same_images_project(source: Project, root) -> Project:
    """A new project (its own secret) holding the same de-identified images, as a collaborator gets them."""
    folder = root / "shared-images"
    folder.mkdir()
    for image_id in source.images.ids(include_excluded=True):
        shutil.copy(source.images.dicom_path(image_id), folder / f"{image_id}.dcm")
    project = Project.create(root / "other.mskproj")
    run_import(project, {"paths": [str(folder)], "workers": 1}, JobContext.null())
    return project


def _by_uid(project: Project) -> dict[str, int]:
    return {r["sop_uid"]: r["id"] for r in project.images.identities()}


def test_seg_round_trip_keeps_every_mask(annotated, tmp_path):
    a = annotated
    export_annotations(a, tmp_path / "out", seg_all=True)
    b = same_images_project(a, tmp_path)
    try:
        result = import_seg(b, tmp_path / "out" / "seg")
        masks_a = a.annotations.all_masks()
        assert result["masks"] == len(masks_a) and result["problems"] == []
        assert result["not_seg"] == 0 and result["files"] == len({m.image_id for m in masks_a})
        # Image of A -> image of B: B's UID is the keyed hash (B's secret) of A's de-identified UID.
        from mskstudio.io.deid import pseudo_uid

        uid_a = {r["id"]: r["sop_uid"] for r in a.images.identities()}
        ids_b = _by_uid(b)
        masks_b = {(m.image_id, m.class_name, m.annotator): m for m in b.annotations.all_masks()}
        assert {m.source for m in masks_b.values()} == {"import"}
        for m in masks_a:
            who = m.annotator if m.source == "human" else f"{m.source}:{m.annotator}"
            twin = masks_b[(ids_b[pseudo_uid(b.secret, uid_a[m.image_id])], m.class_name, who)]
            assert np.array_equal(b.annotations.load_mask(twin.id), a.annotations.load_mask(m.id))
        # Provenance: the audit entry of an imported mask names its origin.
        details = [r["details"] for r in b.audit_log(500) if r["action"] == "mask.import_seg"]
        assert any('"original_source": "model"' in d and '"algorithm": "lesion unet"' in d for d in details)
    finally:
        b.close()


def test_foreign_seg_on_the_original_file_maps_by_keyed_uid(phantom_project, phantom_archive, tmp_path):
    """A SEG drawn in another tool on the hospital's file names the original UID."""
    from mskstudio.io.phantoms import read_manifest

    p = phantom_project
    row = read_manifest(phantom_archive)[0]
    original = dcmread(phantom_archive.parent / row["file"])
    mask = _disc((original.Rows, original.Columns), original.Rows // 2, original.Columns // 2, 9)
    seg = hd.seg.Segmentation(
        source_images=[original], pixel_array=mask[None, ..., None].astype(np.uint8),
        segmentation_type="BINARY",
        segment_descriptions=[hd.seg.SegmentDescription(
            1, "Osteosarcoma", codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Neoplasm, "MANUAL")],
        series_instance_uid=hd.UID(), series_number=1, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="other", manufacturer_model_name="slicer", software_versions="5", device_serial_number="1",
        pixel_measures=hd.PixelMeasuresSequence([1.0, 1.0], 1.0), content_creator_name="Smith^Ann",
    )
    folder = tmp_path / "from-slicer"
    folder.mkdir()
    seg.save_as(folder / "foreign.dcm")
    (folder / "notes.txt").write_text("not DICOM")
    result = import_seg(p, folder)
    assert (result["masks"], result["not_seg"], result["problems"]) == (1, 1, [])
    (m,) = [m for m in p.annotations.all_masks() if m.class_name == "Osteosarcoma"]
    assert (m.source, m.annotator) == ("import", "Smith^Ann")
    image = p.images.record(m.image_id)
    from mskstudio.io.deid import pseudo_uid

    assert image.sop_uid == pseudo_uid(p.secret, original.SOPInstanceUID)
    assert np.array_equal(p.annotations.load_mask(m.id), mask)


def test_seg_of_unknown_images_is_one_line_each(new_project, annotated, tmp_path):
    export_annotations(annotated, tmp_path / "out")
    result = import_seg(new_project, tmp_path / "out" / "seg")
    assert result["masks"] == 0 and result["unknown_images"] == result["files"] > 0
    assert len(result["problems"]) == result["files"]
    assert all("not in the project" in line and "\n" not in line for line in result["problems"])


def test_whole_round_trip_keeps_masks_boxes_and_labels_with_provenance(annotated, tmp_path):
    from mskstudio.io.deid import pseudo_uid
    from mskstudio.io.exports.annotations import import_annotations

    a = annotated
    ids = a.images.ids()
    tumour = a.annotations.class_id("tumour")
    a.annotations.add_box(ids[0], tumour, (2.5, 3, 20, 30.75), annotator="alice")
    a.annotations.add_box(ids[1], a.annotations.class_id("reactive zone"), (1, 1, 9, 9), annotator="bob")
    ls = a.labels.label_set("region")
    knee, hip = a.labels.class_id(ls, "knee"), a.labels.class_id(ls, "hip")
    a.labels.set_labels(ids[:3], ls, knee, source="human", author="alice")
    a.labels.set_labels(ids[2:5], ls, hip, source="model", author="net", confidence=0.6)
    a.labels.set_labels(ids[5:7], ls, hip, source="cluster", author="deepcluster")
    result = export_annotations(a, tmp_path / "out", seg_all=True)
    assert result["labels"] == len(a.labels.table())
    b = same_images_project(a, tmp_path)
    try:
        got = import_annotations(b, tmp_path / "out")
        assert all(not part.get("problems") and not part.get("unknown") for part in got.values())
        to_b = {r["id"]: r["sop_uid"] for r in a.images.identities()}
        id_b = _by_uid(b)

        def twin(image_id):
            return id_b[pseudo_uid(b.secret, to_b[image_id])]

        # Masks: every one, pixel for pixel (checked in detail above); here the count and classes.
        assert sorted((twin(m.image_id), m.class_name) for m in a.annotations.all_masks()) == \
            sorted((m.image_id, m.class_name) for m in b.annotations.all_masks())
        # Boxes: every one, same rectangle, class and annotator; source 'import'.
        boxes_a = sorted((twin(x.image_id), x.class_name, x.annotator, x.x0, x.y0, x.x1, x.y1)
                         for x in a.annotations.all_boxes())
        boxes_b = sorted((x.image_id, x.class_name, x.annotator, x.x0, x.y0, x.x1, x.y1)
                         for x in b.annotations.all_boxes())
        assert boxes_a == boxes_b and {x.source for x in b.annotations.all_boxes()} == {"import"}
        # Labels: every one; human/import rows as 'import', machine rows keep their source; authors kept.
        stored_as = {"human": "import", "import": "import", "cluster": "cluster", "model": "model"}
        labels_a = sorted((twin(r["image_id"]), r["label_set"], r["label"], stored_as[r["source"]], r["author"])
                          for r in a.labels.table())
        labels_b = sorted((r["image_id"], r["label_set"], r["label"], r["source"], r["author"])
                          for r in b.labels.table())
        assert labels_a == labels_b
        model_b = [r for r in b.labels.table() if r["source"] == "model"]
        assert {r["confidence"] for r in model_b} == {0.6}
        # Provenance of what became 'import': the audit names the original source, author and time.
        (entry,) = [r for r in b.audit_log(500) if r["action"] == "labels.import"]
        assert '"source": "human", "author": "alice"' in entry["details"]
        (boxes_entry,) = [r for r in b.audit_log(500) if r["action"] == "box.import_coco"]
        assert '"source": "human"' in boxes_entry["details"]
    finally:
        b.close()


def test_cli_imports_print_one_line_per_problem(annotated, new_project, tmp_path, capsys):
    from mskstudio.cli import main

    assert main(["export-annotations", str(annotated.root), str(tmp_path / "out"), "--no-sr"]) == 0
    root = new_project.root
    new_project.close()  # a project with none of those images
    assert main(["import-seg", str(root), str(tmp_path / "out" / "seg")]) == 1
    err = capsys.readouterr().err.splitlines()
    n_seg = len(list((tmp_path / "out" / "seg").glob("*.dcm")))
    assert sum("not in the project" in line for line in err) == n_seg
    assert main(["import-annotations", str(root), str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert '"unknown_images": ' in captured.out and "is not in the project" in captured.err
    assert main(["import-annotations", str(root), str(tmp_path / "nowhere")]) != 0
    assert "nowhere: no such folder" in capsys.readouterr().err
