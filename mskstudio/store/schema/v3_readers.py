"""Version 3: readers, and reader studies kept apart from the labels."""

from __future__ import annotations

import sqlite3

from mskstudio.store.schema.sql import run_script

# Version 3: readers.  Every human label, mask and box names its reader, several readers'
# human labels of one image coexist (one per reader; the effective label is the latest
# human one), and reader studies keep their cases, arms and blinded reads apart from
# the labels so a study never changes what a model trains on.
SCHEMA_V3_TABLES = """
CREATE TABLE readers (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    role       TEXT CHECK (role IN ('resident', 'specialist', 'subspecialist', 'other') OR role IS NULL),
    years      REAL,                  -- years of experience
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE labels_v3 (
    id           INTEGER PRIMARY KEY,
    image_id     INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    label_set_id INTEGER NOT NULL REFERENCES label_sets(id) ON DELETE CASCADE,
    class_id     INTEGER NOT NULL REFERENCES classes(id) ON DELETE CASCADE,
    source       TEXT NOT NULL CHECK (source IN ('human', 'import', 'cluster', 'model')),
    author       TEXT,
    run_id       INTEGER,
    confidence   REAL,
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    reader_id    INTEGER REFERENCES readers(id)
);

CREATE TABLE reader_studies (
    id                 INTEGER PRIMARY KEY,
    name               TEXT NOT NULL UNIQUE,
    label_set_id       INTEGER NOT NULL REFERENCES label_sets(id),
    truth_label_set_id INTEGER NOT NULL REFERENCES label_sets(id),
    classes            TEXT NOT NULL,      -- JSON [class id, ...] in answer-key order (keys 1-9)
    ordinal            INTEGER NOT NULL DEFAULT 0,
    model_run_id       INTEGER REFERENCES model_runs(id),  -- the model readers are compared with
    washout_days       REAL NOT NULL DEFAULT 0,
    seed               INTEGER NOT NULL,
    params             TEXT NOT NULL DEFAULT '{}',          -- how the images were chosen, options
    created_at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE study_arms (
    id           INTEGER PRIMARY KEY,
    study_id     INTEGER NOT NULL REFERENCES reader_studies(id) ON DELETE CASCADE,
    position     INTEGER NOT NULL,         -- reading order of the arms
    kind         TEXT NOT NULL CHECK (kind IN ('image', 'clinical', 'assisted')),
    model_run_id INTEGER REFERENCES model_runs(id),        -- the assisted arm's model
    UNIQUE (study_id, position)
);

CREATE TABLE study_cases (
    id       INTEGER PRIMARY KEY,
    study_id INTEGER NOT NULL REFERENCES reader_studies(id) ON DELETE CASCADE,
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    UNIQUE (study_id, image_id)
);

-- One row per (arm, reader, case) made at setup with its place in that reader's
-- seeded order; the answer columns fill when the case is read (committed at once).
CREATE TABLE reads (
    id         INTEGER PRIMARY KEY,
    study_id   INTEGER NOT NULL REFERENCES reader_studies(id) ON DELETE CASCADE,
    arm_id     INTEGER NOT NULL REFERENCES study_arms(id) ON DELETE CASCADE,
    reader_id  INTEGER NOT NULL REFERENCES readers(id),
    case_id    INTEGER NOT NULL REFERENCES study_cases(id) ON DELETE CASCADE,
    position   INTEGER NOT NULL,
    class_id   INTEGER REFERENCES classes(id),
    confidence REAL,
    seconds    REAL,
    read_at    TEXT,
    UNIQUE (arm_id, reader_id, case_id),
    UNIQUE (arm_id, reader_id, position)
);
CREATE INDEX reads_reader ON reads(study_id, reader_id, arm_id, position);
"""

