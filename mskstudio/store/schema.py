"""Schema migrations: ``PRAGMA user_version`` N means ``upgrade_to_1 … upgrade_to_N`` ran.

Add a migration by writing ``upgrade_to_N(conn)`` and appending it to ``MIGRATIONS``;
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

SCHEMA_V1 = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE centres (
    id   INTEGER PRIMARY KEY,
    code TEXT NOT NULL UNIQUE,           -- keyed hash of the institution, or a name the user gives
    name TEXT
);

CREATE TABLE patients (
    id          INTEGER PRIMARY KEY,
    pseudonym   TEXT NOT NULL UNIQUE,    -- keyed hash of the original PatientID
    original_id TEXT,                    -- kept only when the user opted in
    sex         TEXT CHECK (sex IN ('F', 'M', 'O') OR sex IS NULL),
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE studies (
    id          INTEGER PRIMARY KEY,
    patient_id  INTEGER NOT NULL REFERENCES patients(id) ON DELETE CASCADE,
    study_uid   TEXT NOT NULL UNIQUE,
    study_date  TEXT,
    description TEXT,
    age_years   REAL,                    -- patient age at this study
    centre_id   INTEGER REFERENCES centres(id)
);
CREATE INDEX studies_patient ON studies(patient_id);

CREATE TABLE images (
    id                  INTEGER PRIMARY KEY,
    study_id            INTEGER NOT NULL REFERENCES studies(id) ON DELETE CASCADE,
    sop_uid             TEXT NOT NULL,
    frame               INTEGER NOT NULL DEFAULT 0,
    series_uid          TEXT,
    sop_class_uid       TEXT,
    original_sop_hash   TEXT,            -- keyed hash of the original SOPInstanceUID (dedupe)
    blob_sha            TEXT,            -- the (de-identified) DICOM file in blobs/
    source_path         TEXT,            -- when referenced in place instead of copied
    rows                INTEGER NOT NULL,
    cols                INTEGER NOT NULL,
    n_frames            INTEGER NOT NULL DEFAULT 1,
    bits_allocated      INTEGER,
    bits_stored         INTEGER,
    pixel_signed        INTEGER,
    photometric         TEXT,
    transfer_syntax     TEXT,
    spacing_row_mm      REAL,
    spacing_col_mm      REAL,
    spacing_source      TEXT,            -- pixel | imager | imager_corrected | NULL
    window_center       REAL,
    window_width        REAL,
    rescale_slope       REAL,
    rescale_intercept   REAL,
    modality            TEXT,
    manufacturer        TEXT,
    model               TEXT,
    body_part           TEXT,
    view                TEXT,
    laterality          TEXT,
    acquisition_date    TEXT,
    burned_in_annotation INTEGER,
    excluded            INTEGER NOT NULL DEFAULT 0,
    quality             TEXT,
    is_screenshot       INTEGER NOT NULL DEFAULT 0,
    external            INTEGER NOT NULL DEFAULT 0,
    analysis_shape      TEXT,            -- "h,w" of the 16-bit analysis cache once built
    imported_at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (sop_uid, frame)
);
CREATE INDEX images_study ON images(study_id);

CREATE TABLE thumbnails (
    image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
    png      BLOB NOT NULL
);

CREATE TABLE clinical (
    patient_id       INTEGER PRIMARY KEY REFERENCES patients(id) ON DELETE CASCADE,
    age_years        REAL,
    sex              TEXT,
    site             TEXT,
    position         TEXT,
    diagnosis        TEXT,               -- reference standard entity
    dignity          TEXT CHECK (dignity IN ('benign','intermediate','malignant','none') OR dignity IS NULL),
    diagnosis_source TEXT CHECK (diagnosis_source IN ('histology','tumour_board','follow_up')
                                 OR diagnosis_source IS NULL),
    report           TEXT,
    updated_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE labs (
    id         INTEGER PRIMARY KEY,
    patient_id INTEGER NOT NULL REFERENCES patients(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    value      REAL,                     -- NULL = measured as missing
    unit       TEXT,
    ref_low    REAL,
    ref_high   REAL,
    UNIQUE (patient_id, name)
);

CREATE TABLE label_sets (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL DEFAULT 'image' CHECK (kind IN ('image', 'mask', 'box')),
    description TEXT
);

CREATE TABLE classes (
    id           INTEGER PRIMARY KEY,
    label_set_id INTEGER NOT NULL REFERENCES label_sets(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    color        TEXT,
    position     INTEGER NOT NULL DEFAULT 0,
    is_reject    INTEGER NOT NULL DEFAULT 0,  -- the out-of-distribution class fed by discarded clusters
    UNIQUE (label_set_id, name)
);

-- One row per (image, label set, source): a machine label can never overwrite a
-- human one because they live in different rows; the effective label picks
-- human > import > cluster > model.
CREATE TABLE labels (
    id           INTEGER PRIMARY KEY,
    image_id     INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    label_set_id INTEGER NOT NULL REFERENCES label_sets(id) ON DELETE CASCADE,
    class_id     INTEGER NOT NULL REFERENCES classes(id) ON DELETE CASCADE,
    source       TEXT NOT NULL CHECK (source IN ('human', 'import', 'cluster', 'model')),
    author       TEXT,
    run_id       INTEGER,                -- cluster_runs.id or model_runs.id depending on source
    confidence   REAL,
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (image_id, label_set_id, source)
);
CREATE INDEX labels_set ON labels(label_set_id, class_id);

CREATE TABLE model_runs (
    id             INTEGER PRIMARY KEY,
    kind           TEXT NOT NULL,        -- deepcluster | classifier | segmenter | embedder
    name           TEXT NOT NULL,
    arch           TEXT NOT NULL,        -- registry key, e.g. resnet18
    label_set_id   INTEGER REFERENCES label_sets(id),
    parent_run_id  INTEGER REFERENCES model_runs(id),
    params         TEXT NOT NULL DEFAULT '{}',
    data_hash      TEXT,
    split          TEXT,                 -- JSON patient -> part
    metrics        TEXT,                 -- JSON
    checkpoint_sha TEXT,                 -- blob
    status         TEXT NOT NULL DEFAULT 'running',
    job_id         INTEGER REFERENCES jobs(id),
    created_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    finished_at    TEXT
);

CREATE TABLE cluster_runs (
    id            INTEGER PRIMARY KEY,
    model_run_id  INTEGER REFERENCES model_runs(id),
    label_set_id  INTEGER REFERENCES label_sets(id),
    k             INTEGER NOT NULL,
    params        TEXT NOT NULL DEFAULT '{}',
    nmi_history   TEXT,                  -- JSON list, NMI between consecutive epochs
    metrics       TEXT,                  -- JSON, e.g. NMI/ARI/purity vs ground truth
    job_id        INTEGER REFERENCES jobs(id),
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE clusters (
    id             INTEGER PRIMARY KEY,
    run_id         INTEGER NOT NULL REFERENCES cluster_runs(id) ON DELETE CASCADE,
    idx            INTEGER NOT NULL,
    class_id       INTEGER REFERENCES classes(id),
    discarded      INTEGER NOT NULL DEFAULT 0,
    parent_id      INTEGER REFERENCES clusters(id),   -- set on the parts of a split
    merged_into    INTEGER REFERENCES clusters(id),
    map_x          REAL,
    map_y          REAL,
    spread         REAL,
    reviewed_at    TEXT,
    review_seconds REAL,
    UNIQUE (run_id, idx)
);

CREATE TABLE cluster_members (
    run_id     INTEGER NOT NULL REFERENCES cluster_runs(id) ON DELETE CASCADE,
    image_id   INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    cluster_id INTEGER NOT NULL REFERENCES clusters(id) ON DELETE CASCADE,
    distance   REAL,
    map_x      REAL,
    map_y      REAL,
    PRIMARY KEY (run_id, image_id)
);
CREATE INDEX cluster_members_cluster ON cluster_members(cluster_id);

CREATE TABLE masks (
    id         INTEGER PRIMARY KEY,
    image_id   INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    class_id   INTEGER NOT NULL REFERENCES classes(id),
    annotator  TEXT NOT NULL,
    source     TEXT NOT NULL DEFAULT 'human' CHECK (source IN ('human', 'model', 'import', 'adjudicated')),
    run_id     INTEGER REFERENCES model_runs(id),
    png        BLOB NOT NULL,            -- 1-bit PNG, image-sized
    bbox       TEXT,                     -- "x0,y0,x1,y1" of the non-zero area
    area_px    INTEGER,
    longest_mm REAL,
    area_mm2   REAL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (image_id, class_id, annotator, source)
);

CREATE TABLE boxes (
    id         INTEGER PRIMARY KEY,
    image_id   INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    class_id   INTEGER NOT NULL REFERENCES classes(id),
    annotator  TEXT NOT NULL,
    source     TEXT NOT NULL DEFAULT 'human',
    x0 REAL NOT NULL, y0 REAL NOT NULL, x1 REAL NOT NULL, y1 REAL NOT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX boxes_image ON boxes(image_id);

CREATE TABLE jobs (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL,
    params      TEXT NOT NULL DEFAULT '{}',
    status      TEXT NOT NULL DEFAULT 'submitted'
                CHECK (status IN ('submitted', 'running', 'done', 'error', 'cancelled', 'interrupted')),
    progress    REAL NOT NULL DEFAULT 0,
    message     TEXT,
    error       TEXT,
    result      TEXT,
    pid         INTEGER,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    started_at  TEXT,
    finished_at TEXT
);

CREATE TABLE job_metrics (
    job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    name   TEXT NOT NULL,
    step   INTEGER NOT NULL,
    value  REAL NOT NULL,
    PRIMARY KEY (job_id, name, step)
);

CREATE TABLE predictions (
    model_run_id INTEGER NOT NULL REFERENCES model_runs(id) ON DELETE CASCADE,
    image_id     INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    class_id     INTEGER REFERENCES classes(id),
    confidence   REAL,
    probs        TEXT,                   -- JSON {class_id: p}
    rejected     INTEGER NOT NULL DEFAULT 0,
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (model_run_id, image_id)
);

CREATE TABLE import_failures (
    id     INTEGER PRIMARY KEY,
    job_id INTEGER REFERENCES jobs(id) ON DELETE CASCADE,
    path   TEXT NOT NULL,
    reason TEXT NOT NULL,
    at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- Append-only: triggers refuse UPDATE and DELETE so history cannot be rewritten.
CREATE TABLE audit (
    id        INTEGER PRIMARY KEY,
    at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    author    TEXT,
    action    TEXT NOT NULL,
    entity    TEXT,
    entity_id INTEGER,
    details   TEXT
);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


def upgrade_to_1(conn: sqlite3.Connection) -> None:
    for statement in _split_sql(SCHEMA_V1):
        conn.execute(statement)


def _split_sql(script: str) -> list[str]:
    """Split a script into statements (triggers contain ';' inside BEGIN … END)."""
    statements, current = [], []
    in_trigger = False
    for line in script.splitlines():
        stripped = line.split("--", 1)[0].strip()
        if not stripped and not current:
            continue
        current.append(line)
        upper = stripped.upper()
        if upper.startswith("CREATE TRIGGER"):
            in_trigger = True
        if stripped.endswith(";") and (not in_trigger or upper.endswith("END;")):
            statements.append("\n".join(current))
            current, in_trigger = [], False
    return statements


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
    for statement in _split_sql(SCHEMA_V2):
        conn.execute(statement)


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
# reader named by their author/annotator, created on first use.
SCHEMA_V3_TRIGGERS = """
CREATE TRIGGER labels_reader AFTER INSERT ON labels
WHEN NEW.source = 'human' AND NEW.reader_id IS NULL
BEGIN
    INSERT OR IGNORE INTO readers(name) VALUES (COALESCE(NULLIF(NEW.author, ''), 'unknown'));
    UPDATE labels SET reader_id = (SELECT id FROM readers
                                   WHERE name = COALESCE(NULLIF(NEW.author, ''), 'unknown'))
    WHERE id = NEW.id;
