"""Cluster runs, their clusters and members, and the reviewer's actions on them.

Every action (label, discard, merge, split, move out, human label of members) is
audited and returns an *undo record*: a snapshot of the cluster rows, member rows
and labels it is about to change plus the ids of clusters it created.
``undo(record)`` restores that snapshot; doing the action again with the same
arguments (``new_ids=record["created"]`` for split / move out) is the redo, so
later undo records that name a created cluster stay valid.

Cluster actions write labels with ``source='cluster'`` and the run id; they never
touch human labels, which win by precedence.  The run's features live in
``cache/clusters/run{ID}.npy`` (rows in the order of ``run{ID}.ids.npy``) so a
split can re-cluster and centroid distances can be recomputed after edits.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mskstudio.domain import ClusterRun
from mskstudio.store.repo_cluster_history import ClusterHistory, marks

if TYPE_CHECKING:
    from mskstudio.store.project import Project

NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
ORDERS = {
    "size": "size DESC, c.idx",
    "spread": "c.spread DESC, c.idx",
    "compact": "c.spread ASC, c.idx",
    "unlabelled": "(c.class_id IS NOT NULL OR c.discarded) ASC, size DESC, c.idx",
    "index": "c.idx",
}
REJECT_CLASS = "rejected"


class ClusterRepo(ClusterHistory):
    def __init__(self, project: Project):
        self.p = project
        self._features: dict[int, tuple[np.ndarray, dict[int, int], np.ndarray]] = {}

    # ---- creating a run --------------------------------------------------------------
    def create_run(self, *, image_ids: Sequence[int], assign: Sequence[int], distance: Sequence[float],
                   member_xy: np.ndarray, centroid_xy: np.ndarray | None = None,
                   features: np.ndarray | None = None, model_run_id: int | None = None,
                   label_set_id: int | None = None, k: int | None = None,
                   params: dict[str, Any] | None = None, nmi_history: list[float] | None = None,
                   metrics: dict[str, Any] | None = None, job_id: int | None = None) -> int:
        ids = [int(i) for i in image_ids]
        assign = np.asarray(assign, np.int64)
        distance = np.asarray(distance, np.float64)
        used = sorted(set(assign.tolist()))
        with self.p.db.transaction() as c:
            run_id = int(c.execute(
                "INSERT INTO cluster_runs(model_run_id, label_set_id, k, params, nmi_history, metrics, "
                "job_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (model_run_id, label_set_id, int(k or len(used)), json.dumps(params or {}, default=str),
                 json.dumps(nmi_history or []), json.dumps(metrics or {}, default=str), job_id),
            ).lastrowid)
            cluster_id: dict[int, int] = {}
            for idx in used:
                sel = assign == idx
                cx, cy = (centroid_xy[idx] if centroid_xy is not None
                          else np.asarray(member_xy)[sel].mean(0))
                cluster_id[idx] = int(c.execute(
                    "INSERT INTO clusters(run_id, idx, map_x, map_y, spread) VALUES (?, ?, ?, ?, ?)",
                    (run_id, idx, float(cx), float(cy), float(distance[sel].mean())),
                ).lastrowid)
            c.executemany(
                "INSERT INTO cluster_members(run_id, image_id, cluster_id, distance, map_x, map_y) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(run_id, i, cluster_id[int(a)], float(d), float(xy[0]), float(xy[1]))
                 for i, a, d, xy in zip(ids, assign, distance, np.asarray(member_xy), strict=True)],
            )
            self.p.audit("cluster_run.create", "cluster_run", run_id,
                         {"k": len(used), "n": len(ids), "model_run_id": model_run_id})
        if features is not None:
            self.save_features(run_id, ids, features)
        return run_id

    def save_features(self, run_id: int, image_ids: Sequence[int], features: np.ndarray) -> None:
        path = self.p.cache_path("clusters", f"run{run_id}.npy")
        np.save(path, np.asarray(features, np.float32))
        np.save(path.with_name(f"run{run_id}.ids.npy"), np.asarray(image_ids, np.int64))
        self._features.pop(run_id, None)

    def features(self, run_id: int) -> tuple[np.ndarray, dict[int, int]] | None:
        """(features [N, d], image id -> row) of a run, or None when the cache is gone."""
        if run_id not in self._features:
            path = self.p.cache_dir / "clusters" / f"run{run_id}.npy"
            ids_path = path.with_name(f"run{run_id}.ids.npy")
            if not (path.exists() and ids_path.exists()):
                return None
            ids = np.load(ids_path)
            self._features[run_id] = (np.load(path), {int(i): r for r, i in enumerate(ids)}, ids)
        feats, rows, _ = self._features[run_id]
        return feats, rows

    # ---- reading ------------------------------------------------------------------------
    def runs(self) -> list[sqlite3.Row]:
        return self.p.db.query(
            "SELECT r.*, (SELECT COUNT(*) FROM cluster_members m WHERE m.run_id = r.id) AS n_images, "
            "(SELECT COUNT(*) FROM clusters c WHERE c.run_id = r.id AND c.merged_into IS NULL) "
            "AS n_clusters FROM cluster_runs r ORDER BY r.id DESC")

    def run(self, run_id: int) -> sqlite3.Row | None:
        return self.p.db.one("SELECT * FROM cluster_runs WHERE id = ?", (run_id,))

    def run_record(self, run_id: int) -> ClusterRun | None:
        """The run as a typed record (params, metrics, NMI history parsed), or None."""
        row = self.run(run_id)
        return None if row is None else ClusterRun.from_row(row)

    def run_records(self) -> list[ClusterRun]:
        """Typed records of every run with its image and cluster counts, newest first."""
        return [ClusterRun.from_row(r) for r in self.runs()]

    def latest_run_id(self) -> int | None:
        return self.p.db.scalar("SELECT MAX(id) FROM cluster_runs")

    def cluster(self, cluster_id: int) -> sqlite3.Row | None:
        rows = self.p.db.query(
            "SELECT c.*, (SELECT COUNT(*) FROM cluster_members m WHERE m.cluster_id = c.id) AS size, "
            "cl.name AS class_name, cl.color AS class_color, cl.is_reject FROM clusters c "
            "LEFT JOIN classes cl ON cl.id = c.class_id WHERE c.id = ?", (cluster_id,))
        return rows[0] if rows else None

    def clusters(self, run_id: int, *, order: str = "size", include_empty: bool = False
                 ) -> list[sqlite3.Row]:
        """Live clusters of a run (not merged away) with size, spread, class and discarded."""
        having = "" if include_empty else "HAVING size > 0"
        return self.p.db.query(
            "SELECT c.*, COUNT(m.image_id) AS size, cl.name AS class_name, cl.color AS class_color, "
            "cl.is_reject, cl.label_set_id AS class_label_set_id FROM clusters c "
            "LEFT JOIN cluster_members m ON m.cluster_id = c.id "
            "LEFT JOIN classes cl ON cl.id = c.class_id WHERE c.run_id = ? AND c.merged_into IS NULL "
            f"GROUP BY c.id {having} ORDER BY {ORDERS[order]}", (run_id,))

    def members(self, cluster_id: int, *, order: str = "central", limit: int | None = None
                ) -> list[sqlite3.Row]:
        """Members by distance to the centroid: ``central`` first or ``outliers`` first."""
        direction = {"central": "ASC", "outliers": "DESC"}[order]
        lim = f"LIMIT {int(limit)}" if limit else ""
        return self.p.db.query(
            f"SELECT * FROM cluster_members WHERE cluster_id = ? ORDER BY distance {direction}, image_id "
            f"{lim}", (cluster_id,))

    def member_ids(self, cluster_id: int) -> list[int]:
        return [r[0] for r in self.p.db.query(
            "SELECT image_id FROM cluster_members WHERE cluster_id = ? ORDER BY image_id", (cluster_id,))]

    def assignment(self, run_id: int) -> dict[int, int]:
        """image id -> cluster id."""
        return {r[0]: r[1] for r in self.p.db.query(
            "SELECT image_id, cluster_id FROM cluster_members WHERE run_id = ?", (run_id,))}

    def progress(self, run_id: int, label_set_id: int | None = None) -> dict[str, Any]:
        """Review progress: clusters reviewed / total, images covered, per class, speed."""
        run = self.run(run_id)
        label_set_id = label_set_id or (run["label_set_id"] if run else None)
        live = self.clusters(run_id)
        # Reviewed in this set: a cluster labelled (or discarded) with a class of another set
        # was reviewed there, not here.
        reviewed = [c for c in live if (c["class_id"] is not None or c["discarded"])
                    and (label_set_id is None or c["class_label_set_id"] in (None, label_set_id))]
        seconds = float(self.p.db.scalar(
            "SELECT COALESCE(SUM(review_seconds), 0) FROM clusters WHERE run_id = ?", (run_id,)))
        total_images = sum(c["size"] for c in live)
        out: dict[str, Any] = {
            "clusters_total": len(live), "clusters_reviewed": len(reviewed),
            "images_total": total_images, "images_covered": 0, "per_class": {},
            "review_seconds": seconds, "images_per_minute": None,
        }
        if label_set_id:
            eff = self.p.labels.effective(label_set_id)
            # Every class by id: a label of another set's class (written by an old merge) is
            # counted under its name instead of ending the count with a KeyError.
            names = {r[0]: r[1] for r in self.p.db.query("SELECT id, name FROM classes")}
            members = self.assignment(run_id)
            for image_id in members:
                cls = eff.get(image_id)
                if cls is not None:
                    out["images_covered"] += 1
                    out["per_class"][names[cls]] = out["per_class"].get(names[cls], 0) + 1
        if seconds > 0:
            out["images_per_minute"] = out["images_covered"] / (seconds / 60.0)
        return out

    # ---- helpers for actions -----------------------------------------------------------
    def _label_set(self, label_set: int | str) -> int:
        if isinstance(label_set, str):
            return self.p.labels.label_set(label_set)
        return int(label_set)

    def _class(self, label_set_id: int, cls: int | str) -> int:
        if isinstance(cls, str):
            return self.p.labels.class_id(label_set_id, cls)
        row = self.p.db.one("SELECT label_set_id FROM classes WHERE id = ?", (int(cls),))
        if row is None or row[0] != label_set_id:
            raise ValueError(f"class {cls} is not in label set {label_set_id}")
        return int(cls)

    def reject_class(self, label_set_id: int) -> int:
        row = self.p.db.one("SELECT id FROM classes WHERE label_set_id = ? AND is_reject = 1 "
                            "ORDER BY position LIMIT 1", (label_set_id,))
        if row:
            return int(row[0])
        return self.p.labels.class_id(label_set_id, REJECT_CLASS, color="#808080", is_reject=True)

    def _run_of(self, cluster_ids: Sequence[int]) -> int:
        runs = {r[0] for r in self.p.db.query(
            f"SELECT run_id FROM clusters WHERE id IN ({marks(len(cluster_ids))})", tuple(cluster_ids))}
        if len(runs) != 1:
            raise ValueError(f"clusters {list(cluster_ids)} are not (all) in one run")
        return runs.pop()

    def _members_of(self, cluster_ids: Sequence[int]) -> list[int]:
        return [r[0] for r in self.p.db.query(
            f"SELECT image_id FROM cluster_members WHERE cluster_id IN ({marks(len(cluster_ids))}) "
            "ORDER BY image_id", tuple(cluster_ids))]

    def _refresh(self, c: sqlite3.Connection, run_id: int, cluster_ids: Iterable[int]) -> None:
        """Recompute centroid distances, spread and map position of edited clusters."""
        feats = self.features(run_id)
        for cid in set(cluster_ids):
            rows = c.execute("SELECT image_id, map_x, map_y FROM cluster_members WHERE cluster_id = ?",
                             (cid,)).fetchall()
            if not rows:
                continue
            ids = [r[0] for r in rows]
            xy = np.array([[r[1] or 0.0, r[2] or 0.0] for r in rows])
            mx, my = xy.mean(0)
            if feats is not None and all(i in feats[1] for i in ids):
                x = feats[0][[feats[1][i] for i in ids]]
                dist = np.linalg.norm(x - x.mean(0), axis=1)
                c.executemany("UPDATE cluster_members SET distance = ? WHERE run_id = ? AND image_id = ?",
                              [(float(d), run_id, i) for d, i in zip(dist, ids, strict=True)])
                spread = float(dist.mean())
            else:
                spread = c.execute("SELECT AVG(distance) FROM cluster_members WHERE cluster_id = ?",
                                   (cid,)).fetchone()[0]
            c.execute("UPDATE clusters SET map_x = ?, map_y = ?, spread = ? WHERE id = ?",
                      (float(mx), float(my), spread, cid))

    def _write_cluster_labels(self, c: sqlite3.Connection, run_id: int, image_ids: Sequence[int],
                              label_set_id: int, class_id: int | None) -> None:
        """Set (or with class None remove) this run's cluster labels of ``image_ids``."""
        if class_id is None:
            c.executemany("DELETE FROM labels WHERE image_id = ? AND label_set_id = ? AND source = 'cluster' "
                          "AND run_id = ?", [(i, label_set_id, run_id) for i in image_ids])
            return
        self.p.labels.set_labels(image_ids, label_set_id, class_id, source="cluster", run_id=run_id,
                                 audit=False)

    def _new_cluster(self, c: sqlite3.Connection, run_id: int, *, parent_id: int | None,
                     class_id: int | None, discarded: int, new_id: int | None) -> int:
        idx = c.execute("SELECT COALESCE(MAX(idx), -1) + 1 FROM clusters WHERE run_id = ?",
                        (run_id,)).fetchone()[0]
        cur = c.execute("INSERT INTO clusters(id, run_id, idx, parent_id, class_id, discarded) "
                        "VALUES (?, ?, ?, ?, ?, ?)", (new_id, run_id, idx, parent_id, class_id, discarded))
        return int(cur.lastrowid)

    # ---- actions -------------------------------------------------------------------------
    def label_cluster(self, cluster_ids: int | Sequence[int], label_set: int | str, cls: int | str, *,
                      review_seconds: float | None = None, discard: bool = False) -> dict[str, Any]:
        """Label every member of the clusters with ``cls`` (created if a new name), source 'cluster'."""
        cids = [cluster_ids] if isinstance(cluster_ids, int) else [int(x) for x in cluster_ids]
        run_id = self._run_of(cids)
        ls = self._label_set(label_set)
        class_id = self.reject_class(ls) if discard else self._class(ls, cls)
        per = (review_seconds or 0.0) / len(cids)
        with self.p.db.transaction() as c:  # read and write under one lock: another process may edit
            members = self._members_of(cids)
            snap = self._snapshot(run_id, cids, members, [ls])
            # The run remembers the set it was last labelled in: the board opens on it and
            # ``progress`` (GUI and CLI alike) counts in it unless told another set.
            c.execute("UPDATE cluster_runs SET label_set_id = ? WHERE id = ?", (ls, run_id))
            c.executemany(
                f"UPDATE clusters SET class_id = ?, discarded = ?, reviewed_at = {NOW}, "
                "review_seconds = COALESCE(review_seconds, 0) + ? WHERE id = ?",
                [(class_id, int(discard), per, cid) for cid in cids])
            self._write_cluster_labels(c, run_id, members, ls, class_id)
            rec = self._record(c, "discard" if discard else "label", run_id, snap, [],
                               {"clusters": cids, "label_set_id": ls, "class_id": class_id,
                                "n": len(members), "review_seconds": review_seconds})
        return rec

    def discard(self, cluster_ids: int | Sequence[int], label_set: int | str, *,
                review_seconds: float | None = None) -> dict[str, Any]:
        """Mark discarded and label the members with the label set's reject class."""
        return self.label_cluster(cluster_ids, label_set, REJECT_CLASS, review_seconds=review_seconds,
                                  discard=True)

    def _label_set_or_run(self, run_id: int, label_set: int | str | None) -> int | None:
        if label_set is not None:
            return self._label_set(label_set)
        return self.run(run_id)["label_set_id"]

    def class_in_set(self, cluster_id: int, label_set_id: int) -> int | None:
        """The cluster's class when it belongs to ``label_set_id``, else None (classes belong
        to their set: a class of another set is never written into this one)."""
        row = self.p.db.one("SELECT cl.id FROM clusters c JOIN classes cl ON cl.id = c.class_id "
                            "WHERE c.id = ? AND cl.label_set_id = ?", (cluster_id, label_set_id))
        return int(row[0]) if row else None

    def merge(self, cluster_ids: Sequence[int], label_set: int | str | None = None) -> dict[str, Any]:
        """Merge into the first cluster; moved members take its class in ``label_set`` (the set
        the reviewer works in; default the run's) or lose this run's label there."""
        cids = [int(x) for x in cluster_ids]
        if len(cids) < 2:
            raise ValueError("merge needs at least two clusters")
        target, others = cids[0], cids[1:]
        run_id = self._run_of(cids)
        ls = self._label_set_or_run(run_id, label_set)
        with self.p.db.transaction() as c:
            moved = self._members_of(others)
            snap = self._snapshot(run_id, cids, moved, [ls] if ls else [], member_ids=self._members_of(cids))
            target_class = self.class_in_set(target, ls) if ls else None
            c.executemany("UPDATE cluster_members SET cluster_id = ? WHERE cluster_id = ?",
                          [(target, o) for o in others])
            c.executemany("UPDATE clusters SET merged_into = ? WHERE id = ?", [(target, o) for o in others])
            if ls:
                self._write_cluster_labels(c, run_id, moved, ls, target_class)
            self._refresh(c, run_id, [target])
            rec = self._record(c, "merge", run_id, snap, [], {"into": target, "clusters": others,
                                                              "n": len(moved), "label_set_id": ls})
        return rec

    def split(self, cluster_id: int, parts: Sequence[int], *, n: int | None = None,
              new_ids: Sequence[int] | None = None) -> dict[str, Any]:
        """Write a split: ``parts[i]`` is the part (0 … n-1) of ``member_ids(cluster_id)[i]``.

        The parts are computed in ``ml.cluster.split`` (a sub-k-means); the store only
        writes them.  Part 0 keeps the cluster; the others are new clusters (``parent_id``
        = the split one) that inherit its class, so labels stay as they are.  The record
        keeps the parts, so a redo writes the same split."""
        row = self.cluster(cluster_id)
        if row is None:
            raise ValueError(f"no cluster {cluster_id}")
        run_id = row["run_id"]
        members = self.member_ids(cluster_id)
        parts = np.asarray(parts, dtype=np.int64)
        if len(parts) != len(members):
            raise ValueError(f"split of cluster {cluster_id}: {len(parts)} parts for {len(members)} members")
        n = int(parts.max()) + 1 if n is None else int(n)
        created: list[int] = []
        with self.p.db.transaction() as c:
            snap = self._snapshot(run_id, [cluster_id], members, [])
            for j in range(1, n):
                nid = self._new_cluster(c, run_id, parent_id=cluster_id, class_id=row["class_id"],
                                        discarded=row["discarded"],
                                        new_id=new_ids[j - 1] if new_ids else None)
                created.append(nid)
                c.executemany("UPDATE cluster_members SET cluster_id = ? WHERE run_id = ? AND image_id = ?",
                              [(nid, run_id, members[i]) for i in np.flatnonzero(parts == j)])
            self._refresh(c, run_id, [cluster_id, *created])
            rec = self._record(c, "split", run_id, snap, created,
                               {"cluster": cluster_id, "n": n, "sizes": np.bincount(parts).tolist()},
                               parts=parts.tolist())
        return rec

    def move_out(self, run_id: int, image_ids: Sequence[int], *, new_id: int | None = None,
                 label_set: int | str | None = None) -> dict[str, Any]:
        """Move members to a new, unlabelled cluster; they lose this run's cluster label."""
        ids = [int(i) for i in image_ids]
        if not ids:
            raise ValueError("no images to move")
        sources = [r[0] for r in self.p.db.query(
            f"SELECT DISTINCT cluster_id FROM cluster_members WHERE run_id = ? AND image_id IN "
            f"({marks(len(ids))})", (run_id, *ids))]
        if not sources:
            raise ValueError("the images are not members of this run")
        ls = self._label_set_or_run(run_id, label_set)
        with self.p.db.transaction() as c:
            snap = self._snapshot(run_id, sources, ids, [ls] if ls else [],
                                  member_ids=self._members_of(sources))
            nid = self._new_cluster(c, run_id, parent_id=sources[0], class_id=None, discarded=0,
                                    new_id=new_id)
            c.executemany("UPDATE cluster_members SET cluster_id = ? WHERE run_id = ? AND image_id = ?",
                          [(nid, run_id, i) for i in ids])
            if ls:
                self._write_cluster_labels(c, run_id, ids, ls, None)
            self._refresh(c, run_id, [nid, *sources])
            rec = self._record(c, "move_out", run_id, snap, [nid], {"from": sources, "n": len(ids),
                                                                 "label_set_id": ls})
        return rec

    def label_images(self, run_id: int, image_ids: Sequence[int], label_set: int | str,
                     cls: int | str) -> dict[str, Any]:
        """Give selected members their own human label (wins over any cluster label)."""
        ids = [int(i) for i in image_ids]
        ls = self._label_set(label_set)
        class_id = self._class(ls, cls)
        with self.p.db.transaction() as c:
            snap = self._snapshot(run_id, [], ids, [ls], sources=("human",))
            self.p.labels.set_labels(ids, ls, class_id, source="human")
            rec = self._record(c, "label_images", run_id, snap, [],
                               {"label_set_id": ls, "class_id": class_id, "n": len(ids)})
        return rec

    def add_review_time(self, cluster_id: int, seconds: float) -> None:
        with self.p.db.transaction() as c:
            c.execute("UPDATE clusters SET review_seconds = COALESCE(review_seconds, 0) + ? WHERE id = ?",
                      (float(seconds), cluster_id))
