"""A project folder ``NAME.mskproj/``: ``project.db``, ``blobs/`` and ``cache/``.

``Project`` is the only code that writes SQL.  It owns the database and hands out
small repositories grouped by subject (``project.images``, ``project.labels``,
``project.jobs`` …) so that no single module has to know the whole schema.
"""

from __future__ import annotations

import getpass
import json
import os
import sqlite3
from functools import cached_property
from pathlib import Path
from typing import Any

from mskstudio.store.blobs import BlobStore
from mskstudio.store.db import APPLICATION_ID, Database, StoreError, connect, open_in_this_process
from mskstudio.store.keys import KeyMissingError, has_key, key_path, load_key, new_key, save_key
from mskstudio.store.media import storage_failure
from mskstudio.store.repo_annotations import AnnotationRepo
from mskstudio.store.repo_cluster_edits import ClusterEditRepo
from mskstudio.store.repo_clusters import ClusterRepo
from mskstudio.store.repo_cohort import CohortRepo
from mskstudio.store.repo_detections import DetectionRepo
from mskstudio.store.repo_images import ImageRepo
from mskstudio.store.repo_jobs import JobRepo
from mskstudio.store.repo_labels import LabelRepo
from mskstudio.store.repo_measurements import MeasurementRepo
from mskstudio.store.repo_models import ModelRepo
from mskstudio.store.repo_readers import ReaderRepo
from mskstudio.store.schema import latest_version, migrate, scrub_backup_secrets

SUFFIX = ".mskproj"
DB_NAME = "project.db"


def _open_failure(db_path: Path, exc: sqlite3.DatabaseError) -> StoreError:
    """A full disk is not a damaged database: say which it is."""
    problem = storage_failure(exc)
    if problem:
        return StoreError(f"{db_path}: cannot open the project: {problem}")
    return StoreError(f"{db_path}: the database is damaged ({exc})")


