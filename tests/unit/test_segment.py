"""Segmentation: a tiny U-Net learns bright blobs; ROI crops; preprocessing geometry."""

from __future__ import annotations

import numpy as np
import pytest

from mskstudio.io.analysis import load_analysis
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

    from mskstudio.imaging.masks import iou_dice
    from mskstudio.jobs import JobContext
    from mskstudio.ml.segment.train import load_segmenter, predict_mask, run_prelabel, run_train_seg

    torch.set_num_threads(1)  # on a shared, loaded CPU one thread is several times faster than two
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
    print(f"held-out IoU {np.mean(ious):.3f} (job metric {metrics['test_iou']:.3f}), empty baseline {baseline:.3f}")
    assert np.mean(ious) > baseline + 0.2
    assert metrics["test_iou"] > baseline + 0.2
    # Pre-labelling writes model masks only where no human mask exists (here: everywhere).
    human = next(iter(truth))
    new_project.annotations.save_mask(human, new_project.annotations.class_id("tumour"), truth[human])
    out = run_prelabel(new_project, {"max_images": 4}, JobContext.null())
    assert out["images"] == 4 and out["stored"] + out["empty"] == 4
    assert not new_project.annotations.masks_of(human, source="model")
    model_rows = new_project.annotations.all_masks(source="model")
    assert all(r.run_id == result["run_id"] and r.annotator == "model" for r in model_rows)
    # Each keeps the probability map it was thresholded from (8-bit), for a FRACTIONAL SEG.
    from mskstudio.io.exports.probability import decode_probability
    from mskstudio.ml.segment.train import predict_probability

    assert model_rows
    for r in model_rows:
        levels = decode_probability(new_project.annotations.probability_png(r.id)).astype(float)
        prob = predict_probability(new_project, model, ckpt, r.image_id)
        assert np.array_equal(prob > ckpt.get("threshold", 0.5), new_project.annotations.load_mask(r.id))
        assert np.abs(levels / 255 - prob).max() <= 0.5 / 255 + 1e-6

    # Pre-labelling stopped after 3 images and resumed: the same summary as an uninterrupted
    # run, and the resumed job says it skipped the images the stopped one stored.
    from mskstudio.jobrun import run_job
    from mskstudio.jobs import Cancelled, CancelToken

    whole = run_prelabel(new_project, {"max_images": 8}, JobContext.null())
    token, logs = CancelToken(), []

    class Sink:
        def __init__(self, stop: int | None):
            self.stop, self.seen = stop, 0

        def on_progress(self, fraction, message, eta_s):
            self.seen += message.startswith("pre-labelling")
            if self.stop is not None and self.seen >= self.stop:
                token.cancel()

        def on_metric(self, name, value, step):
            pass

        def on_log(self, message):
            logs.append(message)

    job = new_project.jobs.submit("prelabel", {"max_images": 8})
    with __import__("pytest").raises(Cancelled):
        run_job(new_project, job, sink=Sink(3), token=token)
    resumed = run_job(new_project, new_project.jobs.resubmit(job), sink=Sink(None))
    assert {k: resumed[k] for k in ("images", "stored", "empty")} == \
        {k: whole[k] for k in ("images", "stored", "empty")}
    assert any(m.startswith("resuming: 3 of 8 images") for m in logs), logs


def test_unetpp_forward_shapes():
    import torch

    from mskstudio.ml.segment.unet import build_segmenter

    for arch in ("unetpp-resnet34", "unet-resnet34"):
        net = build_segmenter(arch).eval()
        with torch.no_grad():
            assert net(torch.zeros(1, 1, 32, 64)).shape == (1, 1, 32, 64)
    with pytest.raises(ValueError):
        build_segmenter("nope")


def test_prepare_unprepare_roundtrip():
    from mskstudio.ml.segment.train import prepare, unprepare

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
    assert x1 - x0 == 52 and (x0 + x1) / 2 == pytest.approx(30, abs=1) and (y0 + y1) / 2 == pytest.approx(50, abs=1)
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
    """The image partition the trainers use, on images whose patients interleave (image i is
    patient i % 20, unequal counts): a split by image position would put a patient in two parts."""
    from mskstudio.ml.segment.train import images_by_part, patient_folds, patient_split

    ids = list(range(100, 173))
    patients = {i: (i * 7) % 20 for i in ids}
    part = patient_split(patients, 0.15, 0.15, seed=1)
    images = images_by_part(ids, patients, part)
    owners = {k: {patients[i] for i in v} for k, v in images.items()}
    assert not owners["train"] & owners["val"] and not owners["train"] & owners["test"]
    assert not owners["val"] & owners["test"] and all(owners.values())
    assert sorted(sum(images.values(), [])) == ids  # every image once
    assert len(owners["test"]) == 3 and len(owners["val"]) == 3  # fractions count patients, not images
    folds = patient_folds(patients, 4, seed=1)
    tested = []
    for f in folds:
        parts = images_by_part(ids, patients, f)
        owners = [{patients[i] for i in parts[k]} for k in ("train", "val", "test")]
        assert all(owners) and not (owners[0] & owners[1] or owners[0] & owners[2] or owners[1] & owners[2])
        tested += sorted(owners[2])
    assert sorted(tested) == list(range(20))  # every patient tested exactly once


