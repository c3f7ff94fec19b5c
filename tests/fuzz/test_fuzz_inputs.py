"""Hostile clinical CSVs and mask manifests: every file ends in a summary whose rows add up,
or in one clear ValueError line naming the file; never another exception."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mskstudio.io.clinical import run_import_clinical
from mskstudio.io.exports.annotations import import_masks
from mskstudio.jobs import JobContext
from mskstudio.store import Project

PATIENTS = ("P1", "P2", "P3")
HEADER = "patient_id,age,sex,diagnosis,dignity,lab_CRP,lab_CRP_unit,report"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    p = Project.create(tmp_path_factory.mktemp("fuzzcsv") / "p.mskproj")
    for key in PATIENTS:
        pid = p.images.patient_id(key)
        sid = p.images.study_id(pid, f"S{key}")
        p.images.add_image({"study_id": sid, "sop_uid": f"1.{key}", "rows": 8, "cols": 8}, None)
    yield p
    p.close()


def _check_clinical(project, path):
    try:
        out = run_import_clinical(project, {"path": str(path)}, JobContext.null())
    except ValueError as exc:
        message = str(exc)
        assert message.startswith(str(path)) and "\n" not in message, message
        return None
    assert out["imported"] + out["n_bad_rows"] == out["rows"]
    assert all(reason and "\n" not in reason for _, reason in out["bad_rows"])
    assert project.db.scalar("PRAGMA integrity_check") == "ok"
    return out


cells = st.one_of(
    st.sampled_from(["", "P1", "P2", "P3", "nobody", "42", "-3", "1e999", "nan", "inf", "F", "m", "X",
                     "osteosarcoma", "benign", "malign", "3,5", "1.2.3", "\x00", '"', '"unclosed', ";", "\t"]),
    st.text(max_size=30),
    st.integers(min_value=1000, max_value=300_000).map(lambda n: "R" * n),  # huge free text
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.lists(cells, min_size=0, max_size=10), max_size=8),
       encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252", "shift_jis"]),
       header=st.sampled_from([HEADER, HEADER.upper(), HEADER.replace(",", ";"), "id,age", "", "patient_id"]),
       junk=st.binary(max_size=40))
def test_hostile_clinical_csv(project, tmp_path, rows, encoding, header, junk):
    text = header + "\n" + "\n".join(",".join(r) for r in rows)
    path = tmp_path / "clinical.csv"
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:
        data = text.encode("utf-8", "replace")
    path.write_bytes(data + (junk if len(rows) % 2 else b""))
    _check_clinical(project, path)


def test_clinical_csv_cases_by_hand(project, tmp_path):
    path = tmp_path / "c.csv"
    path.write_bytes((HEADER + "\nP1,40,F,,,,,caf\xe9\n").encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8 text .*UTF-8"):
        run_import_clinical(project, {"path": str(path)}, JobContext.null())
    path.write_text(HEADER + "\nP1,40,F,,,,,ok\n", encoding="utf-16")  # Excel's "Unicode text" keeps a BOM
    assert _check_clinical(project, path)["imported"] == 1
    path.write_text(HEADER + "\nP1,40,F,,,,," + "x" * 1_000_000 + "\n", encoding="utf-8")
    assert _check_clinical(project, path)["imported"] == 1  # a 1 MB report is not an error
    path.write_text(HEADER + "\nP2,abc,F\nP2,30,M\nP3,20,Q\nP1,nan\nP1,40,F,,,inf\n", encoding="utf-8")
    out = _check_clinical(project, path)
    reasons = dict(out["bad_rows"])
    assert "age 'abc' is not a number" in reasons[2]
    assert "already on line 2" in reasons[3]  # duplicate patient: the first row counts
    assert "sex 'Q'" in reasons[4] and "finite" in reasons[5] and "already on line 5" in reasons[6]
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="empty CSV"):
        run_import_clinical(project, {"path": str(path)}, JobContext.null())


def _png_header_only(width, height):
    """A PNG that claims width x height pixels (a decompression bomb's header) with no data."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + \
        chunk(b"IEND", b"")


def test_hostile_mask_manifest(tmp_path, phantom_project):
    from PIL import Image

    from mskstudio.io.deid import pseudo_uid

    image_id = phantom_project.images.ids()[0]
    row = phantom_project.images.record(image_id)
    # A manifest row matches an image by the keyed hash of its original UID: fake one.
    phantom_project.db.execute("UPDATE images SET original_sop_hash = ? WHERE id = ?",
                               (pseudo_uid(phantom_project.secret, "9.9.9"), image_id))
    good = np.zeros((row.rows, row.cols), np.uint8)
    good[2:5, 2:5] = 255
    Image.fromarray(good).save(tmp_path / "good.png")
    Image.fromarray(good[:5, :5]).save(tmp_path / "small.png")
    (tmp_path / "junk.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "bomb.png").write_bytes(_png_header_only(60000, 60000))
    lines = ["sop_uid,mask", "9.9.9,missing.png", "9.9.9,junk.png", "9.9.9,bomb.png", "9.9.9,small.png",
             "1.2.3,good.png", "9.9.9,", "9.9.9,good.png", "9.9.9,good.png,extra,fields", "9.9.9"]
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n")
    stats = import_masks(phantom_project, manifest)
    assert stats["bad_rows"] == 3 and stats["bad_size"] == 1 and stats["unmatched"] == 1
    assert stats["imported"] == 2 and stats["no_mask"] == 2
    assert [line for line, _ in stats["problems"]] == [2, 3, 4]
    for bad, message in ((b"mask\nx.png\n", "needs the columns sop_uid"), (b"\xff\xfe\x00junk", "not UTF-8"),
                         (b'sop_uid,mask\n"9.9.9,\x00', "")):
        manifest.write_bytes(bad)
        try:
            import_masks(phantom_project, manifest)
        except ValueError as exc:
            assert message in str(exc) and str(exc).startswith(str(manifest))
    assert phantom_project.db.scalar("PRAGMA integrity_check") == "ok"
