"""Pixel-correct DICOM reading for radiographs (CR, DX, secondary capture).

Pipeline (PS3.3 C.11 / C.7.6.3): stored values -> Modality LUT (rescale or
ModalityLUTSequence) -> VOI LUT / window -> Presentation (MONOCHROME1 or
PresentationLUTShape INVERSE means "display inverted").  ``Radiograph`` keeps
the full-precision modality values (float32) and an ``invert`` flag; windowing
and inversion happen only when rendering, so bone is always bright on screen
and in training arrays.  8-bit appears only in ``render_u8``/thumbnails.

Decoding goes through pydicom's pixel handlers (``pydicom.pixels``) with the
pylibjpeg / pyjpegls / python-gdcm plugins.  No Qt here.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from struct import error as struct_error

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut, get_decoder, pixel_array
from pydicom.uid import UID

from mskstudio.io.dicom_attributes import (
    age_years,
    frame_attributes,
    number_of,
    spacing_of,
    text_of,
    windows_of,
)
from mskstudio.io.pixels import (  # noqa: F401 - re-exported: callers read and render through dicom
    Radiograph,
    Window,
    analysis_and_thumbnail,
    analysis_array,
    resize_area,
    thumbnail_png,
)
from mskstudio.io.stored_products import StoredFrame, analysis_and_thumbnail_from_stored

PathLike = str | os.PathLike

__all__ = [
    "DicomReadError", "Window", "HeaderInfo", "Radiograph", "is_dicom_file", "scan_header",
    "read_dataset", "read_radiograph", "read_stored_frame", "analysis_array", "analysis_and_thumbnail",
    "thumbnail_png", "resize_area", "decoder_for", "frame_products",
]


class DicomReadError(Exception):
    """A file that is not a readable image DICOM; ``reason`` is short and human."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


# Plugin preference: the permissive (MIT) pyjpegls/pylibjpeg stack first, pillow,
# then python-gdcm which is the only non-GPL decoder for JPEG lossless (process 14).
# pyjpegls (CharLS) leads: it decodes only JPEG-LS, and where the optional GPL libjpeg
# is installed pylibjpeg would otherwise take JPEG-LS too, 4x slower (2500x3000:
# 1.9 instead of 7.2 images/s with 2 processes).
_PLUGIN_ORDER = ("pyjpegls", "pylibjpeg", "pydicom", "pillow", "gdcm")
_INSTALL_HINT = {
    "1.2.840.10008.1.2.4.57": "python-gdcm",
    "1.2.840.10008.1.2.4.70": "python-gdcm",
    "1.2.840.10008.1.2.4.80": "pyjpegls or python-gdcm",
    "1.2.840.10008.1.2.4.81": "pyjpegls or python-gdcm",
    "1.2.840.10008.1.2.4.90": "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.91": "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.5": "pylibjpeg-rle",
}


# ---------------------------------------------------------------- header scan
# Everything scan_header needs; reading only these tags makes pydicom skip
# value conversion for the rest (the main cost of a header read).
_HEADER_KEYWORDS = (
    "SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
    "PatientID", "PatientName", "PatientSex", "PatientAge", "PatientBirthDate", "Modality",
    "StudyDate", "AcquisitionDate", "SeriesDate", "ContentDate", "StudyDescription",
    "Manufacturer", "ManufacturerModelName", "InstitutionName", "BodyPartExamined", "ViewPosition",
    "ImageLaterality", "Laterality", "BurnedInAnnotation", "PixelSpacing", "ImagerPixelSpacing",
    "EstimatedRadiographicMagnificationFactor", "SamplesPerPixel", "PhotometricInterpretation",
    "Rows", "Columns", "NumberOfFrames", "BitsAllocated", "BitsStored", "PixelRepresentation",
    "WindowCenter", "WindowWidth", "WindowCenterWidthExplanation", "RescaleSlope",
    "RescaleIntercept", "PresentationLUTShape", "VOILUTSequence",
    "SharedFunctionalGroupsSequence",  # enhanced files: spacing, rescale, windows (functional_groups)
)


