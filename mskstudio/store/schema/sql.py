"""Running a migration script: statements split where SQLite needs them split."""

from __future__ import annotations

import sqlite3


def split_sql(script: str) -> list[str]:
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


def run_script(conn: sqlite3.Connection, script: str) -> None:
    """Each statement on its own (``executescript`` would commit the migration's transaction)."""
    for statement in split_sql(script):
        conn.execute(statement)
