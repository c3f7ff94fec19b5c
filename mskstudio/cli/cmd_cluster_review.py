"""Cluster labelling from the command line: ``mskstudio clusters P RUN label|discard|merge|split|undo``.

The same store actions the Clusters board's undo commands call (``project.clusters.label_cluster``,
``discard``, ``merge``, ``split``), in the label set the board would use (``--label-set``, else
the set the run was last labelled in, else "finding"), so a script and a radiologist at the
board produce the same labels, provenance and audit rows.  Each action's undo record is kept
in a journal beside the run's cached features; ``undo`` restores the latest one, as Edit › Undo
does on the board (the board's own stack lives in the window and is not shared with the CLI).
"""

from __future__ import annotations

import json
from pathlib import Path

from mskstudio.ml.cluster.split import split_cluster

ACTIONS = ("label", "discard", "merge", "split", "undo")
DEFAULT_LABEL_SET = "finding"  # the board's default (gui/clusters/board.py)


def add_action_args(p) -> None:
    p.add_argument("action", nargs="?", choices=ACTIONS,
                   help="label / discard / merge / split clusters of RUN, or undo the last such action")
    p.add_argument("clusters", nargs="*", type=int, help="cluster ids (the 'id' column of the listing)")
    p.add_argument("--label-set", help="label set (default: the set the run was last labelled in, "
                                       f"else {DEFAULT_LABEL_SET!r})")
    p.add_argument("--class", dest="cls", help="class name for 'label' (a new name adds the class)")
    p.add_argument("--n", type=int, default=2, help="number of parts for 'split' (default 2)")


def label_set_name(project, run_id: int, given: str | None) -> str:
    if given:
        return given
    run = project.clusters.run(run_id)
    if run is not None and run["label_set_id"]:
        return project.labels.label_set_name(run["label_set_id"])
    return DEFAULT_LABEL_SET


def _journal(project, run_id: int) -> Path:
    return project.cache_path("clusters", f"run{run_id}.cli-undo.json")


def _load(path: Path) -> list:
    return json.loads(path.read_text()) if path.exists() else []


def _check_clusters(project, run_id: int, ids: list[int], action: str, need: int) -> None:
    if len(ids) < need:
        raise ValueError(f"clusters {action}: needs {'at least ' if need > 1 else ''}{need} cluster id(s)")
    for cid in ids:
        row = project.clusters.cluster(cid)
        if row is None or row["run_id"] != run_id or row["merged_into"] is not None:
            raise ValueError(f"cluster {cid} is not a live cluster of run {run_id}")


def run_action(project, args) -> int:
    """Do one board action on run ``args.run``; prints what changed and the run's progress."""
    run_id, ids, action = args.run, list(args.clusters), args.action
    if project.clusters.run(run_id) is None:
        raise ValueError(f"no cluster run {run_id}")
    journal = _journal(project, run_id)
    records = _load(journal)
    ls_name = label_set_name(project, run_id, args.label_set)
    if action == "undo":
        if not records:
            raise ValueError(f"nothing to undo on run {run_id} (only actions done from the command line)")
        record = records.pop()
        project.clusters.undo(record)
        print(f"undone: {record['action']} ({record['details'].get('n', '?')} images)")
    else:
        if action == "label" and not args.cls:
            raise ValueError("clusters label: give the class with --class NAME")
        _check_clusters(project, run_id, ids, action, {"merge": 2}.get(action, 1))
        if action == "split" and len(ids) != 1:
            raise ValueError("clusters split: give exactly one cluster id")
        ls = project.labels.label_set(ls_name)
        if action == "label":
            record = project.clusters.label_cluster(ids, ls, args.cls)
        elif action == "discard":
            record = project.clusters.discard(ids, ls)
        elif action == "merge":
            record = project.clusters.merge(ids, ls)
        else:
            record = split_cluster(project, ids[0], args.n)
        records.append(record)
        print(f"{action}: {len(ids)} cluster(s), {record['details'].get('n', len(ids))} images"
              + (f", created clusters {record['created']}" if record["created"] else ""))
    journal.write_text(json.dumps(records, default=str))
    print_progress(project, run_id, project.labels.find_label_set(ls_name))
    return 0


def print_progress(project, run_id: int, label_set_id: int | None) -> None:
    """The board's progress line, from the same ``progress`` call."""
    p = project.clusters.progress(run_id, label_set_id)
    name = project.labels.label_set_name(label_set_id) if label_set_id else None
    print(f"run {run_id}: {p['clusters_reviewed']}/{p['clusters_total']} clusters reviewed, "
          f"{p['images_covered']}/{p['images_total']} images labelled"
          + (f" in {name!r}" if name else ""))
