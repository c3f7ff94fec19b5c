"""Split one cluster by a sub-k-means on its run's stored features.

The computation lives here, in ``ml``; the store only writes the assignment it is
handed (``ClusterRepo.split``), so undo and redo replay the same parts without
running k-means again.
"""

from __future__ import annotations

from typing import Any

from mskstudio.ml.cluster.features import kmeans
from mskstudio.store import Project


def split_cluster(project: Project, cluster_id: int, n: int = 2, *, seed: int = 0) -> dict[str, Any]:
    """Sub-k-means of one cluster into ``n``; returns the store's undo record.

    The first part keeps the cluster; the others become new clusters (``parent_id`` =
    the split one) that inherit its class, so labels stay as they are."""
    row = project.clusters.cluster(cluster_id)
    if row is None:
        raise ValueError(f"no cluster {cluster_id}")
    members = project.clusters.member_ids(cluster_id)
    feats = project.clusters.features(row["run_id"])
    if feats is None:
        raise ValueError(f"cluster run {row['run_id']} has no stored features to split on")
    n = max(2, min(int(n), len(members)))
    if len(members) < 2:
        raise ValueError("a cluster needs at least two members to split")
    x = feats[0][[feats[1][i] for i in members]]
    parts = kmeans(x, n, niter=25, seed=seed).assign
    return project.clusters.split(cluster_id, parts, n=n)