@dataclass
class HeaderInfo:
    path: str
    sop_uid: str
    study_uid: str
    series_uid: str
    sop_class_uid: str
    patient_id: str
    patient_name: str
    patient_sex: str
    patient_age_years: float | None
    modality: str
    rows: int
    cols: int
    n_frames: int
    bits_allocated: int
    bits_stored: int
    pixel_signed: bool
    photometric: str
    samples_per_pixel: int
    transfer_syntax: str
    spacing_mm: tuple[float, float] | None
    spacing_source: str | None
    windows: list[Window]
    rescale_slope: float
    rescale_intercept: float
    manufacturer: str
    model: str
    institution: str
    body_part: str
    view: str
    laterality: str
    study_date: str
    acquisition_date: str
    study_description: str
    burned_in_annotation: bool | None


def is_dicom_file(path: PathLike) -> bool:
    """Cheap sniff: 'DICM' at offset 128, or a plausible preamble-less implicit-VR start
    (an even group 0002/0008 tag with a sane 32-bit length)."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return looks_like_dicom(head)


def looks_like_dicom(head: bytes) -> bool:
    """``is_dicom_file`` on the first 132 bytes already read."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    if len(head) < 8:
        return False
    group, elem = int.from_bytes(head[0:2], "little"), int.from_bytes(head[2:4], "little")
    if group not in (0x0002, 0x0008) or elem >= 0x0100:
        return False
    explicit_vr = head[4:6].isalpha() and head[4:6].isupper()  # e.g. b"CS", b"UI"
    return explicit_vr or int.from_bytes(head[4:8], "little") < 0x10000


def _fail(path, reason: str):
    raise DicomReadError(path, reason)


def _open(path: PathLike, *, stop_before_pixels: bool, specific_tags=None, data: bytes | None = None) -> Dataset:
    """dcmread with validation; every failure becomes a DicomReadError with a short reason.
    ``data``: the file's bytes, already read (the importer reads each file once)."""
    p = Path(path)
    try:
        size = p.stat().st_size if data is None else len(data)
    except OSError as e:
        _fail(path, f"cannot open file ({e.strerror or e})")
    if size == 0:
        _fail(path, "0-byte file")

    def source():
        return p if data is None else io.BytesIO(data)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = pydicom.dcmread(source(), stop_before_pixels=stop_before_pixels, specific_tags=specific_tags)
            except InvalidDicomError:
                # Old ACR-NEMA style files lack the preamble; pydicom only reads them
                # with force=True, which also "reads" any garbage, so sniff first and
                # demand a recognisable SOP Class afterwards.
                if not (is_dicom_file(p) if data is None else looks_like_dicom(data[:132])):
                    _fail(path, "not a DICOM file (no DICM preamble)")
                ds = pydicom.dcmread(source(), stop_before_pixels=stop_before_pixels,
                                     specific_tags=specific_tags, force=True)
                if "SOPClassUID" not in ds and "PixelData" not in ds and "Rows" not in ds:
                    _fail(path, "not a DICOM file (no DICM preamble)")
    except DicomReadError:
        raise
    except (EOFError, OSError, ValueError, KeyError, TypeError, struct_error) as e:
        _fail(path, f"truncated or corrupt file ({type(e).__name__}: {str(e)[:80]})")
    ts = ds.file_meta.get("TransferSyntaxUID") if getattr(ds, "file_meta", None) is not None else None
    if ts is None:
        # Preamble-less files: pydicom guessed the encoding; record what it used.
        ts = pydicom.uid.ImplicitVRLittleEndian if ds.original_encoding[0] else pydicom.uid.ExplicitVRLittleEndian
        ds.file_meta = pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ts
    return ds


