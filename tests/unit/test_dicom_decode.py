"""Decoding, LUT pipeline, spacing and error handling of mskstudio.io.dicom."""

from __future__ import annotations

import functools
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
    gpl_jpeg_available,
    is_dicom_file,
    read_dataset,
    read_radiograph,
    read_stored_frame,
    resize_area,
    scan_header,
    thumbnail_png,
)
from mskstudio.io.phantoms import PhantomCase, render_case
from mskstudio.io.pixels import analysis_and_thumbnail, fit_long_side, window_sample
from mskstudio.io.stored_products import analysis_and_thumbnail_from_stored, block_mean, shrink_stored

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"

# Files whose codec we deliberately lack, with the reason the skip reports.
MISSING_CODEC = {
    "JPEG2000-embedded-sequence-delimiter.dcm": "openjpeg (pylibjpeg-openjpeg) rejects this malformed J2K codestream",
}
if gpl_jpeg_available():  # the user's opt-in GPL codec decodes 12-bit lossy JPEG ...
    MISSING_CODEC["JPEG-lossy.dcm"] = "libjpeg rejects this file's scan parameters (as in pydicom's own tests)"
else:
    MISSING_CODEC.update({name: "12-bit JPEG Extended needs pylibjpeg-libjpeg (GPL, not bundled)"
                          for name in ("JPEG-lossy.dcm", "JPGExtended.dcm")})
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


# ---------------------------------------------------------------- fast import products
# The importer shrinks stored integers first and applies rescale, window and
# inversion to the small image; the reference windows the full-resolution float
# image, then resizes.  Where the block factor divides the size they differ only
# where a block straddles a clipping edge of the window.  Elsewhere both resizes
# approximate a true area average differently (the fast one more closely:
# test_fast_shrink_is_closer_to_true_area_mean), so the bound is wider.
# Bounds are fractions of the 16-bit range: (mean, 99th percentile).
TOLERANCE = {"exact-blocks": (1e-4, 0.002), "partial-blocks": (0.005, 0.04)}


@functools.lru_cache(maxsize=1)
def _phantom_stored() -> np.ndarray:
    """A realistic radiograph (bone, soft tissue, noise), 12-bit; 1537x1283 is not
    divisible by the block factor 3, so partial edge blocks are exercised."""
    img, _ = render_case(PhantomCase(region="knee", diagnosis="osteosarcoma"), (1537, 1283), 0)
    return np.round(img * 4095).astype(np.uint16)


FAST_CASES = {
    "monochrome2": lambda v: _synthetic(v),
    "monochrome1": lambda v: _synthetic((4095 - v).astype(np.uint16), PhotometricInterpretation="MONOCHROME1"),
    "signed": lambda v: _synthetic((v.astype(np.int32) - 2048).astype(np.int16)),
    "rescaled": lambda v: _synthetic(v, RescaleSlope=0.25, RescaleIntercept=-1000),
    "decreasing rescale": lambda v: _synthetic(v, RescaleSlope=-2, RescaleIntercept=8190),
    # Unused high bits set: pydicom masks them; the fast path must notice and do the same.
    "garbage high bits": lambda v: _synthetic(v | np.uint16(0xA000)),
    "stored window": lambda v: _synthetic(v, WindowCenter=1800, WindowWidth=1200),
}


def _assert_fast_matches_reference(ds: Dataset, tolerance: tuple[float, float], frame: int = 0) -> np.ndarray:
    stored = read_stored_frame(ds, frame)
    assert stored is not None
    rad = read_radiograph(ds, frame=frame)
    # Same auto window as the reference measures on the full-resolution modality image.
    fast_window = stored.auto_window(window_sample(stored.values), 0.5, 99.5)
    ref_window = rad.auto_window(0.5, 99.5)
    assert fast_window.center == pytest.approx(ref_window.center, rel=1e-4, abs=1e-3)
    assert fast_window.width == pytest.approx(ref_window.width, rel=1e-4)
    fast, fast_thumb = analysis_and_thumbnail_from_stored(stored)
    reference = analysis_array(rad)  # full decode -> LUT + window -> resize
    assert fast.dtype == np.uint16 and fast.shape == reference.shape
    diff = np.abs(fast.astype(np.int64) - reference.astype(np.int64)) / 65535.0
    assert diff.mean() < tolerance[0] and np.percentile(diff, 99) < tolerance[1], \
        (diff.mean(), np.percentile(diff, 99))
    _, ref_thumb = analysis_and_thumbnail(rad)
    fast_png, ref_png = (np.asarray(Image.open(io.BytesIO(t)), dtype=np.int64) for t in (fast_thumb, ref_thumb))
    assert fast_png.shape == ref_png.shape and np.abs(fast_png - ref_png).mean() < 1.0
    return fast


