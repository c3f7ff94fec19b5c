"""Phantom archive: determinism, coverage, lossless DICOM round trip, truth masks, PHI."""

from __future__ import annotations

import csv
import hashlib

import numpy as np
import pydicom
import pytest
from PIL import Image

from mskstudio.io import phantoms as ph
from mskstudio.io.phantom_dicom import SYNTAXES
from mskstudio.jobs import Cancelled, CancelToken, JobContext, RecordingSink

N, SEED = 90, 3


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantoms")
    sink = RecordingSink()
    manifest = ph.generate_archive(out, n_images=N, seed=SEED, size="small", workers=2,
                                   ctx=JobContext(sink), non_msk_fraction=0.1)
    return out, manifest, ph.read_manifest(manifest), sink


@pytest.fixture(scope="module")
def rendered():
    """The planned jobs re-rendered in memory: the exact arrays the files were encoded from."""
    jobs, _ = ph.plan_archive(N, SEED, "small", non_msk_fraction=0.1)
    return {j["case"].file: ph.render_job(j) for j in jobs}


def test_api_names():
    assert len(ph.REGIONS) == 10 and set(ph.NON_MSK) == {"chest", "abdomen", "screenshot", "blank"}
    assert ph.DIAGNOSES[0] == "healthy" and len(ph.DIAGNOSES) == 7


def test_manifest_and_coverage(archive):
    out, manifest, rows, sink = archive
    assert len(rows) == N
    assert list(rows[0]) == ph.MANIFEST_COLUMNS
    msk = [r for r in rows if r["is_msk"] == "1"]
    assert {r["region"] for r in msk} == set(ph.REGIONS)
    assert {r["region"] for r in rows if r["is_msk"] == "0"} == set(ph.NON_MSK)
    assert {r["diagnosis"] for r in msk} == set(ph.DIAGNOSES)
    assert {r["transfer_syntax"] for r in rows} == set(SYNTAXES)
    assert {r["photometric"] for r in rows} == {"MONOCHROME1", "MONOCHROME2"}
    assert {r["view"] for r in msk} == {"AP", "LAT"}
    assert any(not r["file"].endswith(".dcm") for r in rows)
    assert all((out / r["file"]).is_file() for r in rows)
    # a patient keeps region and diagnosis over all studies
    by_patient = {}
    for r in msk:
        by_patient.setdefault(r["patient_key"], set()).add((r["region"], r["diagnosis"], r["laterality"]))
    assert all(len(v) == 1 for v in by_patient.values())
    assert sink.progress and sink.progress[-1][0] == pytest.approx(1.0)


