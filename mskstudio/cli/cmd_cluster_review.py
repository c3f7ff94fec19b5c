"""Cluster labelling from the command line: ``mskstudio clusters P RUN label|discard|merge|split|undo|redo``.

The same store actions the Clusters board's undo commands call (``project.clusters.label_cluster``,
``discard``, ``merge``, ``split``), in the label set the board would use (``--label-set``, else
the set the run was last labelled in, else "finding"), so a script and a radiologist at the
board produce the same labels, provenance and audit rows.  Every action goes into the
project's one cluster edit history (``cluster_edits``, store/repo_cluster_edits.py), which the
board's Edit › Undo shows too: ``undo`` undoes the run's latest edit whatever made it (the
board, this command, the demo loop), ``redo`` does the latest undone one again, and an open
board sees both at once.
"""

from __future__ import annotations

from mskstudio.ml.cluster.split import split_cluster

ACTIONS = ("label", "discard", "merge", "split", "undo", "redo", "history")
DEFAULT_LABEL_SET = "finding"  # the board's default (gui/clusters/board.py)


def add_action_args(p) -> None:
    p.add_argument("action", nargs="?", choices=ACTIONS,
                   help="label / discard / merge / split clusters of RUN; undo / redo the run's "
                        "latest edit (from the board or here); history lists the edits")
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
    ls_name = label_set_name(project, run_id, args.label_set)
    edits = project.cluster_edits
    if action == "history":
        print_history(project, run_id)
        return 0
    if action in ("undo", "redo"):
        record = edits.undo_last(run_id) if action == "undo" else edits.redo_next(run_id)
        if record is None:
            raise ValueError(f"nothing to {action} on run {run_id}")
        print(f"{action}ne: {record['action']} ({record['details'].get('n', '?')} images)")
    else:
        if action == "label" and not args.cls:
            raise ValueError("clusters label: give the class with --class NAME")
        _check_clusters(project, run_id, ids, action, {"merge": 2}.get(action, 1))
        if action == "split" and len(ids) != 1:
            raise ValueError("clusters split: give exactly one cluster id")
        ls = project.labels.label_set(ls_name)
        with edits.from_origin("cli"):
            if action == "label":
                record = project.clusters.label_cluster(ids, ls, args.cls)
            elif action == "discard":
                record = project.clusters.discard(ids, ls)
            elif action == "merge":
                record = project.clusters.merge(ids, ls)
            else:
                record = split_cluster(project, ids[0], args.n)
        print(f"{action}: {len(ids)} cluster(s), {record['details'].get('n', len(ids))} images"
              + (f", created clusters {record['created']}" if record["created"] else ""))
    print_progress(project, run_id, project.labels.find_label_set(ls_name))
    return 0


def print_progress(project, run_id: int, label_set_id: int | None) -> None:
    """The board's progress line, from the same ``progress`` call."""
    p = project.clusters.progress(run_id, label_set_id)
    name = project.labels.label_set_name(label_set_id) if label_set_id else None
    print(f"run {run_id}: {p['clusters_reviewed']}/{p['clusters_total']} clusters reviewed, "
          f"{p['images_covered']}/{p['images_total']} images labelled"
          + (f" in {name!r}" if name else ""))


def print_history(project, run_id: int) -> None:
    """The run's edits, oldest first: what undo and redo walk through."""
    rows = project.cluster_edits.history(run_id)
    if not rows:
        print(f"run {run_id}: no cluster edits yet")
    for e in rows:
        d = e["record"]["details"]
        print(f"  {e['id']:>5}  {e['state']:<6}  {e['action']:<12} {d.get('n', '?'):>5} images  "
              f"{e['origin']:<6} {e['author'] or ''}  {e['created_at']}")