def test_deepcluster_backbone_initialises_encoder():
    import torch

    from mskstudio.ml.models import build_backbone
    from mskstudio.ml.segment.unet import build_segmenter

    backbone, _ = build_backbone("resnet18")
    net = build_segmenter("unet-resnet18")
    report = net.encoder.load_backbone_state(backbone.state_dict())
    assert not report["missing"] and not report["unexpected"]
    assert torch.equal(net.encoder.conv1.weight, backbone.conv1.weight)
    assert torch.equal(net.encoder.layer4[1].conv2.weight, backbone.layer4[1].conv2.weight)


# ---- box-prompted ROI segmentation --------------------------------------------------------------
def _ellipse(shape, cx, cy, a, b, angle):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    c, s = np.cos(angle), np.sin(angle)
    u, v = (xx - cx) * c + (yy - cy) * s, -(xx - cx) * s + (yy - cy) * c
    return (u / a) ** 2 + (v / b) ** 2 <= 1


def _ellipse_project(project, n_patients=10, per_patient=2, size=80, seed=1):
    """Dim tilted ellipses on a textured background: a filled box is a poor answer, a model can learn better."""
    rng = np.random.default_rng(seed)
    truth = {}
    for p in range(n_patients):
        sid = project.images.study_id(project.images.patient_id(f"E{p}"), f"ES{p}")
        for k in range(per_patient):
            img = 0.3 + 0.04 * rng.standard_normal((size, size)) + 0.1 * np.linspace(0, 1, size)[None, :]
            mask = _ellipse(
                (size, size),
                rng.uniform(25, 55),
                rng.uniform(25, 55),
                rng.uniform(6, 14),
                rng.uniform(3, 6),
                rng.uniform(0, np.pi),
            )
            img[mask] += rng.uniform(0.15, 0.3)
            image_id = project.images.add_image(
                {"study_id": sid, "sop_uid": f"2.{p}.{k}", "rows": size, "cols": size}, None
            )
            project.images.save_analysis(image_id, np.round(np.clip(img, 0, 1) * 65535))
            project.annotations.save_mask(
                image_id, project.annotations.class_id("tumour"), mask, source="import", annotator="t", audit=False
            )
            truth[image_id] = mask
    return truth


def test_roi_crop_and_paste_round_trip_on_the_full_grid():
    from mskstudio.imaging.masks import iou_dice
    from mskstudio.ml.segment import roi_seg as sr

    full = (120, 90)
    for centre in ((45, 60), (4, 5), (86, 116)):  # inside, and reaching past two corners
        mask = _ellipse(full, centre[0], centre[1], 14, 7, 0.5)
        box = sr.mask_box(mask)
        square = sr.box_square(box)
        assert square[2] - square[0] == square[3] - square[1] >= np.ceil(max(box[2] - box[0], box[3] - box[1]) * 1.3)
        back = sr.paste_prob(sr.crop_target(mask, square, 64).astype(np.float32), square, full) > 0.5
        assert back.shape == full and iou_dice(back, mask)[0] > 0.9
    # The box channel marks the box inside the square; the image channel is the crop itself.
    img = np.zeros(full, np.float32)
    img[40:60, 30:50] = 1.0
    x = sr.crop_input(sr.Pixels(img, full), (20, 30, 60, 70), (30.0, 40.0, 50.0, 60.0), 40)
    assert x.shape == (2, 40, 40)
    assert x[1, 10:30, 10:30].all() and x[1].sum() == 400
    assert (x[0] > x[0].mean()).sum() == 400 and (x[0, 10:30, 10:30] > x[0].mean()).all()
    # A cache smaller than the DICOM grid: boxes on the full grid are scaled onto it.
    half = sr.Pixels(np.zeros((60, 45), np.float32), full)
    assert half.to_source((20, 30, 60, 70)) == (10, 15, 30, 35)


