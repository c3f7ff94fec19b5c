"""Content-addressed file store: ``blobs/ab/cdef….`` named by the sha256 of the bytes.

A blob is written to a temporary file in the same folder and ``os.replace``d into
place before the database row that names it commits, so a crash can leave an
orphan blob (harmless, collectable) but never a row pointing at a missing file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
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

    def put_bytes(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        if not self.exists(sha):
            self._write_atomically(sha, lambda f: f.write(data))
        return sha

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

    def _write_atomically(self, sha: str, write) -> None:
        final = self.path(sha)
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as out:
                write(out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, final)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def orphans(self, referenced: set[str]) -> list[Path]:
        """Blob files no row names (left by a crash between write and commit)."""
        found = []
        if not self.root.exists():
            return found
        for sub in self.root.iterdir():
            if not sub.is_dir():
                continue
            for f in sub.iterdir():
                if not f.name.startswith(".") and sub.name + f.name not in referenced:
                    found.append(f)
        return found


def _copy_hashing(src: BinaryIO, out: BinaryIO, digest) -> None:
    while chunk := src.read(CHUNK):
        digest.update(chunk)
        out.write(chunk)
