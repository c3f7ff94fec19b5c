"""Segmentation: a tiny U-Net learns bright blobs; ROI crops; preprocessing geometry."""

from __future__ import annotations

import numpy as np
import pytest

from mskstudio.ml import roi


def _synthetic_project(project, n_patients=8, per_patient=2, size=64, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    truth = {}
    for p in range(n_patients):
        pid = project.images.patient_id(f"P{p}")
        sid = project.images.study_id(pid, f"S{p}")
        for k in range(per_patient):
            img = 0.25 + 0.05 * rng.standard_normal((size, size))
            cx, cy, r = rng.uniform(16, size - 16), rng.uniform(16, size - 16), rng.uniform(5, 10)
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
            img[mask] += 0.5
            image_id = project.images.add_image(
                {
                    "study_id": sid,
                    "sop_uid": f"1.{p}.{k}",
                    "rows": size,
                    "cols": size,
                    "spacing_row_mm": 0.5,
                    "spacing_col_mm": 0.5,
                },
                None,
            )
            project.images.save_analysis(image_id, np.round(np.clip(img, 0, 1) * 65535))
            project.annotations.save_mask(
                image_id,
                project.annotations.class_id("tumour"),
                mask,
                source="import",
                annotator="truth",
                audit=False,
            )
            truth[image_id] = mask
    return truth


def test_tiny_unet_beats_empty_baseline(new_project):
    import torch

    from mskstudio.io.masks import iou_dice
    from mskstudio.jobs import JobContext
    from mskstudio.ml.segment import load_segmenter, predict_mask, run_prelabel, run_train_seg

    torch.set_num_threads(2)
    truth = _synthetic_project(new_project)
    result = run_train_seg(
        new_project,
        {
            "arch": "unet-resnet18",
            "size": 64,
            "epochs": 7,
            "batch_size": 8,
            "lr": 3e-3,
            "pos_weight": 1.0,
            "seed": 0,
        },
        JobContext.null(),
    )
    run = new_project.models.get(result["run_id"])
    assert run["kind"] == "segmenter" and run["status"] == "done" and run["checkpoint_sha"]
    metrics = new_project.models.metrics(result["run_id"])
    test_patients = [int(k) for k, v in __import__("json").loads(run["split"]).items() if v == "test"]
    patients = new_project.images.patient_of()
    test_ids = [i for i in truth if patients[i] in test_patients]
    assert test_ids
    # The baseline: an empty mask scores IoU 0 on every image with a lesion.
    baseline = np.mean([iou_dice(np.zeros_like(truth[i]), truth[i])[0] for i in test_ids])
    model, ckpt = load_segmenter(new_project, result["run_id"])
    ious = [iou_dice(predict_mask(new_project, model, ckpt, i), truth[i])[0] for i in test_ids]
    print(
        f"held-out IoU {np.mean(ious):.3f} (job metric {metrics['test_iou']:.3f}), "
        f"empty baseline {baseline:.3f}"
    )
    assert np.mean(ious) > baseline + 0.2
    assert metrics["test_iou"] > baseline + 0.2
    # Pre-labelling writes model masks only where no human mask exists (here: everywhere).
    human = next(iter(truth))
    new_project.annotations.save_mask(human, new_project.annotations.class_id("tumour"), truth[human])
    out = run_prelabel(new_project, {"max_images": 4}, JobContext.null())
    assert out["images"] == 4 and out["stored"] + out["empty"] == 4
    assert not new_project.annotations.masks_of(human, source="model")
    model_rows = new_project.annotations.all_masks(source="model")
    assert all(r["run_id"] == result["run_id"] and r["annotator"] == "model" for r in model_rows)


def test_unetpp_forward_shapes():
    import torch

    from mskstudio.ml.unet import build_segmenter

    for arch in ("unetpp-resnet34", "unet-resnet34"):
        net = build_segmenter(arch).eval()
        with torch.no_grad():
            assert net(torch.zeros(1, 1, 32, 64)).shape == (1, 1, 32, 64)
    with pytest.raises(ValueError):
        build_segmenter("nope")


def test_prepare_unprepare_roundtrip():
    from mskstudio.ml.segment import prepare, unprepare

    img = np.zeros((100, 60), np.float32)
    img[10:90, 5:55] = 0.5  # body; air around it is cropped
    full = np.zeros((200, 120), bool)
    full[60:100, 40:80] = True
    sq, msq, geom = prepare(img, full, 64, full=(200, 120))
    assert geom.crop == (5, 10, 55, 90) and sq.shape == msq.shape == (64, 64)
    back = unprepare(msq, geom)
    inter = (back & full).sum() / (back | full).sum()
    assert back.shape == (200, 120) and inter > 0.85


def test_roi_margins_and_padding():
    img = np.arange(100 * 80, dtype=np.float32).reshape(100, 80)
    crop, sq = roi.crop_roi(img, (20, 30, 40, 70))  # 20 wide, 40 high -> side 40 * 1.3 = 52
    assert crop.shape == (52, 52)
    x0, y0, x1, y1 = sq
    assert (
        x1 - x0 == 52
        and (x0 + x1) / 2 == pytest.approx(30, abs=1)
        and (y0 + y1) / 2 == pytest.approx(50, abs=1)
    )
    assert crop[y0 * 0 + 30 - y0, 20 - x0] == img[30, 20]
    # At the border the square reaches outside: padded with the fill value.
    crop, sq = roi.crop_roi(img, (0, 0, 10, 10), fill=-1)
    assert crop.shape == (13, 13) and sq[0] < 0 and sq[1] < 0
    assert crop[0, 0] == -1 and crop[-1, -1] == img[sq[3] - 1, sq[2] - 1]
    m = np.zeros((100, 80), bool)
    m[40:50, 10:30] = True
    crop, sq = roi.crop_mask_roi(img, m)
    assert crop.shape == (26, 26)
    assert roi.crop_mask_roi(img, np.zeros_like(m)) is None
    assert roi.scale_rect((10, 20, 30, 40), (200, 100), (100, 50)) == (5, 10, 15, 20)


def test_patient_splits_never_share_a_patient():
    from mskstudio.ml.segment import patient_folds, patient_split

    patients = {i: i // 3 for i in range(60)}  # 20 patients, 3 images each
    part = patient_split(patients, 0.15, 0.15, seed=1)
    assert set(part) == set(range(20)) and {"train", "val", "test"} == set(part.values())
    folds = patient_folds(patients, 4, seed=1)
    tested = [p for f in folds for p, v in f.items() if v == "test"]
    assert sorted(tested) == list(range(20))  # every patient tested exactly once
    for f in folds:
        assert {v for v in f.values()} == {"train", "val", "test"}


def test_deepcluster_backbone_initialises_encoder():
    import torch

    from mskstudio.ml.models import build_backbone
    from mskstudio.ml.unet import build_segmenter

    backbone, _ = build_backbone("resnet18")
    net = build_segmenter("unet-resnet18")
    report = net.encoder.load_backbone_state(backbone.state_dict())
    assert not report["missing"] and not report["unexpected"]
    assert torch.equal(net.encoder.conv1.weight, backbone.conv1.weight)
    assert torch.equal(net.encoder.layer4[1].conv2.weight, backbone.layer4[1].conv2.weight)
