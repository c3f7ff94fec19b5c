"""Bring a run trained elsewhere back into the project as an ordinary run.

The cluster-node path: copy the project folder (or ``--submit-only`` it first and copy it
with its ``cache/snapshots``) to the node, run the printed ``torchrun ... run-job`` there,
and bring the copy back.  ``import_run`` then copies one finished model run of the copy
(checkpoint blob, parameters, metrics, split, data hash) into this project under a new id.

The run's image ids, label set and classes are the copy's: they mean the same here only if
the copy is this project's own.  So every image of the copy must exist here with the same
id, SOP instance UID and frame, and the run's label set and classes must exist here under
the same ids and names; otherwise nothing is written and the first mismatch is named.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

IMPORTABLE_STATUSES = ("done",)


def import_run(project, source_root: str | Path, run_id: int) -> dict[str, Any]:
    """Copy finished model run ``run_id`` of the project at ``source_root`` into ``project``."""
    from mskstudio.store import Project, is_project

    source_root = Path(source_root)
    if not is_project(source_root):
        raise ValueError(f"{source_root}: not an mskstudio project (no project.db inside)")
    if source_root.resolve() == Path(project.root).resolve():
        raise ValueError(f"{source_root}: that is this project itself")
    with Project.open(source_root) as source:
        row = source.models.get(int(run_id))
        if row is None:
            raise ValueError(f"{source_root}: no model run {run_id}")
        if row["status"] not in IMPORTABLE_STATUSES or not row["checkpoint_sha"]:
            raise ValueError(f"{source_root}: model run {run_id} is {row['status']}, not finished "
                             "(finish or resume it on the node first)")
        _check_same_images(project, source, source_root)
        label_set_id = _check_label_set(project, source, row, source_root)
        data = source.blobs.read_bytes(row["checkpoint_sha"])
        parent = row["parent_run_id"]
        if parent is not None:
            mine, theirs = project.models.get(parent), source.models.get(parent)
            if mine is None or theirs is None or mine["checkpoint_sha"] != theirs["checkpoint_sha"]:
                parent = None  # the parent is not this project's run of that id
        fields = {k: row[k] for k in ("kind", "arch", "name", "params", "split", "data_hash", "metrics")}
        source_job = row["job_id"]
    sha = project.blobs.put_bytes(data)  # the blob before the row that names it
    new_id = project.models.create(fields["kind"], fields["arch"], name=fields["name"],
                                   params=json.loads(fields["params"] or "{}"), parent_run_id=parent,
                                   label_set_id=label_set_id)
    project.models.set_fields(new_id, split=fields["split"], data_hash=fields["data_hash"])
    project.models.set_checkpoint(new_id, sha, metrics=json.loads(fields["metrics"] or "{}"))
    project.models.set_status(new_id, "done")
    project.audit("model_run.import", "model_run", new_id,
                  {"source": str(source_root), "source_run_id": int(run_id), "source_job_id": source_job,
                   "checkpoint": sha})
    return {"model_run_id": new_id, "kind": fields["kind"], "source_run_id": int(run_id), "checkpoint": sha}


def _check_same_images(project, source, source_root: Path) -> None:
    here = {int(r["id"]): (r["sop_uid"], r["frame"]) for r in project.images.uid_index()}
    for r in source.images.uid_index():
        if here.get(int(r["id"])) != (r["sop_uid"], r["frame"]):
            raise ValueError(f"{source_root}: image {r['id']} ({r['sop_uid']}) is not this project's "
                             "image of that id; import runs only from a copy of this project")


def _check_label_set(project, source, row, source_root: Path) -> int | None:
    ls = row["label_set_id"]
    if ls is None:
        return None
    theirs = {int(r["id"]): r["name"] for r in source.labels.label_sets()}
    mine = {int(r["id"]): r["name"] for r in project.labels.label_sets()}
    if mine.get(int(ls)) != theirs.get(int(ls)):
        raise ValueError(f"{source_root}: label set {theirs.get(int(ls))!r} (id {ls}) is not in this project "
                         "under the same id")
    a = [(c.id, c.name) for c in source.labels.classes(int(ls))]
    b = {(c.id, c.name) for c in project.labels.classes(int(ls))}
    missing = [name for c, name in a if (c, name) not in b]
    if missing:
        raise ValueError(f"{source_root}: classes {missing} of label set {mine[int(ls)]!r} are not in this "
                         "project under the same ids")
    return int(ls)