END;
CREATE TRIGGER masks_reader AFTER INSERT ON masks
WHEN NEW.source IN ('human', 'adjudicated') AND NEW.reader_id IS NULL
BEGIN
    INSERT OR IGNORE INTO readers(name) VALUES (COALESCE(NULLIF(NEW.annotator, ''), 'unknown'));
    UPDATE masks SET reader_id = (SELECT id FROM readers
                                  WHERE name = COALESCE(NULLIF(NEW.annotator, ''), 'unknown'))
    WHERE id = NEW.id;
END;
CREATE TRIGGER boxes_reader AFTER INSERT ON boxes
WHEN NEW.source IN ('human', 'adjudicated') AND NEW.reader_id IS NULL
BEGIN
    INSERT OR IGNORE INTO readers(name) VALUES (COALESCE(NULLIF(NEW.annotator, ''), 'unknown'));
    UPDATE boxes SET reader_id = (SELECT id FROM readers
                                  WHERE name = COALESCE(NULLIF(NEW.annotator, ''), 'unknown'))
    WHERE id = NEW.id;
END;
"""


def upgrade_to_3(conn: sqlite3.Connection) -> None:
    for statement in _split_sql(SCHEMA_V3_TABLES):
        conn.execute(statement)
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
    for statement in _split_sql(SCHEMA_V3_TRIGGERS):
        conn.execute(statement)



# Version 4: a model mask may keep the probability map it was thresholded from, as an
# 8-bit greyscale PNG (0-255 = 0-1, image-sized), so a DICOM SEG export can write it as a
# FRACTIONAL segmentation.  NULL for every drawn, imported or adjudicated mask.
def upgrade_to_4(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE masks ADD COLUMN prob_png BLOB")



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
    for statement in _split_sql(SCHEMA_V5):
        conn.execute(statement)



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



def upgrade_to_8(conn: sqlite3.Connection) -> None:
    """The change feed and the cluster edit journal (issue 22).

    ``change_topics`` holds one counter per topic, bumped by triggers on every insert,
    update and delete of the topic's tables, whichever connection or process writes: the
    GUI polls it (after a cheap ``PRAGMA data_version``) and refreshes the views of the
    topics that moved, so an edit by the CLI or a job subprocess shows at once.

    ``cluster_edits`` is the one history of cluster review actions (label, discard, merge,
    split, move out, image labels) from the board and the CLI: each row is written in the
    action's own transaction with its undo record, so a kill never leaves an edit without
    its journal row; ``state`` is 'done' or 'undone' (the redo side)."""
    topics = {  # topic -> the tables whose rows bump it
        "images": ("images", "clinical"), "labels": ("labels",), "masks": ("masks",),
        "boxes": ("boxes",), "clusters": ("clusters", "cluster_edits"), "runs": ("cluster_runs", "model_runs"),
    }
    conn.execute("CREATE TABLE change_topics (topic TEXT PRIMARY KEY, counter INTEGER NOT NULL DEFAULT 0)")
    conn.execute(
        "CREATE TABLE cluster_edits ("
        " id INTEGER PRIMARY KEY,"
        " run_id INTEGER NOT NULL REFERENCES cluster_runs(id) ON DELETE CASCADE,"
        " action TEXT NOT NULL,"
        " record TEXT NOT NULL,"
        " origin TEXT NOT NULL DEFAULT 'store',"
        " author TEXT,"
        " state TEXT NOT NULL DEFAULT 'done' CHECK (state IN ('done', 'undone')),"
        " created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),"
        " changed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))")
    conn.execute("CREATE INDEX cluster_edits_run ON cluster_edits(run_id, state, id)")
    for topic, tables in topics.items():
        conn.execute("INSERT INTO change_topics(topic, counter) VALUES (?, 0)", (topic,))
        for table in tables:
            for event in ("INSERT", "UPDATE", "DELETE"):
                conn.execute(
                    f"CREATE TRIGGER change_{table}_{event.lower()} AFTER {event} ON {table} "
                    f"BEGIN UPDATE change_topics SET counter = counter + 1 WHERE topic = '{topic}'; END")


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
