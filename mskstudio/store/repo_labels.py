"""Label sets, their classes, and labels with provenance.

Each (image, label set, machine source) has at most one row, and each (image, label
set, reader) at most one human row, so a machine can never overwrite what a human said
and several readers' labels coexist.  The *effective* label is chosen by source
precedence (human > import > cluster > model); among human labels the latest wins.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import TYPE_CHECKING

from mskstudio.domain import LABEL_SOURCES as SOURCES
from mskstudio.domain import Label, LabelClass

if TYPE_CHECKING:
    from mskstudio.store.project import Project

PRECEDENCE_SQL = "CASE source WHEN 'human' THEN 0 WHEN 'import' THEN 1 WHEN 'cluster' THEN 2 ELSE 3 END"
PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6",
           "#bfef45", "#fabed4", "#469990", "#dcbeff", "#9a6324", "#800000", "#aaffc3")


class LabelRepo:
    def __init__(self, project: Project):
        self.p = project

    # ---- label sets and classes ----------------------------------------------------
    def label_set(self, name: str, *, kind: str = "image", description: str | None = None) -> int:
        """Id of the label set ``name``, created on first use."""
        found = self.find_label_set(name)
        if found is not None:
            return found
        with self.p.db.transaction() as c:
            c.execute("INSERT OR IGNORE INTO label_sets(name, kind, description) VALUES (?, ?, ?)",
                      (name, kind, description))
            set_id = int(c.execute("SELECT id FROM label_sets WHERE name = ?", (name,)).fetchone()[0])
            self.p.audit("label_set.create", "label_set", set_id, {"name": name, "kind": kind})
        return set_id

    def find_label_set(self, name: str) -> int | None:
        """Id of the label set ``name``, or None (never creates one)."""
        set_id = self.p.db.scalar("SELECT id FROM label_sets WHERE name = ?", (name,))
        return None if set_id is None else int(set_id)

    def label_set_name(self, label_set_id: int) -> str | None:
        return self.p.db.scalar("SELECT name FROM label_sets WHERE id = ?", (label_set_id,))

    def label_sets(self, kind: str | None = None) -> list[sqlite3.Row]:
        if kind:
            return self.p.db.query("SELECT * FROM label_sets WHERE kind = ? ORDER BY name", (kind,))
        return self.p.db.query("SELECT * FROM label_sets ORDER BY name")

    def label_sets_with_source(self, source: str) -> set[int]:
        """Ids of the label sets holding at least one label of ``source`` (e.g. 'cluster')."""
        return {int(r[0]) for r in self.p.db.query(
            "SELECT DISTINCT label_set_id FROM labels WHERE source = ?", (source,))}

    def class_id(self, label_set_id: int, name: str, *, color: str | None = None,
                 is_reject: bool = False) -> int:
        row = self.p.db.one(
            "SELECT id FROM classes WHERE label_set_id = ? AND name = ?", (label_set_id, name))
        if row:
            return int(row[0])
        with self.p.db.transaction() as c:
            position = c.execute(
                "SELECT COUNT(*) FROM classes WHERE label_set_id = ?", (label_set_id,)).fetchone()[0]
            cur = c.execute(
                "INSERT INTO classes(label_set_id, name, color, position, is_reject) VALUES (?, ?, ?, ?, ?)",
                (label_set_id, name, color or PALETTE[position % len(PALETTE)], position, int(is_reject)),
            )
            class_id = int(cur.lastrowid)
            self.p.audit("class.create", "class", class_id, {"label_set_id": label_set_id, "name": name})
        return class_id

    def class_name(self, class_id: int) -> str | None:
        return self.p.db.scalar("SELECT name FROM classes WHERE id = ?", (class_id,))

    def label_set_of_class(self, class_id: int) -> int | None:
        return self.p.db.scalar("SELECT label_set_id FROM classes WHERE id = ?", (class_id,))

    def classes(self, label_set_id: int) -> list[LabelClass]:
        """The set's classes as typed records, in the order the GUI lists them."""
        return [LabelClass.from_row(r) for r in self.p.db.query(
            "SELECT * FROM classes WHERE label_set_id = ? ORDER BY position, id", (label_set_id,))]

    # ---- labels -------------------------------------------------------------------------
    def set_label(self, image_id: int, label_set_id: int, class_id: int, *, source: str = "human",
                  author: str | None = None, run_id: int | None = None,
                  confidence: float | None = None) -> None:
        self.set_labels([image_id], label_set_id, class_id, source=source, author=author,
                        run_id=run_id, confidence=confidence)

    def set_labels(self, image_ids: Iterable[int], label_set_id: int, class_id: int, *,
                   source: str = "human", author: str | None = None, run_id: int | None = None,
                   confidence: float | None = None, audit: bool = True) -> int:
        """Write one label per image for ``source``; returns how many rows were written."""
        if source not in SOURCES:
            raise ValueError(f"unknown label source {source!r}")
        ids = list(image_ids)
        author = author or self.p.author
        # A human label belongs to its reader (one row each); a machine label to its source.
        # A reader's new label replaces the row (a fresh, highest id) so that among equal
        # timestamps the latest write still wins in ``effective``.
        human = source == "human"
        reader_id = self.p.readers.ensure(author) if human else None
        target = ("(image_id, label_set_id, reader_id) WHERE source = 'human'" if human
                  else "(image_id, label_set_id, source) WHERE source != 'human'")
        with self.p.db.transaction() as c:
            if human:
                c.executemany("DELETE FROM labels WHERE image_id = ? AND label_set_id = ? AND "
                              "source = 'human' AND reader_id = ?", [(i, label_set_id, reader_id) for i in ids])
            c.executemany(
                "INSERT INTO labels(image_id, label_set_id, class_id, source, author, run_id, confidence, "
                f"reader_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT{target} DO UPDATE SET "
                "class_id = excluded.class_id, author = excluded.author, run_id = excluded.run_id, "
                "confidence = excluded.confidence, created_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
                [(i, label_set_id, class_id, source, author, run_id, confidence, reader_id) for i in ids],
            )
            if audit:
                self.p.audit("label.set", "label_set", label_set_id,
                             {"images": ids[:1000], "n": len(ids), "class_id": class_id,
                              "source": source, "run_id": run_id}, author=author)
        return len(ids)

    def remove_labels(self, image_ids: Iterable[int], label_set_id: int, *, source: str,
                      author: str | None = None) -> None:
        """Remove ``source`` labels; human ones only of reader ``author`` (default: the current)."""
        ids = list(image_ids)
        sql, extra = "DELETE FROM labels WHERE image_id = ? AND label_set_id = ? AND source = ?", ()
        if source == "human":
            author = author or self.p.author
            sql += " AND reader_id = (SELECT id FROM readers WHERE name = ?)"
            extra = (author,)
        with self.p.db.transaction() as c:
            c.executemany(sql, [(i, label_set_id, source, *extra) for i in ids])
            self.p.audit("label.remove", "label_set", label_set_id,
                         {"images": ids[:1000], "n": len(ids), "source": source})

    def labels_of(self, image_id: int) -> list[Label]:
        """Every label of an image with provenance, effective ones first per label set."""
        return [Label.from_row(r) for r in self.p.db.query(
            f"SELECT l.*, c.name AS class_name, s.name AS label_set FROM labels l "
            f"JOIN classes c ON c.id = l.class_id JOIN label_sets s ON s.id = l.label_set_id "
            f"WHERE l.image_id = ? ORDER BY s.name, {PRECEDENCE_SQL}, l.created_at DESC, l.id DESC",
            (image_id,),
        )]

    def effective(self, label_set_id: int, *, sources: tuple[str, ...] = SOURCES) -> dict[int, int]:
        """image id -> class id of the highest-precedence label among ``sources``."""
        return {k: v[0] for k, v in self.effective_with_source(label_set_id, sources=sources).items()}

    def effective_with_source(self, label_set_id: int, *, sources: tuple[str, ...] = SOURCES
                              ) -> dict[int, tuple[int, str]]:
        """image id -> (class id, source) of the highest-precedence label among ``sources``."""
        marks = ",".join("?" for _ in sources)
        rows = self.p.db.query(
            f"SELECT image_id, class_id, source FROM labels WHERE label_set_id = ? AND source IN ({marks}) "
            f"ORDER BY image_id, {PRECEDENCE_SQL} DESC, created_at, id",
            (label_set_id, *sources),
        )
        # Ordered lowest precedence first and, among one reader's peers, oldest first,
        # so the last row per image wins: the latest human label is the current one.
        return {r[0]: (r[1], r[2]) for r in rows}

    def of_run(self, label_set_id: int, run_id: int, *, source: str = "cluster") -> dict[int, int]:
        """image id -> class id of the ``source`` labels written by run ``run_id``."""
        rows = self.p.db.query(
            "SELECT image_id, class_id FROM labels WHERE label_set_id = ? AND source = ? AND run_id = ?",
            (label_set_id, source, run_id))
        return {int(r[0]): int(r[1]) for r in rows}

    def table(self, label_set_ids: Iterable[int] | None = None) -> list[sqlite3.Row]:
        """Every label (of some label sets) with its image, patient pseudonym and provenance, for exports."""
        sql = (
            "SELECT l.id, l.image_id, i.sop_uid, i.frame, p.pseudonym, s.name AS label_set, c.name AS label, "
            "l.source, l.author, r.name AS reader, l.run_id, l.confidence, l.created_at FROM labels l "
            "LEFT JOIN readers r ON r.id = l.reader_id "
            "JOIN images i ON i.id = l.image_id JOIN studies st ON st.id = i.study_id "
            "JOIN patients p ON p.id = st.patient_id JOIN label_sets s ON s.id = l.label_set_id "
            "JOIN classes c ON c.id = l.class_id"
        )
        args: tuple = ()
        if label_set_ids is not None:
            ids = list(label_set_ids)
            sql += f" WHERE l.label_set_id IN ({','.join('?' for _ in ids)})"
            args = tuple(ids)
        return self.p.db.query(sql + f" ORDER BY l.image_id, s.name, {PRECEDENCE_SQL}", args)

    def label_of(self, image_id: int, label_set_id: int, *, source: str) -> int | None:
        """Class id of the ``source`` label of an image in a label set (the latest, where
        several readers' human labels coexist), or None."""
        return self.p.db.scalar(
            "SELECT class_id FROM labels WHERE image_id = ? AND label_set_id = ? AND source = ? "
            "ORDER BY created_at DESC, id DESC LIMIT 1",
            (image_id, label_set_id, source))

    def has_label(self, image_id: int, label_set_id: int, *, source: str) -> bool:
        return bool(self.p.db.scalar(
            "SELECT COUNT(*) FROM labels WHERE image_id = ? AND label_set_id = ? AND source = ?",
            (image_id, label_set_id, source)))

    def labelled_image_ids(self) -> set[int]:
        """Images with at least one label in any label set."""
        return {r[0] for r in self.p.db.query("SELECT DISTINCT image_id FROM labels")}

    def counts(self, label_set_id: int) -> dict[str, int]:
        eff = self.effective(label_set_id)
        names = {c.id: c.name for c in self.classes(label_set_id)}
        out: dict[str, int] = {}
        for class_id in eff.values():
            out[names[class_id]] = out.get(names[class_id], 0) + 1
        return out