def test_jittered_boxes_stay_around_the_lesion():
    import random

    from mskstudio.ml.segment import roi_seg as sr

    rng = random.Random(0)
    boxes = [sr.jitter_box((100, 100, 150, 120), rng, -0.1, 0.3) for _ in range(200)]
    a = np.asarray(boxes)
    assert (a[:, 0] <= 105).all() and (a[:, 0] >= 85).all() and (a[:, 2] >= 145).all() and (a[:, 3] <= 126).all()
    assert a[:, 0].std() > 2  # it does move


def test_otsu_in_box_finds_a_bright_blob():
    from mskstudio.imaging.masks import iou_dice
    from mskstudio.ml.segment import roi_seg as sr

    full = (100, 100)
    mask = _ellipse(full, 50, 50, 15, 10, 0.3)
    noise = 0.03 * np.random.default_rng(0).standard_normal(full)
    img = (np.where(mask, 0.8, 0.2) + noise).astype(np.float32)
    assert 0.29 < sr.otsu_threshold(img) < 0.71  # beyond 3 sigma of both classes
    assert iou_dice(sr.otsu_in_box(sr.Pixels(img, full), (30, 30, 70, 70)), mask)[0] > 0.95
    assert iou_dice(sr.box_fill(full, (30, 30, 70, 70)), mask)[0] < 0.5


def test_box_model_beats_the_filled_box_and_refines_prelabels(new_project):
    import torch

    from mskstudio.imaging.masks import iou_dice
    from mskstudio.jobs import JobContext
    from mskstudio.ml.segment import roi_seg as sr
    from mskstudio.ml.segment.train_box import run_train_box_seg

    torch.set_num_threads(1)  # on a shared, loaded CPU one thread is several times faster than two
    truth = _ellipse_project(new_project)
    result = run_train_box_seg(
        new_project,
        {"arch": "unet-small", "crop": 32, "epochs": 4, "samples_per_image": 8, "lr": 1e-2, "seed": 0},
        JobContext.null(),
    )
    run = new_project.models.get(result["run_id"])
    assert run["kind"] == "box-segmenter" and run["status"] == "done"
    metrics = new_project.models.metrics(result["run_id"])
    print({k: v for k, v in metrics.items() if k != "test"})
    # Held-out patients only, the same jittered boxes for the model and the filled-box baseline.
    assert metrics["n_test"] >= 2 and metrics["test_iou"] > metrics["test_box_fill_iou"] + 0.1
    # The GUI entry point: loose boxes drawn around held-out lesions give masks on the full grid.
    split = __import__("json").loads(run["split"])
    patients = new_project.images.patient_of()
    held_out = [i for i in truth if split[str(patients[i])] == "test"]
    model_ious, fill_ious = [], []
    for i in held_out:
        x0, y0, x1, y1 = sr.mask_box(truth[i])
        loose = (x0 - 4, y0 - 4, x1 + 4, y1 + 4)
        mask = sr.segment_in_box(new_project, None, i, loose)
        assert mask.shape == truth[i].shape and mask.dtype == bool
        model_ious.append(iou_dice(mask, truth[i])[0])
        fill_ious.append(iou_dice(sr.box_fill(mask.shape, loose), truth[i])[0])
    assert np.mean(model_ious) > np.mean(fill_ious) + 0.1
    # Cascade: a coarse mask (here the filled box) is re-segmented inside its component's box.
    model, ckpt = sr.load_box_segmenter(new_project, result["run_id"])
    gains = []
    for i in held_out:
        coarse = sr.box_fill(truth[i].shape, sr.mask_box(truth[i]))
        refined = sr.refine_mask(model, ckpt, sr.load_pixels(new_project, i), coarse)
        gains.append(iou_dice(refined, truth[i])[0] - iou_dice(coarse, truth[i])[0])
    assert np.mean(gains) > 0


def test_roi_pixels_come_from_the_dicom_windowed_like_the_cache(phantom_project):
    from mskstudio.ml.segment import roi_seg as sr

    image_id = phantom_project.images.ids()[0]
    row = phantom_project.images.record(image_id)
    pixels = sr.load_pixels(phantom_project, image_id)
    assert pixels.image.shape == pixels.full == (row.rows, row.cols)
    # Small phantoms fit the 512 px cache unscaled, so the decoded DICOM and the cache must agree
    # (same window, same orientation, bone bright) to 16-bit rounding.
    cache = load_analysis(phantom_project, image_id)
    assert cache.shape == pixels.full
    assert np.abs(pixels.image - cache).max() < 1e-3
    # Without a readable file the cache stands in.
    phantom_project.images.dicom_path(image_id).unlink()
    assert np.array_equal(sr.load_pixels(phantom_project, image_id).image, cache)
