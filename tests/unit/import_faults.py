"""Stand-ins for a native decoder that crashes or hangs, run inside import worker processes
(a module of its own so spawned workers can import it by name)."""

from __future__ import annotations

import ctypes
import os
import time


def faulty_decoder(path: str) -> dict:
    name = os.path.basename(path)
    if name.startswith("segv"):
        ctypes.string_at(0)  # a read through a null pointer: SIGSEGV, as a broken codec would
    if name.startswith("abort"):
        os.abort()
    if name.startswith("hang"):
        time.sleep(3600)
    if name.startswith("unpicklable"):
        return {"status": "ok", "path": path, "thing": lambda: None}
    return {"status": "ok", "path": path}
