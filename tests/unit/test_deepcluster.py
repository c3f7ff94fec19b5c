"""DeepCluster engine and cluster store (no Qt): helpers, an end-to-end run, resume, actions."""

from __future__ import annotations

import numpy as np
import pytest

from mskstudio.jobs import Cancelled, CancelToken, JobContext, RecordingSink
from mskstudio.ml.cluster import features as F
from mskstudio.ml.cluster.split import split_cluster
from mskstudio.ml.synthetic import add_synthetic_images
from mskstudio.store import Project

TINY = {"k": 4, "input_size": 64, "batch_size": 16, "lr": 0.01, "init": "scratch", "seed": 0}


@pytest.fixture
def syn_project(tmp_path):
    project = Project.create(tmp_path / "syn.mskproj")
    truth = add_synthetic_images(project, 32, seed=3)
    project.truth = truth
    yield project
    project.close()


# ---- helpers ------------------------------------------------------------------------------
def _blobs(n_per=50, d=32, k=4, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 5, (k, d))
    x = np.concatenate([c + rng.normal(0, 0.5, (n_per, d)) for c in centres]).astype(np.float32)
    return x, np.repeat(np.arange(k), n_per)


def test_pca_whitener_whitens_and_normalises():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(2000, 64)) * np.linspace(0.1, 10, 64)).astype(np.float32)
    w = F.PCAWhitener.fit(x, 16)
    assert w.dim == 16
    y = (x - w.mean) @ w.components * w.scale
    assert np.allclose(np.cov(y.T), np.eye(16), atol=0.1)
    z = w.transform(x)
    assert np.allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    # few samples: the dimension is capped so the points keep their structure
    assert F.PCAWhitener.fit(x[:400], 256).dim == 10
    assert F.effective_dim(256, 100_000, 2048) == 256


def test_kmeans_finds_blobs():
    x, y = _blobs()
    res = F.kmeans(F.l2_normalise(x), 4, seed=1)
    assert F.nmi(res.assign, y) > 0.95
    assert res.centroids.shape == (4, 32)
    assert np.allclose(res.distance, np.linalg.norm(F.l2_normalise(x) - res.centroids[res.assign], axis=1),
                       atol=1e-4)


def test_reassign_empty_clusters_gives_every_cluster_members():
    x, _ = _blobs(k=2)
    centroids = np.stack([x[:50].mean(0), x[50:].mean(0), np.full(32, 1e3), np.full(32, -1e3)]).astype(
        np.float32)
    assign, _ = F.assign_to_centroids(x, centroids)
    assert set(assign.tolist()) == {0, 1}
    new, cen, fixed = F.reassign_empty(x, assign, centroids)
    assert fixed == 2
    assert np.bincount(new, minlength=4).min() >= 1
    assert np.isfinite(cen).all()


def test_uniform_sampler_balances_clusters():
    assign = np.array([0] * 90 + [1] * 9 + [2] * 1)
    sampler = F.UniformClusterSampler(assign, seed=0)
    idx = sampler.indices()
    assert len(idx) == len(sampler) == 100
    counts = np.bincount(assign[idx], minlength=3)
    assert counts.min() >= 30 and counts.max() <= 35


def test_head_reset_is_fresh():
    from mskstudio.ml.cluster.deepcluster import reset_head

    a, b = reset_head(512, 10), reset_head(512, 10)
    assert tuple(a.weight.shape) == (10, 512)
    assert float(a.bias.detach().abs().max()) == 0.0
    assert 0.005 < float(a.weight.detach().std()) < 0.015
    assert not np.allclose(a.weight.detach().numpy(), b.weight.detach().numpy())


def test_head_warm_up_fits_pseudo_labels_on_frozen_features():
    import torch

    from mskstudio.ml.cluster.deepcluster import reset_head, warm_up_head

    x, y = _blobs(n_per=40, d=16, k=5, seed=2)
    head = reset_head(16, 5)
    before = float((head(torch.from_numpy(x)).argmax(1).numpy() == y).mean())
    acc = warm_up_head(head, x, y, steps=100, device="cpu")
    after = float((head(torch.from_numpy(x)).argmax(1).numpy() == y).mean())
    assert acc == pytest.approx(after) and after > 0.95 > before + 0.3


