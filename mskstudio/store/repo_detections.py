"""A lesion detector's predicted boxes: rows of ``boxes`` with source 'model', a score and a run.

Predictions sit in the same table as human boxes (one geometry, one viewer layer) but the
human-box queries of ``AnnotationRepo`` skip every row with a score, so a prediction is never
an ROI or a training box by itself.  Writing a detector's output replaces that run's earlier
predictions of the same images and never touches a human (score-less) box.  Accepting a
prediction writes a new human box (audited) and marks the prediction 'accepted'; rejecting
marks it 'dismissed'.  Coordinates are on the full DICOM grid, as every box.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from mskstudio.domain import Box

if TYPE_CHECKING:
    from mskstudio.store.project import Project

NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
SOURCE = "model"


class DetectionRepo:
    def __init__(self, project: Project):
        self.p = project

    def replace_predictions(self, run_id: int, image_ids: Sequence[int],
                            rows: Iterable[tuple[int, int, Sequence[float], float]]) -> int:
        """Store (image id, class id, (x0, y0, x1, y1), score) rows of a detector run.

        The run's earlier predictions of ``image_ids`` go first (accepted and dismissed ones
        stay, as the record of a review); one transaction, one audit entry."""
        rows = list(rows)
        ids = sorted({int(i) for i in image_ids})
        with self.p.db.transaction() as c:
            for a in range(0, len(ids), 500):
                chunk = ids[a:a + 500]
                marks = ",".join("?" for _ in chunk)
                c.execute(f"DELETE FROM boxes WHERE run_id = ? AND score IS NOT NULL AND review IS NULL "
                          f"AND image_id IN ({marks})", (int(run_id), *chunk))
            c.executemany(
                "INSERT INTO boxes(image_id, class_id, annotator, source, x0, y0, x1, y1, score, run_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(int(i), int(cls), f"detector:{int(run_id)}", SOURCE, *(float(v) for v in rect),
                  float(score), int(run_id)) for i, cls, rect, score in rows])
            self.p.audit("detect.store", "model_run", int(run_id), {"images": len(ids), "boxes": len(rows)})
        return len(rows)

    def predictions(self, image_id: int | None = None, *, run_id: int | None = None,
                    min_score: float = 0.0, include_reviewed: bool = False) -> list[Box]:
        """Predicted boxes (highest score first), of one image and/or one run."""
        sql = ("SELECT b.*, c.name AS class_name, c.color FROM boxes b JOIN classes c ON c.id = b.class_id "
               "WHERE b.score IS NOT NULL AND b.score >= ?")
        args: list[Any] = [float(min_score)]
        if image_id is not None:
            sql += " AND b.image_id = ?"
            args.append(int(image_id))
        if run_id is not None:
            sql += " AND b.run_id = ?"
            args.append(int(run_id))
        if not include_reviewed:
            sql += " AND b.review IS NULL"
        return [Box.from_row(r) for r in self.p.db.query(sql + " ORDER BY b.score DESC, b.id", tuple(args))]

    def runs_with_predictions(self) -> list[int]:
        return [int(r[0]) for r in self.p.db.query(
            "SELECT DISTINCT run_id FROM boxes WHERE score IS NOT NULL AND run_id IS NOT NULL ORDER BY run_id")]

    def _prediction(self, box_id: int) -> Box:
        row = self.p.db.one("SELECT * FROM boxes WHERE id = ?", (int(box_id),))
        if row is None or row["score"] is None:
            raise ValueError(f"box {box_id} is not a detector prediction")
        return Box.from_row(row)

    def accept(self, box_id: int, *, annotator: str | None = None, class_id: int | None = None) -> int:
        """The prediction becomes the annotator's human box (of ``class_id`` if given, e.g. the
        class the Annotate dock draws in); returns the new box id."""
        row = self._prediction(box_id)
        with self.p.db.transaction() as c:
            new_id = self.p.annotations.add_box(row.image_id, row.class_id if class_id is None else int(class_id),
                                                (row.x0, row.y0, row.x1, row.y1),
                                                annotator=annotator, source="human", audit=False)
            c.execute(f"UPDATE boxes SET review = 'accepted', updated_at = {NOW} WHERE id = ?", (int(box_id),))
            self.p.audit("detect.accept", "box", new_id,
                         {"prediction": int(box_id), "run_id": row.run_id, "score": row.score,
                          "rect": [row.x0, row.y0, row.x1, row.y1]})
        return new_id

    def accept_image(self, image_id: int, run_id: int, *, min_score: float = 0.0,
                     class_id: int | None = None, annotator: str | None = None) -> list[int]:
        """Accept every unreviewed prediction of ``run_id`` on one image at or above ``min_score``
        (the Annotate dock's "Boxes from detector"); returns the new human box ids."""
        rows = self.predictions(int(image_id), run_id=int(run_id), min_score=float(min_score))
        return [self.accept(int(r.id), annotator=annotator, class_id=class_id) for r in rows]

    def dismiss(self, box_id: int) -> None:
        row = self._prediction(box_id)
        with self.p.db.transaction() as c:
            c.execute(f"UPDATE boxes SET review = 'dismissed', updated_at = {NOW} WHERE id = ?", (int(box_id),))
            self.p.audit("detect.dismiss", "box", int(box_id), {"run_id": row.run_id, "score": row.score})
