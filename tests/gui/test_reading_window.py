"""The reading window: keys answer and go on, prefetch, blinding, the assisted arm."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractButton, QLabel, QMenuBar

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_reader_study import region_set  # noqa: E402

from mskstudio.ml.readers.setup import create_study  # noqa: E402
from mskstudio.store import Project  # noqa: E402

pytestmark = pytest.mark.gui


@pytest.fixture
def study(project_copy):
    with Project.open(project_copy) as p:
        names = region_set(p)
        ls = p.labels.find_label_set("region")
        class_ids = [p.labels.class_id(ls, n) for n in names]
        run = p.models.create("classifier", "resnet18", name="model-x", label_set_id=ls)
        truth = p.labels.find_label_set("truth:region")
        ids = list(p.labels.effective(truth))
        p.models.save_predictions(run, [(i, class_ids[0], 0.7, json.dumps({str(class_ids[0]): 0.7,
                                         str(class_ids[1]): 0.2, str(class_ids[2]): 0.1}), 0) for i in ids])
        sid = create_study(p, {"name": "s", "label_set": "region", "truth_set": "truth:region",
                               "classes": ",".join(names), "images": "sample:2-per-class",
                               "readers": "ann,bob", "arms": f"image,assisted:{run}", "seed": 1})
        from mskstudio.ml.explain.gradcam import cam_path
        for i in p.readers.case_images(sid):  # a cached heat map for every case
            np.save(cam_path(p, run, i), np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8))
        yield p, sid, names
        p.close()


def _texts(window) -> str:
    parts = [window.windowTitle()]
    parts += [w.text() for w in window.findChildren(QLabel)]
    parts += [w.text() + w.toolTip() for w in window.findChildren(QAbstractButton)]
    return "\n".join(parts)


def test_keys_answer_commit_and_show_the_next_prefetched_case(qtbot, study):
    from mskstudio.gui.readers.window import open_reading_window

    p, sid, names = study
    w = open_reading_window(p, sid, "ann")
    qtbot.addWidget(w)
    w.show()
    with qtbot.waitSignal(w.case_shown, timeout=20000):
        pass
    first = w.case
    assert first.index == 0 and first.arm == "image"
    ahead = w.session.upcoming_image_ids(3)[1:]
    qtbot.waitUntil(lambda: set(ahead) <= set(w._ahead) and all(f.done() for f in w._ahead.values()),
                    timeout=20000)
    qtbot.keyClick(w, Qt.Key.Key_2)
    assert w.choice == 2 and w.next_button.isEnabled()
    qtbot.keyClick(w, Qt.Key.Key_Return)
    (read,) = p.readers.reads(sid)
    assert (read["reader"], read["image_id"], read["answer"]) == ("ann", first.image_id, names[1])
    assert read["seconds"] >= 0 and read["confidence"] is None
    # the prefetched next case is shown at once, full resolution, as a pre-windowed 8-bit frame
    v = w.viewer
    assert w.case.index == 1 and v.rad is not None and v.image_id == w.case.image_id
    assert v._fast_frame and v.img.image.dtype == np.uint8
    # ... the frame pyqtgraph would draw from the 16-bit level with the viewer's levels and LUT
    import pyqtgraph.functions as fn

    lut = np.arange(255, -1, -1, dtype=np.uint8) if v.display_invert else None
    reference, _ = fn.makeARGB(v._pyramid[v._lod], levels=v._levels(), lut=lut)
    assert np.abs(reference[..., 0].astype(int) - v.img.image.astype(int)).max() <= 1
    # any W/L change goes back to the 16-bit level, with the viewer's levels
    v.apply_preset(1)
    assert not v._fast_frame and v.img.image.dtype == np.uint16
    assert np.array_equal(v.img.image, v._pyramid[v._lod])


def test_window_shows_nothing_of_truth_other_readers_model_or_project(qtbot, study):
    from mskstudio.gui.readers.window import BlindImages, open_reading_window

    p, sid, names = study
    # another reader's box on every case: the reading window must not draw it
    lesion = p.annotations.class_id("lesion")
    for image_id in p.readers.case_images(sid):
        p.annotations.add_box(image_id, lesion, (2, 2, 20, 20), annotator="ann")
    w = open_reading_window(p, sid, "bob")
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w.viewer.rad is not None, timeout=20000)
    assert w.viewer.box_items == []
    text = _texts(w)
    pseudonyms = [r["pseudonym"] for r in p.db.query("SELECT pseudonym FROM patients")]
    assert not any(ps in text for ps in pseudonyms)
    assert "ann" not in text and "model-x" not in text and "Model" not in text
    truth = p.labels.find_label_set("truth:region")
    truth_name = p.labels.class_name(p.labels.effective(truth)[w.case.image_id])
    non_buttons = "\n".join([w.windowTitle()] + [lab.text() for lab in w.findChildren(QLabel)])
    assert truth_name not in non_buttons  # class names appear only on the answer keys
    assert not w.findChildren(QMenuBar)
    assert isinstance(w.viewer.project, BlindImages) and not isinstance(w.viewer.project, Project)
    outside = next(i for i in p.images.ids() if i not in p.readers.case_images(sid))
    with pytest.raises(KeyError):
        w.images.record(outside)
    assert not w.heatmap_box.isVisible()
    # the assisted arm (after all image-arm cases) shows the model's answer and heat map
    for _ in range(w.case.total):
        w.choose(1)
        w.next_case()
    qtbot.waitUntil(lambda: w.viewer.rad is not None, timeout=20000)
    assert w.case.arm == "assisted" and "Model" in w.extra.text() and names[0] in w.extra.text()
    assert w.heatmap_box.isVisible()
    w.heatmap_box.setChecked(True)
    assert w.viewer.overlay_visible("heatmap")
