"""Schema migrations: ``PRAGMA user_version`` N means ``upgrade_to_1 … upgrade_to_N`` ran.

One module per migration (``vN_<what>.py``: its SQL and its ``upgrade_to_N(conn)``).  Add
a migration by writing the next module and appending its function to ``MIGRATIONS``;
never edit a released one.  ``migrate`` copies the database to a backup file before
the first migration step and runs each step in its own transaction, so an error
leaves the database at the last complete version.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

from mskstudio.store.db import APPLICATION_ID, StoreError
from mskstudio.store.schema.v1_base import upgrade_to_1
from mskstudio.store.schema.v2_measurements import upgrade_to_2
from mskstudio.store.schema.v3_readers import upgrade_to_3
from mskstudio.store.schema.v4_prob_maps import upgrade_to_4
from mskstudio.store.schema.v5_predicted_boxes import upgrade_to_5
from mskstudio.store.schema.v6_key_store import upgrade_to_6
from mskstudio.store.schema.v7_read_boxes import upgrade_to_7
from mskstudio.store.schema.v8_change_feed import upgrade_to_8

MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    upgrade_to_1, upgrade_to_2, upgrade_to_3, upgrade_to_4, upgrade_to_5, upgrade_to_6, upgrade_to_7,
    upgrade_to_8,
]


def latest_version() -> int:
    return len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, db_path: Path) -> int:
    """Bring the database to ``latest_version()``; returns the version it started at."""
    start = conn.execute("PRAGMA user_version").fetchone()[0]
    target = latest_version()
    if start > target:
        raise StoreError(
            f"{db_path}: the project was written by a newer mskstudio (schema {start}, "
            f"this version knows up to {target})"
        )
    if start == target:
        return start
    if start > 0:
        backup = db_path.with_name(f"{db_path.stem}.v{start}.backup.db")
        _backup(conn, backup)
    for version in range(start + 1, target + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            MIGRATIONS[version - 1](conn)
            conn.execute(f"PRAGMA user_version = {version}")
            if version == 1:
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    if start > 0:
        # Write the migrated pages into the main file now (and empty the WAL), so nothing a
        # step deleted (the old pseudonym key) lingers in the WAL of a folder someone copies.
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return start


def scrub_backup_secrets(root: Path) -> list[Path]:
    """Remove the pseudonym key from the migration backups in a project folder.

    A backup is written before migrating, so a project migrated out of ``meta.secret``
    still had the key in ``project.vN.backup.db`` beside it.  The key is in the key store
    now; the backup keeps its fingerprint instead, so restoring it still finds the key.
    """
    from mskstudio.store.keys import fingerprint, save_key

    scrubbed = []
    for path in sorted(Path(root).glob("project.v*.db")):
        conn = sqlite3.connect(str(path), isolation_level=None)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'secret'").fetchone()
            if row is None or not row[0]:
                continue
            key = bytes.fromhex(row[0])
            save_key(key)
            conn.execute("PRAGMA secure_delete = ON")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO meta(key, value) VALUES ('key_fingerprint', ?) "
                         "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (fingerprint(key),))
            conn.execute("DELETE FROM meta WHERE key = 'secret'")
            conn.execute("COMMIT")
            conn.execute("VACUUM")  # a small old file; VACUUM leaves no freed page behind
            scrubbed.append(path)
        except sqlite3.DatabaseError:
            continue  # not a database we can scrub (damaged): leave it as it is
        finally:
            conn.close()
    return scrubbed


def _backup(conn: sqlite3.Connection, target: Path) -> None:
    """A consistent copy through SQLite's online backup API (safe with WAL)."""
    if target.exists():
        shutil.copy2(target, target.with_suffix(".older.db"))
    dest = sqlite3.connect(str(target))
    try:
        conn.backup(dest)
    finally:
        dest.close()