# Human rows written without a reader id (older code paths, undo snapshots) get the
# reader named by their author/annotator, created on first use: one trigger per table,
# from one template.  The text is what ``sqlite_master`` of every project since version 3
# holds (tests/unit/test_schema_layout.py compares it), so the layout stays as it was.
READER_TRIGGER = """
CREATE TRIGGER {table}_reader AFTER INSERT ON {table}
WHEN NEW.source {sources} AND NEW.reader_id IS NULL
BEGIN
    INSERT OR IGNORE INTO readers(name) VALUES (COALESCE(NULLIF(NEW.{who}, ''), 'unknown'));
    UPDATE {table} SET reader_id = (SELECT id FROM readers
    {pad}WHERE name = COALESCE(NULLIF(NEW.{who}, ''), 'unknown'))
    WHERE id = NEW.id;
END;"""

# table -> (the sources a reader writes, the column naming the person)
READER_TABLES = {
    "labels": ("= 'human'", "author"),
    "masks": ("IN ('human', 'adjudicated')", "annotator"),
    "boxes": ("IN ('human', 'adjudicated')", "annotator"),
}


def reader_trigger(table: str) -> str:
    sources, who = READER_TABLES[table]
    pad = " " * len(f"UPDATE {table} SET reader_id = (")  # WHERE under SELECT
    return READER_TRIGGER.format(table=table, sources=sources, who=who, pad=pad)


SCHEMA_V3_TRIGGERS = "".join(reader_trigger(t) for t in READER_TABLES) + "\n"


def upgrade_to_3(conn: sqlite3.Connection) -> None:
    run_script(conn, SCHEMA_V3_TABLES)
    # Who wrote the existing human rows; rows without a name go to the project's creator.
    fallback = conn.execute(
        "SELECT COALESCE((SELECT value FROM meta WHERE key = 'created_by'), 'default')").fetchone()[0]
    who = "COALESCE(NULLIF({col}, ''), ?)"
    conn.execute(
        f"INSERT OR IGNORE INTO readers(name) "
        f"SELECT {who.format(col='author')} FROM labels WHERE source = 'human' "
        f"UNION SELECT {who.format(col='annotator')} FROM masks WHERE source IN ('human', 'adjudicated') "
        f"UNION SELECT {who.format(col='annotator')} FROM boxes WHERE source IN ('human', 'adjudicated')",
        (fallback, fallback, fallback))
    # SQLite cannot drop a table constraint: the labels table is rebuilt without
    # UNIQUE (image, set, source); two partial indexes keep one machine label per source
    # and one human label per reader.
    conn.execute(
        f"INSERT INTO labels_v3(id, image_id, label_set_id, class_id, source, author, run_id, "
        f"confidence, created_at, reader_id) "
        f"SELECT id, image_id, label_set_id, class_id, source, author, run_id, confidence, created_at, "
        f"CASE WHEN source = 'human' THEN (SELECT r.id FROM readers r "
        f"WHERE r.name = {who.format(col='labels.author')}) END FROM labels", (fallback,))
    conn.execute("DROP TABLE labels")
    conn.execute("ALTER TABLE labels_v3 RENAME TO labels")
    conn.execute("CREATE INDEX labels_set ON labels(label_set_id, class_id)")
    conn.execute("CREATE INDEX labels_image ON labels(image_id)")
    conn.execute("CREATE UNIQUE INDEX labels_one_machine ON labels(image_id, label_set_id, source) "
                 "WHERE source != 'human'")
    conn.execute("CREATE UNIQUE INDEX labels_one_per_reader ON labels(image_id, label_set_id, reader_id) "
                 "WHERE source = 'human'")
    for table in ("masks", "boxes"):
        conn.execute(f"ALTER TABLE {table} ADD COLUMN reader_id INTEGER REFERENCES readers(id)")
        conn.execute(
            f"UPDATE {table} SET reader_id = (SELECT r.id FROM readers r "
            f"WHERE r.name = {who.format(col=table + '.annotator')}) "
            f"WHERE source IN ('human', 'adjudicated')", (fallback,))
    run_script(conn, SCHEMA_V3_TRIGGERS)
