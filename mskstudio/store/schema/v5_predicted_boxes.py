"""Version 5: a detector's predicted boxes beside the human ones."""

from __future__ import annotations

import sqlite3

from mskstudio.store.schema.sql import run_script

# Version 5: a lesion detector's predicted boxes live in the
# ``boxes`` table beside the human ones, with source 'model', the detector's run and its
# confidence.  A box with a score is a prediction: the store's human-box queries skip it, so
# a prediction never becomes an ROI or a training box until a person accepts it (which
# writes a new human box and marks the prediction 'accepted'); 'dismissed' hides it.
SCHEMA_V5 = """
ALTER TABLE boxes ADD COLUMN score REAL;            -- detector confidence; NULL = not a prediction
ALTER TABLE boxes ADD COLUMN run_id INTEGER REFERENCES model_runs(id);
ALTER TABLE boxes ADD COLUMN review TEXT CHECK (review IN ('accepted', 'dismissed'));
CREATE INDEX boxes_run ON boxes(run_id);
"""


def upgrade_to_5(conn: sqlite3.Connection) -> None:
    run_script(conn, SCHEMA_V5)
