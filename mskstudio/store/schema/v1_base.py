"""Version 1: the tables every project has (patients to audit)."""

from __future__ import annotations

import sqlite3

from mskstudio.store.schema.sql import run_script

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
    run_script(conn, SCHEMA_V1)
