"""Lesion segmentation on the phantom demo, scored on held-out patients on the full DICOM grid.

Two ways a mask is made, each against baselines measured in the same run on the same images:

1. Box-prompted (the surgeon draws a box, "fill box with model"): the ground-truth box with
   every edge jittered (seeded; the same boxes for every method) -> ``segment_in_box``.
   Baselines: the filled box, and Otsu's threshold inside the box.
2. Automatic pre-label: the whole-image model alone, and the cascade (whole-image model
   localises, the box model re-segments inside each found region).  Also the share of
   held-out lesion-free images on which the automatic path draws anything (false alarms).

Both models use the same patient split (``patient_split``, same seed and fractions), so
the test patients are unseen by both.  Timings are CPU minutes on a shared 2-core machine:
noisy while others work.

    .venv/bin/python tests/bench/bench_segment.py [--project P] [--box-arch unet-small]
        [--box-epochs 24] [--box-crop 64] [--coarse-arch unet-small] [--coarse-size 128] [--coarse-epochs 25]
        [--box-run ID] [--coarse-run ID] [--threads 1] [--negatives 60]

Target (issue 8): held-out IoU >= 0.85 (seed study: 87.4 % with UNet++).  Prints figures only.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from mskstudio.imaging.masks import iou_dice
from mskstudio.jobrun import submit_and_run
from mskstudio.ml.evaluate.metrics import proportion
from mskstudio.ml.segment import roi_seg as sr
from mskstudio.ml.segment.data import training_masks
from mskstudio.ml.segment.train import load_segmenter, predict_mask_cascade
from mskstudio.ml.segment.train_box import mean_ci, score_boxes, summarise
from mskstudio.store import Project, is_project


def build_project(path: Path, images: int) -> Project:
    """The demo phantoms with their ground-truth lesion masks imported (source 'import')."""
    from mskstudio.io.demo import run_demo_archive
    from mskstudio.io.exports.annotations import import_masks
    from mskstudio.jobs import JobContext

    project = Project.create(path, name="segmentation bench")
    archive = path.parent / "archive"
    run_demo_archive(project, {"images": images, "archive_dir": str(archive)}, JobContext.null())
    print("masks:", import_masks(project, archive / "manifest.csv", boxes=True))
    return project


def fmt(ci: dict) -> str:
    return f"{ci['mean']:.3f} [{ci['lo']:.3f}, {ci['hi']:.3f}] (n={ci['n']})"


def test_patients(project: Project, run_id: int) -> set[int]:
    split = json.loads(project.models.get(run_id)["split"])
    return {int(p) for p, part in split.items() if part == "test"}


def train(project: Project, kind: str, params: dict) -> tuple[int, float]:
    t0 = time.process_time()
    result = submit_and_run(project, kind, params)
    return int(result["run_id"]), (time.process_time() - t0) / 60


def box_prompted(project: Project, run_id: int, masks: dict, test_ids: list[int], seed: int) -> None:
    model, ckpt = sr.load_box_segmenter(project, run_id)
    params = project.models.params(run_id)
    for name, jitter in (("jittered box", params["jitter"]), ("tight box", (0.0, 0.0))):
        boxes = sr.eval_boxes(test_ids, masks, jitter, seed)
        s = summarise(score_boxes(project, model, ckpt, masks, boxes))
        print(f"  {name:13s} model IoU {fmt(s['model_iou'])}  Dice {s['model_dice']['mean']:.3f}")
        print(f"  {'':13s} filled box IoU {fmt(s['box_iou'])}   Otsu in box IoU {fmt(s['otsu_iou'])}")


def automatic(
    project: Project, coarse_id: int, box_id: int, masks: dict, test_ids: list[int], negatives: list[int]
) -> None:
    coarse = load_segmenter(project, coarse_id)
    box = sr.load_box_segmenter(project, box_id)
    ious = {"whole-image": [], "cascade": []}
    t0 = time.process_time()
    for i in test_ids:
        ious["whole-image"].append(iou_dice(predict_mask_cascade(project, coarse, None, i), masks[i])[0])
        ious["cascade"].append(iou_dice(predict_mask_cascade(project, coarse, box, i), masks[i])[0])
    for name, values in ious.items():
        found = sum(v > 0 for v in values)
        print(f"  {name:12s} IoU {fmt(mean_ci(values))}  lesion touched on {found}/{len(values)}")
    alarms = sum(predict_mask_cascade(project, coarse, box, i).any() for i in negatives)
    p = proportion(alarms, len(negatives))
    print(
        f"  false alarms on held-out lesion-free images: {alarms}/{len(negatives)} = {p['value']:.2f} "
        f"[{p['ci'][0]:.2f}, {p['ci'][1]:.2f}]"
    )
    print(f"  (both paths over {len(test_ids)} + {len(negatives)} images: {(time.process_time() - t0):.0f} CPU s)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--project", help="a project with phantom masks (default: build one in a temp folder)")
    ap.add_argument("--images", type=int, default=600)
    ap.add_argument("--box-arch", default="unet-small")
    ap.add_argument("--box-epochs", type=int, default=24)
    ap.add_argument("--box-crop", type=int, default=64)
    ap.add_argument("--coarse-arch", default="unet-small")
    ap.add_argument("--coarse-size", type=int, default=128)
    ap.add_argument("--coarse-epochs", type=int, default=25)
    ap.add_argument("--box-run", type=int, help="score this box-segmenter run instead of training one")
    ap.add_argument("--coarse-run", type=int, help="score this whole-image segmenter run instead of training one")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy machine)")
    ap.add_argument("--negatives", type=int, default=60, help="lesion-free images scored for false alarms")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import tempfile

    import torch

    torch.set_num_threads(args.threads)
    if args.project and is_project(Path(args.project)):
        project = Project.open(Path(args.project))
    else:
        path = Path(args.project or tempfile.mkdtemp(prefix="mskstudio-bench-seg-")) / "seg.mskproj"
        project = build_project(path, args.images)
    masks = training_masks(project)
    print(f"{len(masks)} images with lesion masks, {project.images.count()} images in all")

    box_id, box_min = args.box_run, None
    if box_id is None:
        box_id, box_min = train(
            project,
            "train-seg-box",
            {
                "arch": args.box_arch,
                "epochs": args.box_epochs,
                "crop": args.box_crop,
                "seed": args.seed,
                "threads": args.threads,
            },
        )
    coarse_id, coarse_min = args.coarse_run, None
    if coarse_id is None:
        coarse_id, coarse_min = train(
            project,
            "train-seg",
            {
                "arch": args.coarse_arch,
                "size": args.coarse_size,
                "epochs": args.coarse_epochs,
                "seed": args.seed,
            },
        )
    held_out = test_patients(project, box_id)
    if held_out != test_patients(project, coarse_id):
        raise SystemExit("the two runs were trained on different patient splits: not comparable")
    patients = project.images.patient_of()
    test_ids = sorted(i for i in masks if patients[i] in held_out)
    seen = set(json.loads(project.models.get(box_id)["split"])) | set(
        json.loads(project.models.get(coarse_id)["split"])
    )
    lesion_free = [i for i in project.images.ids() if i not in masks and str(patients[i]) not in seen]
    negatives = sorted(random.Random(args.seed).sample(lesion_free, min(args.negatives, len(lesion_free))))

    box_metrics = project.models.metrics(box_id)
    print(
        f"\nbox-prompted ROI segmenter (run {box_id}, {box_metrics.get('n_train')} training lesions, "
        f"CPU minutes {box_min if box_min is not None else box_metrics.get('cpu_minutes'):.2f}):"
    )
    box_prompted(project, box_id, masks, test_ids, args.seed + 1)
    coarse_metrics = project.models.metrics(coarse_id)
    print(
        f"\nautomatic pre-label (whole-image run {coarse_id}, CPU minutes "
        f"{coarse_min if coarse_min is not None else coarse_metrics.get('cpu_minutes'):.2f}; its own test IoU on "
        f"the {project.models.params(coarse_id)['size']} px square: {coarse_metrics['test_iou']:.3f}):"
    )
    automatic(project, coarse_id, box_id, masks, test_ids, negatives)
    project.close()


if __name__ == "__main__":
    main()
