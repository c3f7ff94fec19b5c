"""Reader-study setup: which images, which readers and arms, and each reader's seeded order.

Images are chosen by a spec, stages joined by ``+`` each narrowing the previous set:

* ``all`` — every image (not excluded) with a truth label among the study's classes;
* ``holdout:RUN`` — the hold-out test images of model run RUN (name or id), never trained on;
* ``filter:body_part=KNEE,view=AP`` — images whose columns match;
* ``sample:N-per-class`` — N images per truth class, drawn with the study's seed.

Only images with a truth label among the classes enter a study (it is scored against
them).  The order of a reader in an arm depends on the seed, the arm's position and the
reader's *name* only, so adding a reader never reshuffles the others.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mskstudio.store.repo_readers import ARM_KINDS

if TYPE_CHECKING:
    from mskstudio.store import Project

MAX_CLASSES = 9  # answer keys 1-9
FILTER_COLUMNS = ("body_part", "view", "laterality", "modality", "manufacturer", "photometric")


def find_model_run(project: Project, key: str | int) -> int:
    """Id of model run ``key`` (id or name); ValueError naming it if there is none."""
    text = str(key).strip()
    if text.isdigit() and project.models.get(int(text)) is not None:
        return int(text)
    row = project.db.one("SELECT id FROM model_runs WHERE name = ? ORDER BY id DESC", (text,))
    if row is None:
        raise ValueError(f"model run {text!r}: no such run (give its id or name)")
    return int(row[0])


def parse_arms(project: Project, spec: str | Sequence[str]) -> list[tuple[str, int | None]]:
    """``image,clinical,assisted:RUN`` -> [(kind, model run id or None), ...]."""
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if not items:
        raise ValueError("--arms: give at least one arm (image, clinical, assisted:RUN)")
    arms = []
    for item in items:
        kind, _, run = item.partition(":")
        if kind not in ARM_KINDS:
            raise ValueError(f"--arms: unknown arm {item!r} (expected image, clinical or assisted:RUN)")
        if kind == "assisted" and not run:
            raise ValueError("--arms: the assisted arm needs its model run, e.g. assisted:3")
        arms.append((kind, find_model_run(project, run) if run else None))
    if len({a for a in arms}) != len(arms):
        raise ValueError("--arms: an arm is given twice")
    return arms


def select_images(project: Project, spec: str, truth: dict[int, int], *, seed: int) -> list[int]:
    """Image ids chosen by ``spec`` (see the module docstring) among those with a truth label."""
    chosen = [i for i in project.images.ids() if i in truth]
    for stage in [s.strip() for s in spec.split("+") if s.strip()]:
        kind, _, arg = stage.partition(":")
        if kind == "all":
            continue
        if kind == "holdout":
            run_id = find_model_run(project, arg)
            split = json.loads(project.models.get(run_id)["split"] or "{}")
            test = set(split.get("test") or [])
            if not test:
                raise ValueError(f"--images holdout:{arg}: run {run_id} has no hold-out test images")
            chosen = [i for i in chosen if i in test]
        elif kind == "filter":
            chosen = _filtered(project, chosen, arg)
        elif kind == "sample":
            n_text = arg.removesuffix("-per-class")
            if not n_text.isdigit() or int(n_text) < 1:
                raise ValueError(f"--images {stage!r}: expected sample:N-per-class with N >= 1")
            rng = np.random.default_rng(seed)
            by_class: dict[int, list[int]] = {}
            for i in chosen:
                by_class.setdefault(truth[i], []).append(i)
            picked = []
            for cls in sorted(by_class):
                ids = by_class[cls]
                picked += [int(x) for x in rng.choice(ids, size=min(int(n_text), len(ids)), replace=False)]
            chosen = sorted(picked)
        else:
            raise ValueError(f"--images: unknown stage {stage!r} (all, holdout:RUN, filter:k=v, sample:N-per-class)")
    if not chosen:
        raise ValueError(f"--images {spec!r}: no image with a truth label is left")
    return chosen


def _filtered(project: Project, ids: list[int], arg: str) -> list[int]:
    conds = []
    for part in [p for p in arg.split(",") if p.strip()]:
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in FILTER_COLUMNS:
            raise ValueError(f"--images filter:{arg}: expected column=value with a column among "
                             f"{', '.join(FILTER_COLUMNS)}")
        conds.append((key, value.strip()))
    keep = set(ids)
    for key, value in conds:
        keep &= {int(r[0]) for r in project.db.query(
            f"SELECT id FROM images WHERE UPPER({key}) = UPPER(?)", (value,))}
    return [i for i in ids if i in keep]


def reading_order(image_ids: Sequence[int], *, seed: int, arm_position: int, reader: str) -> list[int]:
    """A reader's order of the images in one arm: reproducible from seed, arm and name."""
    rng = np.random.default_rng([int(seed), int(arm_position), zlib.crc32(reader.encode())])
    return [int(image_ids[k]) for k in rng.permutation(len(image_ids))]


