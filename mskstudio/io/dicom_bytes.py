"""The bytes of a DICOM file as chunks, the pixel data not copied.

The importer writes each de-identified radiograph as a blob; joining pydicom's output
would copy 15 MB twice per image.  ``dataset_file_chunks`` lets the blob store hash and
write the file from the dataset's own PixelData bytes (``BlobStore.put_chunks``).
"""

from __future__ import annotations

import io

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import correct_ambiguous_vr_element
from pydicom.tag import SequenceDelimiterTag
from pydicom.uid import UID

__all__ = ["dataset_file_chunks"]

PIXEL_DATA = 0x7FE00010


def dataset_file_chunks(ds: Dataset) -> list[bytes]:
    """The bytes ``ds.save_as(f, enforce_file_format=True)`` writes, as chunks
    whose largest is the dataset's own PixelData bytes object, not a copy.

    pydicom writes every element through a BytesIO and copies it again into the
    file object: two extra copies of 15 MB per radiograph.  Here pydicom writes
    everything except the pixel data; the Pixel Data element's header (PS3.5
    7.1: tag, VR, length; undefined length plus sequence delimiter when
    encapsulated) is added by hand.  Deflated syntaxes and datasets with elements
    after Pixel Data go through pydicom whole.  tests/unit/test_importer.py checks
    the bytes equal pydicom's."""
    pixel = ds.get_item(PIXEL_DATA) if PIXEL_DATA in ds else None
    ts = UID(ds.file_meta.TransferSyntaxUID)
    last_tag = max(ds.keys()) if len(ds) else 0
    if (pixel is None or ts.is_deflated or last_tag != PIXEL_DATA or getattr(pixel, "is_raw", False)
            or not isinstance(pixel.value, bytes)):
        return [_pydicom_bytes(ds)]
    head = Dataset({tag: elem for tag, elem in ds.items() if tag != PIXEL_DATA})
    head.file_meta = ds.file_meta
    if getattr(ds, "preamble", None) is not None:
        head.preamble = ds.preamble
    element = DicomBytesIO()
    element.is_little_endian, element.is_implicit_VR = ts.is_little_endian, ts.is_implicit_VR
    if not ts.is_implicit_VR and pixel.VR not in ("OB", "OW"):
        pixel = correct_ambiguous_vr_element(pixel, ds, ts.is_little_endian)  # what dcmwrite does
    value = pixel.value
    undefined = pixel.is_undefined_length
    element.write_tag(PIXEL_DATA)
    if not ts.is_implicit_VR:
        element.write(pixel.VR.encode("ascii"))
        element.write_US(0)  # reserved
    element.write_UL(0xFFFFFFFF if undefined else len(value) + len(value) % 2)
    chunks = [_pydicom_bytes(head), element.getvalue(), value]
    if len(value) % 2:
        chunks.append(b"\x00")
    if undefined:
        trailer = DicomBytesIO()
        trailer.is_little_endian, trailer.is_implicit_VR = ts.is_little_endian, ts.is_implicit_VR
        trailer.write_tag(SequenceDelimiterTag)
        trailer.write_UL(0)
        chunks.append(trailer.getvalue())
    return chunks


def _pydicom_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
