"""Cluster labelling in a chosen label set, from the store and from the CLI (issue 22, item 2).

A merge after the board switched to a second label set used to write the first set's labels
with the second set's class; ``mskstudio clusters P RUN`` then ended in a KeyError.
"""

from __future__ import annotations

import numpy as np
import pytest

from mskstudio.cli import main
from mskstudio.ml.cluster import features as F
from mskstudio.ml.synthetic import add_synthetic_images
from mskstudio.store import Project


@pytest.fixture
def run_project(tmp_path):
    project = Project.create(tmp_path / "c.mskproj")
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


def _classes_match_sets(p) -> bool:
    return not p.db.scalar("SELECT COUNT(*) FROM labels l JOIN classes c ON c.id = l.class_id "
                           "WHERE c.label_set_id != l.label_set_id")


def test_merge_writes_in_the_chosen_set_only(run_project):
    p, run_id = run_project
    a, b, c = [r["id"] for r in p.clusters.clusters(run_id, order="index")[:3]]
    first = p.labels.label_set("finding")
    p.clusters.label_cluster([a], first, "normal")
    p.clusters.label_cluster([b], first, "lesion")
    before_first = p.labels.effective(first)

    second = p.labels.label_set("site")
    p.clusters.label_cluster([a], second, "hand")  # the board switched to the second set
    rec = p.clusters.merge([a, c], second)
    assert p.labels.effective(first) == before_first, "the first set is untouched by a merge in the second"
    hand = p.labels.class_id(second, "hand")
    merged = set(p.clusters.member_ids(a))
    assert {p.labels.effective(second)[i] for i in merged} == {hand}
    assert _classes_match_sets(p)
    # The run now names the set it was last labelled in: progress counts there by default.
    assert p.clusters.run(run_id)["label_set_id"] == second
    assert p.clusters.progress(run_id)["images_covered"] == len(merged)
    p.clusters.undo(rec)
    assert not set(p.clusters.member_ids(c)) & set(p.labels.effective(second))

    # A merge into a cluster whose class is of another set labels nothing in this set.
    p.clusters.merge([b, c], second)
    assert not set(p.clusters.member_ids(b)) & set(p.labels.effective(second))
    assert _classes_match_sets(p)


def test_progress_survives_a_foreign_class(run_project):
    """Projects written by the old merge hold labels of another set's class: count, never KeyError."""
    p, run_id = run_project
    a = p.clusters.clusters(run_id, order="index")[0]["id"]
    first, second = p.labels.label_set("finding"), p.labels.label_set("site")
    foreign = p.labels.class_id(second, "hand")
    members = p.clusters.member_ids(a)
    p.db.execute("INSERT INTO labels(image_id, label_set_id, class_id, source, run_id) VALUES (?, ?, ?, "
                 "'cluster', ?)", (members[0], first, foreign, run_id))
    assert p.clusters.progress(run_id, first)["per_class"] == {"hand": 1}


def test_cli_labels_discards_merges_splits_and_undoes(run_project, capsys):
    p, run_id = run_project
    root = str(p.root)
    ids = [r["id"] for r in p.clusters.clusters(run_id, order="index")]
    sizes = {r["id"]: r["size"] for r in p.clusters.clusters(run_id)}
    p.close()

    assert main(["clusters", root, str(run_id), "label", str(ids[0]), "--class", "normal"]) == 0
    assert main(["clusters", root, str(run_id), "discard", str(ids[1])]) == 0
    assert main(["clusters", root, str(run_id), "merge", str(ids[0]), str(ids[2])]) == 0
    assert main(["clusters", root, str(run_id), "split", str(ids[3]), "--n", "2"]) == 0
    out = capsys.readouterr().out
    assert "merge: 2 cluster(s)" in out and "created clusters" in out

    with Project.open(root) as q:
        ls = q.labels.find_label_set("finding")
        eff = q.labels.effective(ls)
        normal = q.labels.class_id(ls, "normal")
        assert sum(1 for v in eff.values() if v == normal) == sizes[ids[0]] + sizes[ids[2]]
        assert q.clusters.cluster(ids[1])["discarded"] == 1
        assert len(q.clusters.clusters(run_id)) == 4  # 4 - 1 merged + 1 split off
        covered = q.clusters.progress(run_id, ls)["images_covered"]
    assert main(["clusters", root, str(run_id)]) == 0
    listing = capsys.readouterr().out
    assert f"{covered}/24 images labelled in 'finding'" in listing, "the CLI counts what the board counts"

    assert main(["clusters", root, str(run_id), "undo"]) == 0  # the split
    assert main(["clusters", root, str(run_id), "undo"]) == 0  # the merge
    with Project.open(root) as q:
        assert len(q.clusters.clusters(run_id)) == 4
        assert sum(1 for v in q.labels.effective(ls).values() if v == normal) == sizes[ids[0]]


def test_cli_action_errors_are_one_line(run_project, capsys):
    p, run_id = run_project
    root = str(p.root)
    p.close()
    assert main(["clusters", root, str(run_id), "label", "99999", "--class", "x"]) == 1
    assert main(["clusters", root, str(run_id), "merge", "1"]) == 1
    assert main(["clusters", root, str(run_id), "undo"]) == 1
    err = capsys.readouterr().err
    assert "not a live cluster of run" in err and "at least 2" in err and "nothing to undo" in err
    assert "Traceback" not in err


def test_cli_listing_names_a_missing_label_set(run_project, capsys):
    p, run_id = run_project
    root = str(p.root)
    p.close()
    assert main(["clusters", root, str(run_id), "--label-set", "nope"]) == 1
    assert "no label set 'nope'" in capsys.readouterr().err
