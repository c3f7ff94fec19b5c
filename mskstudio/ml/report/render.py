"""Writing the report: tables as CSV (and HTML), figures under ``figures/``, ``report.html`` by jinja2."""

from __future__ import annotations

import csv
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).resolve().parent / "templates"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


class ReportWriter:
    def __init__(self, root: Path, figure_format: str = "svg"):
        self.root = Path(root)
        self.figure_format = figure_format
        (self.root / "tables").mkdir(parents=True, exist_ok=True)
        (self.root / "figures").mkdir(parents=True, exist_ok=True)
        self.tables: list[dict[str, Any]] = []
        self.figures: list[Path] = []

    def rel(self, path: Path) -> str:
        return Path(path).relative_to(self.root).as_posix()

    def table(self, name: str, title: str, rows: list[list[Any]]) -> dict[str, Any]:
        """Write ``tables/NAME.csv`` and return the table for the template (header + body)."""
        path = self.root / "tables" / f"{_safe(name)}.csv"
        with path.open("w", newline="", encoding="utf-8") as fh:
            csv.writer(fh, lineterminator="\n").writerows(rows)
        t = {"name": name, "title": title, "header": [str(h) for h in rows[0]] if rows else [],
             "body": [[("" if v is None else str(v)) for v in r] for r in rows[1:]], "csv": self.rel(path)}
        self.tables.append(t)
        return t

    def figure_path(self, name: str, fmt: str | None = None) -> Path:
        return self.root / "figures" / f"{_safe(name)}.{fmt or self.figure_format}"

    def render(self, sections: dict[str, Any]) -> Path:
        import jinja2

        from mskstudio.ml.report.checklist import checklist, checklist_rows

        present = {"flow", "cohort", "runs", "reproducibility"}
        if any(r.get("calibration") for r in sections["runs"]):
            present.add("calibration")
        if any(r.get("forest") for r in sections["runs"]):
            present.add("subgroups")
        if sections["comparisons"]["table"] is not None:
            present.add("comparisons")
        if any(g["cams"] for g in sections["gradcam"]):
            present.add("gradcam")
        if sections["readers"] and sections["readers"]["tables"]:
            present.add("readers")
        items = checklist(present)
        sections["checklist"] = {"items": items,
                                 "table": self.table("checklist", "TRIPOD+AI / CLAIM checklist",
                                                     checklist_rows(items))}
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                                 autoescape=jinja2.select_autoescape(["html", "j2"]),
                                 trim_blocks=True, lstrip_blocks=True)
        html = env.get_template("report.html.j2").render(
            **sections, generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
        out = self.root / "report.html"
        out.write_text(html, encoding="utf-8")
        return out
