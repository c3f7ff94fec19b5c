"""Version 2: measurements per image, and the date a lab was taken."""

from __future__ import annotations

import sqlite3

from mskstudio.store.schema.sql import run_script

# Version 2: measurements drawn in the viewer are kept per image, and a lab gets the
# date it was taken.  Points are full-resolution image pixels (x = column, y = row) so
# a measurement survives display rotation and a later change of spacing can recompute
# the millimetres; the spacing used and where it came from are kept with each value.
SCHEMA_V2 = """
CREATE TABLE measurements (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: audit rows name measurements by id
    image_id       INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    kind           TEXT NOT NULL CHECK (kind IN ('ruler', 'angle')),
    points         TEXT NOT NULL,        -- JSON [[x, y], ...]: 2 for a ruler, 3 (vertex second) for an angle
    length_px      REAL,                 -- ruler length in image pixels
    length_mm      REAL,                 -- ruler length in mm; NULL where the image has no spacing
    angle_deg      REAL,                 -- angle in degrees, in mm geometry where spacing is anisotropic
    spacing_row_mm REAL,
    spacing_col_mm REAL,
    spacing_source TEXT NOT NULL
                   CHECK (spacing_source IN ('PixelSpacing', 'ImagerPixelSpacing', 'estimated', 'none')),
    author         TEXT NOT NULL,
    created_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX measurements_image ON measurements(image_id);

ALTER TABLE labs ADD COLUMN taken_on TEXT;   -- ISO date the sample was taken, NULL = unknown
"""


def upgrade_to_2(conn: sqlite3.Connection) -> None:
    run_script(conn, SCHEMA_V2)
