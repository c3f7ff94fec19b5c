"""Mask-guided attention: the loss, the joint augmentation, a shortcut the guidance must
overcome, the equivalence with Grad-CAM it relies on, and the train job with masks."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")


def test_attention_loss_is_low_inside_the_mask_and_high_outside():
    from mskstudio.ml.classify.mask_guidance import attention_loss

    acts = torch.zeros(2, 1, 4, 4)
    acts[0, 0, 1, 1] = 10.0                          # image 0: evidence in cell (1, 1)
    acts[1, 0, 3, 3] = 10.0                          # image 1: evidence in cell (3, 3)
    weight = torch.ones(2, 1)
    masks = torch.zeros(2, 1, 8, 8)
    masks[:, 0, 2:4, 2:4] = 1.0                      # both lesions cover cell (1, 1) exactly
    y = torch.tensor([1, 1])
    inside = attention_loss(acts[:1], weight, y[:1], masks[:1])
    outside = attention_loss(acts[1:], weight, y[1:], masks[1:])
    assert float(inside) < 0.01 < 5.0 < float(outside)
    # No image with a mask: nothing to guide.
    assert float(attention_loss(acts, weight, y, torch.zeros_like(masks))) == 0.0


def test_attention_loss_gradient_moves_evidence_onto_the_lesion():
    from mskstudio.ml.classify.mask_guidance import attention_loss

    acts = torch.zeros(1, 1, 4, 4, requires_grad=True)
    masks = torch.zeros(1, 1, 4, 4)
    masks[0, 0, 0, 0] = 1.0
    attention_loss(acts, torch.ones(1, 1), torch.tensor([0]), masks).backward()
    grad = acts.grad[0, 0]
    assert grad[0, 0] < 0 < grad[3, 3]               # descent raises the lesion cell, lowers the rest


def test_attention_meter_averages_over_masked_images_of_all_batches():
    from mskstudio.ml.classify.mask_guidance import AttentionMeter, attention_loss

    gen = torch.Generator().manual_seed(0)
    acts = torch.randn(5, 3, 4, 4, generator=gen)
    weight = torch.randn(2, 3, generator=gen)
    y = torch.tensor([0, 1, 1, 0, 1])
    masks = torch.zeros(5, 1, 8, 8)
    masks[0, 0, :4, :4] = masks[2, 0, 4:, 2:6] = masks[4, 0, 1:3, 5:8] = 1.0   # 1 and 3 have none

    class Tap:
        output = None

    meter = AttentionMeter(Tap())
    for part in (slice(0, 2), slice(2, 4), slice(4, 5)):      # three batches, the middle one mixed
        meter.tap.output = acts[part]
        meter.add(weight, y[part], masks[part])
    assert meter.n == 3
    whole = float(attention_loss(acts, weight, y, masks))     # one batch of all five
    assert meter.mean == pytest.approx(whole, rel=1e-5)


def test_augment_moves_the_mask_with_the_image():
    import random

    from mskstudio.ml.datasets import Augment

    mask = torch.zeros(1, 64, 64)
    mask[0, 10:30, 35:55] = 1.0
    image = mask.clone()                             # the image is its own mask
    aug = Augment(48, scale=(0.5, 1.0), contrast=0.0, brightness=0.0, vflip=0.5, rng=random.Random(3))
    for _ in range(10):
        x, m = aug(image, mask)
        assert x.shape == m.shape == (1, 48, 48)
        a, b = x[0] > 0.5, m[0] > 0.5
        if b.any():
            iou = float((a & b).sum()) / float((a | b).sum())
            assert iou > 0.95


def _shortcut_data(n, seed):
    """Class 1 carries a faint square anywhere (the lesion, masked) and a bright edge marker
    (a shortcut, like a detector's label); class 0 has neither."""
    g = np.random.default_rng(seed)
    x = g.normal(0.3, 0.05, (n, 1, 64, 64)).astype(np.float32)
    m = np.zeros_like(x)
    y = np.arange(n) % 2
    for i in np.flatnonzero(y):
        r, c = g.integers(8, 52, 2)
        x[i, 0, r:r + 6, c:c + 6] += 0.25
        m[i, 0, r:r + 6, c:c + 6] = 1.0
        x[i, 0, :, 60:] = 0.9
    return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(m)


def _pointing_after_training(guidance: float) -> tuple[float, float]:
    import torch.nn.functional as F

    from mskstudio.ml.classify.classifier import make_classifier
    from mskstudio.ml.classify.mask_guidance import CamTap, attention_loss

    torch.manual_seed(0)
    x, y, m = _shortcut_data(256, 1)
    model = make_classifier("tinycnn", 2)
    tap = CamTap(model, "tinycnn")
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(8):
        for idx in torch.randperm(len(y)).split(32):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            if guidance:
                loss = loss + guidance * attention_loss(tap.output, model.head.weight, y[idx], m[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    xt, yt, mt = _shortcut_data(64, 2)               # unseen images
    with torch.no_grad():
        accuracy = float((model(xt).argmax(1) == yt).float().mean())
        cam = torch.einsum("bchw,c->bhw", tap.output, model.head.weight[1])[yt == 1]
    peaks = F.interpolate(cam[:, None], size=(64, 64), mode="bilinear")[:, 0].flatten(1).argmax(1)
    hits = mt[yt == 1][:, 0].flatten(1).gather(1, peaks[:, None])
    tap.remove()
    return accuracy, float(hits.float().mean())


def test_guidance_moves_the_cam_off_a_shortcut_onto_the_lesion():
    torch.set_num_threads(2)
    plain_acc, plain_hits = _pointing_after_training(0.0)
    guided_acc, guided_hits = _pointing_after_training(1.0)
    assert plain_acc > 0.9 and guided_acc > 0.9       # both classify: the shortcut suffices
    assert guided_hits >= 0.8
    assert guided_hits > plain_hits + 0.3             # without guidance the CAM sits on the marker


@pytest.mark.parametrize("arch", ["tinycnn", "resnet18"])
def test_linear_cam_has_the_grad_cam_peak(arch):
    """Grad-CAM at the default layer is ReLU(w_c . A): the map the guidance shapes."""
    import torch.nn.functional as F

    from mskstudio.ml.classify.classifier import make_classifier
    from mskstudio.ml.classify.mask_guidance import CamTap
    from mskstudio.ml.explain.gradcam import cam_for_models

    torch.manual_seed(1)
    model = make_classifier(arch, 3).eval()
    for q in model.parameters():
        q.requires_grad_(False)
    x = torch.rand(1, 1, 128, 128)
    tap = CamTap(model, arch)
    with torch.no_grad():
        model(x)
    maps = torch.relu(torch.einsum("bchw,kc->kbhw", tap.output, model.head.weight))
    tap.remove()
    target = int(maps.flatten(1).std(1).argmax())    # a class whose random-weight map is not flat
    linear = F.interpolate(maps[target][:, None], size=(128, 128), mode="bilinear")[0, 0].numpy()
    linear = (linear - linear.min()) / (linear.max() - linear.min())
    grad_cam = cam_for_models([model], x, target, arch=arch)
    assert np.corrcoef(linear.ravel(), grad_cam.ravel())[0, 1] > 0.99


def test_train_job_with_mask_guidance(phantom_project, phantom_archive):
    from mskstudio.io.exports.annotations import import_masks
    from mskstudio.jobrun import submit_and_run
    from mskstudio.ml.classify.mask_guidance import letterboxed_masks

    torch.set_num_threads(2)
    import_masks(phantom_project, phantom_archive, boxes=False)
    masks = letterboxed_masks(phantom_project, phantom_project.images.ids(), 64, "image", 0.15)
    assert masks and all(m.shape == (64, 64) and m.max() > 0 for m in masks.values())
    params = {"label_set": "diagnosis", "arch": "tinycnn", "size": 64, "k": 2, "epochs": 3, "batch_size": 16,
              "test_fraction": 0.5, "n_boot": 20, "seed": 0, "device": "cpu", "mask_guidance": 1.0}
    run_id = int(submit_and_run(phantom_project, "train", params)["model_run_id"])
    fold = phantom_project.models.metrics(run_id)["main"]["folds"][0]
    history = fold["history"]
    # The logged training loss is the cross-entropy alone, comparable with val_loss on the
    # learning curves; the guided objective would add about guided_share x attention to it.
    guided_share = len(masks) / len(phantom_project.images.ids())
    assert all(h["train_loss"] < h["val_loss"] + guided_share * h["train_attention"] / 2 for h in history)
    assert all(h["train_objective"] > h["train_loss"] for h in history)
    assert all(np.isfinite(h["train_attention"]) and h["train_attention"] > 0 for h in history)
    # Validation scores the attention on its masked images, and the kept epoch is the one
    # with the best guided objective, not the best cross-entropy alone.
    assert all(np.isfinite(h["val_attention"]) and h["val_attention"] > 0 for h in history)
    objective = [h["val_loss"] + 1.0 * h["val_attention"] for h in history]
    assert fold["best_epoch"] == int(np.argmin(objective))
    with pytest.raises(Exception, match="mask guidance"):
        submit_and_run(phantom_project, "train", {**params, "mask_guidance": -1})
