"""Label-noise queue: flipped labels rise to the top; review writes an audited human label."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("faiss")

N_IMAGES, FLIP = 120, 0.1


@pytest.fixture
def noisy_project(new_project):
    from mskstudio.ml.synthetic import REGIONS, add_synthetic_images

    truth = add_synthetic_images(new_project, N_IMAGES, seed=5, size=48)
    p = new_project
    set_id = p.labels.label_set("region")
    cls = {r: p.labels.class_id(set_id, r) for r in REGIONS}
    rng = np.random.default_rng(0)
    ids = sorted(truth)
    flipped = set(rng.choice(ids, int(FLIP * len(ids)), replace=False).tolist())
    for i in ids:
        region = truth[i]
        if i in flipped:
            region = rng.choice([r for r in REGIONS if r != region])
        p.labels.set_labels([i], set_id, cls[region], source="cluster", audit=False)
    # A classifier that is right 85 % of the time, with a probability table.
    run = p.models.create("classifier", "resnet18", label_set_id=set_id)
    rows = []
    for i in ids:
        right = rng.random() < 0.85
        pred = truth[i] if right else rng.choice([r for r in REGIONS if r != truth[i]])
        probs = {cls[r]: (0.7 if r == pred else 0.1) for r in REGIONS}
        rows.append((run, i, cls[pred], 0.7, json.dumps(probs)))
    with p.db.transaction() as c:
        c.executemany("INSERT INTO predictions(model_run_id, image_id, class_id, confidence, probs) "
                      "VALUES (?, ?, ?, ?, ?)", rows)
    return p, flipped, run


def _top_hits(items, flipped, n):
    return sum(1 for it in items[:n] if it.image_id in flipped)


def test_flipped_labels_top_the_queue(noisy_project):
    from mskstudio.ml.noise.queue import noise_queue

    p, flipped, run = noisy_project
    n = len(flipped)
    knn_only = noise_queue(p, "region", run_id="pixels", k=7, include_agreeing=True)
    both = noise_queue(p, "region", run_id="pixels", classifier_run_id=run, k=7, include_agreeing=True)
    rng = np.random.default_rng(1)
    random_hits = np.mean([_top_hits([knn_only[j] for j in rng.permutation(len(knn_only))], flipped, n)
                           for _ in range(200)])
    hits_knn, hits_both = _top_hits(knn_only, flipped, n), _top_hits(both, flipped, n)
    print(f"\nflipped {n}/{N_IMAGES}: in top-{n} kNN-only {hits_knn}, kNN+classifier {hits_both}, "
          f"random {random_hits:.2f}")
    assert random_hits < 0.2 * n + 1
    assert hits_knn >= 0.6 * n and hits_both >= 0.6 * n
    assert hits_both > 3 * random_hits
    scores = [it.score for it in both]
    assert scores == sorted(scores, reverse=True)


def test_queue_only_disagreements_and_review(noisy_project):
    from mskstudio.jobrun import submit_and_run
    from mskstudio.ml.noise.queue import noise_queue, review_noise_item

    p, flipped, run = noisy_project
    queue = noise_queue(p, "region", run_id="pixels", classifier_run_id=run, k=7)
    assert queue and all(it.disagree for it in queue)
    top = queue[0]
    review_noise_item(p, top.image_id, "region", top.knn or top.classifier, note="checked")
    labels = {r.source: r.class_name for r in p.labels.labels_of(top.image_id)}
    assert labels["human"] == (top.knn or top.classifier) and labels["cluster"] == top.given
    assert any(r["action"] == "noise.review" and r["entity_id"] == top.image_id for r in p.audit_log())
    res = submit_and_run(p, "noise-queue", {"label_set": "region", "classifier_run_id": run, "k": 7})
    assert top.image_id not in [it["image_id"] for it in res["items"]]
    assert res["n"] == len(queue) - 1


def test_classifier_opinion_is_out_of_sample_when_the_run_has_it(noisy_project):
    """A stored (in-sample) prediction repeats the noisy label; the out-of-fold row wins."""
    from mskstudio.ml.noise.queue import noise_queue
    from mskstudio.ml.synthetic import REGIONS

    p, flipped, run = noisy_project
    set_id = p.labels.label_set("region")
    names = {r.id: r.name for r in p.labels.classes(set_id)}
    image_id = min(flipped)
    given = p.labels.effective(set_id, sources=("cluster",))[image_id]
    other = next(r for r in REGIONS if r != names[given])
    with p.db.transaction() as c:  # the memorised training label, confidently
        c.execute("UPDATE predictions SET class_id = ?, confidence = 0.95, probs = ? "
                  "WHERE model_run_id = ? AND image_id = ?",
                  (given, json.dumps({given: 0.95}), run, image_id))
    classes = list(REGIONS)
    oof_row = [0.8 if c == other else 0.2 / (len(classes) - 1) for c in classes]
    p.models.set_fields(run, metrics=json.dumps({"classes": classes, "main": {"oof": {
        "classes": classes, "image_ids": [image_id], "probs": [oof_row], "y_true": [0]}}}))
    item = next(it for it in noise_queue(p, "region", run_id=None, classifier_run_id=run, include_agreeing=True)
                if it.image_id == image_id)
    assert item.classifier == other and item.disagree
    assert item.classifier_p_given == pytest.approx(oof_row[classes.index(names[given])])
