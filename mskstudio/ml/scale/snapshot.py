"""A read-only, versioned training snapshot: every rank of a distributed run reads it, none
touches SQLite.

Layout (a folder under the project's ``cache/snapshots/``)::

    manifest.json   version, image ids, size, input, label set, class names, split, hash
    images.npy      uint16 [N, S, S]: the letterboxed analysis images, as FoldData holds them
    targets.npy     int64 [N]: class index of each image (-1 where a trainer has none)
    NAME.npy        further per-image arrays a trainer needs (masks for the segmenters),
                    listed under ``arrays`` in the manifest, memory-mapped like the images

One format serves every trainer (classifier, DeepCluster, segmenters, detector); what a
trainer puts in ``meta`` and ``arrays`` is its own business.

``open_snapshot`` memory-maps ``images.npy`` so N ranks share one page cache copy.  The
folder is self-contained: it can be copied to a cluster node as it is.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SNAPSHOT_VERSION = 1


@dataclass
class Snapshot:
    path: Path
    manifest: dict[str, Any]
    images: np.ndarray      # uint16 [N, S, S], memory-mapped
    targets: np.ndarray     # int64 [N]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # extra per-image arrays, memory-mapped

    @property
    def ids(self) -> list[int]:
        return [int(i) for i in self.manifest["image_ids"]]


def content_hash(images: np.ndarray, targets: np.ndarray, ids: list[int], extra: dict[str, Any],
                 arrays: dict[str, np.ndarray] | None = None) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"ids": list(map(int, ids)), **extra}, sort_keys=True, default=str).encode())
    h.update(np.ascontiguousarray(targets, np.int64).tobytes())
    h.update(np.ascontiguousarray(images).tobytes())
    for name in sorted(arrays or {}):
        h.update(name.encode())
        h.update(np.ascontiguousarray(arrays[name]).tobytes())
    return h.hexdigest()


def write_snapshot(root: Path, ids: list[int], images: np.ndarray, targets: np.ndarray | None,
                   meta: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> Path:
    """Write (or reuse, when the same content exists) a snapshot under ``root``; return its folder."""
    images = np.asarray(images)
    if images.dtype not in (np.uint8, np.uint16) or images.ndim != 3 or len(images) != len(ids):
        raise ValueError(f"snapshot images must be uint8/uint16 [N, S, S] for {len(ids)} ids, "
                         f"not {images.dtype} {images.shape}")
    targets = np.full(len(ids), -1, np.int64) if targets is None else np.asarray(targets, np.int64)
    arrays = {k: np.asarray(v) for k, v in (arrays or {}).items()}
    for name, arr in arrays.items():
        if not name.isidentifier() or name in ("images", "targets") or len(arr) != len(ids):
            raise ValueError(f"snapshot array {name!r}: needs a plain name and one row per image")
    digest = content_hash(images, targets, ids, meta, arrays)
    folder = Path(root) / digest[:16]
    if (folder / "manifest.json").exists():
        return folder
    tmp = Path(root) / f".{digest[:16]}.{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    np.save(tmp / "images.npy", images)
    np.save(tmp / "targets.npy", targets)
    for name, arr in arrays.items():
        np.save(tmp / f"{name}.npy", arr)
    manifest = {"version": SNAPSHOT_VERSION, "image_ids": list(map(int, ids)), "size": int(images.shape[1]),
                "dtype": str(images.dtype), "hash": digest, "arrays": sorted(arrays), **meta}
    (tmp / "manifest.json").write_text(json.dumps(manifest, default=str))
    try:
        tmp.rename(folder)  # atomic: a reader sees a whole snapshot or none
    except OSError:  # another writer won the race with the same content
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def open_snapshot(folder: Path | str) -> Snapshot:
    folder = Path(folder)
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{folder}: not a training snapshot ({exc})") from None
    if manifest.get("version") != SNAPSHOT_VERSION:
        raise ValueError(f"{folder}: snapshot version {manifest.get('version')} "
                         f"(this mskstudio reads {SNAPSHOT_VERSION})")
    images = np.load(folder / "images.npy", mmap_mode="r")
    targets = np.load(folder / "targets.npy")
    if len(images) != len(manifest["image_ids"]) or len(targets) != len(images):
        raise ValueError(f"{folder}: snapshot arrays do not match its manifest")
    arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in manifest.get("arrays", [])}
    if any(len(a) != len(images) for a in arrays.values()):
        raise ValueError(f"{folder}: snapshot arrays do not match its manifest")
    return Snapshot(folder, manifest, images, targets, arrays)


def locate(folder: str | Path) -> Path:
    """Where this node finds a snapshot rank 0 named: the same path, or its copy under
    MSKSTUDIO_SNAPSHOT_ROOT (another node, the snapshot folder copied elsewhere)."""
    root = os.environ.get("MSKSTUDIO_SNAPSHOT_ROOT")
    return Path(root) / Path(folder).name if root else Path(folder)