def _check_image(path, ds: Dataset, *, pixels_read: bool) -> None:
    if "Rows" not in ds or "Columns" not in ds or "BitsAllocated" not in ds:
        if "PixelData" in ds:
            _fail(path, "missing image pixel module (Rows/Columns/BitsAllocated)")
        # pydicom may drop everything it read when EOF hits an undefined-length item.
        _fail(path, "truncated pixel data" if len(ds) == 0 and _has_pixel_tag(path) else "no pixel data")
    if pixels_read and "PixelData" not in ds:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            _fail(path, "float pixel data is not a radiograph")
        # pydicom silently drops an encapsulated PixelData cut off before its
        # sequence delimiter; the tag's bytes in the file tell the two cases apart.
        _fail(path, "truncated pixel data" if _has_pixel_tag(path) else "no pixel data")
    ts = UID(ds.file_meta.TransferSyntaxUID)
    try:
        dec = get_decoder(ts)
    except NotImplementedError:
        _fail(path, f"unsupported transfer syntax {ts}: not an image transfer syntax pydicom knows")
    if ts == pydicom.uid.JPEGExtended12Bit and int(number_of(ds, "BitsStored", 8)) > 8 \
            and not gpl_jpeg_available():
        # Neither pillow nor pydicom's gdcm plugin decode 12-bit lossy JPEG; only the
        # GPL pylibjpeg-libjpeg does, which we do not ship: the user may opt in.
        _fail(path, f"unsupported transfer syntax {ts} (12-bit JPEG Extended): "
                    "needs pylibjpeg-libjpeg (GPL, not bundled; pip install 'mskstudio[gpl-codecs]')")
    if not dec.is_available:
        _fail(path, f"unsupported transfer syntax {ts} ({ts.name}): "
                    f"install {_INSTALL_HINT.get(ts, 'a decoder plugin')}")


def gpl_jpeg_available() -> bool:
    """True when the user installed the optional GPL pylibjpeg-libjpeg (12-bit lossy JPEG)."""
    import importlib.util

    return importlib.util.find_spec("libjpeg") is not None


def _has_pixel_tag(path) -> bool:
    try:
        data = Path(path).read_bytes()
    except (OSError, TypeError):
        return False
    return b"\xe0\x7f\x10\x00" in data or b"\x7f\xe0\x00\x10" in data


_HEADER_TAGS = [pydicom.datadict.tag_for_keyword(k) for k in _HEADER_KEYWORDS]
_TEXT_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "SH", "TM", "UI"}


def _header_values(ds: Dataset) -> dict:
    """keyword -> value for the header tags, converting raw bytes ourselves.

    Why not ds.get(): pydicom's generic value conversion (hooks, VR lookup,
    MultiValue/DSfloat objects) is about half the cost of a header read, and
    the ASCII-only VRs above need nothing more than decode + split.  Anything
    else (PN with character sets, SQ, binary VRs) goes through pydicom."""
    out = {}
    little = ds.original_encoding[1] if ds.original_encoding[1] is not None else True
    for kw, tag in zip(_HEADER_KEYWORDS, _HEADER_TAGS, strict=True):
        raw = ds.get_item(tag)
        if raw is None:
            continue
        vr, value = raw.VR, raw.value
        if isinstance(value, bytes) and vr in _TEXT_VRS:
            parts = [v.strip(" \x00") for v in value.decode("latin-1").split("\\")]
            out[kw] = parts[0] if len(parts) == 1 else parts
        elif isinstance(value, bytes) and vr == "US" and len(value) == 2:
            out[kw] = int.from_bytes(value, "little" if little else "big")
        else:
            out[kw] = ds[tag].value
    return out


