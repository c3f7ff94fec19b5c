"""Version 8: the change feed (one counter per topic) and the cluster edit journal."""

from __future__ import annotations

import sqlite3


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
