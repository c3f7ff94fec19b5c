"""Exports other tools read, checked on the phantom demo: every DICOM SEG and SR is read back by
highdicom, every SEG's pixels equal the stored masks, the COCO file evaluates to AP 1.0 against
itself in pycocotools, the label table loads in pandas; then the whole folder is imported into a
new project holding the same (de-identified) images and every mask, box and label is counted back.

    .venv/bin/python tests/bench/bench_exports.py [--project demo.mskproj] [--images 600] [--size medium]

Without --project a demo of --images phantoms is built in a temporary folder.  Prints figures
(counts, failures, seconds on this machine); it is not a pass/fail test.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--project", type=Path, default=None)
    ap.add_argument("--images", type=int, default=600)
    ap.add_argument("--size", default="medium")
    args = ap.parse_args()

    import highdicom as hd
    import pandas as pd
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from mskstudio.cli.cmd_data import build_demo
    from mskstudio.io.exports.annotations import export_annotations, import_annotations
    from mskstudio.io.importer import run_import
    from mskstudio.jobs import JobContext
    from mskstudio.store import Project

    work = Path(tempfile.mkdtemp(prefix="bench-exports-"))
    try:
        t = time.perf_counter()
        project = (Project.open(args.project) if args.project
                   else build_demo(work / "demo.mskproj", images=args.images, size=args.size))
        print(f"project: {project.images.count()} images, {len(project.annotations.all_masks())} masks, "
              f"{len(project.annotations.all_boxes())} boxes, {len(project.labels.table())} labels "
              f"({time.perf_counter() - t:.0f} s to open/build)")

        t = time.perf_counter()
        result = export_annotations(project, work / "out", seg_all=True)
        print(f"export-annotations --seg-all: {result['seg']} SEG, {result['sr']} SR, {result['boxes']} boxes, "
              f"{result['labels']} labels in {time.perf_counter() - t:.1f} s")

        t = time.perf_counter()
        seg_fail, pixel_mismatch, segments = [], 0, 0
        by_uid = {r["sop_uid"]: r["id"] for r in project.images.identities()}
        masks = {}
        for m in project.annotations.all_masks():
            who = m.annotator if m.source == "human" else None
            masks[(m.image_id, m.class_name, m.source, who or m.annotator)] = m.id
        for path in sorted((work / "out" / "seg").glob("*.dcm")):
            try:
                seg = hd.seg.segread(path)
            except Exception as exc:  # noqa: BLE001 - counted and shown
                seg_fail.append(f"{path.name}: {exc}")
                continue
            (uid,) = {ref[2] for ref in seg.get_source_image_uids()}
            pixels = seg.get_pixels_by_source_instance([uid], combine_segments=False)[0]
            for i, n in enumerate(seg.segment_numbers):
                desc = seg.get_segment_description(n)
                source, annotator = desc.tracking_id.split(":", 1)
                mask_id = masks[(by_uid[uid], desc.segment_label, source, annotator)]
                segments += 1
                stored = project.annotations.load_mask(mask_id)
                pixel_mismatch += int(not np.array_equal(pixels[..., i] > (0.5 if seg.SegmentationType ==
                                                                          "FRACTIONAL" else 0), stored))
        print(f"SEG read back by highdicom: {segments} segments in {len(list((work / 'out' / 'seg').glob('*.dcm')))}"
              f" files, {len(seg_fail)} unreadable, {pixel_mismatch} segments differing from the stored mask "
              f"({time.perf_counter() - t:.1f} s)")
        for line in seg_fail[:5]:
            print("  ", line)

        t = time.perf_counter()
        sr_fail, groups = [], 0
        for path in sorted((work / "out" / "sr").glob("*.dcm")):
            try:
                report = hd.sr.srread(path).content
                groups += len(report.get_planar_roi_measurement_groups()) + len(report.get_image_measurement_groups())
            except Exception as exc:  # noqa: BLE001
                sr_fail.append(f"{path.name}: {exc}")
        print(f"SR read back by highdicom: {groups} measurement groups, {len(sr_fail)} unreadable "
              f"({time.perf_counter() - t:.1f} s)")

        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO(str(work / "out" / "boxes_coco.json"))
            dets = [{**{k: a[k] for k in ("image_id", "category_id", "bbox")}, "score": 1.0}
                    for a in gt.loadAnns(gt.getAnnIds())]
            ev = COCOeval(gt, gt.loadRes(dets), "bbox") if dets else None
            if ev:
                ev.evaluate()
                ev.accumulate()
                ev.summarize()
        print(f"COCO: {len(gt.getAnnIds())} boxes on {len(gt.getImgIds())} images; "
              f"AP(GT vs itself) = {ev.stats[0]:.3f}" if ev else "COCO: no boxes")
        table = pd.read_csv(work / "out" / "labels.csv")
        print(f"labels.csv: {len(table)} rows, {table['label_set'].nunique()} label sets (pandas)")

        t = time.perf_counter()
        folder = work / "images"
        folder.mkdir()
        for image_id in project.images.ids(include_excluded=True):
            shutil.copy(project.images.dicom_path(image_id), folder / f"{image_id}.dcm")
        other = Project.create(work / "other.mskproj")
        run_import(other, {"paths": [str(folder)], "workers": 1}, JobContext.null())
        got = import_annotations(other, work / "out")
        print(f"round trip into a new project: masks {len(other.annotations.all_masks())}/"
              f"{len(project.annotations.all_masks())}, boxes {len(other.annotations.all_boxes())}/"
              f"{len(project.annotations.all_boxes())}, labels {len(other.labels.table())}/"
              f"{len(project.labels.table())}; problem lines "
              f"{sum(len(p.get('problems', [])) + len(p.get('unknown', [])) for p in got.values())} "
              f"({time.perf_counter() - t:.0f} s incl. re-import of the images)")
        other.close()
        project.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