def scan_header(path: PathLike, *, data: bytes | None = None) -> HeaderInfo:
    """Header-only read (no pixels): everything the importer stores.  ``data``: the
    file's bytes if already in memory (then the file is not opened again)."""
    raw = _open(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS, data=data)
    _check_image(path, raw, pixels_read=False)
    ds = _header_values(raw)
    attrs = frame_attributes(ds, None)  # shared functional groups; per-frame ones come with the pixels
    spacing, source = spacing_of(attrs)
    burned = text_of(ds, "BurnedInAnnotation").upper()

    def txt(keyword: str) -> str:
        return text_of(ds, keyword)

    return HeaderInfo(
        path=str(path), sop_uid=txt("SOPInstanceUID"), study_uid=txt("StudyInstanceUID"),
        series_uid=txt("SeriesInstanceUID"), sop_class_uid=txt("SOPClassUID"),
        patient_id=txt("PatientID"), patient_name=txt("PatientName"), patient_sex=txt("PatientSex"),
        patient_age_years=age_years(ds), modality=txt("Modality"),
        rows=int(ds["Rows"]), cols=int(ds["Columns"]), n_frames=int(number_of(ds, "NumberOfFrames", 1) or 1),
        bits_allocated=int(ds["BitsAllocated"]), bits_stored=int(number_of(ds, "BitsStored", ds["BitsAllocated"])),
        pixel_signed=bool(int(number_of(ds, "PixelRepresentation", 0))), photometric=txt("PhotometricInterpretation"),
        samples_per_pixel=int(number_of(ds, "SamplesPerPixel", 1)),
        transfer_syntax=str(raw.file_meta.TransferSyntaxUID),
        spacing_mm=spacing, spacing_source=source, windows=windows_of(attrs),
        rescale_slope=number_of(attrs, "RescaleSlope", 1.0),
        rescale_intercept=number_of(attrs, "RescaleIntercept", 0.0),
        manufacturer=txt("Manufacturer"), model=txt("ManufacturerModelName"),
        institution=txt("InstitutionName"), body_part=txt("BodyPartExamined"), view=txt("ViewPosition"),
        laterality=txt("ImageLaterality") or txt("Laterality"), study_date=txt("StudyDate"),
        acquisition_date=txt("AcquisitionDate"), study_description=txt("StudyDescription"),
        burned_in_annotation={"YES": True, "NO": False}.get(burned),
    )


# ---------------------------------------------------------------- full read + decode
def read_dataset(path: PathLike, *, data: bytes | None = None) -> Dataset:
    """Full read, validated as an image DICOM whose pixel data we can decode
    (from ``data``, the file's bytes, where given)."""
    ds = _open(path, stop_before_pixels=False, data=data)
    _check_image(path, ds, pixels_read=True)
    ds.filename = str(path)
    return ds


def decoder_for(ds: Dataset) -> str | None:
    """Name of the pydicom decoding plugin we use for this dataset ('' for native)."""
    dec = get_decoder(UID(ds.file_meta.TransferSyntaxUID))
    if dec.is_native:
        return ""
    avail = list(dec.available_plugins)
    return next((p for p in _PLUGIN_ORDER if p in avail), avail[0] if avail else None)


def _voi_lut(ds: Dataset) -> tuple[tuple | None, Window | None]:
    """First VOILUTSequence item as a table plus an equivalent linear window
    (the input range over which the LUT rises from its minimum to its maximum)."""
    seq = ds.get("VOILUTSequence")
    if not seq:
        return None, None
    item = seq[0]
    try:
        n, first, bits = (int(v) for v in item.LUTDescriptor)
        n = n or 65536
        raw = item.LUTData
        table = np.asarray(raw if not isinstance(raw, bytes) else np.frombuffer(raw, "<u2" if bits > 8 else "u1"),
                           dtype=np.float32)[:n]
    except (AttributeError, TypeError, ValueError):
        return None, None
    if first >= 2 ** 15 and ds.get("PixelRepresentation", 0) == 1:
        first -= 2 ** 16  # descriptor's first value is US but means signed for signed data
    lo_i, hi_i = int(np.argmax(table > table.min())), int(np.argmax(table >= table.max()))
    width = max(float(hi_i - lo_i + 1), 1.0)
    win = Window(first + lo_i + 0.5 + (width - 1) / 2, width, f"VOI LUT {item.get('LUTExplanation', '')}".strip())
    return (first, table, bits, win), win


