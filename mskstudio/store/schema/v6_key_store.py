"""Version 6: the pseudonym key leaves the project for the user's key store."""

from __future__ import annotations

import sqlite3


# Version 6: the pseudonym key moves out of the project into the user's key store
# (store/keys.py); the project keeps only its fingerprint.  The key file is written before
# the row is deleted, so a failed step leaves the key in one place or both, never neither.
# secure_delete zeroes the freed bytes so the key cannot be read back from the file.
def upgrade_to_6(conn: sqlite3.Connection) -> None:
    from mskstudio.store.keys import save_key

    row = conn.execute("SELECT value FROM meta WHERE key = 'secret'").fetchone()
    if row is None or not row[0]:
        return
    fp = save_key(bytes.fromhex(row[0]))
    conn.execute("INSERT INTO meta(key, value) VALUES ('key_fingerprint', ?) "
                 "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (fp,))
    conn.execute("PRAGMA secure_delete = ON")
    conn.execute("DELETE FROM meta WHERE key = 'secret'")
