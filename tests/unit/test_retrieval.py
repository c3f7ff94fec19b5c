"""Retrieval: no same-patient neighbours, precision@k by hand, IVF recall, eval job, cache."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("faiss")


@pytest.fixture
def syn_project(new_project):
    from mskstudio.ml.synthetic import add_synthetic_images

    add_synthetic_images(new_project, 40, seed=3, size=48)   # 2 images per patient
    return new_project


def test_precision_and_vote_hand_computed():
    from mskstudio.ml.retrieve.evaluate import retrieval_metrics

    q = [0, 1]
    nl = np.array([[0, 1, 1, 0, 0, 0, 1],
                   [0, 0, 1, 1, 1, 0, 1]])
    m = retrieval_metrics(q, nl, ks=(1, 3, 5, 7))
    # k=1: q0 hit, q1 miss -> 0.5; vote: q0 right, q1 wrong
    assert m[1] == {"precision": 0.5, "vote_acc": 0.5}
    # k=3: q0 1/3, q1 1/3 -> 1/3; votes: q0 -> 1 (wrong), q1 -> 0 (wrong)
    assert m[3]["precision"] == pytest.approx(1 / 3) and m[3]["vote_acc"] == 0.0
    # k=5: q0 3/5, q1 3/5; votes q0 -> 0 (3 v 2, right), q1 -> 1 (3 v 2, right)
    assert m[5]["precision"] == pytest.approx(0.6) and m[5]["vote_acc"] == 1.0
    # k=7: q0 4/7, q1 4/7; votes q0 -> 0, q1 -> 1
    assert m[7]["precision"] == pytest.approx(4 / 7) and m[7]["vote_acc"] == 1.0
    # a 1:1 tie goes to the nearer neighbour's label
    assert retrieval_metrics([1], np.array([[1, 0]]), ks=(2,))[2]["vote_acc"] == 1.0


def test_similar_never_returns_same_patient(syn_project):
    from mskstudio.ml.retrieve import similar as retrieval

    patient = syn_project.images.patient_of()
    for image_id in syn_project.images.ids()[:10]:
        res = retrieval.similar(syn_project, "pixels", image_id, k=7, label_set="region")
        assert len(res.hits) == 7
        assert all(patient[h.image_id] != patient[image_id] for h in res.hits)
        assert image_id not in [h.image_id for h in res.hits]
        d = [h.distance for h in res.hits]
        assert d == sorted(d)
        assert sum(res.vote.counts.values()) == 7 and res.vote.winner in res.vote.counts
        assert all(h.pseudonym and h.label for h in res.hits)


def test_same_patient_filter_with_overfetch():
    """Many near-duplicates of the query's own patient must be skipped, not returned."""
    from mskstudio.ml.retrieve.knn_index import KnnIndex
    from mskstudio.ml.retrieve.similar import search_other_patients

    rng = np.random.default_rng(0)
    base = rng.standard_normal(16).astype(np.float32)
    own = base + 0.001 * rng.standard_normal((30, 16)).astype(np.float32)   # patient 0, 30 images
    others = rng.standard_normal((50, 16)).astype(np.float32)
    x = np.concatenate([own, others])
    patients = np.array([0] * 30 + list(range(1, 51)))
    index = KnnIndex.build(x, kind="flat")
    d, rows = search_other_patients(index, patients, x[:1], [0], 5, exclude_rows=[0])
    assert (rows >= 30).all() and np.all(np.diff(d[0]) >= 0)


def test_split_scan_is_the_exact_flat_answer(monkeypatch):
    """One query scanned as row blocks on several threads = IndexFlatIP over all rows."""
    from mskstudio.ml.retrieve import knn_index
    from mskstudio.ml.retrieve.knn_index import KnnIndex, normalise_rows
    from mskstudio.ml.retrieve.similar import search_other_patients

    rng = np.random.default_rng(2)
    x = rng.standard_normal((3000, 16)).astype(np.float32)
    monkeypatch.setattr(knn_index, "SPLIT_MIN_ROWS", 500)
    monkeypatch.setattr(knn_index, "scan_threads", lambda: 4)
    index = KnnIndex.build(x, kind="flat")
    assert index._row_blocks() == [(0, 750), (750, 1500), (1500, 2250), (2250, 3000)]
    q = x[[5, 900, 2999]] + 0.05 * rng.standard_normal((3, 16)).astype(np.float32)
    sims, truth = index.index.search(normalise_rows(q), 1000)   # k larger than a block
    d, rows = index.search(q, 1000)
    assert np.array_equal(rows, truth) and np.allclose(d, 1.0 - sims, atol=1e-6)
    # the same-patient filter over-fetches through the split path: still never the own patient
    patients = np.arange(3000) // 10
    d, rows = search_other_patients(index, patients, q, [0, 90, 299], 5, exclude_rows=[5, 900, 2999])
    assert (rows >= 0).all() and all((patients[r] != own).all() for r, own in zip(rows, [0, 90, 299], strict=True))
    monkeypatch.setattr(knn_index, "SPLIT_MIN_ROWS", 10**9)   # one block: faiss's own search
    assert index._row_blocks() == []
    assert np.array_equal(search_other_patients(index, patients, q, [0, 90, 299], 5)[1], rows)


