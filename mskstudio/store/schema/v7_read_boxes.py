"""Version 7: boxes a reader draws while reading a study."""

from __future__ import annotations

import sqlite3


# Version 7: the lesion boxes a reader draws while reading a
# study, stored with the read (never in ``boxes``, so study reads never become training
# data).  Written in the same transaction as the read's answer.
def upgrade_to_7(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE read_boxes ("
        " id INTEGER PRIMARY KEY,"
        " read_id INTEGER NOT NULL REFERENCES reads(id) ON DELETE CASCADE,"
        " x0 REAL NOT NULL, y0 REAL NOT NULL, x1 REAL NOT NULL, y1 REAL NOT NULL,"
        " CHECK (x1 > x0 AND y1 > y0))")
    conn.execute("CREATE INDEX read_boxes_read ON read_boxes(read_id)")