def _luminance(rgb: np.ndarray) -> np.ndarray:
    # ITU-R BT.601 luma; radiographs saved as RGB are grey in practice.
    return rgb[..., 0] * np.float32(0.299) + rgb[..., 1] * np.float32(0.587) + rgb[..., 2] * np.float32(0.114)


def read_radiograph(path_or_dataset: PathLike | Dataset, frame: int = 0) -> Radiograph:
    ds = path_or_dataset if isinstance(path_or_dataset, Dataset) else read_dataset(path_or_dataset)
    path = getattr(ds, "filename", None) or "<dataset>"
    if isinstance(path_or_dataset, Dataset):  # a path was validated by read_dataset
        _check_image(path, ds, pixels_read=True)
    n_frames = int(number_of(ds, "NumberOfFrames", 1) or 1)
    if not 0 <= frame < n_frames:
        _fail(path, f"frame {frame} out of range (file has {n_frames})")
    photometric = text_of(ds, "PhotometricInterpretation").upper()
    notes: list[str] = []
    arr = _decode_frame(ds, path, frame, n_frames)
    attrs = frame_attributes(ds, frame)

    if photometric == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
        notes.append("palette colour converted to luminance")
    if arr.ndim == 3:
        # Modality LUTs do not apply to colour images (PS3.3 C.7.6.3.1.2).
        img = _luminance(arr.astype(np.float32, copy=False))
        notes.append("RGB converted to luminance (BT.601)")
        windows, voi, invert = [], None, False
    else:
        img = _modality(arr, ds, attrs)
        windows = windows_of(attrs)
        voi, voi_win = _voi_lut(attrs)
        if not windows and voi_win is not None:
            windows = [voi_win]
        # MONOCHROME1: low values are bright.  PresentationLUTShape INVERSE means the
        # same for a MONOCHROME2 image; with MONOCHROME1 the DX IOD requires INVERSE,
        # which describes the same inversion, so the two are OR-ed, not XOR-ed.
        invert = photometric == "MONOCHROME1" or text_of(ds, "PresentationLUTShape").upper() == "INVERSE"
    spacing, source = spacing_of(attrs)
    return Radiograph(
        modality=np.ascontiguousarray(img, dtype=np.float32), invert=invert, windows=windows,
        spacing_mm=spacing, spacing_source=source, bits_stored=int(number_of(ds, "BitsStored", ds.BitsAllocated)),
        photometric=photometric, frame=frame, n_frames=n_frames, voi_lut=voi, notes=notes,
    )


def _decode_frame(ds: Dataset, path, frame: int, n_frames: int, **options) -> np.ndarray:
    """One frame through pydicom's pixel handlers; failures become DicomReadErrors."""
    plugin = decoder_for(ds)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kw = {"decoding_plugin": plugin} if plugin else {}
            # index= decodes just this frame; YBR is converted to RGB by pydicom.
            return pixel_array(ds, index=frame if n_frames > 1 else None, **kw, **options)
    except ValueError as e:
        msg = str(e)
        if "less than expected" in msg or "truncat" in msg.lower():
            _fail(path, "truncated pixel data")
        _fail(path, f"cannot decode pixel data: {msg[:120]}")
    except Exception as e:  # plugin errors surface as RuntimeError with a long text
        ts = UID(ds.file_meta.TransferSyntaxUID)
        detail = str(e).strip().splitlines()[-1].strip() if str(e).strip() else type(e).__name__
        _fail(path, f"cannot decode {ts.name} pixel data: {detail[:120]}")


