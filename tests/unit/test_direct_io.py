"""Blobs written around the page cache: the same bytes, any length, with a fallback."""

from __future__ import annotations

import hashlib
import os

import pytest

from mskstudio.store.blobs import BlobStore
from mskstudio.store.direct_io import ALIGN, MIN_BYTES, write_direct


@pytest.mark.parametrize("extra", [0, 1, ALIGN - 1, 12_345])
def test_write_direct_writes_exactly_the_chunks(tmp_path, extra):
    chunks = [os.urandom(1000), os.urandom(MIN_BYTES + extra), b"\x00\x01"]
    path = tmp_path / "blob"
    if not write_direct(path, chunks):
        pytest.skip("this file system refuses O_DIRECT (the caller then writes buffered)")
    assert path.read_bytes() == b"".join(chunks)
    # The reused buffer held a longer file before: a shorter one is still exact.
    assert write_direct(path, chunks[1:2]) and path.read_bytes() == chunks[1]


def test_small_files_are_left_to_the_page_cache(tmp_path):
    assert not write_direct(tmp_path / "small", [b"x" * 100])
    assert not (tmp_path / "small").exists()


def test_put_chunks_stores_the_same_blob_either_way(tmp_path, monkeypatch):
    chunks = [b"DICM-header", os.urandom(2 * MIN_BYTES + 7)]
    sha = hashlib.sha256(b"".join(chunks)).hexdigest()
    direct = BlobStore(tmp_path / "direct")
    assert direct.put_chunks(chunks, durable=False) == sha
    monkeypatch.delattr(os, "O_DIRECT", raising=False)   # a platform without O_DIRECT
    buffered = BlobStore(tmp_path / "buffered")
    assert buffered.put_chunks(chunks) == sha
    assert direct.read_bytes(sha) == buffered.read_bytes(sha) == b"".join(chunks)
    assert not list((tmp_path / "direct").rglob(".incoming-*"))
