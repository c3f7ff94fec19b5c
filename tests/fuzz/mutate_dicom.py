"""Seeded mutations of real DICOM files for fuzzing the importer.

Seeds: pydicom's bundled test files (by name, ``download=False``: never the glob
form, which downloads) and phantom files.  Each mutation returns new bytes:

* ``header_bytes``     random bytes changed between the preamble and the pixel data
* ``vr``               an explicit VR replaced by another VR or by garbage
* ``length``           a value length replaced by 0, odd, 0xFFFF, 0xFFFFFFFF, off-by-one …
* ``transfer_syntax``  the TransferSyntaxUID swapped (other, unknown or retired UIDs)
* ``truncate``         the file cut inside the pixel data (or anywhere)
* ``oversize``         Rows/Columns/BitsAllocated/NumberOfFrames enlarged, or junk appended
* ``nested``           undefined-length sequences nested 2 to 5,000 deep (some never closed)
* ``charset``          SpecificCharacterSet set to a real or bogus value with raw name bytes
* ``splice``           the header of one file with the pixel data of another
* ``bitflip``          random bits flipped anywhere
* ``pixel_rle``        bytes changed at the start of the (encapsulated) pixel data
"""

from __future__ import annotations

import io
import random
import re
import struct
from pathlib import Path

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

PYDICOM_SEEDS = ("MR_small.dcm", "CT_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm", "JPEG-lossy.dcm",
                 "JPEGLSNearLossless_16.dcm", "rtplan.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm",
                 "SC_rgb_rle.dcm", "SC_rgb_jpeg_dcmtk.dcm", "rtdose.dcm")
VRS = [v.encode() for v in ("AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "OB", "OD",
                            "OF", "OL", "OW", "PN", "SH", "SL", "SQ", "SS", "ST", "TM", "UI", "UL", "UN", "US",
                            "UT", "UC", "UR", "OV", "SV", "UV")]
VR_RE = re.compile(b"(?<=[\x00-\xff]{4})(" + b"|".join(VRS) + b")")
SYNTAXES = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.5",
            "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
            "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81",
            "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201",
            "1.2.840.10008.1.2.1.99", "1.2.3.4.5", "", "garbage")
CHARSETS = ("ISO_IR 100", "ISO 2022 IR 87", "ISO 2022 IR 13", "\\ISO 2022 IR 87", "ISO 2022 IR 149",
            "GB18030", "GBK", "ISO_IR 192", "ISO_IR 13", "ISO_IR 144", "bogus", "", "ISO_IR 100\\ISO_IR 144")
INTERESTING_LENGTHS = (0, 1, 2, 3, 0xFF, 0xFFFF, 0xFFFE, 0xFFFFFFFF, 0x7FFFFFFF, 0x10000, 1 << 24)
PIXEL_TAG = b"\xe0\x7f\x10\x00"


def seed_files(extra: list[Path] | None = None) -> dict[str, bytes]:
    from pydicom.data import get_testdata_file

    seeds = {}
    for name in PYDICOM_SEEDS:
        path = get_testdata_file(name, download=False)  # by name: the glob form downloads
        if path:
            seeds[name] = Path(path).read_bytes()
    for path in extra or []:
        seeds[Path(path).name] = Path(path).read_bytes()
    return seeds


def pixel_offset(data: bytes) -> int:
    at = data.rfind(PIXEL_TAG)
    return at if at > 132 else len(data)


def header_bytes(rng: random.Random, data: bytes, seeds) -> bytes:
    b = bytearray(data)
    end = max(pixel_offset(data), 140)
    for _ in range(rng.randint(1, 8)):
        b[rng.randrange(128, min(end, len(b)))] = rng.randrange(256)
    return bytes(b)


def vr(rng: random.Random, data: bytes, seeds) -> bytes:
    hits = [m.start() for m in VR_RE.finditer(data, 132, pixel_offset(data))]
    if not hits:
        return bitflip(rng, data, seeds)
    b = bytearray(data)
    for at in rng.sample(hits, min(len(hits), rng.randint(1, 3))):
        b[at:at + 2] = rng.choice(VRS) if rng.random() < 0.7 else bytes(rng.randrange(256) for _ in range(2))
    return bytes(b)


def length(rng: random.Random, data: bytes, seeds) -> bytes:
    hits = [m.start() for m in VR_RE.finditer(data, 132, len(data))]
    if not hits:
        return bitflip(rng, data, seeds)
    b = bytearray(data)
    at = rng.choice(hits)
    value = rng.choice(INTERESTING_LENGTHS) if rng.random() < 0.7 else rng.randrange(1 << 32)
    long_form = bytes(b[at:at + 2]) in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"UC", b"UR", b"OD", b"OL")
    if long_form:
        b[at + 4:at + 8] = struct.pack("<I", value & 0xFFFFFFFF)
    else:
        b[at + 2:at + 4] = struct.pack("<H", value & 0xFFFF)
    return bytes(b)