def _on_readonly_medium(root: Path) -> bool:
    """Whether the file system holding ``root`` is mounted read-only (a DVD, a write-protected
    stick, a read-only network share); os.access says so too, but not why."""
    try:
        return bool(os.statvfs(root).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no statvfs on Windows: os.access decides there
        return False


def default_author() -> str:
    """Who is editing: the MSKSTUDIO_USER preference, else the login name."""
    return os.environ.get("MSKSTUDIO_USER") or _login_name()


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return "unknown"


class Project:
    def __init__(self, root: Path, db: Database, *, readonly: bool, readonly_reason: str = ""):
        self.root = Path(root)
        self.db = db
        self.readonly = readonly
        self.readonly_reason = readonly_reason
        self.blobs = BlobStore(self.root / "blobs")
        self.cache_dir = self.root / "cache"
        self.author = default_author()
        self._secret: bytes | None = None

    # Repositories by subject, one small module each, created on first use.  Typed
    # properties (not a lookup by name) so IDEs and type checkers follow project.images.*.
    @cached_property
    def images(self) -> ImageRepo:
        return ImageRepo(self)

    @cached_property
    def labels(self) -> LabelRepo:
        return LabelRepo(self)

    @cached_property
    def jobs(self) -> JobRepo:
        return JobRepo(self)

    @cached_property
    def clusters(self) -> ClusterRepo:
        return ClusterRepo(self)

    @cached_property
    def models(self) -> ModelRepo:
        return ModelRepo(self)

    @cached_property
    def annotations(self) -> AnnotationRepo:
        return AnnotationRepo(self)

    @cached_property
    def cluster_edits(self) -> ClusterEditRepo:
        return ClusterEditRepo(self)

    @cached_property
    def measurements(self) -> MeasurementRepo:
        return MeasurementRepo(self)

    @cached_property
    def detections(self) -> DetectionRepo:
        return DetectionRepo(self)

    @cached_property
    def readers(self) -> ReaderRepo:
        return ReaderRepo(self)

    @cached_property
    def cohort(self) -> CohortRepo:
        return CohortRepo(self)

    # ---- life cycle ---------------------------------------------------------------
    @classmethod
    def create(cls, root: Path, *, name: str | None = None) -> Project:
        root = Path(root).absolute()
        if root.suffix != SUFFIX:
            root = root.with_name(root.name + SUFFIX)
        if (root / DB_NAME).exists():
            raise StoreError(f"{root}: a project already exists here")
        try:
            root.mkdir(parents=True, exist_ok=True)
            for sub in ("blobs", "cache"):
                (root / sub).mkdir(exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{root}: cannot create the project folder ({exc.strerror})") from exc
        if not os.access(root, os.W_OK):
            raise StoreError(f"{root}: the folder is not writable")
        db_path = root / DB_NAME
        fp = save_key(new_key())  # the key stays in this user's key store, never in the project
        conn = connect(db_path)
        try:
            migrate(conn, db_path)
            conn.execute("BEGIN IMMEDIATE")
            for key, value in {
                "name": name or root.stem,
                "key_fingerprint": fp,
                "created_by": default_author(),
            }.items():
                conn.execute("INSERT INTO meta(key, value) VALUES (?, ?)", (key, value))
            conn.execute("COMMIT")
        finally:
            conn.close()
        project = cls.open(root)
        project.audit("project.create", "project", None, {"name": name or root.stem})
        return project

    @classmethod
    def open(cls, root: Path) -> Project:
        """Open (and migrate) a project; a newer schema or read-only folder opens read-only."""
        root = Path(root).absolute()
        db_path = root / DB_NAME
        if not root.exists():
            raise StoreError(f"{root}: no such project folder")
        if not db_path.is_file():
            raise StoreError(f"{root}: not an mskstudio project (no {DB_NAME} inside)")
        if not open_in_this_process(db_path):  # else it was checked, and reading it would drop locks
            _check_header(db_path)
        if _on_readonly_medium(root):
            return cls._open_readonly(root, "the project is on a read-only disk")
        writable = os.access(root, os.W_OK) and os.access(db_path, os.W_OK)
        if not writable:
            return cls._open_readonly(root, "the project folder is not writable")
        try:
            conn = connect(db_path)
        except sqlite3.DatabaseError as exc:
            raise _open_failure(db_path, exc) from exc
        try:
            _check_integrity(conn, db_path)
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > latest_version():
                conn.close()
                return cls._open_readonly(
                    root,
                    f"written by a newer mskstudio (schema {version} > {latest_version()}); "
                    "opened read-only",
                )
            started_at = migrate(conn, db_path)
        except sqlite3.DatabaseError as exc:
            raise _open_failure(db_path, exc) from exc
        finally:
            conn.close()
        if 0 < started_at < latest_version():
            scrub_backup_secrets(root)  # the backup just written still held meta.secret
        for sub in ("blobs", "cache"):
            (root / sub).mkdir(exist_ok=True)
        project = cls(root, Database(db_path), readonly=False)
        project.jobs.mark_interrupted()
        return project

    @classmethod
    def open_readonly(cls, root: Path, reason: str) -> Project:
        """Open without writing anything (no migration, no job bookkeeping): for a project
        another window has open, when the user chose to only look."""
        root = Path(root).absolute()
        db_path = root / DB_NAME
        if not db_path.is_file():
            raise StoreError(f"{root}: not an mskstudio project (no {DB_NAME} inside)")
        if not open_in_this_process(db_path):
            _check_header(db_path)
        return cls._open_readonly(root, reason)

    @classmethod
    def _open_readonly(cls, root: Path, reason: str) -> Project:
        return cls(root, Database(root / DB_NAME, readonly=True), readonly=True, readonly_reason=reason)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- meta and audit -----------------------------------------------------------
    @property
    def name(self) -> str:
        return self.meta("name") or self.root.stem

    def meta(self, key: str) -> str | None:
        return self.db.scalar("SELECT value FROM meta WHERE key = ?", (key,))

    def set_meta(self, key: str, value: str) -> None:
        with self.db.transaction() as c:
            c.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    @property
    def key_fingerprint(self) -> str:
        return self.meta("key_fingerprint") or ""

    @property
    def secret(self) -> bytes:
        """Per-project key for pseudonyms: the same patient gets the same pseudonym here only.

        It lives in the user's key store (store/keys.py), named by ``meta.key_fingerprint``;
        without it this raises KeyMissingError, so work that makes pseudonyms refuses.
        """
        if self._secret is None:
            legacy = self.meta("secret")  # an old project opened read-only was never migrated
            if legacy:
                self._secret = bytes.fromhex(legacy)
            else:
                fp = self.key_fingerprint
                if not fp:
                    raise KeyMissingError(f"{self.root}: this project has no pseudonym key")
                self._secret = load_key(fp)
        return self._secret

    def key_problem(self) -> str:
        """'' when the pseudonym key is at hand, else one line for the user (GUI status bar)."""
        if self.meta("secret") or has_key(self.key_fingerprint):
            return ""
        fp = self.key_fingerprint or "?"
        return (f"pseudonym key {fp} not found (looked for {key_path(fp)}): "
                "the project can be read and trained on, but not extended by imports")

    def audit(
        self, action: str, entity: str | None, entity_id: int | None, details: Any = None,
        *, author: str | None = None,
    ) -> None:
        with self.db.transaction() as c:
            c.execute(
                "INSERT INTO audit(author, action, entity, entity_id, details) VALUES (?, ?, ?, ?, ?)",
                (author or self.author, action, entity, entity_id,
                 None if details is None else json.dumps(details, default=str)),
            )

    def audit_log(self, limit: int = 200) -> list[sqlite3.Row]:
        return self.db.query("SELECT * FROM audit ORDER BY id DESC LIMIT ?", (limit,))

    # ---- derived data -------------------------------------------------------------
    def cache_path(self, *parts: str) -> Path:
        path = self.cache_dir.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def summary(self) -> dict[str, Any]:
        count = lambda table: self.db.scalar(f"SELECT COUNT(*) FROM {table}")  # noqa: E731
        return {
            "name": self.name,
            "path": str(self.root),
            "schema": self.db.scalar("PRAGMA user_version"),
            "readonly": self.readonly_reason or False,
            "patients": count("patients"),
            "studies": count("studies"),
            "images": count("images"),
            "label_sets": {
                r["name"]: r["n"]
                for r in self.db.query(
                    # image label sets only: the mask-class set holds classes, not labels
                    "SELECT s.name, COUNT(l.id) AS n FROM label_sets s "
                    "LEFT JOIN labels l ON l.label_set_id = s.id WHERE s.kind = 'image' "
                    "GROUP BY s.id ORDER BY s.name"
                )
            },
            "cluster_runs": count("cluster_runs"),
            "model_runs": count("model_runs"),
            "masks": count("masks"),
            "boxes": count("boxes"),
            "jobs": {r["status"]: r["n"] for r in self.db.query(
                "SELECT status, COUNT(*) AS n FROM jobs GROUP BY status")},
            "import_failures": count("import_failures"),
        }


def _check_header(db_path: Path) -> None:
    """Refuse files that are not SQLite databases (or are truncated) before SQLite touches them."""
    try:
        with open(db_path, "rb") as f:
            header = f.read(100)
    except OSError as exc:
        raise StoreError(f"{db_path}: cannot read the database ({exc.strerror})") from exc
    if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
        raise StoreError(f"{db_path}: not an SQLite database or truncated (header damaged)")
    app_id = int.from_bytes(header[68:72], "big")
    if app_id not in (0, APPLICATION_ID):
        raise StoreError(f"{db_path}: an SQLite database of another application (id {app_id:#x})")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    counter_valid = header[24:28] == header[92:96]
    if counter_valid and pages and db_path.stat().st_size < pages * page_size:
        raise StoreError(
            f"{db_path}: the database file is truncated "
            f"({db_path.stat().st_size} bytes, header says {pages * page_size})"
        )


QUICK_CHECK_MAX_BYTES = 256 << 20


def _check_integrity(conn: sqlite3.Connection, db_path: Path) -> None:
    # quick_check reads every page; above a size it would slow every open, and the
    # header check plus SQLite's own page checks catch truncation there.
    if db_path.stat().st_size > QUICK_CHECK_MAX_BYTES:
        return
    result = conn.execute("PRAGMA quick_check").fetchone()[0]
    if result != "ok":
        raise StoreError(f"{db_path}: the database is damaged ({result})")


def is_project(path: Path) -> bool:
    return (Path(path) / DB_NAME).is_file()
