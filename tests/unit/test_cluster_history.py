"""One cluster edit history for the board and the CLI, and the store's change feed (issue 22).

The CLI kept its own undo journal (a file beside the run's features): ``clusters … undo``
could not undo a board edit, and the board never saw a CLI edit.  Every action now writes a
``cluster_edits`` row in its own transaction; undo and redo walk that one history.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from mskstudio.cli import main
from mskstudio.ml.cluster import features as F
from mskstudio.ml.synthetic import add_synthetic_images
from mskstudio.store import Project
from mskstudio.store.changes import ChangeFeed


@pytest.fixture
def run_project(tmp_path):
    project = Project.create(tmp_path / "h.mskproj")
    truth = add_synthetic_images(project, 24, seed=5)
    ids = project.images.ids()
    regions = sorted(set(truth.values()))
    assign = np.array([regions.index(truth[i]) for i in ids])
    rng = np.random.default_rng(0)
    feats = F.l2_normalise(rng.normal(size=(len(ids), 8)).astype(np.float32) + 2 * assign[:, None])
    run_id = project.clusters.create_run(image_ids=ids, assign=assign, distance=rng.random(len(ids)),
                                         member_xy=rng.normal(size=(len(ids), 2)), features=feats, k=4)
    yield project, run_id
    project.close()


def _labels(p, ls_name="finding") -> dict[int, int]:
    ls = p.labels.find_label_set(ls_name)
    return p.labels.effective(ls) if ls else {}


def test_board_edit_is_undone_by_the_cli_and_cli_edit_by_the_store(run_project, capsys):
    p, run_id = run_project
    a, b = [r["id"] for r in p.clusters.clusters(run_id, order="index")[:2]]
    with p.cluster_edits.from_origin("board"):
        rec = p.clusters.label_cluster([a], "finding", "normal")
    assert rec["edit_id"] and p.cluster_edits.get(rec["edit_id"])["origin"] == "board"
    labelled = set(_labels(p))
    assert labelled == set(p.clusters.member_ids(a))
    root = str(p.root)
    p.close()

    assert main(["clusters", root, str(run_id), "undo"]) == 0, "the CLI undoes the board's edit"
    assert "undone: label" in capsys.readouterr().out
    assert main(["clusters", root, str(run_id), "discard", str(b)]) == 0
    with Project.open(root) as q:
        assert not set(_labels(q)) & labelled
        hist = q.cluster_edits.history(run_id)
        assert [(e["action"], e["origin"], e["state"]) for e in hist] == [("discard", "cli", "done")], \
            "a new edit drops the undone one (the redo side), as a QUndoStack push does"
        assert q.clusters.cluster(b)["discarded"] == 1
        undone = q.cluster_edits.undo_last(run_id)  # the board's Undo goes through the same call
        assert undone["action"] == "discard" and q.clusters.cluster(b)["discarded"] == 0
        assert q.cluster_edits.history(run_id)[0]["state"] == "undone"
    assert main(["clusters", root, str(run_id), "redo"]) == 0
    assert main(["clusters", root, str(run_id), "history"]) == 0
    out = capsys.readouterr().out
    assert "redone: discard" in out and "done    discard" in out
    with Project.open(root) as q:
        assert q.clusters.cluster(b)["discarded"] == 1


def test_history_is_linear_undo_refuses_under_a_later_edit(run_project):
    p, run_id = run_project
    a, b, c = [r["id"] for r in p.clusters.clusters(run_id, order="index")[:3]]
    first = p.clusters.label_cluster([a], "finding", "normal")
    second = p.clusters.merge([b, c], "finding")
    with pytest.raises(ValueError, match="a later merge"):
        p.clusters.undo(first)
    assert p.cluster_edits.get(first["edit_id"])["state"] == "done", "a refused undo changes nothing"
    assert p.cluster_edits.undo_edit(second["edit_id"])["action"] == "merge"
    assert p.cluster_edits.undo_edit(second["edit_id"]) is None, "undone already: a no-op, not an error"
    assert p.cluster_edits.undo_last(run_id)["action"] == "label"
    assert p.cluster_edits.undo_last(run_id) is None
    with pytest.raises(ValueError, match="first"):
        p.cluster_edits.redo_edit(second["edit_id"])  # the label comes back before the merge
    again = p.cluster_edits.redo_next(run_id)
    assert again["edit_id"] == first["edit_id"], "a redo keeps its journal row"
    assert p.cluster_edits.redo_next(run_id)["action"] == "merge"
    assert p.clusters.cluster(c)["merged_into"] == b
    assert [e["state"] for e in p.cluster_edits.history(run_id)] == ["done", "done"]


def test_split_redo_from_the_journal_gets_its_cluster_ids_back(run_project):
    from mskstudio.ml.cluster.split import split_cluster

    p, run_id = run_project
    a = p.clusters.clusters(run_id, order="index")[0]["id"]
    rec = split_cluster(p, a, 2)
    created = rec["created"]
    p.cluster_edits.undo_last(run_id)
    assert p.clusters.cluster(created[0]) is None
    again = p.cluster_edits.redo_next(run_id)
    assert again["created"] == created and p.clusters.cluster(created[0])["parent_id"] == a


KILL_IN_JOURNAL = textwrap.dedent("""
    import os, signal, sys
    from mskstudio.store import Project
    from mskstudio.store.repo_cluster_edits import ClusterEditRepo
    original = ClusterEditRepo.write
    def write_then_die(self, c, record):
        original(self, c, record)  # the edit and its journal row are written, not committed
        os.kill(os.getpid(), signal.SIGKILL)
    ClusterEditRepo.write = write_then_die
    p = Project.open(sys.argv[1])
    p.clusters.label_cluster([int(sys.argv[2])], "finding", "normal")
""")


def test_a_kill_between_edit_and_journal_leaves_neither(run_project):
    p, run_id = run_project
    a = p.clusters.clusters(run_id, order="index")[0]["id"]
    p.clusters.label_cluster([p.clusters.clusters(run_id, order="index")[1]["id"]], "finding", "lesion")
    before = (dict(_labels(p)), p.cluster_edits.history(run_id))
    root = str(p.root)
    p.close()
    proc = subprocess.run([sys.executable, "-c", KILL_IN_JOURNAL, root, str(a)], cwd=os.getcwd(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    with Project.open(root) as q:
        assert (dict(_labels(q)), q.cluster_edits.history(run_id)) == before
        assert q.db.scalar("PRAGMA integrity_check") == "ok"
        assert q.cluster_edits.undo_last(run_id)["action"] == "label"  # the journal still works


def test_change_feed_sees_another_connections_edits_by_topic(run_project):
    p, run_id = run_project
    feed = ChangeFeed(p)
    assert feed.available() and feed.poll() == set()
    a = p.clusters.clusters(run_id, order="index")[0]["id"]
    p.clusters.label_cluster([a], "finding", "normal")  # this connection: data_version stays
    assert feed.poll() == set()
    with Project.open(p.root) as other:  # another connection, as the CLI or a job subprocess
        b = other.clusters.clusters(run_id, order="index")[1]["id"]
        other.clusters.discard([b], "finding")
    moved = feed.poll()
    assert {"labels", "clusters", "runs"} <= moved and "masks" not in moved
    assert feed.poll() == set(), "seen once"
    with Project.open(p.root) as other:
        other.annotations.add_box(other.images.ids()[0], other.annotations.class_id("lesion"), (1.0, 1.0, 5.0, 6.0))
    assert feed.poll() == {"boxes"}