def create_study(project: Project, params: dict[str, Any]) -> int:
    """Validate ``params`` (the CLI's and the wizard's fields) and write the study."""
    name = str(params.get("name") or "").strip()
    if not name:
        raise ValueError("--name: a reader study needs a name")
    set_name = params.get("label_set") or ""
    ls = project.labels.find_label_set(set_name)
    if ls is None:
        raise ValueError(f"--label-set {set_name!r}: no such label set")
    truth_name = params.get("truth_set") or set_name
    truth_ls = project.labels.find_label_set(truth_name)
    if truth_ls is None:
        raise ValueError(f"--truth {truth_name!r}: no such label set")
    classes = {r.name: r.id for r in project.labels.classes(ls)}
    names = params.get("classes") or list(classes)
    names = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
    missing = [n for n in names if n not in classes]
    if missing:
        raise ValueError(f"--classes: {', '.join(missing)} not in label set {set_name!r} "
                         f"({', '.join(classes)})")
    if not 2 <= len(names) <= MAX_CLASSES:
        raise ValueError(f"--classes: give 2 to {MAX_CLASSES} classes (keys 1-9), got {len(names)}")
    class_ids = [classes[n] for n in names]
    truth = truth_labels(project, truth_ls, names)
    readers = params.get("readers") or []
    readers = [r.strip() for r in (readers.split(",") if isinstance(readers, str) else readers) if r.strip()]
    if not readers or len(set(readers)) != len(readers):
        raise ValueError("--readers: give one or more distinct reader names")
    arms = parse_arms(project, params.get("arms") or "image")
    washout = float(params.get("washout_days") or 0)
    if washout < 0:
        raise ValueError(f"--washout-days {washout}: must be 0 or more")
    seed = int(params.get("seed") or 0)
    clinical_fields = _clinical_fields(params.get("clinical_fields"))
    image_ids = select_images(project, params.get("images") or "all", truth, seed=seed)
    model_run = params.get("model")
    model_run_id = find_model_run(project, model_run) if model_run else next(
        (run for kind, run in arms if kind == "assisted"), None)
    for kind, run in arms:
        if kind == "assisted":
            predicted = {int(r["image_id"]) for r in project.models.predictions(run)}
            lacking = [i for i in image_ids if i not in predicted]
            if lacking:
                raise ValueError(f"--arms assisted:{run}: run {run} has no stored prediction for "
                                 f"{len(lacking)} of the {len(image_ids)} images (run predict first)")
    reader_ids = [project.readers.ensure(r) for r in readers]
    orders = {(pos, rid): reading_order(image_ids, seed=seed, arm_position=pos, reader=r)
              for pos in range(len(arms)) for rid, r in zip(reader_ids, readers, strict=True)}
    return project.readers.create_study(
        name, label_set_id=ls, truth_label_set_id=truth_ls, class_ids=class_ids, image_ids=image_ids,
        reader_ids=reader_ids, arms=arms, orders=orders, seed=seed, washout_days=washout,
        ordinal=bool(params.get("ordinal")), model_run_id=model_run_id,
        params={"images": params.get("images") or "all", "confidence": bool(params.get("confidence", True)),
                "boxes": bool(params.get("boxes")),
                "classes": names, "truth_set": truth_name, "clinical_fields": clinical_fields})


def _clinical_fields(value) -> list[str]:
    """The clinical fields the clinical arm shows (default all that may be shown)."""
    from mskstudio.ml.readers.session import SHOWN_CLINICAL

    if not value:
        return list(SHOWN_CLINICAL)
    fields = [f.strip() for f in (value.split(",") if isinstance(value, str) else value) if f.strip()]
    bad = [f for f in fields if f not in SHOWN_CLINICAL]
    if bad:
        raise ValueError(f"--clinical-fields: {', '.join(bad)} cannot be shown to readers "
                         f"(choose among {', '.join(SHOWN_CLINICAL)}; never the diagnosis or report)")
    return fields


def truth_labels(project: Project, truth_set_id: int, class_names: Sequence[str]) -> dict[int, int]:
    """image id -> index into ``class_names`` of the truth set's effective label (by class name)."""
    names = {r.id: r.name for r in project.labels.classes(truth_set_id)}
    index = {n: k for k, n in enumerate(class_names)}
    return {i: index[names[c]] for i, c in project.labels.effective(truth_set_id).items()
            if names.get(c) in index}
