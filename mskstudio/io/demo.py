"""The embedded demo: phantom archive → project → import → clinical data.

``run_demo_archive`` is the job ``demo-archive``; ``cli.cmd_data.build_demo`` (what
``mskstudio demo`` and the README's first command run) submits it, one layer up, since
io never submits jobs.  The test fixture project is built from the same steps.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from mskstudio.domain import TRUTH_PREFIX
from mskstudio.io.params import DemoArchiveParams
from mskstudio.jobs import JobContext
from mskstudio.store import Project


def run_demo_archive(project: Project, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Job ``demo-archive``: generate a phantom archive and import it into ``project``."""
    from mskstudio.io.clinical import run_import_clinical
    from mskstudio.io.exports.annotations import import_masks
    from mskstudio.io.importer import run_import
    from mskstudio.io.phantoms import generate_archive

    q = DemoArchiveParams.from_json(params).check(project)
    n_images, size, seed, keep, workers = int(q.images), q.size, int(q.seed), q.archive_dir, int(q.workers)
    archive = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="mskstudio-demo-"))
    timings: dict[str, float] = {}
    try:
        t = time.monotonic()
        manifest = generate_archive(archive, n_images=n_images, seed=seed, size=size,
                                    workers=workers, ctx=ctx.sub(0.0, 0.45))
        timings["generate_s"] = time.monotonic() - t
        t = time.monotonic()
        imported = run_import(project, {"paths": [str(manifest.parent / "dicom")],
                                        "workers": workers}, ctx.sub(0.45, 0.95))
        timings["import_s"] = time.monotonic() - t
        clinical = run_import_clinical(project, {"path": str(manifest.parent / "clinical.csv")},
                                       ctx.sub(0.95, 1.0))
        _store_ground_truth(project, manifest)
        # The phantom surgeons' lesion outlines and boxes (source 'import'), as an archive
        # with a tumour board's masks would bring: segmentation, ROI input and the
        # pointing game have something to learn from and be scored against.
        masks = import_masks(project, manifest, boxes=True)
    finally:
        if not keep:
            shutil.rmtree(archive, ignore_errors=True)
    project.set_meta("demo", "phantoms")
    ctx.progress(1.0, f"{imported['imported']} images imported, {clinical['imported']} clinical records")
    return {"images": n_images, "size": size, "import": imported, "clinical": clinical, "masks": masks,
            **{k: round(v, 1) for k, v in timings.items()}}


def _store_ground_truth(project: Project, manifest: Path) -> None:
    """Phantom truth (anatomical region) as a hidden label set used only to *score*
    clustering and models (NMI/purity, benchmark accuracy), never to train them."""
    from mskstudio.io.deid import pseudo_uid
    from mskstudio.io.phantoms import read_manifest

    by_hash = project.images.ids_by_original_hash()
    set_id = project.labels.label_set(TRUTH_PREFIX + "region",
                                      description="phantom ground truth, for scoring only")
    groups: dict[str, list[int]] = {}
    for row in read_manifest(manifest):
        image_id = by_hash.get(pseudo_uid(project.secret, row["sop_uid"]))
        if image_id is not None:
            groups.setdefault(row["region"], []).append(image_id)
    for region, ids in sorted(groups.items()):
        project.labels.set_labels(ids, set_id, project.labels.class_id(set_id, region),
                                  source="import", audit=False)
    project.audit("demo.truth", "label_set", set_id, {"images": sum(map(len, groups.values()))})


def default_demo_path() -> Path:
    return Path.cwd() / "demo.mskproj"
