"""Read-only queries for the study report: per-image attributes and the selection counts.

``attributes()`` joins every stored attribute a subgroup or a cohort table can use
(centre, age, sex, device, view, site, diagnosis source, lesion size …) into one row
per image; ``selection_counts()`` counts what the selection flow diagram shows.  SQL
only: the statistics live in ``mskstudio.ml.evaluate.metrics`` and ``mskstudio.ml.report``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mskstudio.store.project import Project

# Longest lesion diameter in mm per image: the longest ruler drawn on it, else the longest
# mask extent (human, imported or adjudicated masks), else NULL.
_LESION_MM = """
SELECT i.id AS image_id,
       COALESCE((SELECT MAX(m.length_mm) FROM measurements m WHERE m.image_id = i.id AND m.kind = 'ruler'),
                (SELECT MAX(k.longest_mm) FROM masks k WHERE k.image_id = i.id
                 AND k.source IN ('human', 'import', 'adjudicated'))) AS lesion_mm
FROM images i
"""
_LESION_MM_NO_RULERS = """
SELECT i.id AS image_id,
       (SELECT MAX(k.longest_mm) FROM masks k WHERE k.image_id = i.id
        AND k.source IN ('human', 'import', 'adjudicated')) AS lesion_mm
FROM images i
"""


class CohortRepo:
    def __init__(self, project: Project):
        self.p = project

    def attributes(self) -> dict[int, dict[str, Any]]:
        """image id -> attributes (None where unknown); age and sex prefer the clinical record."""
        rows = self.p.db.query(
            "SELECT i.id, s.patient_id, COALESCE(c.name, c.code) AS centre, "
            "COALESCE(cl.age_years, s.age_years) AS age_years, COALESCE(cl.sex, p.sex) AS sex, "
            "i.manufacturer, i.model, i.body_part, i.view, i.laterality, cl.site, cl.diagnosis, "
            "cl.dignity, cl.diagnosis_source, i.rows, i.cols, i.spacing_row_mm, i.excluded, "
            "i.burned_in_annotation, i.quality, i.is_screenshot, i.external "
            "FROM images i JOIN studies s ON s.id = i.study_id JOIN patients p ON p.id = s.patient_id "
            "LEFT JOIN centres c ON c.id = s.centre_id LEFT JOIN clinical cl ON cl.patient_id = p.id "
            "ORDER BY i.id")
        out = {int(r["id"]): dict(r) for r in rows}
        has_rulers = bool(self.p.db.scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'measurements'"))
        for r in self.p.db.query(_LESION_MM if has_rulers else _LESION_MM_NO_RULERS):
            if int(r["image_id"]) in out:
                out[int(r["image_id"])]["lesion_mm"] = r["lesion_mm"]
        return out

    def selection_counts(self, cluster_run_id: int | None = None) -> dict[str, Any]:
        """Counts for the selection flow: imported, failed by reason, discarded, excluded (and its flags)."""
        db = self.p.db
        failures = [(r[0], int(r[1])) for r in db.query(
            "SELECT reason, COUNT(*) FROM import_failures GROUP BY reason ORDER BY COUNT(*) DESC, reason")]
        run = cluster_run_id if cluster_run_id is not None else db.scalar("SELECT MAX(id) FROM cluster_runs")
        discarded: set[int] = set()
        if run is not None:
            discarded = {int(r[0]) for r in db.query(
                "SELECT m.image_id FROM cluster_members m JOIN clusters c ON c.id = m.cluster_id "
                "WHERE m.run_id = ? AND c.discarded = 1", (run,))}
        # Only ``excluded`` keeps an image out of training; the other flags say why it was excluded.
        excluded = {int(r[0]) for r in db.query("SELECT id FROM images WHERE excluded = 1")}
        flags = {}
        for name, where in (("screenshot", "is_screenshot = 1"),
                            ("quality", "quality IS NOT NULL AND quality NOT IN ('', 'good', 'ok')"),
                            ("burned-in annotation", "burned_in_annotation = 1")):
            flags[name] = {int(r[0]) for r in db.query(f"SELECT id FROM images WHERE {where}")}
        return {"imported": int(db.scalar("SELECT COUNT(*) FROM images")), "failures": failures,
                "cluster_run_id": run, "discarded": discarded, "excluded": excluded,
                "flags": flags}
