"""Version 4: a model mask keeps its probability map."""

from __future__ import annotations

import sqlite3


# Version 4: a model mask may keep the probability map it was thresholded from, as an
# 8-bit greyscale PNG (0-255 = 0-1, image-sized), so a DICOM SEG export can write it as a
# FRACTIONAL segmentation.  NULL for every drawn, imported or adjudicated mask.
def upgrade_to_4(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE masks ADD COLUMN prob_png BLOB")