def test_clinical_csv(archive):
    out, _, rows, _ = archive
    with open(out / "clinical.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        head = reader.fieldnames
        clin = list(reader)
    assert head[:8] == ["patient_id", "age", "sex", "site", "position", "diagnosis", "dignity", "diagnosis_source"]
    for lab in ("ALP", "LDH", "CRP", "WBC"):
        assert [f"lab_{lab}", f"lab_{lab}_unit", f"lab_{lab}_low", f"lab_{lab}_high"] == \
            head[head.index(f"lab_{lab}"):head.index(f"lab_{lab}") + 4]
    assert {c["patient_id"] for c in clin} == {r["patient_key"] for r in rows}
    assert all(c["dignity"] == ph.DIGNITY[c["diagnosis"]] for c in clin)
    assert all(c["diagnosis_source"] in ("histology", "tumour_board", "follow_up") for c in clin)
    assert all(5 <= int(c["age"]) <= 25 for c in clin if c["diagnosis"] == "ewing_sarcoma")


def test_determinism(tmp_path):
    a = ph.generate_archive(tmp_path / "a", n_images=10, seed=11, size="small", workers=1)
    b = ph.generate_archive(tmp_path / "b", n_images=10, seed=11, size="small", workers=2)
    assert a.read_text() == b.read_text()
    for r in ph.read_manifest(a):
        ha = hashlib.sha256((a.parent / r["file"]).read_bytes()).hexdigest()
        assert ha == hashlib.sha256((b.parent / r["file"]).read_bytes()).hexdigest()
    c = ph.generate_archive(tmp_path / "c", n_images=10, seed=12, size="small", workers=1)
    assert c.read_text() != a.read_text()


def test_dicom_decodes_losslessly(archive, rendered):
    out, _, rows, _ = archive
    for r in rows:
        ds = pydicom.dcmread(out / r["file"])
        assert ds.file_meta.TransferSyntaxUID == r["transfer_syntax"]
        _, img, stored, slope, intercept, _, _ = rendered[r["file"]]
        np.testing.assert_array_equal(ds.pixel_array, stored)
        assert ds.Modality in ("CR", "DX") and ds.BitsAllocated == 16
        assert int(ds.BitsStored) == int(r["bits_stored"]) and ds.PhotometricInterpretation == r["photometric"]
        assert float(ds.RescaleSlope) == slope and float(ds.RescaleIntercept) == intercept
        assert ds.SOPInstanceUID == r["sop_uid"] and ds.StudyInstanceUID == r["study_uid"]
        assert "PixelSpacing" in ds if ds.Modality == "DX" else "EstimatedRadiographicMagnificationFactor" in ds
        # MONOCHROME1 stores bone dark: stored values fall where the (bone-bright) image rises
        corr = np.corrcoef(img.ravel(), stored.astype(np.float64).ravel())[0, 1]
        if img.std() > 0.01:
            assert (corr < -0.9) if r["photometric"] == "MONOCHROME1" else (corr > 0.9)


def test_masks_and_boxes(archive):
    out, _, rows, _ = archive
    lesion_rows = [r for r in rows if r["mask"]]
    assert len(lesion_rows) >= 10
    for r in rows:
        if r["diagnosis"] in ("healthy", ""):
            assert r["mask"] == "" and r["box_x0"] == ""
    separable = 0
    for r in lesion_rows:
        mask = np.asarray(Image.open(out / r["mask"])) > 0
        ds = pydicom.dcmread(out / r["file"])
        img = ds.pixel_array.astype(np.float64)
        assert mask.shape == img.shape
        ys, xs = np.nonzero(mask)
        assert (xs.min(), ys.min(), xs.max(), ys.max()) == tuple(int(r[k])
                                                                 for k in ("box_x0", "box_y0", "box_x1", "box_y1"))
        # lesion pixels vs a ring of surrounding pixels (same box, grown): mean or texture differs
        x0, y0, x1, y1 = xs.min(), ys.min(), xs.max(), ys.max()
        g = max(x1 - x0, y1 - y0) // 2 + 2
        ring = np.zeros_like(mask)
        ring[max(y0 - g, 0):y1 + g, max(x0 - g, 0):x1 + g] = True
        ring &= ~mask
        inside, around = img[mask], img[ring]
        d_mean = abs(inside.mean() - around.mean()) / (around.std() + 1e-6)
        d_std = abs(np.log((inside.std() + 1e-6) / (around.std() + 1e-6)))
        separable += (d_mean > 0.15) or (d_std > 0.15)
    assert separable >= 0.8 * len(lesion_rows)


def test_fake_phi_present(archive):
    out, _, rows, _ = archive
    for r in rows[:20]:
        ds = pydicom.dcmread(out / r["file"])
        assert ds.PatientID == r["patient_key"] and "^" in str(ds.PatientName)
        for kw in ("PatientBirthDate", "PatientAddress", "InstitutionName", "ReferringPhysicianName",
                   "OperatorsName", "AccessionNumber", "OtherPatientIDs", "StudyDescription"):
            assert str(ds.get(kw, "")), kw
        last, first = str(ds.PatientName).split("^")[:2]
        assert first.title() in ds.ImageComments and last.title() in ds.ImageComments
        assert ds.BurnedInAnnotation == "YES"
        if ds.file_meta.TransferSyntaxUID != pydicom.uid.DeflatedExplicitVRLittleEndian:
            assert str(ds.PatientName).encode() in (out / r["file"]).read_bytes()


def test_render_case_shapes():
    rng = np.random.default_rng(0)
    case = ph.PhantomCase("knee", diagnosis="osteosarcoma", position="metaphysis", lesion_bone="femur")
    img, mask = ph.render_case(case, (300, 240), rng)
    assert img.shape == (300, 240) and img.dtype == np.float32 and img.min() >= 0 and img.max() <= 1
    assert mask is not None and mask.shape == img.shape and mask.any()
    img, mask = ph.render_case(ph.PhantomCase("screenshot", is_msk=0, laterality=""), (200, 260), rng)
    assert mask is None and img.shape == (200, 260)


def test_cancel(tmp_path):
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        ph.generate_archive(tmp_path, n_images=4, seed=0, size="small", workers=1, ctx=JobContext(token=token))
