"""The window's undo stack as a view of the cluster edit journal (``project.cluster_edits``).

The journal is the one history of cluster edits; the board pushes its own edits onto the
window's QUndoStack and the store journals them.  Edits another process made (``mskstudio
clusters … label|undo|redo`` in a terminal, a job) reach the stack here, after the change
feed reported the ``clusters`` topic: edits undone or redone elsewhere move the stack's
index (the commands' undo/redo are then no-ops in the store), and edits done elsewhere are
pushed as adopted commands, so Edit › Undo undoes the latest edit whatever made it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mskstudio.gui.clusters.commands import ClusterActionCommand

VERBS = {"label": "Label", "discard": "Discard", "merge": "Merge", "split": "Split",
         "move_out": "Move out", "label_images": "Label images"}


def edit_text(entry: dict[str, Any]) -> str:
    n = entry["record"].get("details", {}).get("n")
    return f"{VERBS.get(entry['action'], entry['action'])}{f' {n} images' if n is not None else ''} " \
           f"(from {entry['origin']})"


def sync_undo_stack(stack, project, *, after: int, on_change: Callable[[], None] | None = None,
                    on_refused: Callable[[Exception], None] | None = None) -> int:
    """Bring ``stack`` in line with the journal's edits after id ``after``; returns the number
    of edits adopted.  Commands of the stack that are not cluster edits are left alone."""
    if project is None or not project.cluster_edits.available():
        return 0
    states = project.cluster_edits.states()
    known: set[int] = set()
    for i in range(stack.count()):
        cmd = stack.command(i)
        if isinstance(cmd, ClusterActionCommand) and cmd.edit_id is not None:
            known.add(cmd.edit_id)
    # Undone elsewhere (or dropped after an undo): step back over them.
    while stack.index() > 0:
        cmd = stack.command(stack.index() - 1)
        if not (isinstance(cmd, ClusterActionCommand) and cmd.edit_id is not None
                and states.get(cmd.edit_id, "undone") == "undone"):
            break
        stack.undo()
    # Redone elsewhere: step forward over them.
    while stack.index() < stack.count():
        cmd = stack.command(stack.index())
        if not (isinstance(cmd, ClusterActionCommand) and states.get(cmd.edit_id) == "done"):
            break
        stack.redo()
    adopted = 0
    for entry in project.cluster_edits.history(after=after):
        if entry["state"] == "done" and entry["id"] not in known:
            stack.push(ClusterActionCommand(project, edit_text(entry), None, on_change,
                                            record=entry["record"], on_refused=on_refused))
            adopted += 1
    return adopted
