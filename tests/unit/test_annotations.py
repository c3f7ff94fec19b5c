"""Annotation store: masks with measurements, boxes, adjudication, export/import round-trips."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from mskstudio.imaging import masks as M
from mskstudio.io.exports.annotations import export_annotations, import_masks, manifest_image_id, read_mask_png
from mskstudio.store import Project


def _image(project, rows=80, cols=100, spacing=(0.5, 0.2), uid="1.2.3.4"):
    pid = project.images.patient_id("P-" + uid)
    sid = project.images.study_id(pid, "S-" + uid)
    return project.images.add_image(
        {
            "study_id": sid,
            "sop_uid": uid,
            "rows": rows,
            "cols": cols,
            "spacing_row_mm": spacing[0],
            "spacing_col_mm": spacing[1],
        },
        None,
    )


def _rect_mask(shape, y0, y1, x0, x1):
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


def test_default_classes_and_save_load_after_reopen(new_project):
    p = new_project
    names = [r.name for r in p.annotations.classes()]
    assert names == ["tumour", "soft-tissue mass", "reactive zone"]
    assert all(r.color for r in p.annotations.classes())
    img = _image(p)
    rng = np.random.default_rng(0)
    mask = rng.random((80, 100)) > 0.8
    cid = p.annotations.class_id("tumour")
    mid = p.annotations.save_mask(img, cid, mask)
    root = p.root
    p.close()
    with Project.open(root) as q:
        assert np.array_equal(q.annotations.load_mask(mid), mask)
        row = q.annotations.mask_row(mid)
        assert row.annotator == "tester" and row.source == "human"
        assert row.area_px == int(mask.sum())
        assert [a["action"] for a in q.audit_log(5)][0] == "mask.save"
        # Saving again replaces the row (same id), never duplicates.
        assert q.annotations.save_mask(img, cid, mask[::-1].copy()) == mid
        assert len(q.annotations.masks_of(img)) == 1
        with pytest.raises(ValueError):
            q.annotations.save_mask(img, cid, np.zeros((10, 10), bool))


def test_mm_measurements_by_hand(new_project):
    p = new_project
    img = _image(p, spacing=(0.5, 0.2))
    mid = p.annotations.save_mask(
        img, p.annotations.class_id("tumour"), _rect_mask((80, 100), 10, 40, 20, 60)
    )
    row = p.annotations.mask_row(mid)
    # 30 rows x 40 cols; 40 * 0.2 = 8 mm wide, 30 * 0.5 = 15 mm high -> diagonal 17 mm.
    assert row.longest_mm == pytest.approx(17.0)
    assert row.area_mm2 == pytest.approx(1200 * 0.1)
    assert row.bbox == (20, 10, 60, 40) and row.bbox_text == "20,10,60,40"
    # A disc: Feret diameter ~ 2 r (+ up to one pixel diagonal for pixel squares).
    yy, xx = np.mgrid[:80, :100]
    disc = (xx - 50) ** 2 + (yy - 40) ** 2 <= 15**2
    img2 = _image(p, spacing=(1.0, 1.0), uid="9.9")
    row2 = p.annotations.mask_row(p.annotations.save_mask(img2, p.annotations.class_id("tumour"), disc))
    assert 30.0 <= row2.longest_mm <= 31.5


def test_adjudication_iou_dice_and_sources(new_project):
    p = new_project
    img = _image(p)
    cid = p.annotations.class_id("tumour")
    a = p.annotations.save_mask(img, cid, _rect_mask((80, 100), 0, 10, 0, 10), annotator="alice")
    b = p.annotations.save_mask(img, cid, _rect_mask((80, 100), 5, 15, 0, 10), annotator="bob")
    # Overlap 5 x 10 = 50, union 150, sums 100 + 100.
    agree = p.annotations.agreement(a, b)
    assert agree["iou"] == pytest.approx(50 / 150) and agree["dice"] == pytest.approx(100 / 200)
    u = p.annotations.adjudicate([a, b], method="union", annotator="chief")
    assert p.annotations.load_mask(u).sum() == 150
    assert p.annotations.mask_row(u).source == "adjudicated"
    i = p.annotations.adjudicate([a, b], method="intersection", annotator="chief")
    assert i == u and p.annotations.load_mask(i).sum() == 50  # replaces the final mask
    k = p.annotations.adjudicate([a, b], method="pick", pick=b, annotator="chief")
    assert np.array_equal(p.annotations.load_mask(k), p.annotations.load_mask(b))
    log = [r for r in p.audit_log(20) if r["action"] == "mask.adjudicate"]
    assert len(log) == 3 and '"iou"' in log[0]["details"]
    assert {r.annotator for r in p.annotations.masks_of(img, source="human")} == {"alice", "bob"}


def test_boxes_crud_and_box_from_mask(new_project):
    p = new_project
    img = _image(p)
    t, s = p.annotations.class_id("tumour"), p.annotations.class_id("soft-tissue mass")
    b1 = p.annotations.add_box(img, t, (10, 20, 30, 40))
    b2 = p.annotations.add_box(img, s, (50, 5, 40, 1))  # normalised
    assert [r.rect for r in p.annotations.boxes_of(img)] == [
        (10, 20, 30, 40),
        (40, 1, 50, 5),
    ]
    p.annotations.move_box(b1, 5, -5)
    p.annotations.resize_box(b1, (15, 15, 45, 45))
    p.annotations.relabel_box(b1, s)
    p.annotations.delete_box(b2)
    rows = p.annotations.boxes_of(img)
    assert len(rows) == 1 and rows[0].class_name == "soft-tissue mass" and rows[0].x1 == 45
    actions = [r["action"] for r in p.audit_log(10)]
    for a in ("box.add", "box.move", "box.resize", "box.relabel", "box.delete"):
        assert a in actions
    mid = p.annotations.save_mask(img, t, _rect_mask((80, 100), 10, 40, 20, 60))
    bid = p.annotations.box_from_mask(mid)
    box = p.annotations.box(bid)
    assert box.rect == (20, 10, 60, 40) and box.class_id == t
    with pytest.raises(ValueError):
        p.annotations.add_box(img, t, (1, 1, 1, 5))


def test_accept_model_mask(new_project):
    p = new_project
    img = _image(p)
    cid = p.annotations.class_id("tumour")
    run = p.models.create("segmenter", "unet-resnet34")
    mm = p.annotations.save_mask(
        img, cid, _rect_mask((80, 100), 1, 9, 1, 9), annotator="model", source="model", run_id=run
    )
    hid = p.annotations.accept_model_mask(mm)
    row = p.annotations.mask_row(hid)
    assert row.source == "human" and row.annotator == "tester" and row.run_id == run
    assert np.array_equal(p.annotations.load_mask(hid), p.annotations.load_mask(mm))
    assert p.audit_log(1)[0]["action"] == "mask.accept"
    with pytest.raises(ValueError):
        p.annotations.accept_model_mask(hid)


def test_export_roundtrip(new_project, tmp_path):
    p = new_project
    img = _image(p)
    img2 = _image(p, rows=30, cols=40, uid="5.6.7")
    t = p.annotations.class_id("tumour")
    masks = {
        p.annotations.save_mask(img, t, _rect_mask((80, 100), 3, 9, 4, 70)): None,
        p.annotations.save_mask(img, t, _rect_mask((80, 100), 30, 50, 10, 20), annotator="bob"): None,
        p.annotations.save_mask(
            img2, p.annotations.class_id("reactive zone"), _rect_mask((30, 40), 0, 30, 0, 1)
        ): None,
    }
    p.annotations.add_box(img, t, (1.5, 2, 10, 20.25))
    p.annotations.add_box(img2, t, (0, 0, 40, 30), annotator="bob")
    result = export_annotations(p, tmp_path / "out")
    assert result["masks"] == 3 and result["boxes"] == 2
    with open(tmp_path / "out" / "lesions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3
    for r in rows:
        mid = int(
            p.annotations.find_mask(
                int(r["image_id"]),
                p.annotations.class_id(r["class"]),
                annotator=r["annotator"],
                source=r["source"],
            )
        )
        assert mid in masks
        db = p.annotations.mask_row(mid)
        assert np.array_equal(read_mask_png(tmp_path / "out" / r["png"]), p.annotations.load_mask(mid))
        assert float(r["area_mm2"]) == pytest.approx(db.area_mm2, rel=1e-5)
        assert float(r["longest_mm"]) == pytest.approx(db.longest_mm, rel=1e-5)
        assert r["image_uid"] in ("1.2.3.4", "5.6.7") and r["patient"].startswith("P-")
    coco = json.loads((tmp_path / "out" / "boxes_coco.json").read_text())
    back = sorted(
        (
            a["image_id"],
            a["category_id"],
            a["bbox"][0],
            a["bbox"][1],
            a["bbox"][0] + a["bbox"][2],
            a["bbox"][1] + a["bbox"][3],
        )
        for a in coco["annotations"]
    )
    assert back == sorted(
        (b.image_id, b.class_id, b.x0, b.y0, b.x1, b.y1) for b in p.annotations.all_boxes()
    )
    assert {c["name"] for c in coco["categories"]} >= {"tumour", "reactive zone"}
    assert {i["id"]: (i["height"], i["width"]) for i in coco["images"]} == {img: (80, 100), img2: (30, 40)}


def test_import_phantom_truth_masks(phantom_project, phantom_archive):
    from mskstudio.io.phantoms import read_manifest

    stats = import_masks(phantom_project, phantom_archive, boxes=True)
    with_mask = [r for r in read_manifest(phantom_archive) if r["mask"]]
    assert stats["imported"] == len(with_mask) > 0 and stats["unmatched"] == 0
    rows = phantom_project.annotations.all_masks(source="import")
    assert len(rows) == len(with_mask) and rows[0].annotator == "phantom-truth"
    first = with_mask[0]
    image_id = manifest_image_id(phantom_project, first, phantom_archive.parent)
    got = phantom_project.annotations.masks_of(image_id, source="import")
    assert len(got) == 1
    truth = read_mask_png(phantom_archive.parent / first["mask"])
    assert np.array_equal(phantom_project.annotations.load_mask(got[0].id), truth)
    assert got[0].longest_mm > 0
    (box,) = phantom_project.annotations.boxes_of(image_id)
    assert box.rect == M.bbox(truth)


def test_cli_export_annotations(new_project, tmp_path):
    import argparse

    from mskstudio.cli import cmd_annotate

    img = _image(new_project)
    new_project.annotations.save_mask(
        img, new_project.annotations.class_id("tumour"), _rect_mask((80, 100), 1, 5, 1, 5)
    )
    root = new_project.root
    new_project.close()
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    cmd_annotate.register(sub)
    args = parser.parse_args(["export-annotations", str(root), str(tmp_path / "x")])
    assert args.func(args) == 0
    assert (tmp_path / "x" / "lesions.csv").read_text().count("\n") == 2
    assert set(sub.choices) == {"train-seg", "prelabel", "export-annotations", "import-masks"}