def read_stored_frame(ds: Dataset, frame: int = 0) -> StoredFrame | None:
    """A grey frame's raw stored values with its linear Modality LUT, windows and
    inversion, for ``stored_products`` (shrink first, LUTs after); None for what
    only ``read_radiograph`` handles (colour, palette, a ModalityLUTSequence).

    Native (uncompressed) pixel data comes back as a read-only view on the
    dataset's bytes, not a copy.  The unused high bits (BitsStored < BitsAllocated)
    are then checked rather than masked: only if some value lies outside the
    stored range is the frame decoded again with pydicom's correction."""
    path = getattr(ds, "filename", None) or "<dataset>"
    photometric = text_of(ds, "PhotometricInterpretation").upper()
    if (photometric not in ("MONOCHROME1", "MONOCHROME2") or int(number_of(ds, "SamplesPerPixel", 1)) != 1
            or "ModalityLUTSequence" in ds):
        return None
    n_frames = int(number_of(ds, "NumberOfFrames", 1) or 1)
    if not 0 <= frame < n_frames:
        _fail(path, f"frame {frame} out of range (file has {n_frames})")
    native = decoder_for(ds) == ""
    options = {"view_only": True, "correct_unused_bits": False} if native else {}
    arr = _decode_frame(ds, path, frame, n_frames, **options)
    bits_stored = int(number_of(ds, "BitsStored", ds.BitsAllocated))
    if native and not _within_stored_bits(arr, bits_stored):
        arr = _decode_frame(ds, path, frame, n_frames)
    if arr.ndim != 2 or arr.dtype.kind not in "ui":
        return None
    attrs = frame_attributes(ds, frame)
    windows = windows_of(attrs)
    voi, voi_win = _voi_lut(attrs)
    if not windows and voi_win is not None:
        windows = [voi_win]
    return StoredFrame(
        values=arr, slope=number_of(attrs, "RescaleSlope", 1.0), intercept=number_of(attrs, "RescaleIntercept", 0.0),
        invert=photometric == "MONOCHROME1" or text_of(ds, "PresentationLUTShape").upper() == "INVERSE",
        windows=windows, voi_lut=voi,
    )



def frame_products(ds: Dataset, frame: int = 0, long_side: int = 512, thumb_size: int = 256
                   ) -> tuple[np.ndarray, bytes]:
    """(16-bit analysis array, thumbnail PNG) of one frame: from the stored integers when
    the frame allows it, else (colour, palette, Modality LUT sequence) the float pipeline.
    The importer and the analysis-cache rebuild both call this, so a rebuilt cache is the
    imported one."""
    stored = read_stored_frame(ds, frame)
    if stored is not None:
        return analysis_and_thumbnail_from_stored(stored, long_side, thumb_size)
    return analysis_and_thumbnail(read_radiograph(ds, frame=frame), long_side, thumb_size)

def _within_stored_bits(arr: np.ndarray, bits_stored: int) -> bool:
    """True when no unused high bit disturbs a value (then masking changes nothing)."""
    if arr.dtype.kind not in "ui" or bits_stored >= arr.dtype.itemsize * 8:
        return True
    lo, hi = (-(1 << (bits_stored - 1)), (1 << (bits_stored - 1)) - 1) if arr.dtype.kind == "i" \
        else (0, (1 << bits_stored) - 1)
    return lo <= int(arr.min()) and int(arr.max()) <= hi


def _modality(arr: np.ndarray, ds: Dataset, attrs=None) -> np.ndarray:
    """Modality LUT of one frame; ``attrs``: its ``frame_attributes`` (default: the top level)."""
    if "ModalityLUTSequence" in ds:
        return apply_modality_lut(arr, ds).astype(np.float32)
    attrs = ds if attrs is None else attrs
    # Own fast path for rescale: pydicom's apply_rescale works in float64 (2x the
    # memory traffic); float32 is exact for <= 24-bit integers with a unit slope.
    out = arr.astype(np.float32)
    slope, intercept = number_of(attrs, "RescaleSlope", 1.0), number_of(attrs, "RescaleIntercept", 0.0)
    if slope != 1.0:
        out *= np.float32(slope)
    if intercept != 0.0:
        out += np.float32(intercept)
    return out
