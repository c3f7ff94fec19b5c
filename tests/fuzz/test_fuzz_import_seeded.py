"""A small seeded set of mutated DICOM files through the real import (the full run of
10,000+ cases is ``python tests/fuzz/fuzz_import.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fuzz_import import fuzz  # noqa: E402


def test_seeded_mutants_never_break_the_import(tmp_path, phantom_archive):
    extra = sorted((phantom_archive.parent / "dicom").rglob("*.dcm"))[:3]
    out = fuzz(120, seed=23, work=tmp_path, batch=120, workers=2, time_limit_s=30.0, extra_seeds=extra,
               log=lambda *_: None)  # raises FuzzFailure on any broken invariant
    assert out["cases"] == 120
    assert out["failed"] > 0 and out["imported"] > 0  # the set has both, or it tests less than it says
    assert not out["hangs"], out["hangs"]