SHAPES = {"partial-blocks": (1537, 1283), "exact-blocks": (1536, 1281)}  # 1536 / 512 = 3


@pytest.mark.parametrize("case", sorted(FAST_CASES))
@pytest.mark.parametrize("blocks", sorted(SHAPES))
def test_fast_analysis_cache_matches_reference(case, blocks):
    rows, cols = SHAPES[blocks]
    values = np.ascontiguousarray(_phantom_stored()[:rows, :cols])
    fast = _assert_fast_matches_reference(FAST_CASES[case](values), TOLERANCE[blocks])
    assert fast.max() > 60000 and fast.min() < 5000  # a real picture, not a flat one


def test_fast_analysis_cache_multiframe():
    v = _phantom_stored()[:1024, :768]
    frames = np.stack([v, v[::-1], v // 2 + 1000])
    ds = _synthetic(frames[0])
    ds.NumberOfFrames = 3
    ds.PixelData = frames.astype("<u2").tobytes()
    results = [_assert_fast_matches_reference(ds, TOLERANCE["exact-blocks"], frame=k) for k in range(3)]
    assert not np.array_equal(results[0], results[1])  # each frame really is its own
    assert not np.array_equal(results[0], results[2])


def _true_area_mean(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Exact area average: output (i, j) is the mean over its footprint, fractional pixels weighted."""
    def weights(n: int, m: int) -> np.ndarray:
        edges = np.arange(m + 1) * (n / m)
        pixel = np.arange(n)
        overlap = np.clip(np.minimum(edges[1:, None], pixel + 1) - np.maximum(edges[:-1, None], pixel), 0, None)
        return overlap / overlap.sum(axis=1, keepdims=True)

    return weights(values.shape[0], shape[0]) @ values.astype(np.float64) @ weights(values.shape[1], shape[1]).T


def test_fast_shrink_is_closer_to_true_area_mean():
    values = _phantom_stored()  # 1537 x 1283: no whole factor fits
    shape = fit_long_side(values.shape, 512)
    truth = _true_area_mean(values, shape)
    fast_error = np.abs(shrink_stored(values, shape) - truth).mean()
    reference_error = np.abs(resize_area(values.astype(np.float32), shape) - truth).mean()
    assert fast_error < reference_error
    assert fast_error < 0.003 * 4095


def test_block_mean_partial_blocks_exact():
    values = np.arange(7 * 5, dtype=np.uint16).reshape(7, 5) * 1000
    mean = block_mean(values, 3, 2)
    assert mean.shape == (3, 3)
    assert mean[0, 0] == pytest.approx(values[:3, :2].mean())
    assert mean[2, 2] == pytest.approx(values[6:, 4:].mean())  # a 1x1 corner block
    assert mean[1, 2] == pytest.approx(values[3:6, 4:].mean())
    signed = (values.astype(np.int32) - 20000).astype(np.int16)
    assert block_mean(signed, 3, 2)[2, 1] == pytest.approx(signed[6:, 2:4].mean())


def test_stored_frame_only_for_grey_linear_images():
    assert read_stored_frame(pydicom.dcmread(TEST_FILES / "SC_rgb_gdcm_KY.dcm")) is None
    ds = _synthetic(np.zeros((4, 4), np.uint16))
    item = Dataset()
    item.LUTDescriptor, item.LUTData, item.ModalityLUTType = [4096, 0, 16], list(range(4096)), "US"
    ds.ModalityLUTSequence = [item]
    assert read_stored_frame(ds) is None  # non-linear modality LUTs keep the full float path


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
    if not gpl_jpeg_available():
        _expect(TEST_FILES / "JPGExtended.dcm", "pylibjpeg-libjpeg")


def test_read_dataset_validates():
    assert read_dataset(TEST_FILES / "CT_small.dcm").Rows == 128
    with pytest.raises(DicomReadError, match="no pixel data"):
        read_dataset(TEST_FILES / "test-SR.dcm")