def test_batchnorm_recalibration_uses_exact_clean_statistics():
    import torch

    from mskstudio.ml.cluster.features import recalibrate_batchnorm
    from mskstudio.ml.models import normalise

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.BatchNorm2d(3))
    images = [torch.rand(1, 8, 8) * (1 + i % 3) for i in range(10)]
    data = [(im, 0) for im in images]
    net[1].running_mean.fill_(5.0)  # stale statistics, as after training on augmented batches
    net.eval()
    assert recalibrate_batchnorm(net, data, batch_size=5, device="cpu") == 1  # equal batches
    with torch.no_grad():
        conv = net[0](normalise(torch.stack(images)))
    expected = conv.mean((0, 2, 3))
    assert torch.allclose(net[1].running_mean, expected, atol=1e-5)
    assert net[1].momentum == 0.1 and not net.training, "momentum and eval mode are restored"


def test_backbone_registry_is_one_channel():
    import torch

    from mskstudio.ml.models import build_backbone

    net, dim = build_backbone("resnet18")
    assert dim == 512 and net.conv1.in_channels == 1
    assert tuple(net(torch.zeros(2, 1, 64, 64)).shape) == (2, 512)
    with pytest.raises(ValueError):
        build_backbone("vgg")


# ---- end to end -------------------------------------------------------------------------------
class _CancelAfterEpoch(RecordingSink):
    def __init__(self, token: CancelToken, epoch: int):
        super().__init__()
        self.token, self.epoch = token, epoch

    def on_metric(self, name, value, step):
        super().on_metric(name, value, step)
        if name == "epoch_seconds" and step == self.epoch:
            self.token.cancel()


def test_deepcluster_cancel_resume_and_quality(syn_project):
    from mskstudio.ml.cluster.deepcluster import run_cluster
    from mskstudio.ml.cluster.features import extract_features
    from mskstudio.ml.models import load_backbone

    project = syn_project
    token = CancelToken()
    sink = _CancelAfterEpoch(token, epoch=0)
    with pytest.raises(Cancelled):
        run_cluster(project, {**TINY, "epochs": 2}, JobContext(sink, token))
    run = project.models.list("deepcluster")[0]
    assert run["status"] == "cancelled" and run["checkpoint_sha"]
    assert project.models.metrics(run["id"])["epoch"] == 0
    assert project.clusters.runs() == []

    sink2 = RecordingSink()
    result = run_cluster(project, {**TINY, "epochs": 2, "resume": run["id"]}, JobContext(sink2))
    epochs = sorted({s for n, _, s in sink2.metrics if n == "loss"})
    assert epochs == [1], "resume continues after the last complete epoch"
    assert len(result["nmi_history"]) == 1  # NMI between epoch 0 and 1 assignments
    row = project.models.get(run["id"])
    assert row["status"] == "done" and row["kind"] == "deepcluster"

    # quality: NMI vs the truth beats a random assignment
    ids = project.images.ids()
    truth = [project.truth[i] for i in ids]
    rng = np.random.default_rng(0)
    chance = max(F.nmi(rng.integers(0, 4, len(ids)), truth) for _ in range(20))
    got = result["metrics"]["truth"]["region"]
    assert got["nmi"] > chance + 0.1, (got, chance)
    assert set(got) >= {"nmi", "ari", "purity"}

    # the backbone is reusable by other jobs
    net = load_backbone(project, run["id"])
    f = extract_features(project, run["id"], ids[:5], size=64)
    assert f.shape == (5, net.feature_dim)
    stored = project.clusters.run(result["cluster_run_id"])
    assert stored["model_run_id"] == run["id"] and stored["k"] == 4
    assert project.cache_path("clusters", f"run{stored['id']}.npy").exists()


def test_cluster_now_via_job_runner(syn_project):
    from mskstudio.jobrun import submit_and_run

    result = submit_and_run(syn_project, "cluster", {**TINY, "mode": "fast"})
    run = syn_project.clusters.run(result["cluster_run_id"])
    assert run["job_id"] is not None
    clusters = syn_project.clusters.clusters(run["id"])
    assert sum(c["size"] for c in clusters) == 32 and len(clusters) == 4
    assert all(c["map_x"] is not None and c["spread"] is not None for c in clusters)
    assert result["metrics"]["truth"]["region"]["nmi"] > 0.3


def test_recluster_reuses_stored_features_with_a_new_k(syn_project):
    from mskstudio.jobrun import submit_and_run

    first = submit_and_run(syn_project, "cluster", {**TINY, "mode": "fast"})
    source = first["cluster_run_id"]
    result = submit_and_run(syn_project, "recluster", {"run": source, "k": 2})
    new = syn_project.clusters.run(result["cluster_run_id"])
    assert new["id"] != source and new["k"] == 2
    assert len(syn_project.clusters.clusters(new["id"])) == 2
    assert sorted(syn_project.clusters.assignment(new["id"])) == sorted(syn_project.images.ids())
    feats_old, rows_old = syn_project.clusters.features(source)
    feats_new, rows_new = syn_project.clusters.features(new["id"])
    assert rows_old == rows_new and np.array_equal(feats_old, feats_new)
    assert "region" in result["metrics"]["truth"]
    for bad in ({"run": source, "k": 1}, {"run": source, "k": 33}, {"run": 999, "k": 2}):
        with pytest.raises(ValueError):
            submit_and_run(syn_project, "recluster", bad)


