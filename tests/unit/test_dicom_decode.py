"""Decoding, LUT pipeline, spacing and error handling of mskstudio.io.dicom."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_windowing, pixel_array
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from mskstudio.io.dicom import (
    DicomReadError,
    Window,
    analysis_array,
    is_dicom_file,
    read_dataset,
    read_radiograph,
    resize_area,
    scan_header,
    thumbnail_png,
)

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"

# Files whose codec we deliberately lack, with the reason the skip reports.
MISSING_CODEC = {
    "JPEG-lossy.dcm": "12-bit JPEG Extended needs pylibjpeg-libjpeg (GPL, not bundled)",
    "JPGExtended.dcm": "12-bit JPEG Extended needs pylibjpeg-libjpeg (GPL, not bundled)",
    "JPEG2000-embedded-sequence-delimiter.dcm": "openjpeg (pylibjpeg-openjpeg) rejects this malformed J2K codestream",
}
BROKEN = {"MR_truncated.dcm", "badVR.dcm"}  # deliberately corrupt; covered by the error tests


def _image_files() -> list[str]:
    names = []
    for p in sorted(TEST_FILES.glob("*.dcm")):
        try:
            ds = pydicom.dcmread(p, stop_before_pixels=True)
        except Exception:
            continue
        if "Rows" in ds and p.name not in BROKEN:
            names.append(p.name)
    return names


IMAGE_FILES = _image_files()


@pytest.mark.parametrize("name", IMAGE_FILES)
def test_decode_every_bundled_image(name):
    path = TEST_FILES / name
    if name in MISSING_CODEC:
        with pytest.raises(DicomReadError):
            read_radiograph(path)
        pytest.skip(MISSING_CODEC[name])
    hdr = scan_header(path)
    last = read_radiograph(path, frame=hdr.n_frames - 1)
    assert last.modality.shape == (hdr.rows, hdr.cols) and last.modality.dtype == np.float32
    assert np.isfinite(last.modality).all()
    u8 = last.render_u8()
    assert u8.dtype == np.uint8 and u8.shape == (hdr.rows, hdr.cols)
    assert analysis_array(last).dtype == np.uint16
    assert Image.open(io.BytesIO(thumbnail_png(last))).mode == "L"


def test_required_syntaxes_are_covered():
    syntaxes = {str(scan_header(TEST_FILES / n).transfer_syntax) for n in IMAGE_FILES if n not in MISSING_CODEC}
    for uid in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99",
                "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.70",
                "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.90",
                "1.2.840.10008.1.2.4.91"):
        assert uid in syntaxes, uid


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_bigendian.dcm",
                                  "MR_small_expb.dcm", "MR_small_implicit.dcm", "MR_small_jp2klossless.dcm",
                                  "MR_small_padded.dcm"])
def test_matches_uncompressed_reference(name):
    ref = read_radiograph(TEST_FILES / "MR_small.dcm").modality
    np.testing.assert_array_equal(read_radiograph(TEST_FILES / name).modality, ref)


@pytest.mark.parametrize("name", ["SC_rgb_jpeg_gdcm.dcm", "SC_rgb_gdcm_KY.dcm"])  # JPEG lossless P14 SV1, J2K
def test_lossless_rgb_matches_rle(name):
    rad = read_radiograph(TEST_FILES / name)
    np.testing.assert_array_equal(rad.modality, read_radiograph(TEST_FILES / "SC_rgb_rle.dcm").modality)
    assert any("luminance" in n for n in rad.notes)


def test_multiframe_each_frame_addressable():
    full = pixel_array(TEST_FILES / "rtdose.dcm")
    assert full.shape[0] == 15
    for k in (0, 7, 14):
        for name in ("rtdose.dcm", "rtdose_rle.dcm", "rtdose_expb.dcm"):
            np.testing.assert_array_equal(read_radiograph(TEST_FILES / name, frame=k).modality,
                                          full[k].astype(np.float32))
    with pytest.raises(DicomReadError, match="frame 15 out of range"):
        read_radiograph(TEST_FILES / "rtdose.dcm", frame=15)


def _synthetic(values: np.ndarray, **attrs) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # CR
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = generate_uid(), generate_uid(), "CR"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = values.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 1 if values.dtype.kind == "i" else 0
    for k, v in attrs.items():
        setattr(ds, k, v)
    ds.PixelData = values.astype(values.dtype.newbyteorder("<")).tobytes()
    return ds


def test_rescale_and_window_by_hand():
    stored = np.array([[0, 512], [1024, 2048]], dtype=np.uint16)
    ds = _synthetic(stored, RescaleSlope=2, RescaleIntercept=-1024, WindowCenter=[0, 40],
                    WindowWidth=[2049, 400], WindowCenterWidthExplanation=["WIDE", "NARROW"])
    rad = read_radiograph(ds)
    np.testing.assert_array_equal(rad.modality, [[-1024, 0], [1024, 3072]])
    assert rad.windows == [Window(0, 2049, "WIDE"), Window(40, 400, "NARROW")]
    # Linear window (PS3.3 C.11.2.1.2.1): y = (x - (c - 0.5)) / (w - 1) + 0.5, clipped.
    expected = np.clip((np.array([-1024, 0, 1024, 3072]) + 0.5) / 2048 + 0.5, 0, 1).reshape(2, 2)
    np.testing.assert_allclose(rad.normalised(), expected, atol=1e-6)
    np.testing.assert_array_equal(rad.render_u8(), [[0, 128], [255, 255]])
    # Same answer as pydicom's own windowing, rescaled to [0, 1].
    # pydicom outputs in its own [y_min, y_max]; two far-out probes give that range.
    probe = np.append(rad.modality.ravel(), [-1e6, 1e6]).astype(np.float64)
    ref = apply_windowing(probe, ds, index=0)
    ref = (ref[:-2] - ref[-2]) / (ref[-1] - ref[-2])
    np.testing.assert_allclose(rad.normalised().ravel(), ref, atol=1e-3)


def test_voi_lut_sequence_applied_exactly():
    stored = np.array([[0, 100], [200, 4095]], dtype=np.uint16)
    item = Dataset()
    item.LUTDescriptor = [256, 0, 8]
    item.LUTData = list(range(256))
    item.LUTExplanation = "RAMP"
    ds = _synthetic(stored, VOILUTSequence=[item])
    rad = read_radiograph(ds)
    assert rad.windows and rad.windows[0].explanation.startswith("VOI LUT")
    np.testing.assert_array_equal(rad.render_u8(), [[0, 100], [200, 255]])


def test_monochrome1_renders_like_monochrome2():
    rng = np.random.default_rng(0)
    values = rng.integers(0, 4096, (64, 48), dtype=np.uint16)
    m2 = read_radiograph(_synthetic(values))
    ds1 = _synthetic((4095 - values).astype(np.uint16), PhotometricInterpretation="MONOCHROME1")
    m1 = read_radiograph(ds1)
    assert m1.invert and not m2.invert
    np.testing.assert_allclose(m1.render_u8().astype(int), m2.render_u8().astype(int), atol=1)
    # A stored window, mirrored for the inverted data, gives the same picture.
    w2, w1 = Window(1500, 1000), Window(4095 - 1500 + 1, 1000)
    np.testing.assert_allclose(m1.render_u8(w1).astype(int), m2.render_u8(w2).astype(int), atol=1)
    np.testing.assert_allclose(analysis_array(m1).astype(int), analysis_array(m2).astype(int), atol=300)
    # PresentationLUTShape INVERSE on MONOCHROME2 also means "display inverted".
    assert read_radiograph(_synthetic(values, PresentationLUTShape="INVERSE")).invert


def test_spacing_sources(tmp_path):
    v = np.zeros((4, 4), np.uint16)
    cases = [({"PixelSpacing": [0.1, 0.12], "ImagerPixelSpacing": [0.2, 0.2]}, (0.1, 0.12), "pixel"),
             ({"ImagerPixelSpacing": [0.2, 0.25], "EstimatedRadiographicMagnificationFactor": 1.25}, (0.16, 0.2),
              "imager_corrected"),
             ({"ImagerPixelSpacing": [0.2, 0.2]}, (0.2, 0.2), "imager"),
             ({}, None, None)]
    for i, (attrs, spacing, source) in enumerate(cases):
        path = tmp_path / f"{i}.dcm"
        _synthetic(v, **attrs).save_as(path, enforce_file_format=True)
        for obj in (scan_header(path), read_radiograph(path)):
            assert obj.spacing_source == source
            assert spacing is None and obj.spacing_mm is None or np.allclose(obj.spacing_mm, spacing)


def test_header_fields(tmp_path):
    path = tmp_path / "h.dcm"
    ds = _synthetic(np.zeros((3, 5), np.int16), PatientID="X1", PatientBirthDate="20000101", StudyDate="20100101",
                    BurnedInAnnotation="YES", ViewPosition="AP", BodyPartExamined="KNEE")
    ds.save_as(path, enforce_file_format=True)
    h = scan_header(path)
    assert (h.rows, h.cols, h.n_frames, h.pixel_signed, h.bits_stored) == (3, 5, 1, True, 12)
    assert h.patient_age_years == pytest.approx(10.0, abs=0.01)
    assert h.burned_in_annotation is True and h.view == "AP" and h.body_part == "KNEE"
    assert is_dicom_file(path)


def test_resize_and_products():
    img = np.arange(600 * 500, dtype=np.float32).reshape(600, 500)
    small = resize_area(img, (120, 100))
    assert small.shape == (120, 100) and small.mean() == pytest.approx(img.mean(), rel=1e-4)
    rad = read_radiograph(_synthetic(np.tile(np.arange(300, dtype=np.uint16), (200, 1))))
    a = analysis_array(rad, long_side=512)  # never upsampled
    assert a.shape == (200, 300) and a.dtype == np.uint16 and a.max() == 65535 and a.min() == 0
    assert analysis_array(rad, long_side=150).shape == (100, 150)
    assert Image.open(io.BytesIO(thumbnail_png(rad, size=60))).size == (60, 40)


# ---------------------------------------------------------------- bad input
def _expect(path, fragment):
    with pytest.raises(DicomReadError) as exc:
        read_radiograph(path)
    assert fragment in exc.value.reason
    assert exc.value.path == str(path)
    return exc.value


def test_zero_byte_file(tmp_path):
    (tmp_path / "z.dcm").write_bytes(b"")
    _expect(tmp_path / "z.dcm", "0-byte file")
    with pytest.raises(DicomReadError, match="0-byte"):
        scan_header(tmp_path / "z.dcm")


def test_random_bytes_and_wrong_magic(tmp_path):
    (tmp_path / "r.dcm").write_bytes(os.urandom(4096))
    _expect(tmp_path / "r.dcm", "not a DICOM file")
    data = bytearray((TEST_FILES / "MR_small.dcm").read_bytes())
    data[128:132] = b"DACM"
    (tmp_path / "m.dcm").write_bytes(bytes(data))
    _expect(tmp_path / "m.dcm", "not a DICOM file")
    assert not is_dicom_file(tmp_path / "r.dcm")


def test_truncated_file(tmp_path):
    for name in ("MR_small.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm"):
        data = (TEST_FILES / name).read_bytes()
        path = tmp_path / name
        path.write_bytes(data[: len(data) // 2])
        err = _expect(path, "")
        assert "truncated" in err.reason or "corrupt" in err.reason or "cannot decode" in err.reason, err.reason
    _expect(TEST_FILES / "MR_truncated.dcm", "truncated pixel data")


def test_no_pixel_data(tmp_path):
    _expect(TEST_FILES / "rtplan.dcm", "no pixel data")
    ds = _synthetic(np.zeros((2, 2), np.uint16))
    del ds.PixelData
    ds.save_as(tmp_path / "np.dcm", enforce_file_format=True)
    _expect(tmp_path / "np.dcm", "no pixel data")


def test_unsupported_transfer_syntax(tmp_path):
    ds = pydicom.dcmread(TEST_FILES / "MR_small.dcm")
    ds.file_meta.TransferSyntaxUID = "1.2.840.99999.1.2.3"
    ds.save_as(tmp_path / "u.dcm")
    err = _expect(tmp_path / "u.dcm", "unsupported transfer syntax 1.2.840.99999.1.2.3")
    with pytest.raises(DicomReadError):
        scan_header(tmp_path / "u.dcm")
    assert err.reason
    _expect(TEST_FILES / "JPGExtended.dcm", "pylibjpeg-libjpeg")


def test_read_dataset_validates():
    assert read_dataset(TEST_FILES / "CT_small.dcm").Rows == 128
    with pytest.raises(DicomReadError, match="no pixel data"):
        read_dataset(TEST_FILES / "test-SR.dcm")
