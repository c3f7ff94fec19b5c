"""Writing a large blob around the page cache (Linux ``O_DIRECT``).

A de-identified radiograph is a new 10–30 MB file that nobody reads soon.  A buffered
write first fills fresh page-cache pages with it, and on this class of machine (a VM,
2 cores) that costs far more than the disk: 15 MB took 44–57 ms buffered against
13–18 ms with ``O_DIRECT`` (measured in one run, the disk then already holding the
data, so the fsync before the commit has almost nothing left to flush).  The import's
per-file time is dominated by that write (``tests/bench/bench_import.py``).

``O_DIRECT`` needs the buffer address, length and file offset aligned to the device's
block: the chunks are copied into one page-aligned anonymous ``mmap`` kept for the next
file (reused, so it is not page-faulted in again), the tail is padded with zeros, and the
file is truncated back to its true length.  Where the platform has no ``O_DIRECT``, or
the file system refuses it (tmpfs), ``write_direct`` returns False and the caller writes
the ordinary way.  Durability is unchanged: callers still fsync before a row names the
file (the metadata needs it).
"""

from __future__ import annotations

import mmap
import os
import threading
from collections.abc import Sequence
from pathlib import Path

ALIGN = 4096                 # a multiple of every common logical block size
MIN_BYTES = 1 << 20          # smaller files: the page cache is cheap enough
MAX_BYTES = 256 << 20        # larger files: not worth keeping a buffer that size

_lock = threading.Lock()
_buffer: mmap.mmap | None = None


def _aligned_buffer(size: int) -> mmap.mmap:
    global _buffer
    if _buffer is None or len(_buffer) < size:
        if _buffer is not None:
            _buffer.close()
        _buffer = mmap.mmap(-1, max(size, 16 << 20))  # anonymous maps are page-aligned
    return _buffer


def write_direct(path: Path, chunks: Sequence[bytes]) -> bool:
    """Write the concatenation of ``chunks`` to ``path`` (created or truncated) with
    ``O_DIRECT``; False, with ``path`` left as it was or empty, where that is not possible."""
    flag = getattr(os, "O_DIRECT", None)
    size = sum(len(c) for c in chunks)
    if flag is None or not MIN_BYTES <= size <= MAX_BYTES:
        return False
    padded = -(-size // ALIGN) * ALIGN
    with _lock:
        buf = _aligned_buffer(padded)
        offset = 0
        for chunk in chunks:
            buf[offset:offset + len(chunk)] = chunk
            offset += len(chunk)
        buf[size:padded] = bytes(padded - size)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | flag, 0o644)
        except OSError:      # the file system refuses O_DIRECT
            return False
        try:
            with memoryview(buf) as view:
                written = 0
                while written < padded:
                    written += os.write(fd, view[written:padded])
            os.ftruncate(fd, size)
        except OSError:      # e.g. EINVAL from a device with a larger block
            os.close(fd)
            os.truncate(path, 0)
            return False
        os.close(fd)
    return True