def test_merge_clusters_keeps_a_long_class_whole_where_kmeans_cuts_it():
    from mskstudio.ml.cluster.features import kmeans, l2_normalise, merge_clusters, nmi

    g = np.random.default_rng(0)
    t = g.uniform(0, 1.2, 900)                       # one large class along an arc, two small tight ones
    arc = np.stack([np.cos(t), np.sin(t), np.zeros_like(t)], 1) + g.normal(0, 0.02, (900, 3))
    small = [np.array(c) + g.normal(0, 0.05, (60, 3)) for c in ([0, 0, 1.0], [0, -1.0, 0.3])]
    x = l2_normalise(np.concatenate([arc, *small]).astype(np.float32))
    truth = np.r_[np.zeros(900), np.ones(60), np.full(60, 2)].astype(int)
    fine = kmeans(x, 15, seed=0)
    merged = merge_clusters(x, fine.assign, fine.centroids, 3)
    direct = kmeans(x, 3, seed=0)
    assert len(set(merged.assign.tolist())) == 3
    for c in set(fine.assign.tolist()):              # every new cluster is a union of old ones
        assert len(set(merged.assign[fine.assign == c].tolist())) == 1
    assert nmi(merged.assign, truth) > 0.95 > nmi(direct.assign, truth)
    np.testing.assert_allclose(merged.distance, np.linalg.norm(x - merged.centroids[merged.assign], axis=1),
                               rtol=1e-5)


def test_recluster_by_merging_the_runs_clusters(syn_project):
    from mskstudio.jobrun import submit_and_run

    first = submit_and_run(syn_project, "cluster", {**TINY, "mode": "fast"})
    source = first["cluster_run_id"]
    before = syn_project.clusters.assignment(source)
    result = submit_and_run(syn_project, "recluster", {"run": source, "k": 2, "method": "merge"})
    after = syn_project.clusters.assignment(result["cluster_run_id"])
    assert len(set(after.values())) == 2 and sorted(after) == sorted(before)
    for old in set(before.values()):
        assert len({after[i] for i, c in before.items() if c == old}) == 1
    assert syn_project.clusters.run(result["cluster_run_id"])["params"].count('"merge"') == 1
    for bad in ({"run": source, "k": len(set(before.values())), "method": "merge"},
                {"run": source, "k": 2, "method": "nope"}):
        with pytest.raises(ValueError):
            submit_and_run(syn_project, "recluster", bad)


# ---- store actions ---------------------------------------------------------------------------
@pytest.fixture
def run_project(syn_project):
    """A cluster run built straight from the truth (4 clusters of 8) with random features."""
    p = syn_project
    ids = p.images.ids()
    regions = sorted(set(p.truth.values()))
    assign = np.array([regions.index(p.truth[i]) for i in ids])
    rng = np.random.default_rng(0)
    feats = F.l2_normalise(rng.normal(size=(len(ids), 8)).astype(np.float32) + assign[:, None])
    run_id = p.clusters.create_run(image_ids=ids, assign=assign, distance=rng.random(len(ids)),
                                   member_xy=rng.normal(size=(len(ids), 2)), features=feats, k=4)
    p.run_id = run_id
    return p


def _state(p, run_id):
    members = p.db.query("SELECT image_id, cluster_id, distance FROM cluster_members WHERE run_id = ? "
                         "ORDER BY image_id", (run_id,))
    clusters = p.db.query("SELECT * FROM clusters WHERE run_id = ? ORDER BY id", (run_id,))
    labels = p.db.query("SELECT image_id, label_set_id, class_id, source, run_id FROM labels "
                        "ORDER BY image_id, label_set_id, source")
    return [tuple(r) for r in members], [tuple(r) for r in clusters], [tuple(r) for r in labels]


