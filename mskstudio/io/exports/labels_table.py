"""Image labels as a table (CSV or Parquet): out of a project, and into one.

One row per stored label, every source kept (a human, an import, a cluster and a model
label of the same image are four rows).  Columns::

    image             the image's pseudonymous name (de-identified SOP UID, '.f<n>' for frame n > 0)
    patient           patient pseudonym
    sop_instance_uid  de-identified SOP instance UID (what import matches on)
    frame             frame index (0 for single-frame images)
    label_set, label  label set and class names
    source            human | import | cluster | model
    author            who (or which run) set it; reader: the reader, where the project records one
    confidence        model / cluster confidence, empty for people
    run_id            the cluster or model run in the exporting project (provenance only)
    time              when it was set (UTC, ISO 8601)

Import matches rows to images by ``sop_instance_uid`` (or ``image``): the project's own
de-identified UID, or an original UID through its keyed hash.  Stored source: a ``human``
or ``import`` row becomes an ``import`` label (this project's people did not set it), a
``cluster`` or ``model`` row keeps its source.  The file's author, reader, source, time
and run go to the audit entry, so every imported label keeps its provenance.

Never silently over a human label: where the image already has a human label in the set
that differs from the file's, the row is skipped and listed as a conflict, unless
``replace_human`` — then the file's label becomes the human label (audited as such).
Unknown images, rows that contradict each other and bad rows are one line each.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mskstudio.domain import LABEL_SOURCES
from mskstudio.io.exports.sources import ImageResolver
from mskstudio.io.params import ExportLabelsParams, ImportLabelsParams

if TYPE_CHECKING:
    from mskstudio.jobs import JobContext
    from mskstudio.store import Project

COLUMNS = ["image", "patient", "sop_instance_uid", "frame", "label_set", "label", "source", "author", "reader",
           "confidence", "run_id", "time"]
FORMATS = (".csv", ".parquet")
STORED_SOURCE = {"human": "import", "import": "import", "cluster": "cluster", "model": "model"}
MAX_LINES = 200  # problem lines kept in a result (counts are always complete)


def image_name(sop_uid: str, frame: int) -> str:
    return sop_uid + (f".f{frame}" if frame else "")


def _check_format(path: Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{path}: unknown table format {suffix or '(none)'}; use .csv or .parquet")
    return suffix


def label_rows(project: Project, label_sets: list[str] | None = None) -> list[dict[str, Any]]:
    """The export table as dicts, in COLUMNS order."""
    ids = None
    if label_sets:
        ids = []
        for name in label_sets:
            set_id = project.labels.find_label_set(name)
            if set_id is None:
                known = ", ".join(r["name"] for r in project.labels.label_sets()) or "none"
                raise ValueError(f"no label set {name!r} in the project (known: {known})")
            ids.append(set_id)
    out = []
    for r in project.labels.table(ids):
        keys = r.keys()
        out.append({
            "image": image_name(r["sop_uid"], int(r["frame"])),
            "patient": r["pseudonym"],
            "sop_instance_uid": r["sop_uid"],
            "frame": int(r["frame"]),
            "label_set": r["label_set"],
            "label": r["label"],
            "source": r["source"],
            "author": r["author"] or "",
            "reader": (r["reader"] or "") if "reader" in keys else "",  # where the store records readers
            "confidence": r["confidence"],
            "run_id": r["run_id"],
            "time": r["created_at"],
        })
    return out


def export_labels(project: Project, path: Path, *, label_sets: list[str] | None = None) -> dict[str, Any]:
    """Write the label table to ``path`` (.csv or .parquet); returns counts."""
    import pandas as pd

    path = Path(path)
    suffix = _check_format(path)
    rows = label_rows(project, label_sets)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["confidence"] = pd.to_numeric(frame["confidence"])
    frame["run_id"] = frame["run_id"].astype("Int64")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if suffix == ".csv":
        frame.to_csv(tmp, index=False)
    else:
        frame.to_parquet(tmp, index=False)
    tmp.replace(path)
    if not project.readonly:
        project.audit("labels.export", "project", None, {"path": str(path), "rows": len(rows),
                                                          "label_sets": label_sets})
    return {"path": str(path), "rows": len(rows), "label_sets": sorted({r["label_set"] for r in rows}),
            "images": len({r["image"] for r in rows})}


# ---- import ---------------------------------------------------------------------------
def read_table(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV or Parquet label table as dicts of stripped strings ('' for missing)."""
    import pandas as pd

    path = Path(path)
    suffix = _check_format(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        frame = (pd.read_csv(path, dtype=str, keep_default_na=False) if suffix == ".csv"
                 else pd.read_parquet(path))
    except Exception as exc:  # any parser's error: one line naming the file
        raise ValueError(f"{path}: not a readable {suffix[1:]} table ({exc})") from None
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    missing = [c for c in ("label_set", "label") if c not in frame.columns]
    if not {"sop_instance_uid", "image"} & set(frame.columns):
        missing.append("sop_instance_uid (or image)")
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
    frame = frame.astype(object).where(frame.notna(), "")
    return [{k: str(v).strip() for k, v in row.items()} for row in frame.to_dict("records")]


def _uid_and_frame(row: dict[str, str]) -> tuple[str, int]:
    uid = row.get("sop_instance_uid", "")
    frame_text = row.get("frame", "")
    if not uid:  # the image name: '<uid>' or '<uid>.f<n>'
        uid, _, suffix = row.get("image", "").partition(".f")
        if suffix and not frame_text:
            frame_text = suffix
        elif suffix:
            uid = row["image"]
    try:
        frame = int(float(frame_text)) if frame_text else 0
    except ValueError:
        frame = -1
    return uid, frame


def _confidence(text: str) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def import_labels(project: Project, path: Path, *, replace_human: bool = False, label_sets: list[str] | None = None,
                  author: str | None = None, ctx: JobContext | None = None) -> dict[str, Any]:
    """Import a label table; returns counts and problem lines (unknown images, conflicts, bad rows)."""
    path = Path(path)
    rows = read_table(path)
    resolver = ImageResolver(project)
    line_of = 2  # CSV line of the first row (after the header); Parquet: row number + 2 as well
    stats = {"rows": len(rows), "imported": 0, "unchanged": 0, "replaced": 0, "replaced_human": 0,
             "unknown_images": 0, "conflicts": 0, "contradictions": 0, "bad_rows": 0, "filtered": 0}
    unknown: list[str] = []
    conflicts: list[str] = []
    problems: list[str] = []
    chosen: dict[tuple[int, str, str], tuple[int, dict[str, str]]] = {}
    for i, row in enumerate(rows):
        where = f"{path.name}:{i + line_of}"
        uid, frame = _uid_and_frame(row)
        set_name, label = row.get("label_set", ""), row.get("label", "")
        source = (row.get("source") or "import").lower()
        if not uid or frame < 0 or not set_name or not label or source not in LABEL_SOURCES:
            stats["bad_rows"] += 1
            what = ("no image UID" if not uid else "bad frame" if frame < 0 else "empty label set or label"
                    if not set_name or not label else f"unknown source {source!r}")
            problems.append(f"{where}: {what}")
            continue
        if label_sets and set_name not in label_sets:
            stats["filtered"] += 1
            continue
        image_id = resolver.image_id(uid, frame)
        if image_id is None:
            stats["unknown_images"] += 1
            unknown.append(f"{where}: image {image_name(uid, frame)} is not in the project")
            continue
        key = (image_id, set_name, STORED_SOURCE[source])
        rank = LABEL_SOURCES.index(source)
        if key in chosen:
            other_rank, other = chosen[key]
            if other["label"] != label:
                stats["contradictions"] += 1
                problems.append(f"{where}: image {image_name(uid, frame)}, {set_name}: {label!r} contradicts "
                                f"{other['label']!r} earlier in the file; the {LABEL_SOURCES[min(rank, other_rank)]} "
                                "row is kept")
            if rank >= other_rank:
                continue
        chosen[key] = (rank, {**row, "_where": where, "_source": source})
    provenance: list[dict[str, Any]] = []
    with project.db.transaction():
        for n, ((image_id, set_name, stored), (_rank, row)) in enumerate(sorted(chosen.items())):
            if ctx is not None and n % 200 == 0:
                ctx.check_cancelled()
                ctx.progress(n / max(len(chosen), 1), "labels")
            set_id = project.labels.label_set(set_name)
            class_id = project.labels.class_id(set_id, row["label"])
            who = row.get("reader") or row.get("author") or author or "import"
            target = stored
            if stored == "import":
                human = project.labels.label_of(image_id, set_id, source="human")
                if human is not None and human != class_id:
                    if not replace_human:
                        stats["conflicts"] += 1
                        conflicts.append(
                            f"{row['_where']}: image {row.get('image') or row.get('sop_instance_uid')}, {set_name}: "
                            f"human label {project.labels.class_name(human)!r} kept, the file says "
                            f"{row['label']!r} (--replace-human to take the file's)")
                        continue
                    target = "human"
                    stats["replaced_human"] += 1
            current = project.labels.label_of(image_id, set_id, source=target)
            if current == class_id and target != "human":
                stats["unchanged"] += 1
                continue
            if current is not None and target != "human":
                stats["replaced"] += 1
            project.labels.set_labels([image_id], set_id, class_id, source=target, author=who[:200],
                                      confidence=_confidence(row.get("confidence", "")), audit=False)
            stats["imported"] += 1
            provenance.append({"image_id": image_id, "label_set": set_name, "label": row["label"], "stored_as": target,
                               "source": row["_source"], "author": row.get("author", ""),
                               "reader": row.get("reader", ""), "time": row.get("time", ""),
                               "run_id": row.get("run_id", "")})
        project.audit("labels.import", "project", None, {
            "path": str(path), "replace_human": replace_human, **stats,
            "labels": provenance[:5000]})
    return {**stats, "unknown": unknown[:MAX_LINES], "conflict_lines": conflicts[:MAX_LINES],
            "problems": problems[:MAX_LINES]}


def run_export_labels(project: Project, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    q = ExportLabelsParams.from_json(params).check(project)
    result = export_labels(project, Path(q.path), label_sets=q.label_sets or None)
    ctx.progress(1.0, f"{result['rows']} labels")
    return result


def run_import_labels(project: Project, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    q = ImportLabelsParams.from_json(params).check(project)
    result = import_labels(project, Path(q.path), replace_human=bool(q.replace_human),
                           label_sets=q.label_sets or None, author=q.author, ctx=ctx)
    ctx.progress(1.0, f"{result['imported']} labels imported, {result['conflicts']} conflicts")
    return result