def transfer_syntax(rng: random.Random, data: bytes, seeds) -> bytes:
    m = re.search(rb"\x02\x00\x10\x00UI(..)", data[:2048], re.S)
    if not m:
        return bitflip(rng, data, seeds)
    old_len = struct.unpack("<H", m.group(1))[0]
    new = rng.choice(SYNTAXES).encode()
    if len(new) % 2:
        new += b"\0"
    if rng.random() < 0.5:  # keep the length field honest, shifting the rest of the meta group
        return data[:m.start(1)] + struct.pack("<H", len(new)) + new + data[m.end(1) + old_len:]
    return data[:m.end(1)] + new[:old_len].ljust(old_len, b"\0") + data[m.end(1) + old_len:]


def truncate(rng: random.Random, data: bytes, seeds) -> bytes:
    start = pixel_offset(data) if rng.random() < 0.8 else 0
    return data[:rng.randrange(start, len(data))] if start < len(data) else data[:len(data) // 2]


def _dataset(data: bytes):
    return pydicom.dcmread(io.BytesIO(data), force=True)


def _write(ds) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=False)
    return out.getvalue()


def oversize(rng: random.Random, data: bytes, seeds) -> bytes:
    if rng.random() < 0.3:
        return data + bytes(rng.randrange(256) for _ in range(rng.randint(1, 4096))) * rng.randint(1, 64)
    ds = _dataset(data)
    keyword = rng.choice(("Rows", "Columns", "NumberOfFrames", "BitsAllocated", "SamplesPerPixel", "BitsStored"))
    value = rng.choice((0, 1, 3, 7, 17, 33, 64, 255, 4096, 65535))
    if keyword == "NumberOfFrames":
        ds.NumberOfFrames = str(value)
    else:
        setattr(ds, keyword, value)
    return _write(ds)


def nested(rng: random.Random, data: bytes, seeds) -> bytes:
    """Undefined-length sequences nested 2 to 5,000 deep, written as bytes before the pixel data
    (building them with pydicom would overflow the fuzzer's own stack)."""
    at = pixel_offset(data)
    depth = rng.choice((2, 10, 50, 120, 300, 1000, 5000))
    explicit = data[at + 4:at + 6] in VRS
    open_sq = b"\x40\x00\x30\xa7" + (b"SQ\0\0" if explicit else b"") + b"\xff\xff\xff\xff"
    open_item = b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    close_item = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
    close_sq = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    body = (open_sq + open_item) * depth
    if rng.random() < 0.8:  # else left open: the delimiters never come
        body += (close_item + close_sq) * depth
    return data[:at] + body + data[at:]


def charset(rng: random.Random, data: bytes, seeds) -> bytes:
    ds = _dataset(data)
    ds.SpecificCharacterSet = rng.choice(CHARSETS)
    raw = bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
    for tag in (0x00100010, 0x00081030, 0x00080080):  # PatientName, StudyDescription, InstitutionName
        vr_ = "PN" if tag == 0x00100010 else "LO"
        value = raw + b" " * (len(raw) % 2)
        ds._dict[Tag(tag)] = RawDataElement(Tag(tag), vr_, len(value), value, 0, False, True)
    return _write(ds)


def splice(rng: random.Random, data: bytes, seeds) -> bytes:
    other = rng.choice(list(seeds.values()))
    return data[:pixel_offset(data)] + other[pixel_offset(other):]


def bitflip(rng: random.Random, data: bytes, seeds) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 32)):
        at = rng.randrange(len(b))
        b[at] ^= 1 << rng.randrange(8)
    return bytes(b)


def pixel_rle(rng: random.Random, data: bytes, seeds) -> bytes:
    at = pixel_offset(data)
    if at >= len(data) - 16:
        return bitflip(rng, data, seeds)
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        b[min(len(b) - 1, at + 12 + rng.randrange(0, 80))] = rng.randrange(256)
    return bytes(b)


MUTATIONS = {f.__name__: f for f in (header_bytes, vr, length, transfer_syntax, truncate, oversize, nested,
                                      charset, splice, bitflip, pixel_rle)}


def mutate(rng: random.Random, seeds: dict[str, bytes]) -> tuple[str, str, bytes]:
    """(seed name, mutation names, bytes) of one case: one to three stacked mutations."""
    name = rng.choice(sorted(seeds))
    data, applied = seeds[name], []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        kind = rng.choice(sorted(MUTATIONS))
        try:
            data = MUTATIONS[kind](rng, data, seeds)
        except Exception:  # pydicom could not even build the mutant: keep the previous bytes
            continue
        applied.append(kind)
    return name, "+".join(applied) or "none", data
