"""Clinical CSV import: good rows land, bad rows are listed with line numbers."""

from __future__ import annotations

import pytest

from mskstudio.io.clinical import run_import_clinical
from mskstudio.io.deid import pseudonym
from mskstudio.jobs import JobContext


@pytest.fixture
def project_with_patients(new_project):
    p = new_project
    for original in ("MRN-1", "MRN-2", "MRN-3"):
        pid = p.images.patient_id(pseudonym(p.secret, original))
        study = p.images.study_id(pid, f"1.2.{original[-1]}")
        p.images.add_image({"study_id": study, "sop_uid": f"1.2.{original[-1]}.1", "rows": 8, "cols": 8}, None)
    return p


def test_clinical_csv_with_bad_rows(project_with_patients, tmp_path):
    p = project_with_patients
    csv_path = tmp_path / "clinical.csv"
    csv_path.write_text(
        "patient_id,age,sex,site,diagnosis,dignity,diagnosis_source,lab_ALP,lab_ALP_unit,lab_ALP_low,"
        "lab_ALP_high,lab_CRP,shoe_size\n"
        "MRN-1,14,F,femur,ewing_sarcoma,malignant,histology,180,U/L,40,130,,42\n"
        "MRN-2,abc,M,knee,osteosarcoma,malignant,histology,90,U/L,40,130,3,40\n"
        "MRN-3,30,M,hand,enchondroma,sort-of,histology,,,,,,41\n"
        "MRN-404,30,M,hand,enchondroma,benign,histology,,,,,,41\n"
        f"{pseudonym(p.secret, 'MRN-3')},31,M,hand,enchondroma,benign,follow_up,,,,,1.5,41\n"
    )
    result = run_import_clinical(p, {"path": str(csv_path)}, JobContext.null())
    assert result["rows"] == 5 and result["imported"] == 2
    assert result["unknown_columns"] == ["shoe_size"]
    bad = dict(result["bad_rows"])
    assert set(bad) == {3, 4, 5}
    assert "age" in bad[3] and "dignity" in bad[4] and "not in this project" in bad[5]
    first = p.images.find_patient(pseudonym(p.secret, "MRN-1"))
    record = p.images.clinical(first.id)
    assert (record["age_years"], record["sex"], record["dignity"]) == (14.0, "F", "malignant")
    labs = {r["name"]: r for r in p.images.labs(first.id)}
    assert labs["ALP"]["value"] == 180 and labs["ALP"]["unit"] == "U/L" and labs["ALP"]["ref_high"] == 130
    assert labs["CRP"]["value"] is None  # measured as missing, not dropped
    diag = p.labels.label_set("diagnosis")
    assert set(p.labels.counts(diag)) == {"ewing_sarcoma", "enchondroma"}
    assert "clinical.import" in [r["action"] for r in p.audit_log()]


def test_csv_without_patient_column(new_project, tmp_path):
    bad = tmp_path / "x.csv"
    bad.write_text("name,age\nA,3\n")
    with pytest.raises(ValueError, match="no patient_id column"):
        run_import_clinical(new_project, {"path": str(bad)}, JobContext.null())
    with pytest.raises(ValueError, match="no such CSV"):
        run_import_clinical(new_project, {"path": str(tmp_path / "none.csv")}, JobContext.null())
