"""Helpers shared by the subcommand modules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mskstudio.jobrun import UserError
from mskstudio.store import Project, is_project


def open_project(path: str | Path) -> Project:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such project (create one with `mskstudio new {path}`)")
    if not is_project(path):
        raise UserError(f"{path}: not an mskstudio project (no project.db inside)")
    return Project.open(path)


def open_writable(path: str | Path) -> Project:
    project = open_project(path)
    if project.readonly:
        raise UserError(f"{path}: {project.readonly_reason}")
    return project


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def add_project_arg(parser) -> None:
    parser.add_argument("project", help="project folder (NAME.mskproj)")
