"""COCO export checked with pycocotools: it loads, and COCOeval of the boxes against
themselves gives AP 1.0; images carry size, pseudonym and SOP UID, categories a supercategory."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mskstudio.io.exports.annotations import export_annotations, import_masks
from mskstudio.io.exports.coco import import_coco


@pytest.fixture
def boxed(phantom_project, phantom_archive):
    p = phantom_project
    import_masks(p, phantom_archive, boxes=True)  # a box around every truth mask
    first = p.annotations.all_boxes()[0].image_id
    p.annotations.add_box(first, p.annotations.class_id("soft-tissue mass"), (3.5, 4, 30, 41.25), annotator="bob")
    return p


def test_coco_loads_and_evaluates_to_ap_1_against_itself(boxed, tmp_path):
    p = boxed
    export_annotations(p, tmp_path / "out", seg=False, sr=False)
    path = tmp_path / "out" / "boxes_coco.json"
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt = COCO(str(path))
    boxes = p.annotations.all_boxes()
    assert len(gt.getAnnIds()) == len(boxes) and len(gt.getImgIds()) == len({b.image_id for b in boxes})
    for image in gt.loadImgs(gt.getImgIds()):
        row = p.images.record(image["id"])
        assert (image["width"], image["height"]) == (row.cols, row.rows)
        assert image["patient"] == row.pseudonym and image["sop_instance_uid"] == row.sop_uid
        assert image["file_name"] == row.sop_uid
    cats = {c["name"]: c for c in gt.loadCats(gt.getCatIds())}
    assert cats["tumour"]["supercategory"] == "lesions"
    detections = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
                  for a in gt.loadAnns(gt.getAnnIds())]
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(detections)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)  # AP @ IoU 0.50:0.95
    assert ev.stats[1] == pytest.approx(1.0)  # AP @ IoU 0.50
    # Provenance in extra keys COCO readers ignore.
    bob = [a for a in json.loads(path.read_text())["annotations"] if a["annotator"] == "bob"]
    assert len(bob) == 1 and bob[0]["source"] == "human" and bob[0]["time"]
    assert np.allclose(bob[0]["bbox"], [3.5, 4, 26.5, 37.25])


def test_coco_import_is_idempotent_and_lists_unknown_images(boxed, new_project, tmp_path):
    p = boxed
    export_annotations(p, tmp_path / "out", seg=False, sr=False)
    path = tmp_path / "out" / "boxes_coco.json"
    result = import_coco(new_project, path)  # an empty project: every image unknown
    assert result["boxes"] == 0 and result["unknown_images"] == len(json.loads(path.read_text())["images"])
    assert all(line.endswith("is not in the project") for line in result["unknown"])
    boxes = p.annotations.all_boxes()
    drawn = [b for b in boxes if b.source != "import"]
    assert 0 < len(drawn) < len(boxes)
    first = import_coco(p, path)  # into itself: drawn boxes get an 'import' twin, imported ones are there
    assert (first["boxes"], first["unchanged"]) == (len(drawn), len(boxes) - len(drawn))
    assert import_coco(p, path)["unchanged"] == len(boxes)  # nothing twice
    assert len(p.annotations.all_boxes()) == len(boxes) + len(drawn)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="bad.json: not a COCO file"):
        import_coco(p, tmp_path / "bad.json")
