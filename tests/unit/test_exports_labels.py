"""Label tables: export to CSV / Parquet (read with pandas), import with unknown images and
conflicts reported one line each, and never silently over a human label."""

from __future__ import annotations

import pandas as pd
import pytest

from mskstudio.io.exports.labels_table import COLUMNS, export_labels, import_labels


@pytest.fixture
def labelled(new_project):
    p = new_project
    ids = []
    for n in range(4):
        sid = p.images.study_id(p.images.patient_id(f"P-{n // 2}"), f"2.25.10{n}")
        ids.append(p.images.add_image({"study_id": sid, "sop_uid": f"2.25.20{n}", "rows": 8, "cols": 8}, None))
    ls = p.labels.label_set("region")
    knee, hip = p.labels.class_id(ls, "knee"), p.labels.class_id(ls, "hip")
    p.labels.set_labels(ids[:2], ls, knee, source="human", author="alice")
    p.labels.set_labels(ids[1:3], ls, hip, source="model", author="net", confidence=0.75)
    other = p.labels.label_set("quality")
    p.labels.set_label(ids[3], other, p.labels.class_id(other, "good"), source="human", author="bob")
    return p, ids


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_export_table_reads_in_pandas(labelled, tmp_path, suffix):
    p, ids = labelled
    result = export_labels(p, tmp_path / f"labels{suffix}")
    table = pd.read_csv(tmp_path / "labels.csv") if suffix == ".csv" else pd.read_parquet(tmp_path / "labels.parquet")
    assert list(table.columns) == COLUMNS and len(table) == result["rows"] == 5
    rows = {(r.sop_instance_uid, r.label_set, r.source): r for r in table.itertuples()}
    alice = rows[("2.25.200", "region", "human")]
    assert (alice.label, alice.author, alice.patient, alice.image, alice.frame) == ("knee", "alice", "P-0",
                                                                                     "2.25.200", 0)
    assert rows[("2.25.202", "region", "model")].confidence == pytest.approx(0.75)
    assert pd.isna(alice.confidence) and alice.time
    only = export_labels(p, tmp_path / f"q{suffix}", label_sets=["quality"])
    assert only["rows"] == 1 and only["label_sets"] == ["quality"]
    with pytest.raises(ValueError, match="no label set 'nope'"):
        export_labels(p, tmp_path / "x.csv", label_sets=["nope"])
    with pytest.raises(ValueError, match="use .csv or .parquet"):
        export_labels(p, tmp_path / "x.xlsx")


def test_import_reports_unknown_images_and_never_overwrites_a_human_label(labelled, tmp_path):
    p, ids = labelled
    ls = p.labels.find_label_set("region")
    table = pd.DataFrame([
        {"sop_instance_uid": "2.25.200", "label_set": "region", "label": "hip", "source": "human", "author": "carol"},
        {"sop_instance_uid": "2.25.203", "label_set": "region", "label": "hip", "source": "human", "author": "carol"},
        {"sop_instance_uid": "9.9.9", "label_set": "region", "label": "hip", "source": "human", "author": "carol"},
        {"sop_instance_uid": "2.25.202", "label_set": "region", "label": "", "source": "human", "author": "carol"},
        {"sop_instance_uid": "2.25.203", "label_set": "region", "label": "knee", "source": "import", "author": "dan"},
    ])
    table.to_csv(tmp_path / "in.csv", index=False)
    result = import_labels(p, tmp_path / "in.csv")
    assert (result["imported"], result["conflicts"], result["unknown_images"], result["bad_rows"],
            result["contradictions"]) == (1, 1, 1, 1, 1)
    assert result["unknown"] == ["in.csv:4: image 9.9.9 is not in the project"]
    (conflict,) = result["conflict_lines"]
    assert conflict.startswith("in.csv:2:") and "'knee' kept" in conflict and "'hip'" in conflict
    assert p.labels.effective(ls)[ids[0]] == p.labels.class_id(ls, "knee")  # alice's label stands
    # The human row of the file wins over the import row that contradicts it (same stored source).
    assert p.labels.label_of(ids[3], ls, source="import") == p.labels.class_id(ls, "hip")
    assert any("contradicts" in line and "in.csv:6" in line for line in result["problems"])
    # Explicitly asked: the file's label replaces the human one, and the audit says so.
    again = import_labels(p, tmp_path / "in.csv", replace_human=True)
    assert again["replaced_human"] == 1 and again["conflicts"] == 0
    assert p.labels.label_of(ids[0], ls, source="human") == p.labels.class_id(ls, "hip")
    audit = [r for r in p.audit_log(50) if r["action"] == "labels.import"]
    assert '"replace_human": true' in audit[0]["details"] and '"author": "carol"' in audit[0]["details"]


def test_bad_tables_are_one_clear_line(labelled, tmp_path):
    p, _ = labelled
    (tmp_path / "no_cols.csv").write_text("foo,bar\n1,2\n")
    with pytest.raises(ValueError, match=r"no_cols.csv: missing column\(s\) label_set, label, sop_instance_uid"):
        import_labels(p, tmp_path / "no_cols.csv")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="broken.parquet: not a readable parquet table"):
        import_labels(p, tmp_path / "broken.parquet")
    with pytest.raises(FileNotFoundError):
        import_labels(p, tmp_path / "missing.csv")


def test_cli_export_then_import_labels(labelled, tmp_path, capsys):
    from mskstudio.cli import main

    p, ids = labelled
    root = p.root
    p.close()
    assert main(["export-labels", str(root), str(tmp_path / "l.parquet"), "--label-set", "region"]) == 0
    assert main(["import-labels", str(root), str(tmp_path / "l.parquet")]) == 0
    out = capsys.readouterr()
    # Into the same project: the human rows become import rows, the model rows are there already.
    assert '"imported": 2,' in out.out and '"unchanged": 2,' in out.out
    assert main(["import-labels", str(root), str(tmp_path / "nothing.csv")]) != 0
    assert "nothing.csv: no such file" in capsys.readouterr().err
