"""Readers (who labelled) and reader studies (blinded, ordered reads kept apart from labels).

A reader is a named profile (role, years of experience), no password.  Every human
label, mask and box names its reader; the current reader is ``project.author``
(``MSKSTUDIO_USER`` or the login name, or the one chosen in the GUI), created here on
first use.  A study's reads live in ``reads``, never in ``labels``: what readers say in
a study does not become a training label.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mskstudio.store.project import Project

ROLES = ("resident", "specialist", "subspecialist", "other")
ARM_KINDS = ("image", "clinical", "assisted")


class ReaderRepo:
    def __init__(self, project: Project):
        self.p = project

    # ---- reader profiles ------------------------------------------------------------
    def ensure(self, name: str) -> int:
        """Id of reader ``name``, created (without role) on first use."""
        name = (name or "").strip() or "unknown"
        found = self.p.db.scalar("SELECT id FROM readers WHERE name = ?", (name,))
        if found is not None:
            return int(found)
        with self.p.db.transaction() as c:
            c.execute("INSERT OR IGNORE INTO readers(name) VALUES (?)", (name,))
            reader_id = int(c.execute("SELECT id FROM readers WHERE name = ?", (name,)).fetchone()[0])
        return reader_id

    def save(self, name: str, *, role: str | None = None, years: float | None = None) -> int:
        """Create or update reader ``name``; a None role/years keeps what is stored."""
        if role is not None and role not in ROLES:
            raise ValueError(f"reader role {role!r}: expected one of {', '.join(ROLES)}")
        if years is not None and not (0 <= float(years) <= 80):
            raise ValueError(f"reader years {years!r}: expected 0-80")
        reader_id = self.ensure(name)
        with self.p.db.transaction() as c:
            c.execute("UPDATE readers SET role = COALESCE(?, role), years = COALESCE(?, years) "
                      "WHERE id = ?", (role, years, reader_id))
            self.p.audit("reader.save", "reader", reader_id, {"name": name, "role": role, "years": years})
        return reader_id

    def find(self, name: str) -> sqlite3.Row | None:
        return self.p.db.one("SELECT * FROM readers WHERE name = ?", (name,))

    def get(self, reader_id: int) -> sqlite3.Row | None:
        return self.p.db.one("SELECT * FROM readers WHERE id = ?", (reader_id,))

    def all(self) -> list[sqlite3.Row]:
        return self.p.db.query("SELECT * FROM readers ORDER BY name")

    def human_labels(self, label_set_id: int) -> dict[str, dict[int, int]]:
        """reader name -> {image id: class id} of that reader's human labels."""
        out: dict[str, dict[int, int]] = {}
        for r in self.p.db.query(
                "SELECT r.name, l.image_id, l.class_id FROM labels l JOIN readers r ON r.id = l.reader_id "
                "WHERE l.label_set_id = ? AND l.source = 'human'", (label_set_id,)):
            out.setdefault(r[0], {})[int(r[1])] = int(r[2])
        return out

    # ---- studies --------------------------------------------------------------------
    def create_study(self, name: str, *, label_set_id: int, truth_label_set_id: int,
                     class_ids: Sequence[int], image_ids: Sequence[int], reader_ids: Sequence[int],
                     arms: Sequence[tuple[str, int | None]], orders: dict[tuple[int, int], list[int]],
                     seed: int, washout_days: float = 0, ordinal: bool = False,
                     model_run_id: int | None = None, params: dict[str, Any] | None = None) -> int:
        """Write a study in one transaction.  ``orders[(arm index, reader id)]`` is the
        reader's order of ``image_ids`` in that arm."""
        if self.p.db.scalar("SELECT id FROM reader_studies WHERE name = ?", (name,)) is not None:
            raise ValueError(f"reader study {name!r} exists already")
        with self.p.db.transaction() as c:
            study_id = int(c.execute(
                "INSERT INTO reader_studies(name, label_set_id, truth_label_set_id, classes, ordinal, "
                "model_run_id, washout_days, seed, params) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (name, label_set_id, truth_label_set_id, json.dumps([int(x) for x in class_ids]),
                 int(ordinal), model_run_id, float(washout_days), int(seed),
                 json.dumps(params or {}))).lastrowid)
            case_of = {}
            for image_id in image_ids:
                case_of[image_id] = int(c.execute(
                    "INSERT INTO study_cases(study_id, image_id) VALUES (?, ?)",
                    (study_id, int(image_id))).lastrowid)
            for position, (kind, run_id) in enumerate(arms):
                arm_id = int(c.execute(
                    "INSERT INTO study_arms(study_id, position, kind, model_run_id) VALUES (?, ?, ?, ?)",
                    (study_id, position, kind, run_id)).lastrowid)
                for reader_id in reader_ids:
                    c.executemany(
                        "INSERT INTO reads(study_id, arm_id, reader_id, case_id, position) "
                        "VALUES (?, ?, ?, ?, ?)",
                        [(study_id, arm_id, reader_id, case_of[i], k)
                         for k, i in enumerate(orders[(position, reader_id)])])
            self.p.audit("reader_study.create", "reader_study", study_id,
                         {"name": name, "cases": len(image_ids), "readers": list(reader_ids),
                          "arms": [a[0] for a in arms], "seed": seed})
        return study_id

    def study(self, name_or_id: str | int) -> sqlite3.Row | None:
        col = "id" if isinstance(name_or_id, int) else "name"
        return self.p.db.one(f"SELECT * FROM reader_studies WHERE {col} = ?", (name_or_id,))

    def studies(self) -> list[sqlite3.Row]:
        return self.p.db.query("SELECT * FROM reader_studies ORDER BY id")

    def arms(self, study_id: int) -> list[sqlite3.Row]:
        return self.p.db.query("SELECT * FROM study_arms WHERE study_id = ? ORDER BY position",
                               (study_id,))

    def study_readers(self, study_id: int) -> list[sqlite3.Row]:
        return self.p.db.query(
            "SELECT * FROM readers WHERE id IN (SELECT DISTINCT reader_id FROM reads WHERE study_id = ?) "
            "ORDER BY name", (study_id,))

    def case_images(self, study_id: int) -> list[int]:
        return [int(r[0]) for r in self.p.db.query(
            "SELECT image_id FROM study_cases WHERE study_id = ? ORDER BY id", (study_id,))]

    def order(self, arm_id: int, reader_id: int) -> list[sqlite3.Row]:
        """The reader's reads of one arm in reading order, with the image of each."""
        return self.p.db.query(
            "SELECT r.*, sc.image_id FROM reads r JOIN study_cases sc ON sc.id = r.case_id "
            "WHERE r.arm_id = ? AND r.reader_id = ? ORDER BY r.position", (arm_id, reader_id))

    def record_read(self, read_id: int, class_id: int, *, seconds: float,
                    confidence: float | None = None,
                    boxes: Sequence[Sequence[float]] | None = None) -> None:
        """Store one answer at once (a killed session loses nothing already answered),
        with the lesion boxes (x0, y0, x1, y1 in image pixels) drawn on the case, in the
        same transaction.  Boxes go to ``read_boxes``, never to the project's ``boxes``."""
        rects = [_rect(b) for b in boxes or ()]
        with self.p.db.transaction() as c:
            c.execute("UPDATE reads SET class_id = ?, confidence = ?, seconds = ?, "
                      "read_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?",
                      (int(class_id), confidence, float(seconds), int(read_id)))
            c.execute("DELETE FROM read_boxes WHERE read_id = ?", (int(read_id),))
            c.executemany("INSERT INTO read_boxes(read_id, x0, y0, x1, y1) VALUES (?, ?, ?, ?, ?)",
                          [(int(read_id), *r) for r in rects])

    def read_boxes(self, study_id: int) -> dict[int, list[tuple[float, float, float, float]]]:
        """read id -> the boxes its reader drew (answered reads with boxes only)."""
        out: dict[int, list[tuple[float, float, float, float]]] = {}
        for r in self.p.db.query(
                "SELECT b.read_id, b.x0, b.y0, b.x1, b.y1 FROM read_boxes b JOIN reads r ON r.id = b.read_id "
                "WHERE r.study_id = ? ORDER BY b.id", (study_id,)):
            out.setdefault(int(r[0]), []).append((float(r[1]), float(r[2]), float(r[3]), float(r[4])))
        return out

    def progress(self, study_id: int) -> list[sqlite3.Row]:
        """Per reader and arm: cases assigned (n), read (done) and seconds spent."""
        return self.p.db.query(
            "SELECT rd.name, rd.role, a.position, a.kind, COUNT(r.id) AS n, COUNT(r.class_id) AS done, "
            "SUM(r.seconds) AS seconds FROM reads r JOIN readers rd ON rd.id = r.reader_id "
            "JOIN study_arms a ON a.id = r.arm_id WHERE r.study_id = ? GROUP BY rd.name, a.position "
            "ORDER BY rd.name, a.position", (study_id,))

    def reads(self, study_id: int, *, answered_only: bool = True) -> list[sqlite3.Row]:
        """Every read with reader, arm, image and class names (for analysis and export)."""
        where = " AND r.class_id IS NOT NULL" if answered_only else ""
        return self.p.db.query(
            "SELECT r.id, rd.name AS reader, rd.role, rd.years, a.position AS arm_position, "
            "a.kind AS arm, sc.image_id, r.position, r.class_id, c.name AS answer, r.confidence, "
            "r.seconds, r.read_at FROM reads r JOIN readers rd ON rd.id = r.reader_id "
            "JOIN study_arms a ON a.id = r.arm_id JOIN study_cases sc ON sc.id = r.case_id "
            "LEFT JOIN classes c ON c.id = r.class_id "
            f"WHERE r.study_id = ?{where} ORDER BY rd.name, a.position, r.position", (study_id,))


def _rect(box: Sequence[float]) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    x0, x1 = min(x0, x1), max(x0, x1)
    y0, y1 = min(y0, y1), max(y0, y1)
    if x1 - x0 <= 0 or y1 - y0 <= 0:
        raise ValueError(f"box {tuple(box)}: a box needs a width and a height")
    return x0, y0, x1, y1
