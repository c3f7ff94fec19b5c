"""The pseudonym key store: the HMAC key behind every pseudonym lives outside the project.

A project names its key only by a fingerprint (``meta.key_fingerprint``); the key itself
is a file ``<fingerprint>.key`` (64 hex characters, mode 0600) in the user's key folder:
``MSKSTUDIO_KEY_DIR`` if set, else ``$XDG_CONFIG_HOME/mskstudio/keys`` (``~/.config/…``;
``%APPDATA%\\mskstudio\\keys`` on Windows).  Anyone who receives a project folder without
the key can read and train on it, but cannot recompute ``pseudonym(key, patient_id)`` —
so a known record number no longer tells whether that patient is in the project.

A site shares one key between its machines with ``mskstudio key P --export FILE`` and
``--import FILE``; a project opened without its key refuses only the work that makes new
pseudonyms or keyed UIDs (DICOM and clinical imports, matching external files by original
UID, the new UIDs of DICOM SEG/SR exports).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sys
from pathlib import Path

from mskstudio.store.db import StoreError

KEY_BYTES = 32


class KeyMissingError(StoreError):
    """The project's key is not in this machine's key store (message names where it looked)."""


def key_dir() -> Path:
    """Where this user's keys live (the folder need not exist yet)."""
    override = os.environ.get("MSKSTUDIO_KEY_DIR")
    if override:
        return Path(override)
    if sys.platform == "win32" and os.environ.get("APPDATA"):
        return Path(os.environ["APPDATA"]) / "mskstudio" / "keys"
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "mskstudio" / "keys"


def fingerprint(key: bytes) -> str:
    """A public name for a key: the first 16 hex digits of its SHA-256 (reveals nothing of it)."""
    return hashlib.sha256(key).hexdigest()[:16]


def key_path(fp: str) -> Path:
    return key_dir() / f"{fp}.key"


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def save_key(key: bytes) -> str:
    """Write ``key`` into the key store (0600, atomically) and return its fingerprint."""
    if len(key) < 16:
        raise ValueError("a pseudonym key must be at least 16 bytes")
    fp = fingerprint(key)
    folder = key_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        target = folder / f"{fp}.key"
        if target.is_file() and _read(target) == key:
            return fp
        tmp = folder / f".{fp}.{os.getpid()}.tmp"
        # O_EXCL + 0600 from the start: the key is never readable by others, not even briefly.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, key.hex().encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except OSError as exc:
        raise StoreError(f"{folder}: cannot write the pseudonym key ({exc.strerror or exc})") from exc
    return fp


def _read(path: Path) -> bytes:
    text = path.read_text(encoding="ascii", errors="replace").strip()
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise StoreError(f"{path}: not a pseudonym key file (expected hex digits)") from None


def load_key(fp: str) -> bytes:
    """The key named ``fp``, or KeyMissingError with one line saying where it was looked for."""
    path = key_path(fp)
    if not path.is_file():
        raise KeyMissingError(
            f"the pseudonym key {fp} is not on this machine (looked for {path}); "
            f"imports and DICOM exports, which make pseudonyms and UIDs, need it — "
            f"get it with 'mskstudio key PROJECT --import FILE'"
        )
    key = _read(path)
    if fingerprint(key) != fp:
        raise StoreError(f"{path}: the key in this file does not match its fingerprint {fp}")
    return key


def has_key(fp: str | None) -> bool:
    return bool(fp) and key_path(fp).is_file()


def export_key(fp: str, dest: Path) -> Path:
    """Copy the key to ``dest`` (0600) to carry it to another machine of the same site."""
    key = load_key(fp)
    dest = Path(dest)
    try:
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, key.hex().encode() + b"\n")
        finally:
            os.close(fd)
        os.chmod(dest, 0o600)
    except OSError as exc:
        raise StoreError(f"{dest}: cannot write the key file ({exc.strerror or exc})") from exc
    return dest


def import_key(src: Path, expected_fp: str | None = None) -> str:
    """Add the key in file ``src`` to this machine's key store; refuses a key of another project."""
    src = Path(src)
    if not src.is_file():
        raise StoreError(f"{src}: no such key file")
    key = _read(src)
    fp = fingerprint(key)
    if expected_fp and fp != expected_fp:
        raise StoreError(f"{src}: this key's fingerprint is {fp}, the project needs {expected_fp}")
    return save_key(key)