def test_ivf_recall_vs_exact():
    from mskstudio.ml.retrieve.knn_index import KnnIndex, recall_at_k

    rng = np.random.default_rng(1)
    centres = rng.standard_normal((50, 64)).astype(np.float32)
    x = centres[rng.integers(0, 50, 20_000)] + 0.5 * rng.standard_normal((20_000, 64)).astype(np.float32)
    ivf = KnnIndex.build(x, kind="ivf", nlist=64)
    assert ivf.kind == "ivf" and ivf.info["recall@10"] >= 0.99 and 1 <= ivf.info["nprobe"] <= 64
    exact = KnnIndex.build(x, kind="flat")
    q = x[rng.choice(len(x), 200, replace=False)] + 0.01
    _, truth = exact.search(q, 10)
    _, found = ivf.search(q, 10)
    assert recall_at_k(found, truth, 10) >= 0.97        # held-out queries, not the tuning sample


def test_eval_retrieval_job_and_embedding_cache(syn_project):
    from mskstudio.jobrun import submit_and_run
    from mskstudio.ml.retrieve import embeddings as emb

    res = submit_and_run(syn_project, "eval-retrieval", {"label_set": "region", "shuffles": 3})
    base = res["summary"]["baseline_pixels32"]
    assert set(base) == {"k1", "k3", "k5", "k7"}
    assert len(base["k5"]["precision"]["values"]) == 3 and 0 <= base["k1"]["vote_acc"]["mean"] <= 1
    for s in res["splits"]:
        assert s["n_queries"] > 0 and s["n_gallery"] + s["n_queries"] == 40
    assert res["n_images"] == 40 and res["n_patients"] == 20
    path, ids_path, _ = emb.cache_files(syn_project, "pixels")
    assert path.exists() and len(np.load(ids_path)) == 40
    x, ids = emb.load(syn_project, "pixels", list(reversed(syn_project.images.ids())))
    assert ids[0] == max(ids) and np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5)


def test_embed_job_model_run_and_roi(syn_project):
    import io

    import torch

    from mskstudio.jobrun import submit_and_run
    from mskstudio.ml.models import build_backbone
    from mskstudio.ml.retrieve import similar as retrieval

    bb, _ = build_backbone("resnet18")
    buf = io.BytesIO()
    torch.save({"arch": "resnet18", "backbone": bb.state_dict(), "input_size": 32}, buf)
    run = syn_project.models.create("deepcluster", "resnet18")
    syn_project.models.set_checkpoint(run, syn_project.blobs.put_bytes(buf.getvalue()))
    res = submit_and_run(syn_project, "embed", {"run_id": run})
    assert res["n"] == 40 and res["dim"] == 512
    hit = retrieval.similar(syn_project, run, syn_project.images.ids()[0], k=3)
    assert len(hit.hits) == 3 and hit.index["kind"] == "flat"



def test_roi_crop_maps_dicom_boxes_onto_the_analysis_array(new_project):
    """Boxes and masks live on the full DICOM grid; the analysis cache is smaller. The crop
    that retrieval and the classifier take must land on the same anatomy."""
    from mskstudio.ml.classify.classifier import input_loader
    from mskstudio.ml.retrieve.embeddings import roi_loader

    p = new_project
    study = p.images.study_id(p.images.patient_id("P-roi"), "1.2.3")
    image = p.images.add_image({"study_id": study, "sop_uid": "1.2.3.4", "rows": 1000, "cols": 800}, None)
    analysis = np.zeros((100, 80), np.uint16)
    analysis[40:50, 30:40] = 65535  # the lesion, at a tenth of its DICOM coordinates
    p.images.save_analysis(image, analysis)
    cls = p.annotations.classes()[0].id
    p.annotations.add_box(image, cls, (300, 400, 400, 500), annotator="tester")  # x0, y0, x1, y1 on DICOM
    crop = roi_loader(p)(image)
    # 10 x 10 analysis pixels grown by 15 % each side: a 13-px square centred on the lesion.
    assert crop.shape == (13, 13)
    assert crop[6, 6] == 1.0 and crop.sum() == 100.0  # the whole lesion, and only it, is inside
    assert np.array_equal(input_loader(p, "roi")(image), crop)  # the classifier sees the same square


def test_a_whole_image_classifier_embeds_whole_images(new_project):
    """Embedding a whole-image classifier on ROI crops fed it inputs it never saw: on the demo
    its precision@5 fell from 0.656 to 0.441 (issue 22).  ROI crops stay for ROI classifiers
    and for runs without that record (DeepCluster)."""
    from mskstudio.ml.retrieve.embeddings import sees_roi

    p = new_project
    whole = p.models.create("classifier", "tinycnn", params={"input": "image"})
    crops = p.models.create("classifier", "tinycnn", params={"input": "roi"})
    dc = p.models.create("deepcluster", "resnet18")
    assert [sees_roi(p, r) for r in (whole, crops, dc, "pixels")] == [False, True, True, False]
