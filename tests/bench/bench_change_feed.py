"""What the store's change feed costs: a GUI poll, and the triggers on bulk writes.

1. A poll with nothing new (one ``PRAGMA data_version``) and a poll after another
   connection's commit (that pragma plus the six topic counters), median and p95.
2. ``set_labels`` of every image, nine times, in a copy of the project with the change
   triggers and in a copy without them (the feed's cost on a bulk write).

    .venv/bin/python tests/bench/bench_change_feed.py [--project P]

Without ``--project`` a 200-image synthetic project is made in a temporary folder, so
``make bench`` runs it with no arguments.  Prints figures only.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from mskstudio.store import Project
from mskstudio.store.changes import ChangeFeed


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def polls(root: Path, n: int = 2000) -> None:
    with Project.open(root) as reader, Project.open(root) as writer:
        feed = ChangeFeed(reader)
        idle = []
        for _ in range(n):
            t0 = time.perf_counter()
            feed.poll()
            idle.append(time.perf_counter() - t0)
        after = []
        for i in range(n // 10):
            writer.set_meta("bench", str(i))
            t0 = time.perf_counter()
            feed.poll()
            after.append(time.perf_counter() - t0)
    for name, xs in (("idle poll", idle), ("poll after another connection's commit", after)):
        print(f"{name}: median {statistics.median(xs) * 1e6:.1f} µs, p95 {_pct(xs, 0.95) * 1e6:.1f} µs, n={len(xs)}")


def bulk_labels(root: Path, tmp: Path, repeats: int = 9) -> None:
    with Project.open(root) as src:
        for name, drop in (("with triggers", False), ("without triggers", True)):
            copy = tmp / f"{name.replace(' ', '-')}.mskproj"
            copy.mkdir()
            src.db.execute(f"VACUUM INTO '{copy / 'project.db'}'")
            if drop:
                conn = sqlite3.connect(copy / "project.db")
                for (trigger,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' "
                                               "AND name LIKE 'change_%'").fetchall():
                    conn.execute(f"DROP TRIGGER {trigger}")
                conn.commit()
                conn.close()
            with Project.open(copy) as p:
                ids = p.images.ids()
                ls = p.labels.label_set("bench-feed")
                times = []
                for r in range(repeats):
                    cls = p.labels.class_id(ls, f"c{r}")
                    t0 = time.perf_counter()
                    p.labels.set_labels(ids, ls, cls, source="human")
                    times.append(time.perf_counter() - t0)
            print(f"set_labels of {len(ids)} images {name}: median {statistics.median(times) * 1e3:.1f} ms "
                  f"(runs: {', '.join(f'{t * 1e3:.0f}' for t in times)} ms)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = args.project
        if root is None:
            from mskstudio.ml.synthetic import add_synthetic_images

            root = tmp / "feed.mskproj"
            with Project.create(root) as p:
                add_synthetic_images(p, 200, seed=0)
        polls(root)
        bulk_labels(root, tmp)


if __name__ == "__main__":
    main()