def test_label_cluster_keeps_human_labels_and_undoes(run_project):
    p, run_id = run_project, run_project.run_id
    c = p.clusters.clusters(run_id, order="index")[0]
    members = p.clusters.member_ids(c["id"])
    ls = p.labels.label_set("finding")
    human_cls = p.labels.class_id(ls, "normal")
    p.labels.set_label(members[0], ls, human_cls, source="human")
    before = _state(p, run_id)

    rec = p.clusters.label_cluster(c["id"], ls, "fracture", review_seconds=12.0)
    frac = p.labels.class_id(ls, "fracture")
    eff = p.labels.effective(ls)
    assert eff[members[0]] == human_cls, "human label wins"
    assert all(eff[i] == frac for i in members[1:])
    rows = p.db.query("SELECT * FROM labels WHERE label_set_id = ? AND source = 'cluster'", (ls,))
    assert len(rows) == len(members) and all(r["run_id"] == run_id for r in rows)
    assert p.db.scalar("SELECT class_id FROM labels WHERE image_id = ? AND source = 'human'",
                       (members[0],)) == human_cls
    prog = p.clusters.progress(run_id)
    assert prog["clusters_reviewed"] == 1 and prog["clusters_total"] == 4
    assert prog["images_covered"] == len(members) and prog["review_seconds"] == 12.0
    assert prog["per_class"] == {"normal": 1, "fracture": len(members) - 1}
    assert prog["images_per_minute"] == pytest.approx(len(members) / 0.2)
    assert p.db.scalar("SELECT COUNT(*) FROM audit WHERE action = 'cluster.label'") == 1

    p.clusters.undo(rec)
    assert _state(p, run_id) == before
    p.clusters.redo(rec)
    assert p.labels.effective(ls)[members[1]] == frac


def test_discard_uses_reject_class(run_project):
    p, run_id = run_project, run_project.run_id
    c = p.clusters.clusters(run_id)[1]
    ls = p.labels.label_set("finding")
    before = _state(p, run_id)
    rec = p.clusters.discard(c["id"], ls)
    row = p.clusters.cluster(c["id"])
    assert row["discarded"] == 1 and row["is_reject"] == 1 and row["class_name"] == "rejected"
    eff = p.labels.effective(ls)
    assert {eff[i] for i in p.clusters.member_ids(c["id"])} == {row["class_id"]}
    p.clusters.undo(rec)
    assert _state(p, run_id) == before


def test_merge_split_move_out_undo_redo(run_project):
    p, run_id = run_project, run_project.run_id
    a, b = [c["id"] for c in p.clusters.clusters(run_id, order="index")[:2]]
    ls = p.labels.label_set("finding")
    p.clusters.label_cluster(a, ls, "x")
    s0 = _state(p, run_id)

    merge = p.clusters.merge([a, b])
    assert len(p.clusters.clusters(run_id)) == 3
    assert p.clusters.cluster(a)["size"] == 16 and p.clusters.cluster(b)["merged_into"] == a
    x = p.labels.class_id(ls, "x")
    assert set(p.labels.effective(ls).values()) == {x} and len(p.labels.effective(ls)) == 16
    p.clusters.undo(merge)
    assert _state(p, run_id) == s0

    split = split_cluster(p, a, 2)
    parts = [a, *split["created"]]
    sizes = [p.clusters.cluster(c)["size"] for c in parts]
    assert sum(sizes) == 8 and min(sizes) >= 1
    assert p.clusters.cluster(split["created"][0])["parent_id"] == a
    p.clusters.undo(split)
    assert _state(p, run_id) == s0
    again = p.clusters.redo(split)
    assert again["created"] == split["created"]
    p.clusters.undo(again)

    moved = p.clusters.member_ids(a)[:3]
    mv = p.clusters.move_out(run_id, moved)
    new = mv["created"][0]
    assert p.clusters.member_ids(new) == sorted(moved)
    assert all(i not in p.labels.effective(ls) for i in moved), "moved members lose the cluster label"
    p.clusters.undo(mv)
    assert _state(p, run_id) == s0

    lab = p.clusters.label_images(run_id, moved[:2], ls, "y")
    y = p.labels.class_id(ls, "y")
    assert [p.labels.effective(ls)[i] for i in moved[:2]] == [y, y]
    p.clusters.undo(lab)
    assert _state(p, run_id) == s0


def test_member_order_and_sorting(run_project):
    p, run_id = run_project, run_project.run_id
    c = p.clusters.clusters(run_id)[0]
    central = p.clusters.members(c["id"], order="central")
    outliers = p.clusters.members(c["id"], order="outliers")
    assert [r["image_id"] for r in central] == [r["image_id"] for r in outliers][::-1]
    assert central[0]["distance"] <= central[-1]["distance"]
    spreads = [r["spread"] for r in p.clusters.clusters(run_id, order="spread")]
    assert spreads == sorted(spreads, reverse=True)
    ls = p.labels.label_set("finding")
    p.clusters.label_cluster(c["id"], ls, "x")
    assert p.clusters.clusters(run_id, order="unlabelled")[-1]["id"] == c["id"]
