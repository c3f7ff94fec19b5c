"""Content-addressed file store: ``blobs/ab/cdef….`` named by the sha256 of the bytes.

A blob is written to a temporary file in the same folder and ``os.replace``d into
place before the database row that names it commits, so a crash can leave an
orphan blob (harmless, collectable) but never a row pointing at a missing file.

Bulk writers (the importer) may defer durability: ``put_chunks(..., durable=False)``
writes without fsync and starts the kernel's writeback, and ``sync(shas)`` fsyncs
those blobs and their folders right before the one transaction whose rows name them
commits.  The invariant "no committed row names a blob that is not on disk" holds as
with per-file fsync: a row reaches the disk only in its COMMIT, after ``sync`` returned
for every blob it names (fsync flushes a file whichever process wrote it).  A crash
before the commit leaves orphans, and the re-run writes them again.  A blob that
already existed is synced too: an earlier killed run may have written it unsynced.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20


class BlobStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, sha: str) -> Path:
        return self.root / sha[:2] / sha[2:]

    def exists(self, sha: str) -> bool:
        return self.path(sha).exists()

    def remove(self, sha: str) -> bool:
        """Delete a blob no row names any more; True if a file was removed."""
        try:
            self.path(sha).unlink()
        except FileNotFoundError:
            return False
        return True

    def put_bytes(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        if not self.exists(sha):
            self._write_atomically(sha, lambda f: f.write(data))
        return sha

    def put_chunks(self, chunks: Iterable[bytes], *, durable: bool = True) -> str:
        """Store the concatenation of ``chunks`` (no joined copy is made); returns its sha.

        ``durable=False`` skips the fsync: the caller must ``sync`` the sha before
        committing a row that names it (see the module doc)."""
        chunks = list(chunks)
        digest = hashlib.sha256()
        for chunk in chunks:
            digest.update(chunk)
        sha = digest.hexdigest()
        if not self.exists(sha):
            self._write_atomically(sha, lambda f: f.writelines(chunks), durable=durable)
        return sha

    def sync(self, shas: Iterable[str]) -> None:
        """Make the named blobs, and their folder entries, durable (fsync)."""
        folders: set[Path] = set()
        for sha in shas:
            path = self.path(sha)
            _fsync_path(path)
            folders.add(path.parent)
        if os.name == "posix":  # folders cannot be opened for fsync on Windows (NTFS journals renames)
            for folder in sorted(folders):
                _fsync_path(folder)

    def put_file(self, source: Path) -> str:
        """Copy a file in, hashing while reading so the file is read once."""
        digest = hashlib.sha256()
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
                _copy_hashing(src, out, digest)
                out.flush()
                os.fsync(out.fileno())
            sha = digest.hexdigest()
            final = self.path(sha)
            if final.exists():
                os.unlink(tmp)
            else:
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, final)
            return sha
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def read_bytes(self, sha: str) -> bytes:
        return self.path(sha).read_bytes()

    def _write_atomically(self, sha: str, write, *, durable: bool = True) -> None:
        final = self.path(sha)
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as out:
                write(out)
                out.flush()
                if durable:
                    os.fsync(out.fileno())
                else:
                    _start_writeback(out.fileno())
            os.replace(tmp, final)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def orphans(self, referenced: set[str], *, partial: bool = False) -> list[Path]:
        """Blob files no row names (left by a crash between write and commit); with
        ``partial`` also the half-written temporary files of a killed writer."""
        found = []
        if not self.root.exists():
            return found
        for sub in self.root.iterdir():
            if not sub.is_dir():
                continue
            for f in sub.iterdir():
                if f.name.startswith("."):
                    if partial and f.name.startswith(".incoming-"):
                        found.append(f)
                elif sub.name + f.name not in referenced:
                    found.append(f)
        return found


def _copy_hashing(src: BinaryIO, out: BinaryIO, digest) -> None:
    while chunk := src.read(CHUNK):
        digest.update(chunk)
        out.write(chunk)


def _start_writeback(fd: int) -> None:
    # On Linux DONTNEED starts asynchronous writeback of the dirty pages (and drops
    # the clean ones: nobody reads a fresh blob soon), so the disk works while the
    # writer computes.  Elsewhere it is a hint or absent, and ``sync`` does the writing.
    if hasattr(os, "posix_fadvise"):
        with contextlib.suppress(OSError):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def _fsync_path(path: Path) -> None:
    # fsync flushes the file's data whichever descriptor wrote it; Windows needs
    # a writable handle for it, POSIX does not (and folders only open read-only).
    fd = os.open(path, os.O_RDONLY if os.name == "posix" else os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
